"""The workload both tracking benchmarks run: sizes, seeds, generated data and shared helpers.

Standard library only: bench_tidal.py imports it under Tidal's interpreter and bench_mlflow.py
under the MLflow virtual environment's, so both log exactly the same values. run.py uses it to
compute the expected search result independently of either system.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from typing import Any

# -- sizes --------------------------------------------------------------------------------------

FULL = {"metric_calls": 10_000, "runs": 2_000, "search_repeats": 5, "import_repeats": 7}
QUICK = {"metric_calls": 1_000, "runs": 200, "search_repeats": 3, "import_repeats": 3}

# -- (a) metric calls ---------------------------------------------------------------------------

METRIC_EXPERIMENT = "bench-metrics"
METRIC_KEY = "loss"
SEED = 20_240_611

# -- (b) runs and search ------------------------------------------------------------------------

SEARCH_EXPERIMENT = "bench-search"
MODELS = ("resnet18", "resnet50", "vit_b16", "mlp", "xgboost")
OPTIMIZERS = ("adam", "adamw", "sgd", "rmsprop")
DATASETS = ("v1", "v2", "v3", "v4")
SEARCH_MODEL = "resnet50"
SEARCH_FILTER = f"metrics.m0 > 0.5 and params.p1 = '{SEARCH_MODEL}'"
SEARCH_ORDER = ["metrics.m1 DESC"]
SEARCH_LIMIT = 100


def metric_values(n: int) -> list[float]:
    """The values logged by the n single ``log_metric`` calls of part (a)."""
    rng = random.Random(SEED)
    return [rng.random() for _ in range(n)]


def run_specs(n: int) -> list[tuple[dict[str, Any], dict[str, float]]]:
    """(params, metrics) of each run of part (b): 10 params p0..p9, 10 metrics m0..m9."""
    rng = random.Random(SEED + 1)
    specs = []
    for i in range(n):
        params: dict[str, Any] = {
            "p0": rng.choice(OPTIMIZERS),
            "p1": rng.choice(MODELS),
            "p2": round(10 ** rng.uniform(-5, -1), 8),   # learning rate
            "p3": rng.choice((16, 32, 64, 128, 256)),    # batch size
            "p4": rng.randint(1, 100),                   # epochs
            "p5": round(rng.uniform(0.0, 0.5), 3),       # dropout
            "p6": i,                                     # seed
            "p7": round(10 ** rng.uniform(-6, -2), 8),   # weight decay
            "p8": rng.choice(("true", "false")),         # augmentation
            "p9": rng.choice(DATASETS),                  # dataset version
        }
        metrics = {f"m{k}": rng.random() for k in range(10)}
        specs.append((params, metrics))
    return specs


def expected_search(n: int) -> dict[str, Any]:
    """What the search of part (b) must return, computed from the generated data alone."""
    matches = [m for p, m in run_specs(n) if m["m0"] > 0.5 and p["p1"] == SEARCH_MODEL]
    m1 = sorted((m["m1"] for m in matches), reverse=True)[:SEARCH_LIMIT]
    return {"matches": len(matches), "rows": len(m1), "m1": m1}


# -- shared helpers -----------------------------------------------------------------------------

def parse_args(description: str, argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--quick", action="store_true",
                        help="smaller sizes for a smoke run (targets are for the full sizes)")
    parser.add_argument("--metric-calls", type=int, help="single log_metric calls in part (a)")
    parser.add_argument("--runs", type=int, help="runs created in part (b)")
    parser.add_argument("--search-repeats", type=int,
                        help="warm searches after the first one in part (b)")
    parser.add_argument("--import-repeats", type=int, help="fresh processes in part (c)")
    parser.add_argument("--tmp-root", help="folder for the temporary directory "
                                            "(default: the system's temporary folder)")
    parser.add_argument("--keep", action="store_true", help="keep the temporary directory")
    parser.add_argument("--search-in", metavar="DIR",
                        help="only time the search of part (b), in the store a kept run left "
                             "in DIR (run.py alternates these rounds between the two tools)")
    args = parser.parse_args(argv)
    sizes = QUICK if args.quick else FULL
    for name, value in sizes.items():
        if getattr(args, name) is None:
            setattr(args, name, value)
    return args


def time_searches(search: Any, repeats: int) -> dict[str, Any]:
    """Time 1 + repeats calls of ``search()``; the first (cold: imports, caches) apart."""
    times, frame = [], None
    for _ in range(1 + repeats):
        start = time.perf_counter()
        frame = search()
        times.append(time.perf_counter() - start)
    return {
        "search_first_s": times[0],
        "search_median_s": median(times[1:]) if repeats else times[0],
        "search_all_s": times,
        "rows": len(frame),
        "frame_type": f"{type(frame).__module__}.{type(frame).__name__}",
        "m1": frame["metrics.m1"].tolist(),
    }


def search_only(tool: str, folder: str, open_store: Any, repeats: int) -> None:
    """The ``--search-in`` mode: ``open_store(folder)`` opens the store a kept full run left
    there and returns its search as a call without arguments; time it and print the result."""
    real_stdout = sys.stdout
    with contextlib.redirect_stdout(sys.stderr):
        result = {"tool": tool, "b": time_searches(open_store(folder), repeats)}
    emit(result, real_stdout)


def median(values: list[float]) -> float:
    return statistics.median(values)


def progress(tool: str, message: str) -> None:
    print(f"[{tool}] {message}", file=sys.stderr, flush=True)


@contextlib.contextmanager
def fresh_directory(tool: str, root: str | None, keep: bool) -> Iterator[str]:
    path = tempfile.mkdtemp(prefix=f"{tool}-bench-", dir=root)
    try:
        yield path
    finally:
        if keep:
            progress(tool, f"kept {path}")
        else:
            shutil.rmtree(path, ignore_errors=True)


def import_times(python: str, module: str, repeats: int, cwd: str) -> dict[str, Any]:
    """Cold ``import module`` in ``repeats`` fresh interpreter processes (after one untimed
    process, so that both systems start with their bytecode caches written)."""
    code = f"import time; t = time.perf_counter(); import {module}; " \
           f"print(time.perf_counter() - t)"
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONSTARTUP")}
    run = lambda *args: subprocess.run([python, *args], cwd=cwd, env=env, check=True,  # noqa: E731
                                       capture_output=True, text=True)
    run("-c", f"import {module}")
    seconds, process_seconds = [], []
    for _ in range(repeats):
        start = time.perf_counter()
        done = run("-c", code)
        process_seconds.append(time.perf_counter() - start)
        seconds.append(float(done.stdout.strip().splitlines()[-1]))
    # One extra process with -X importtime: the heaviest imports, for diagnosis.
    trace = run("-X", "importtime", "-c", f"import {module}").stderr
    return {
        "median_s": median(seconds),
        "min_s": min(seconds),
        "max_s": max(seconds),
        "all_s": seconds,
        "process_median_s": median(process_seconds),
        "heaviest": heaviest_imports(trace, module),
    }


def heaviest_imports(trace: str, module: str, top: int = 8) -> list[list[Any]]:
    """[name, cumulative µs] of ``module`` and of its slowest direct imports, from a
    ``-X importtime`` trace (where a module's imports are listed just before it)."""
    block: list[tuple[int, str, int]] = []
    for line in trace.splitlines():
        if not line.startswith("import time:") or "|" not in line:
            continue
        parts = line[len("import time:"):].split("|")
        try:
            cumulative = int(parts[1])
        except ValueError:  # the header line
            continue
        name = parts[2][1:].rstrip()
        depth = (len(name) - len(name.lstrip())) // 2
        name = name.strip()
        if depth == 0 and name == module:
            children = sorted(([n, c] for d, n, c in block if d == 1), key=lambda r: -r[1])
            return [[module, cumulative], *children[:top]]
        block = [] if depth == 0 else [*block, (depth, name, cumulative)]
    return []


def emit(result: dict[str, Any], stdout: Any) -> None:
    """Print the figures as one JSON object on the process's real stdout."""
    stdout.write(json.dumps(result) + "\n")
    stdout.flush()

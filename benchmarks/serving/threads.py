"""Model threads: `tidal serve --workers 2` with a model whose predict runs on an OpenMP pool
(scikit-learn's HistGradientBoostingClassifier), with Tidal's default (each worker's pools get
the CPUs divided among the workers) against pools as the libraries size them by themselves
(every CPU in every worker, what `--model-threads <CPUs>` gives).

    python benchmarks/serving/threads.py [--rounds N] [--duration S] [--warmup S]
        [--write-results] [--json PATH] [--tmp-root DIR]

In each round each server is started fresh, warmed up and measured with `wrk -t1 -c16` and a
single-row body, the order alternating from round to round; figures are medians over the
rounds. Checks: both answer the check rows as the model does in process, no non-2xx answer or
socket error, and each worker holds the thread settings it was meant to. Exit status: 0 when
every target and check passes, 1 when one fails, 2 when the benchmark could not run.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent))
import workload as w  # noqa: E402
from report import (  # noqa: E402
    ComparisonTable,
    add_result_options,
    fail,
    finish,
    load_average,
    parse_full_run,
    say,
    source_state,
)
from run import (  # noqa: E402
    CONNECTIONS,
    READY_TIMEOUT_S,
    WORKERS,
    WRK_TIMEOUT,
    Server,
    answers,
    log_tail,
    request,
    stop,
    tree,
    wrk,
)

from tidal.cpus import available_cpus  # noqa: E402

FULL = {"rounds": 3, "duration": 15.0, "warmup": 3.0}
#: Tidal's default is not to be slower than pools sized by the libraries.
TARGET_RATIO = 1.0
ITERATIONS = 200


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, help=f"default {FULL['rounds']}")
    parser.add_argument("--duration", type=float, help=f"seconds measured, default "
                                                       f"{FULL['duration']:g}")
    parser.add_argument("--warmup", type=float, help=f"default {FULL['warmup']:g}")
    add_result_options(parser, "model threads")
    return parse_full_run(parser, ["--rounds", "--duration", "--warmup"])


def prepare(home: Path) -> tuple[list[dict[str, float]], list[int]]:
    """Register and deploy the model; the check rows and the labels it gives them."""
    from sklearn.ensemble import HistGradientBoostingClassifier

    import tidal

    say(f"Training a HistGradientBoostingClassifier ({ITERATIONS} iterations) and deploying "
        "it...")
    ws = tidal.workspace(home)
    data = w.frame()
    model = HistGradientBoostingClassifier(max_iter=ITERATIONS, early_stopping=False,
                                           random_state=0).fit(data, w.labels(data))
    tidal.models.register("hgb", model, run=False, input_example=data.head(5), workspace=ws)
    tidal.serving.deploy("hgb", {"models:/hgb/1": 100}, workspace=ws)
    check = w.check_frame()
    return w.records(check), [int(label) for label in model.predict(check)]


def start(home: Path, work: Path, threads: int | None) -> Server:
    """A fresh `tidal serve`, with no thread variable in its environment: ``threads`` None
    leaves the sizing to Tidal's default."""
    import time

    from tidal.serving.server import THREAD_VARIABLES

    server = Server("tidal", [], "/v2/health/ready", "/predict/hgb")
    server.command = [str(Path(sys.executable).with_name("tidal")), "serve", "hgb", "--port",
                      str(server.port), "--workers", str(WORKERS), "--no-log",
                      *(() if threads is None else ("--model-threads", str(threads)))]
    server.log = work / f"server-{threads or 'default'}.log"
    environment = {k: v for k, v in os.environ.items() if k not in THREAD_VARIABLES}
    environment.update(TIDAL_HOME=str(home), PYTHONUNBUFFERED="1")
    with open(server.log, "ab") as log:
        server.process = subprocess.Popen(server.command, env=environment, stdout=log,
                                          stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                          start_new_session=True)
    deadline = time.monotonic() + READY_TIMEOUT_S
    while time.monotonic() < deadline:
        if server.process.poll() is not None:
            fail(f"tidal serve exited before it was ready\n{log_tail(server)}")
        try:
            if request(server.port, "GET", server.ready, None, timeout=5)[0] == 200:
                return server
        except OSError:
            pass
        time.sleep(0.25)
    fail(f"tidal serve was not ready after {READY_TIMEOUT_S:.0f} s\n{log_tail(server)}")


def worker_threads(server: Server) -> list[str]:
    """OMP_NUM_THREADS as each worker process holds it."""
    import psutil

    found = []
    for process in tree(server):
        try:
            if "spawn_main" in " ".join(process.cmdline()):
                found.append(process.environ().get("OMP_NUM_THREADS", "unset"))
        except psutil.Error:
            continue
    return found


def run_all(args: argparse.Namespace, work: Path) -> dict[str, Any]:
    sizes = {key: getattr(args, key) or value for key, value in FULL.items()}
    home = work / "tidal"
    rows, expected = prepare(home)
    body = work / "body.json"
    body.write_text(json.dumps({"records": rows[:1]}, separators=(",", ":")))
    settings = {"default": None, "library": available_cpus()}
    raw: dict[str, Any] = {"sizes": sizes, "cpus": available_cpus(), "workers": WORKERS,
                           "rounds": [], "checks": {}}
    for index in range(sizes["rounds"]):
        order = list(settings) if index % 2 == 0 else list(settings)[::-1]
        found = {}
        for name in order:
            say(f"Round {index + 1} of {sizes['rounds']}: {name} threads ({sizes['warmup']:g} s "
                f"warm-up + {sizes['duration']:g} s)...")
            server = start(home, work, settings[name])
            try:
                labels = answers(server, rows)
                threads = worker_threads(server)
                wrk(server, body, CONNECTIONS, sizes["warmup"])
                result = wrk(server, body, CONNECTIONS, sizes["duration"])
            finally:
                stop(server)
            result.pop("output")
            found[name] = result
            raw["checks"].setdefault(name, []).append(
                {"same_labels": labels == expected, "omp_threads": threads})
        raw["rounds"].append(found)
    return raw


def median(raw: dict[str, Any], name: str, pick: Any) -> float:
    return statistics.median(pick(r[name]) for r in raw["rounds"])


def build_table(raw: dict[str, Any]) -> ComparisonTable:
    table = ComparisonTable()
    per_worker = str(max(1, raw["cpus"] // raw["workers"]))
    meant = {"default": per_worker, "library": str(raw["cpus"])}
    rate = {name: median(raw, name, lambda r: r["requests_per_s"]) for name in meant}
    p99 = {name: median(raw, name, lambda r: r["latency_s"]["p99"]) for name in meant}
    ratio = rate["default"] / rate["library"]
    table.add("requests/s (median of rounds)", f"{rate['default']:,.0f}/s",
              f"{rate['library']:,.0f}/s", f"{ratio:.2f}x", f">= {TARGET_RATIO:g}x",
              passed=ratio >= TARGET_RATIO)
    table.add("p99 latency (median of rounds)", f"{p99['default'] * 1e3:.1f} ms",
              f"{p99['library'] * 1e3:.1f} ms", f"{p99['library'] / p99['default']:.1f}x "
              "lower")
    for name in meant:
        rates = ", ".join(f"{r[name]['requests_per_s']:,.0f}" for r in raw["rounds"])
        table.add(f"requests/s per round, {name}", rates)
    for name, wanted in meant.items():
        checks = raw["checks"][name]
        table.add(f"check: {name} answers as the model does in process",
                  passed=all(c["same_labels"] for c in checks), check=True)
        held = sorted({t for c in checks for t in c["omp_threads"]})
        table.add(f"check: {name} workers hold OMP_NUM_THREADS={wanted}", ", ".join(held),
                  passed=held == [wanted] and all(len(c["omp_threads"]) == raw["workers"]
                                                  for c in checks), check=True)
    failures = {name: sum(r[name]["non2xx"] + sum(r[name]["socket_errors"].values())
                          for r in raw["rounds"]) for name in meant}
    table.add("check: default, no non-2xx answer or socket error", str(failures["default"]),
              passed=failures["default"] == 0, check=True)
    timeouts = sum(r["library"]["socket_errors"]["timeout"] for r in raw["rounds"])
    table.add("library: non-2xx answers and socket errors", str(failures["library"]),
              f"{timeouts} over {WRK_TIMEOUT}")
    return table


def main() -> None:
    args = parse_args()
    load_before = load_average()
    state = source_state()
    with tempfile.TemporaryDirectory(prefix="tidal-threads-", dir=args.tmp_root) as tmp:
        raw = run_all(args, Path(tmp))
    if args.json:
        Path(args.json).write_text(json.dumps(raw, indent=2))
    sizes = raw["sizes"]
    head = (f"Model threads: tidal serve --workers {raw['workers']} on {raw['cpus']} CPUs, a "
            f"HistGradientBoostingClassifier ({ITERATIONS} iterations, 10 float columns), "
            f"wrk -t1 -c{CONNECTIONS} with one row, {sizes['rounds']} rounds of "
            f"{sizes['warmup']:g} s warm-up + {sizes['duration']:g} s.\n"
            f"\"Tidal\": the default ({max(1, raw['cpus'] // raw['workers'])} OpenMP/BLAS "
            f"thread(s) per worker); \"Compared with\": --model-threads {raw['cpus']}, pools "
            "as the libraries size them by themselves.")
    finish(build_table(raw), head, quick=False, write=args.write_results, name="threads",
           title="Serving: model threads per worker", load_before=load_before,
           facts=[f"Source: {state}"])


if __name__ == "__main__":
    main()

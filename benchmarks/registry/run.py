"""Model registry benchmark: Tidal against MLflow, in one run on the same machine.

    python benchmarks/registry/run.py [--mlflow-python PATH] [--rounds N] [--quick]
                                      [--write-results] [--json PATH] [--tmp-root DIR]

(a) log-and-register of one scikit-learn pipeline inside a run, (b) cold load of a registered
version in a fresh process: each in rounds that alternate a Tidal process (bench_tidal.py,
this interpreter) and an MLflow one (bench_mlflow.py, the MLflow virtual environment's:
--mlflow-python, else $TIDAL_BENCH_MLFLOW_PYTHON, else benchmarks/.venvs/mlflow/bin/python),
which one goes first alternating too. (c) the cost of Tidal's predict over the raw pipeline's
and (d) ONNX export and its single-row latency are Tidal's alone. Prints each figure, the
ratio and the target. Exit status: 0 when every target and check passes, 1 when one fails,
2 when the benchmark could not run.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import statistics
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
REPO = HERE.parent.parent
DEFAULT_MLFLOW_PYTHON = REPO / "benchmarks" / ".venvs" / "mlflow" / "bin" / "python"

sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent))
import workload as w  # noqa: E402
from report import (  # noqa: E402
    ResultTable,
    add_result_options,
    check_anchor_python,
    finish,
    fmt_s,
    load_average,
    parse_full_run,
    run_bench,
    say,
)

# Targets of the registry issue.
REGISTER_RATIO = 3.0
LOAD_RATIO = 3.0
PREDICT_OVERHEAD = 0.05
EXPORT_SPEEDUP = 2.0

FULL = {"rounds": 7, "register_calls": 20, "example_calls": 10, "warmup": 3,
        "predict_calls": 400, "export_rounds": 7, "export_calls": 300}
QUICK = {"rounds": 2, "register_calls": 5, "example_calls": 3, "warmup": 1,
         "predict_calls": 50, "export_rounds": 2, "export_calls": 50}

CREATE_VENV = ("python3 -m venv benchmarks/.venvs/mlflow && "
               "benchmarks/.venvs/mlflow/bin/pip install mlflow==3.17.2")


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="Model registry benchmark: Tidal against MLflow (SQLite backend).")
    parser.add_argument("--mlflow-python", default=os.environ.get("TIDAL_BENCH_MLFLOW_PYTHON"),
                        help="interpreter of a virtual environment with MLflow installed "
                             "(default: $TIDAL_BENCH_MLFLOW_PYTHON, else "
                             "benchmarks/.venvs/mlflow/bin/python)")
    parser.add_argument("--rounds", type=int, help="alternating rounds for (a) and (b) "
                                                   f"(default {FULL['rounds']})")
    parser.add_argument("--quick", action="store_true",
                        help="fewer rounds and calls for a smoke run; targets are shown but "
                             "do not set the exit status")
    add_result_options(parser, "registry")
    return parse_full_run(parser, ["--quick", "--rounds"])


# -- running ------------------------------------------------------------------------------------

def run_all(mlflow_python: str, work: Path, sizes: dict[str, int]) -> dict[str, Any]:
    def tidal(*options: str) -> dict[str, Any]:
        return run_bench(sys.executable, HERE / "bench_tidal.py", [*options])

    def mlflow(*options: str) -> dict[str, Any]:
        return run_bench(mlflow_python, HERE / "bench_mlflow.py", [*options])

    base = ["--work", str(work)]
    raw: dict[str, Any] = {"sizes": sizes}

    say("Preparing both stores (bench-load/1 registered once by each tool)...")
    raw["prepare"] = {"tidal": tidal("prepare", *base), "mlflow": mlflow("prepare", *base)}

    say("Probe loads (fresh processes, imports included): which modules a load imports...")
    modules = {name: str(work / f"modules-{name}.txt")
               for name in ("tidal", "mlflow-sklearn", "mlflow-pyfunc")}
    raw["probe"] = {
        "tidal": tidal("load", *base, "--modules-out", modules["tidal"]),
        "mlflow-sklearn": mlflow("load", *base, "--loader", "sklearn", "--modules-out",
                                 modules["mlflow-sklearn"]),
        "mlflow-pyfunc": mlflow("load", *base, "--loader", "pyfunc", "--modules-out",
                                modules["mlflow-pyfunc"]),
    }

    register = ["--calls", str(sizes["register_calls"]), "--warmup", str(sizes["warmup"])]
    example = ["--calls", str(sizes["example_calls"]), "--warmup", str(sizes["warmup"]),
               "--example"]
    keys = ("register", "register_example", "load", "load_sklearn", "load_pyfunc")
    raw["rounds"] = []
    for index in range(sizes["rounds"]):
        mlflow_first = index % 2 == 1
        say(f"Round {index + 1} of {sizes['rounds']}: register and load, "
            + ("MLflow first..." if mlflow_first else "Tidal first..."))
        jobs: list[tuple[str, str, Callable[[], dict[str, Any]]]] = [
            ("tidal", "register", lambda: tidal("register", *base, *register)),
            ("mlflow", "register", lambda: mlflow("register", *base, *register)),
            ("tidal", "register_example", lambda: tidal("register", *base, *example)),
            ("mlflow", "register_example", lambda: mlflow("register", *base, *example)),
            ("tidal", "load", lambda: tidal("load", *base, "--preimport", modules["tidal"])),
            ("mlflow", "load_sklearn",
             lambda: mlflow("load", *base, "--loader", "sklearn", "--preimport",
                            modules["mlflow-sklearn"])),
            ("mlflow", "load_pyfunc",
             lambda: mlflow("load", *base, "--loader", "pyfunc", "--preimport",
                            modules["mlflow-pyfunc"])),
        ]
        found: dict[str, dict[str, Any]] = {key: {} for key in keys}
        for group in _groups(jobs):
            ordered = sorted(group, key=lambda job: (job[0] == "tidal") == mlflow_first)
            for tool, key, job in ordered:
                found[key][tool] = job()
        raw["rounds"].append(found)

    say(f"(c) Tidal's predict against the raw pipeline's, {sizes['predict_calls']} calls "
        "each on 1,000 rows...")
    raw["predict"] = tidal("predict", "--calls", str(sizes["predict_calls"]))
    say("(d) ONNX export of the pipeline and of a LightGBM classifier...")
    raw["export"] = tidal("export", "--rounds", str(sizes["export_rounds"]), "--calls",
                          str(sizes["export_calls"]))
    return raw


def _groups(jobs: list[tuple[str, str, Any]]) -> list[list[tuple[str, str, Any]]]:
    """The jobs grouped by figure (register, register with an example, load), in order."""
    groups: dict[str, list[tuple[str, str, Any]]] = {}
    for job in jobs:
        groups.setdefault(job[1].split("_")[0] if job[1].startswith("load") else job[1],
                          []).append(job)
    return list(groups.values())


# -- the table ----------------------------------------------------------------------------------

def fmt_ratio(ratio: float) -> str:
    if math.isnan(ratio):
        return "-"
    if ratio < 1:
        return f"{ratio:.2g}x"
    return f"{ratio:,.1f}x" if ratio < 100 else f"{ratio:,.0f}x"


def fmt_bytes(size: float) -> str:
    for unit in ("B", "KiB", "MiB"):
        if size < 1024 or unit == "MiB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    raise AssertionError("unreachable")


class Table(ResultTable):
    HEADER = ("Figure", "Tidal", "Compared with", "Ratio", "Target", "Result")
    RIGHT = frozenset({1, 2, 3})

    def add(self, figure: str, tidal: str = "", other: str = "", ratio: float = math.nan,
            target: str = "", passed: bool | None = None, ratio_text: str | None = None) -> None:
        self.row(figure, tidal, other, ratio_text or fmt_ratio(ratio), target, passed=passed)


def _series(raw: dict[str, Any], key: str, tool: str, field: str) -> list[float]:
    return [r[key][tool][field] for r in raw["rounds"]]


def _ratios(raw: dict[str, Any], key: str, field: str, mlflow_key: str | None = None,
            mlflow_field: str | None = None) -> list[float]:
    return [r[mlflow_key or key]["mlflow"][mlflow_field or field] / r[key]["tidal"][field]
            for r in raw["rounds"]]


def build_table(raw: dict[str, Any], quick: bool) -> tuple[Table, dict[str, Any]]:
    table = Table()
    notes: dict[str, Any] = {}
    median = statistics.median
    rounds = len(raw["rounds"])

    # (a) register
    steady_t = median(_series(raw, "register", "tidal", "steady_median_s"))
    steady_m = median(_series(raw, "register", "mlflow", "steady_median_s"))
    ratios = _ratios(raw, "register", "steady_median_s")
    r = median(ratios)
    calls = raw["sizes"]["register_calls"]
    table.add(f"(a) register, steady state ({rounds} rounds x {calls} calls)",
              fmt_s(steady_t), fmt_s(steady_m), r, f">= {REGISTER_RATIO:.0f}x",
              r >= REGISTER_RATIO)
    table.add("(a) register, ratio per round (min..max)", "", "",
              target=f"{min(ratios):.1f}x .. {max(ratios):.1f}x")
    block_t = median(_series(raw, "register", "tidal", "block_median_s"))
    block_m = median(_series(raw, "register", "mlflow", "block_median_s"))
    table.add("(a) run + register (start_run .. end of run)", fmt_s(block_t), fmt_s(block_m),
              median(_ratios(raw, "register", "block_median_s")))
    first_t = median(_series(raw, "register", "tidal", "first_s"))
    first_m = median(_series(raw, "register", "mlflow", "first_s"))
    table.add("(a) register, first call in a fresh process", fmt_s(first_t), fmt_s(first_m),
              median(_ratios(raw, "register", "first_s")))
    ex_t = median(_series(raw, "register_example", "tidal", "steady_median_s"))
    ex_m = median(_series(raw, "register_example", "mlflow", "steady_median_s"))
    table.add("(a) register with a 5-row input example, steady", fmt_s(ex_t), fmt_s(ex_m),
              median(_ratios(raw, "register_example", "steady_median_s")))
    exf_t = median(_series(raw, "register_example", "tidal", "first_s"))
    exf_m = median(_series(raw, "register_example", "mlflow", "first_s"))
    table.add("(a) register with a 5-row input example, first call", fmt_s(exf_t),
              fmt_s(exf_m), median(_ratios(raw, "register_example", "first_s")))

    # (b) load
    loaders = {"sklearn": median(_series(raw, "load_sklearn", "mlflow", "load_s")),
               "pyfunc": median(_series(raw, "load_pyfunc", "mlflow", "load_s"))}
    fastest = min(loaders, key=loaders.__getitem__)
    other = "pyfunc" if fastest == "sklearn" else "sklearn"
    notes["mlflow_loader"] = fastest
    load_t = median(_series(raw, "load", "tidal", "load_s"))
    ratios = _ratios(raw, "load", "load_s", f"load_{fastest}")
    r = median(ratios)
    table.add(f"(b) cold load, imports excluded ({rounds} processes each)", fmt_s(load_t),
              fmt_s(loaders[fastest]), r, f">= {LOAD_RATIO:.0f}x", r >= LOAD_RATIO)
    table.add("(b) cold load, ratio per round (min..max)", "", "",
              target=f"{min(ratios):.1f}x .. {max(ratios):.1f}x")
    table.add(f"(b) MLflow's other loader (mlflow.{other}.load_model)", fmt_s(load_t),
              fmt_s(loaders[other]), median(_ratios(raw, "load", "load_s", f"load_{other}")))
    table.add("(b) Tidal: opening the workspace / load itself",
              f"{fmt_s(median(_series(raw, 'load', 'tidal', 'open_workspace_s')))} / "
              f"{fmt_s(median(_series(raw, 'load', 'tidal', 'load_only_s')))}")
    probe = raw["probe"]
    table.add("(b) cold load incl. imports (1 probe process)", fmt_s(probe["tidal"]["load_s"]),
              fmt_s(probe[f"mlflow-{fastest}"]["load_s"]),
              probe[f"mlflow-{fastest}"]["load_s"] / probe["tidal"]["load_s"])
    table.add("(b) modules the probe imported while timed",
              str(probe["tidal"]["modules_imported_while_timed"]),
              str(probe[f"mlflow-{fastest}"]["modules_imported_while_timed"]))
    leftover = max(r["load"]["tidal"]["modules_imported_while_timed"] for r in raw["rounds"]) \
        + max(r[f"load_{fastest}"]["mlflow"]["modules_imported_while_timed"]
              for r in raw["rounds"])
    table.add("(b) modules imported while timed, after pre-import", "", "",
              target="0 (imports excluded)", passed=leftover == 0)
    expected = raw["prepare"]["tidal"]["checksum"]
    sums = {raw["prepare"]["mlflow"]["checksum"], expected,
            *(r["load"]["tidal"]["checksum"] for r in raw["rounds"]),
            *(r[f"load_{fastest}"]["mlflow"]["checksum"] for r in raw["rounds"])}
    table.add("(b) loaded models predict the same probabilities", f"{expected:.6f}",
              f"{raw['prepare']['mlflow']['checksum']:.6f}", target="same sum",
              passed=len(sums) == 1)

    # (c) predict overhead
    p = raw["predict"]
    overhead = p["overhead"]
    table.add(f"(c) predict on {p['rows']:,} rows: Tidal vs raw pipeline",
              fmt_s(p["tidal_median_s"]), fmt_s(p["raw_median_s"]),
              ratio_text=f"{overhead:+.1%}", target=f"<= +{PREDICT_OVERHEAD:.0%}",
              passed=overhead <= PREDICT_OVERHEAD)
    table.add("(c) of which the signature check (prepare)", fmt_s(p["prepare_median_s"]))

    # (d) export
    for label, data in raw["export"].items():
        if not isinstance(data, dict):
            continue
        r = data["latency_speedup"]
        table.add(f"(d) {label}: single-row predict, ONNX vs source",
                  fmt_s(data["export_median_s"]), fmt_s(data["source_median_s"]), r,
                  f">= {EXPORT_SPEEDUP:.0f}x", r >= EXPORT_SPEEDUP)
        speedups = data["round_speedups"]
        table.add(f"(d) {label}: speedup per round (min..max)", "", "",
                  target=f"{min(speedups):.1f}x .. {max(speedups):.1f}x")
        tol = data["tolerance"]
        table.add(f"(d) {label}: max |diff| on the example / {data['fresh_rows']:,} fresh rows",
                  f"{data['max_abs_diff']:.2g} / {data['fresh_max_abs_diff']:.2g}", "",
                  target=f"atol {tol['atol']:g} + rtol {tol['rtol']:g}",
                  passed=data["fresh_same_labels"]
                  and data["fresh_max_abs_diff"] <= tol["atol"] + tol["rtol"])
        table.add(f"(d) {label}: stored size, ONNX vs source", fmt_bytes(data["size_after"]),
                  fmt_bytes(data["size_before"]), data["size_before"] / data["size_after"])
        table.add(f"(d) {label}: export time (convert, check, register)",
                  fmt_s(data["export_s"]))
    if quick:
        table.failed = [f for f in table.failed if "modules" in f or "same" in f
                        or "diff" in f]
    return table, notes


def header(raw: dict[str, Any], notes: dict[str, Any], quick: bool) -> str:
    t, m = raw["prepare"]["tidal"], raw["prepare"]["mlflow"]
    lines = [
        (f"Tidal {t['version']} (Python {t['python']}, SQLite workspace); "
         f"MLflow {m['version']} (Python {m['python']}, sqlite:///<tmpdir>/mlflow.db, its own "
         "virtual environment)"),
        (f"Pipeline: ColumnTransformer(StandardScaler on {len(w.NUMERIC)} numeric columns, "
         f"OneHotEncoder on {len(w.CATEGORICAL)} categorical) -> LogisticRegression, trained "
         f"on {w.ROWS:,} rows. (a): no input example on either side unless stated; MLflow "
         "with explicit pip_requirements."),
        (f"(b): MLflow's fastest loader, mlflow.{notes['mlflow_loader']}.load_model, against "
         "tidal.workspace(...) + tidal.models.load(...); all modules imported before the "
         "clock."),
        ("Ratio: how many times faster Tidal is (the other time / Tidal's); for (d), how many "
         "times faster the ONNX export is than its source, both through "
         "tidal.models.load(...).predict."),
    ]
    if quick:
        lines.append("QUICK RUN: fewer rounds and calls; targets apply to the full run only.")
    return "\n".join(lines)


# -- RESULTS.md ---------------------------------------------------------------------------------

def main() -> None:
    args = parse_args()
    mlflow_python = args.mlflow_python or str(DEFAULT_MLFLOW_PYTHON)
    check_anchor_python(mlflow_python, "mlflow", "MLflow", "--mlflow-python",
                        "TIDAL_BENCH_MLFLOW_PYTHON", CREATE_VENV)
    sizes = dict(QUICK if args.quick else FULL)
    if args.rounds is not None:
        sizes["rounds"] = args.rounds
    load_before = load_average()
    work = Path(tempfile.mkdtemp(prefix="tidal-bench-registry-", dir=args.tmp_root))
    try:
        raw = run_all(mlflow_python, work, sizes)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    if args.json:
        Path(args.json).write_text(json.dumps(raw, indent=2), encoding="utf-8")

    table, notes = build_table(raw, args.quick)
    head = header(raw, notes, args.quick)
    finish(table, head, quick=args.quick, write=args.write_results, name="registry",
           title="Model registry: Tidal against MLflow",
           load_before=load_before, facts=[])


if __name__ == "__main__":
    main()

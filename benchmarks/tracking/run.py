"""Tracking benchmark: Tidal against MLflow, in one run on the same machine.

    python benchmarks/tracking/run.py [--mlflow-python PATH] [--quick] [--write-results]

Runs bench_tidal.py with this interpreter and bench_mlflow.py with the MLflow virtual
environment's (--mlflow-python, else $TIDAL_BENCH_MLFLOW_PYTHON, else
benchmarks/.venvs/mlflow/bin/python), one after the other, then prints each figure for both, the
ratio and the target. Exit status: 0 when every target and check passes, 1 when one fails,
2 when a benchmark could not run (the MLflow interpreter is missing, a script failed).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import statistics
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
REPO = HERE.parent.parent
RESULTS = REPO / "benchmarks" / "RESULTS.md"
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
)

# Targets of the tracking issue.
LOG_METRIC_RATIO = 300.0
SEARCH_RATIO = 10.0
IMPORT_LIMIT_S = 0.150
IMPORT_RATIO = 10.0
SEARCH_ROUNDS = 7
SEARCH_ROUNDS_QUICK = 2

CREATE_VENV = ("python3 -m venv benchmarks/.venvs/mlflow && "
               "benchmarks/.venvs/mlflow/bin/pip install mlflow==3.17.2")


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="Tracking benchmark: Tidal against MLflow (SQLite backend).")
    parser.add_argument("--mlflow-python", default=os.environ.get("TIDAL_BENCH_MLFLOW_PYTHON"),
                        help="interpreter of a virtual environment with MLflow installed "
                             "(default: $TIDAL_BENCH_MLFLOW_PYTHON, else "
                             "benchmarks/.venvs/mlflow/bin/python)")
    parser.add_argument("--quick", action="store_true",
                        help="smaller sizes for a smoke run; the targets are for the full sizes, "
                             "so they are shown but do not set the exit status")
    add_result_options(parser, "tracking", raw="both raw results",
                       tmp_root="where both benchmarks make their temporary directory")
    return parse_full_run(parser, ["--quick"])


def search_rounds(tidal: dict[str, Any], mlflow: dict[str, Any], mlflow_python: str,
                  rounds: int) -> None:
    """Time the search again in rounds that alternate between the two tools, each in a fresh
    process over the store its full run left behind. On a shared machine whose speed drifts
    over minutes, a ratio taken within each round, seconds apart, compares the tools rather
    than the machine's moods; the target is judged on the median of those ratios."""
    tidal_medians, mlflow_medians, ratios = [], [], []
    for index in range(rounds):
        print(f"Search round {index + 1} of {rounds}: Tidal, then MLflow...", file=sys.stderr)
        t = run_bench(sys.executable, HERE / "bench_tidal.py",
                      ["--search-in", tidal["root"], "--search-repeats", "5"])["b"]
        m = run_bench(mlflow_python, HERE / "bench_mlflow.py",
                      ["--search-in", mlflow["root"], "--search-repeats", "5"])["b"]
        tidal_medians.append(t["search_median_s"])
        mlflow_medians.append(m["search_median_s"])
        ratios.append(m["search_median_s"] / t["search_median_s"])
    for result, medians in ((tidal, tidal_medians), (mlflow, mlflow_medians)):
        result["b"]["round_medians_s"] = medians
        result["b"]["rounds_median_s"] = statistics.median(medians)
    tidal["b"]["round_ratios"] = ratios


# -- the table ----------------------------------------------------------------------------------

def fmt_us(us: float) -> str:
    return f"{us:,.1f} µs" if us < 1000 else f"{us / 1000:,.2f} ms"


def fmt_ratio(ratio: float) -> str:
    if math.isnan(ratio):
        return "-"
    if ratio < 1:
        return f"{ratio:.2g}x"
    return f"{ratio:,.1f}x" if ratio < 100 else f"{ratio:,.0f}x"


def ratio(mlflow: float, tidal: float) -> float:
    return mlflow / tidal if tidal > 0 else math.inf


class Table(ResultTable):
    HEADER = ("Figure", "Tidal", "MLflow", "Ratio", "Target", "Result")
    RIGHT = frozenset({1, 2, 3})

    def add(self, figure: str, tidal: str, mlflow: str, ratio_value: float = math.nan,
            target: str = "", passed: bool | None = None) -> None:
        self.row(figure, tidal, mlflow, fmt_ratio(ratio_value), target, passed=passed)


def same_m1(got: list[float], expected: list[float]) -> bool:
    return len(got) == len(expected) and all(
        math.isclose(a, b, rel_tol=1e-12, abs_tol=1e-15) for a, b in zip(got, expected))


def build_table(tidal: dict[str, Any], mlflow: dict[str, Any], quick: bool) -> Table:
    table = Table()
    ta, ma = tidal["a"], mlflow["a"]
    n = ta["calls"]
    r = ratio(ma["us_per_call"], ta["us_per_call"])
    table.add(f"(a) log_metric, per call ({n:,} calls)", fmt_us(ta["us_per_call"]),
              fmt_us(ma["us_per_call"]), r, f">= {LOG_METRIC_RATIO:.0f}x",
              r >= LOG_METRIC_RATIO)
    table.add("(a) log_metric, calls per second", f"{ta['calls_per_s']:,.0f}",
              f"{ma['calls_per_s']:,.0f}", ratio(ta["calls_per_s"], ma["calls_per_s"]))
    table.add("(a) make durable (Tidal: flush)", fmt_s(ta["flush_s"]),
              "0 (synchronous)")
    table.add("(a) read history back, first read", fmt_s(ta["read_s"]), fmt_s(ma["read_s"]),
              ratio(ma["read_s"], ta["read_s"]))
    table.add("(a) read history back, second read", fmt_s(ta["read_again_s"]),
              fmt_s(ma["read_again_s"]), ratio(ma["read_again_s"], ta["read_again_s"]))
    table.add("(a) calls + make durable + first read", fmt_s(ta["total_s"]),
              fmt_s(ma["total_s"]), ratio(ma["total_s"], ta["total_s"]))
    table.add("(a) history read back complete", f"{ta['history_points']:,} points",
              f"{ma['history_points']:,} points", target=f"{n:,} points",
              passed=ta["history_points"] == n and ma["history_points"] == n)

    tb, mb = tidal["b"], mlflow["b"]
    runs = tb["runs"]
    table.add(f"(b) create {runs:,} runs (10 params, 10 metrics)", fmt_s(tb["create_s"]),
              fmt_s(mb["create_s"]), ratio(mb["create_s"], tb["create_s"]))
    table.add("(b) create, per run", fmt_s(tb["create_s"] / runs), fmt_s(mb["create_s"] / runs),
              ratio(mb["create_s"], tb["create_s"]))
    table.add("(b) search, first call", fmt_s(tb["search_first_s"]),
              fmt_s(mb["search_first_s"]), ratio(mb["search_first_s"], tb["search_first_s"]))
    repeats = len(tb["search_all_s"]) - 1
    table.add(f"(b) search, median of {repeats} after the first", fmt_s(tb["search_median_s"]),
              fmt_s(mb["search_median_s"]), ratio(mb["search_median_s"], tb["search_median_s"]))
    rounds = len(tb["round_ratios"])
    r = statistics.median(tb["round_ratios"])
    table.add(f"(b) search, {rounds} alternating rounds (median)",
              fmt_s(tb["rounds_median_s"]), fmt_s(mb["rounds_median_s"]), r,
              f">= {SEARCH_RATIO:.0f}x", r >= SEARCH_RATIO)
    table.add("(b) search, ratio per round (min..max)", "", "",
              target=f"{min(tb['round_ratios']):.1f}x .. {max(tb['round_ratios']):.1f}x")
    expected = w.expected_search(runs)
    table.add("(b) search rows (limit 100)", str(tb["rows"]), str(mb["rows"]),
              target=f"{expected['rows']} of {expected['matches']} matches",
              passed=tb["rows"] == mb["rows"] == expected["rows"])
    tidal_order, mlflow_order = same_m1(tb["m1"], expected["m1"]), same_m1(mb["m1"],
                                                                           expected["m1"])
    table.add("(b) search order (m1 DESC) as expected", "yes" if tidal_order else "no",
              "yes" if mlflow_order else "no", target="same m1 sequence",
              passed=tidal_order and mlflow_order)

    tc, mc = tidal["c"], mlflow["c"]
    k = len(tc["all_s"])
    table.add(f"(c) cold import, median of {k}", fmt_s(tc["median_s"]), fmt_s(mc["median_s"]),
              target=f"Tidal < {IMPORT_LIMIT_S * 1e3:.0f} ms",
              passed=tc["median_s"] < IMPORT_LIMIT_S)
    r = ratio(mc["median_s"], tc["median_s"])
    table.add("(c) cold import, MLflow / Tidal", "", "", r, f">= {IMPORT_RATIO:.0f}x",
              r >= IMPORT_RATIO)
    table.add(f"(c) cold import, min of {k}", fmt_s(tc["min_s"]), fmt_s(mc["min_s"]),
              ratio(mc["min_s"], tc["min_s"]))
    if "c_api" in tidal:
        api = tidal["c_api"]
        table.add("(c) import incl. tracking API (tidal.tracking.fluent)", fmt_s(api["median_s"]),
                  fmt_s(mc["median_s"]), ratio(mc["median_s"], api["median_s"]))
    table.add("(c) whole `python -c 'import ...'` process", fmt_s(tc["process_median_s"]),
              fmt_s(mc["process_median_s"]),
              ratio(mc["process_median_s"], tc["process_median_s"]))
    if quick:
        table.failed = [f for f in table.failed if f.startswith(("(a) history", "(b) search r",
                                                                  "(b) search o"))]
    return table


def header(tidal: dict[str, Any], mlflow: dict[str, Any], quick: bool) -> str:
    lines = [
        f"Tidal {tidal['version']} (Python {tidal['python']}, {tidal['backend']})",
        f"MLflow {mlflow['version']} (Python {mlflow['python']}, {mlflow['backend']}, "
        f"its own virtual environment)",
        "Ratio: how many times faster Tidal is (MLflow time / Tidal time).",
    ]
    if quick:
        lines.append("QUICK RUN: reduced sizes; targets apply to the full workload only.")
    return "\n".join(lines)


# -- RESULTS.md ---------------------------------------------------------------------------------

def facts(tidal: dict[str, Any], mlflow: dict[str, Any]) -> list[str]:
    """The versions compared and where each side's import time goes, for RESULTS.md."""
    heaviest: Callable[[dict[str, Any]], str] = lambda c: ", ".join(  # noqa: E731
        f"{name} {us / 1000:.0f} ms" for name, us in c["heaviest"][:5])
    return [
        f"Tidal {tidal['version']}, Python {tidal['python']}; MLflow {mlflow['version']}, "
        f"Python {mlflow['python']} (own virtual environment, SQLite backend)",
        f"Heaviest imports (-X importtime, cumulative): MLflow: {heaviest(mlflow['c'])}"
        + (f"; Tidal's tracking API: {heaviest(tidal['c_api'])}" if "c_api" in tidal else ""),
    ]

def main() -> None:
    args = parse_args()
    mlflow_python = args.mlflow_python or str(DEFAULT_MLFLOW_PYTHON)
    check_anchor_python(mlflow_python, "mlflow", "MLflow", "--mlflow-python",
                        "TIDAL_BENCH_MLFLOW_PYTHON", CREATE_VENV)
    options = ["--quick"] if args.quick else []
    if args.tmp_root:
        options += ["--tmp-root", args.tmp_root]

    load_before = load_average()
    print("Tracking benchmark: Tidal, then MLflow (one after the other)...", file=sys.stderr)
    tidal = run_bench(sys.executable, HERE / "bench_tidal.py", [*options, "--keep"])
    mlflow = run_bench(mlflow_python, HERE / "bench_mlflow.py", [*options, "--keep"])
    try:
        search_rounds(tidal, mlflow, mlflow_python, SEARCH_ROUNDS_QUICK if args.quick
                      else SEARCH_ROUNDS)
    finally:
        for result in (tidal, mlflow):
            shutil.rmtree(result["root"], ignore_errors=True)
    if args.json:
        Path(args.json).write_text(json.dumps({"tidal": tidal, "mlflow": mlflow}, indent=2),
                                   encoding="utf-8")

    table = build_table(tidal, mlflow, args.quick)
    head = header(tidal, mlflow, args.quick)
    finish(table, head, quick=args.quick, write=args.write_results, name="tracking",
           title="Tracking: Tidal against MLflow",
           load_before=load_before, facts=facts(tidal, mlflow))


if __name__ == "__main__":
    main()

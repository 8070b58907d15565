"""Drift benchmark: Tidal against Evidently's data drift preset and a direct SciPy loop, in one
run on the same data.

    python benchmarks/monitoring/run.py [--evidently-python PATH] [--quick] [--rounds N]
        [--write-results] [--json PATH] [--tmp-root DIR] [--keep]

Generates 1,000,000 reference and 1,000,000 current rows x 20 float columns, 6 of them drifted,
with a fixed seed, into two Parquet files in a fresh temporary directory. Then runs rounds;
each runs, one after the other, each in a fresh process that reads the files into pandas:
bench_tidal.py (Tidal and the SciPy loop, this interpreter) and bench_evidently.py (the
Evidently virtual environment's interpreter: --evidently-python, else
$TIDAL_BENCH_EVIDENTLY_PYTHON, else benchmarks/.venvs/evidently/bin/python). Only the drift
computation is timed. Prints each figure, the ratios, the targets and the checks that the
statistics and verdicts agree. Exit status: 0 when every target and check passes, 1 when one
fails, 2 when a benchmark could not run (the Evidently interpreter is missing, a script
failed).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import sys
import tempfile
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
REPO = HERE.parent.parent
DEFAULT_EVIDENTLY_PYTHON = REPO / "benchmarks" / ".venvs" / "evidently" / "bin" / "python"

sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent))
import workload as w  # noqa: E402
from report import (  # noqa: E402
    ComparisonTable,
    add_result_options,
    check_anchor_python,
    finish,
    fmt_s,
    load_average,
    parse_full_run,
    run_bench,
    say,
    source_state,
)

# Targets of the monitoring issue.
EVIDENTLY_RATIO = 20.0   # Evidently seconds / Tidal seconds, same test, at least
SCIPY_RATIO = 1.0        # SciPy loop seconds / Tidal seconds, same test, more than
SAME_TO = 1e-6           # largest relative difference of a per-column statistic

ROUNDS, ROUNDS_QUICK = 3, 1
EVIDENTLY_VERSION = "0.7.23"
CREATE_VENV = ("python3 -m venv benchmarks/.venvs/evidently && "
               f"benchmarks/.venvs/evidently/bin/pip install evidently=={EVIDENTLY_VERSION} "
               "'pandas<3'")

#: The two tests, each run by the three contestants: (Tidal, SciPy loop, Evidently) keys of
#: the raw results, and the name Evidently gives the test.
TESTS = {
    "KS p-value": ("tidal-ks", "scipy-ks", "evidently-ks", "ks"),
    "normed Wasserstein": ("tidal-wasserstein", "scipy-wasserstein", "evidently-default",
                           "Wasserstein distance (normed)"),
}
#: scipy's two-sided KS p-value above 10,000 rows, kstwo.sf(D, n), sums Smirnov's exact
#: one-sided series when 2.2 <= n D^2 < 370: about a second per column at this size.
SMIRNOV_BAND = (2.2, 370.0)


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="Drift benchmark: Tidal against Evidently's DataDriftPreset and a direct "
                    "SciPy loop.")
    parser.add_argument("--evidently-python",
                        default=os.environ.get("TIDAL_BENCH_EVIDENTLY_PYTHON"),
                        help="interpreter of a virtual environment with Evidently installed "
                             "(default: $TIDAL_BENCH_EVIDENTLY_PYTHON, else "
                             "benchmarks/.venvs/evidently/bin/python)")
    parser.add_argument("--quick", action="store_true",
                        help=f"{w.ROWS_QUICK:,} rows a side and one round, for a smoke run; the "
                             "targets are for the full sizes, so they are shown but do not set "
                             "the exit status")
    parser.add_argument("--rounds", type=int, help=f"rounds (default {ROUNDS}, "
                                                   f"{ROUNDS_QUICK} with --quick)")
    add_result_options(parser, "monitoring", raw="every raw result",
                       tmp_root="where the Parquet files go")
    parser.add_argument("--keep", action="store_true", help="keep the temporary directory")
    return parse_full_run(parser, ["--quick", "--rounds"])


def run_all(evidently_python: str, data: Path, rounds: int) -> dict[str, Any]:
    raw: dict[str, Any] = {"tidal": [], "evidently": []}
    for index in range(rounds):
        # Which side goes first alternates from round to round, and within each side the
        # order of its contestants rotates.
        jobs = [("tidal", sys.executable, "bench_tidal.py"),
                ("evidently", evidently_python, "bench_evidently.py")]
        for side, python, script in (reversed(jobs) if index % 2 else jobs):
            say(f"Round {index + 1} of {rounds}: {side}...")
            raw[side].append(run_bench(python, HERE / script,
                                       ["--data", str(data), "--round", str(index)]))
    return raw


# -- the table ----------------------------------------------------------------------------------

def times(ratio: float) -> str:
    return f"{ratio:.2f}x" if ratio < 10 else f"{ratio:.1f}x"


def relative(a: float, b: float) -> float:
    if a == b:
        return 0.0
    return abs(a - b) / max(abs(a), abs(b))


def seconds(raw: dict[str, Any], key: str) -> list[float]:
    """The seconds of contestant ``key`` in every round."""
    side = "evidently" if key.startswith("evidently") else "tidal"
    return [run["results"][key]["seconds"] for run in raw[side]]


def columns(raw: dict[str, Any], key: str) -> list[dict[str, Any]]:
    """The per-column results of contestant ``key`` in every round."""
    side = "evidently" if key.startswith("evidently") else "tidal"
    return [run["results"][key]["columns"] for run in raw[side]]


def largest_difference(raw: dict[str, Any], key: str, other: str) -> float:
    """The largest relative difference between Tidal's statistic and ``other``'s, over every
    column and every pair of rounds (each round computes the same statistics again)."""
    return max(relative(mine[name]["statistic"], theirs[name]["statistic"])
               for mine in columns(raw, key) for theirs in columns(raw, other)
               for name in w.COLUMNS)


def drifted(result: dict[str, Any]) -> list[str]:
    return [name for name in w.COLUMNS if result[name]["drifted"]]


def speed_rows(table: ComparisonTable, raw: dict[str, Any], label: str, tidal: str, other: str,
               name: str, goal: float, target: str) -> None:
    mine, theirs = seconds(raw, tidal), seconds(raw, other)
    ratios = [t / m for m, t in zip(mine, theirs, strict=True)]
    ratio = statistics.median(ratios)
    passed = ratio >= goal if goal > 1 else ratio > goal
    table.add(f"{label}: Tidal vs {name}", fmt_s(statistics.median(mine)),
              fmt_s(statistics.median(theirs)), times(ratio), target, passed)
    if len(ratios) > 1:
        table.add(f"{label}: ratio per round (min..max), vs {name}", "", "",
                  f"{times(min(ratios))} .. {times(max(ratios))}")


def test_rows(table: ComparisonTable, raw: dict[str, Any], label: str) -> None:
    tidal, scipy, evidently, evidently_test = TESTS[label]
    speed_rows(table, raw, label, tidal, evidently, "Evidently", EVIDENTLY_RATIO,
               f">= {EVIDENTLY_RATIO:.0f}x")
    speed_rows(table, raw, label, tidal, scipy, "SciPy loop", SCIPY_RATIO,
               f"> {SCIPY_RATIO:.0f}x")
    used = {result[name]["test"] for result in columns(raw, evidently) for name in w.COLUMNS}
    table.add(f"{label}: Evidently's test on every column", "", ", ".join(sorted(used)),
              target=evidently_test, passed=used == {evidently_test}, check=True)
    for other, name in ((scipy, "SciPy"), (evidently, "Evidently")):
        difference = largest_difference(raw, tidal, other)
        table.add(f"{label}: largest relative difference per column, Tidal vs {name}", "",
                  f"{difference:.1e}", target=f"<= {SAME_TO:.0e}",
                  passed=difference <= SAME_TO, check=True)
    sets = {key: [drifted(result) for result in columns(raw, key)]
            for key in (tidal, scipy, evidently)}
    reference = sets[tidal][0]
    same = all(found == reference for runs in sets.values() for found in runs)
    counts = [run["results"][evidently]["drifted_count"] for run in raw["evidently"]]
    same = same and all(count == len(reference) for count in counts)
    table.add(f"{label}: drifted columns, Tidal / SciPy / Evidently (its count)",
              str(len(reference)), f"{len(sets[scipy][0])} / {len(sets[evidently][0])} "
              f"({counts[0]:.0f})", target="same columns", passed=same, check=True)


def smirnov_band(raw: dict[str, Any]) -> list[str]:
    """The columns whose KS statistic D makes scipy's p-value sum Smirnov's exact series."""
    ks = columns(raw, "scipy-ks")[0]
    n1, n2 = raw["tidal"][0]["rows"]
    effective = round(n1 * n2 / (n1 + n2))
    low, high = SMIRNOV_BAND
    return [name for name in w.COLUMNS if low <= effective * ks[name]["d"] ** 2 < high]


def build_table(raw: dict[str, Any], quick: bool) -> ComparisonTable:
    table = ComparisonTable()
    for label in TESTS:
        test_rows(table, raw, label)
    found = drifted(columns(raw, "tidal-wasserstein")[0])
    table.add("The drifted columns by Wasserstein are the ones generated drifted",
              str(len(found)), str(len(w.DRIFTED)), target="same columns",
              passed=found == w.DRIFTED, check=True)
    band = smirnov_band(raw)
    sf = sum(raw["tidal"][0]["kstwo_sf_s"].values())
    table.add(f"KS: columns with {SMIRNOV_BAND[0]:g} <= n*D^2 < {SMIRNOV_BAND[1]:g} (scipy's "
              "slow exact Smirnov sum)", str(len(band)))
    table.add("KS: scipy's kstwo.sf on the 20 statistics (Tidal and SciPy: once, Evidently: "
              "3 times)", fmt_s(sf))
    table.add("Peak resident memory: the Tidal + SciPy process; Evidently's",
              f"{max(run['peak_rss_mb'] for run in raw['tidal']):,.0f} MB",
              f"Evidently: {max(run['peak_rss_mb'] for run in raw['evidently']):,.0f} MB")
    if quick:
        table.enforce_checks_only()
    return table


def header(raw: dict[str, Any], rounds: int, quick: bool) -> str:
    t, e = raw["tidal"][0]["versions"], raw["evidently"][0]["versions"]
    n1, n2 = raw["tidal"][0]["rows"]
    lines = [
        f"Tidal {t['tidal']} (Python {t['python']}, numpy {t['numpy']}, pandas {t['pandas']}, "
        f"scipy {t['scipy']}); SciPy loop in the same interpreter",
        f"Evidently {e['evidently']} (Python {e['python']}, numpy {e['numpy']}, pandas "
        f"{e['pandas']}, scipy {e['scipy']}, its own virtual environment)",
        f"Data: {n1:,} reference and {n2:,} current rows x {len(w.COLUMNS)} float64 columns, "
        f"{len(w.DRIFTED)} drifted, seed {w.SEED}; read from Parquet into pandas before the "
        "clock starts. Timed: the drift computation only, from the DataFrames in memory.",
        "Tidal: drift(reference, current, numeric_test=\"ks\" | \"wasserstein\"), which also "
        "computes PSI per column. SciPy loop: ks_2samp / wasserstein_distance / np.std per "
        "column. Evidently: Report([DataDriftPreset(num_method=\"ks\")]) and "
        "Report([DataDriftPreset()]) (defaults), include_tests=True, .run(current, reference).",
        f"Same thresholds everywhere: KS drifted below p = {w.KS_LEVEL} (Evidently: at or "
        f"below), Wasserstein above {w.WASSERSTEIN_THRESHOLD} (Evidently: at or above).",
        f"{rounds} round(s); each runs Tidal's process and Evidently's, one after the other, "
        "the first alternating. Figures: medians over the rounds; ratio: the other's seconds "
        "over Tidal's in the same round, median over the rounds.",
    ]
    for label, (tidal, *_) in TESTS.items():
        lines.append(f"Drifted columns by the {label}: "
                     f"{', '.join(drifted(columns(raw, tidal)[0]))}.")
    lines.append("KS statistics in scipy's slow p-value band: "
                 f"{', '.join(smirnov_band(raw)) or 'none'}.")
    if quick:
        lines.append("QUICK RUN: reduced sizes; targets apply to the full workload only.")
    return "\n".join(lines)


# -- RESULTS.md ---------------------------------------------------------------------------------

def main() -> None:
    args = parse_args()
    evidently_python = args.evidently_python or str(DEFAULT_EVIDENTLY_PYTHON)
    check_anchor_python(evidently_python, "evidently", "Evidently", "--evidently-python",
                        "TIDAL_BENCH_EVIDENTLY_PYTHON", CREATE_VENV)
    rounds = args.rounds or (ROUNDS_QUICK if args.quick else ROUNDS)
    rows = w.ROWS_QUICK if args.quick else w.ROWS
    load_before = load_average()
    source = source_state()  # taken before the run: the files it measured
    work = Path(tempfile.mkdtemp(prefix="tidal-monitoring-bench-", dir=args.tmp_root))
    try:
        say(f"Generating {rows:,} + {rows:,} rows x {len(w.COLUMNS)} columns into {work}...")
        w.generate(work, rows)
        raw = run_all(evidently_python, work, rounds)
    finally:
        if args.keep:
            say(f"kept {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)
    if args.json:
        Path(args.json).write_text(json.dumps(raw, indent=1), encoding="utf-8")

    table = build_table(raw, args.quick)
    finish(table, header(raw, rounds, args.quick), quick=args.quick, write=args.write_results,
           name="monitoring",
           title="Drift: Tidal against Evidently's data drift preset and a SciPy loop",
           load_before=load_before, facts=[
               f"Tidal source: {source}",
               f"CPUs this process may use: {len(os.sched_getaffinity(0))}"])


if __name__ == "__main__":
    main()

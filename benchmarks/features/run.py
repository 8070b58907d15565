"""Feature-store benchmark: Tidal against Feast and a hand-written DuckDB/SQLite floor.

    python benchmarks/features/run.py [--feast-python PATH] [--quick] [--write-results]

Generates the two data shapes once (benchmarks/features/.data/), prepares both online stores,
then runs rounds. Each round runs, one after the other, each in a fresh process: the floor and
Tidal alternating (bench_tidal.py, this interpreter) and Feast (bench_feast.py, the Feast
virtual environment's interpreter: --feast-python, else $TIDAL_BENCH_FEAST_PYTHON, else
benchmarks/.venvs/feast/bin/python), on each shape and then online. Prints each figure for the
three, the ratios and the targets. Exit status: 0 when every target and check passes, 1 when
one fails, 2 when a benchmark could not run (the Feast interpreter is missing, a script failed).
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
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
REPO = HERE.parent.parent
RESULTS = REPO / "benchmarks" / "RESULTS.md"
DEFAULT_FEAST_PYTHON = REPO / "benchmarks" / ".venvs" / "feast" / "bin" / "python"

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
    source_state,
)

# Targets of the feature-store issue.
FLOOR_RATIO = 1.3                       # Tidal / floor, offline, at most
FEAST_RATIO = {"i": 5.0, "ii": 30.0}    # Feast / Tidal, offline, at least
ONLINE_P50_RATIO = 3.0                  # Feast p50 / Tidal p50, at least
ONLINE_P99_RATIO = 5.0                  # Tidal p99 / floor p99, at most

ROUNDS, ROUNDS_QUICK = 5, 2
PAIRS = 2  # floor + Tidal pairs per round and shape

CREATE_VENV = ("python3 -m venv benchmarks/.venvs/feast && "
               "benchmarks/.venvs/feast/bin/pip install feast==0.67.0")


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="Feature-store benchmark: Tidal against Feast and a hand-written floor.")
    parser.add_argument("--feast-python", default=os.environ.get("TIDAL_BENCH_FEAST_PYTHON"),
                        help="interpreter of a virtual environment with Feast installed "
                             "(default: $TIDAL_BENCH_FEAST_PYTHON, else "
                             "benchmarks/.venvs/feast/bin/python)")
    parser.add_argument("--quick", action="store_true",
                        help="smaller sizes for a smoke run; the targets are for the full sizes, "
                             "so they are shown but do not set the exit status")
    parser.add_argument("--rounds", type=int, help=f"alternating rounds (default {ROUNDS}, "
                                                   f"{ROUNDS_QUICK} with --quick)")
    add_result_options(parser, "features",
                       tmp_root="where the benchmark makes its temporary directory")
    parser.add_argument("--keep", action="store_true", help="keep the temporary directory")
    return parse_full_run(parser, ["--quick", "--rounds"])


# -- running ------------------------------------------------------------------------------------

def run_all(feast_python: str, work: Path, quick: bool, rounds: int) -> dict[str, Any]:
    base = ["--work", str(work), *(["--quick"] if quick else [])]
    tidal = lambda *o: run_bench(sys.executable, HERE / "bench_tidal.py", [*o, *base])  # noqa: E731
    feast = lambda *o: run_bench(feast_python, HERE / "bench_feast.py", [*o, *base])  # noqa: E731
    say = lambda message: print(message, file=sys.stderr, flush=True)  # noqa: E731

    say("Preparing the online stores: Tidal's and the floor's, then Feast's...")
    raw: dict[str, Any] = {"prepare": {"tidal": tidal("prepare"), "feast": feast("prepare")},
                           "offline": {key: {"tidal": [], "feast": []} for key in w.shapes(quick)},
                           "online": {"tidal": [], "feast": []}}
    calls = (w.ONLINE_CALLS_QUICK if quick else w.ONLINE_CALLS) // rounds
    for index in range(rounds):
        # Which tool goes first alternates from round to round.
        feast_first = index % 2 == 1
        for key in w.shapes(quick):
            say(f"Round {index + 1} of {rounds}, shape ({key}): "
                + ("Feast, then floor + Tidal..." if feast_first else
                   "floor + Tidal, then Feast..."))
            save = ["--save"] if index == 0 else []
            jobs = [("tidal", lambda: tidal("offline", "--shape", key, "--pairs", str(PAIRS),
                                            *save)),
                    ("feast", lambda: feast("offline", "--shape", key, *save))]
            for name, job in (reversed(jobs) if feast_first else jobs):
                raw["offline"][key][name].append(job())
        say(f"Round {index + 1} of {rounds}, online: {calls:,} single-entity reads each...")
        jobs = [("tidal", lambda: tidal("online", "--calls", str(calls),
                                        "--seed-offset", str(index))),
                ("feast", lambda: feast("online", "--calls", str(calls),
                                        "--seed-offset", str(index)))]
        for name, job in (reversed(jobs) if feast_first else jobs):
            raw["online"][name].append(job())
    for key in w.shapes(quick):
        raw["offline"][key]["feast_vs_floor"] = feast_against_floor(work, key)
    return raw


def feast_against_floor(work: Path, key: str) -> dict[str, Any]:
    """Feast's result of round 1 against the floor's, aligned by row_id."""
    import numpy as np
    import pandas as pd

    floor = pd.read_parquet(work / f"floor-{key}.parquet")
    feast = pd.read_parquet(work / f"feast-{key}.parquet")
    merged = floor.merge(feast, on="row_id", how="left", suffixes=("", "_feast"),
                         indicator=True)
    returned = merged["_merge"] == "both"
    floor_null = floor.set_index("row_id")[w.FEATURES].isna().all(axis=1)
    dropped = merged.loc[~returned, "row_id"]
    bad = np.zeros(int(returned.sum()), dtype=bool)
    for name in w.FEATURES:
        x = merged.loc[returned, name].to_numpy(dtype="float64", na_value=np.nan)
        y = merged.loc[returned, f"{name}_feast"].to_numpy(dtype="float64", na_value=np.nan)
        bad |= ~((x == y) | (np.isnan(x) & np.isnan(y)))
    return {"returned": int(returned.sum()), "dropped": len(dropped),
            "dropped_without_value": int(floor_null.loc[dropped].sum()),
            "floor_rows_without_value": int(floor_null.sum()),
            "mismatched": int(bad.sum()), "duplicates": int(feast["row_id"].duplicated().sum())}


# -- the table ----------------------------------------------------------------------------------

def fmt_ms(ns: float) -> str:
    return f"{ns / 1e6:.3f} ms"


def fmt_ratio(ratio: float) -> str:
    if math.isnan(ratio):
        return ""
    if ratio < 10:
        return f"{ratio:.2f}x"
    return f"{ratio:,.1f}x" if ratio < 100 else f"{ratio:,.0f}x"


def fmt_mb(mb: float) -> str:
    return f"{mb:,.0f} MB"


def percentile(samples: list[int], q: float) -> float:
    """Nearest-rank percentile, the same for the three tools."""
    ordered = sorted(samples)
    return float(ordered[min(len(ordered) - 1, max(0, math.ceil(q / 100 * len(ordered)) - 1))])


class Table(ResultTable):
    HEADER = ("Figure", "Floor", "Tidal", "Feast", "Ratio", "Target", "Result")
    RIGHT = frozenset({1, 2, 3, 4})

    def add(self, figure: str, floor: str = "", tidal: str = "", feast: str = "",
            ratio_value: float = math.nan, target: str = "", passed: bool | None = None,
            check: bool = False) -> None:
        self.row(figure, floor, tidal, feast, fmt_ratio(ratio_value), target, passed=passed,
                 check=check)


def offline_rows(table: Table, key: str, data: dict[str, Any], quick: bool) -> None:
    shape = w.shapes(quick)[key]
    n = shape["entity_rows"]
    tidal_runs, feast_runs = data["tidal"], data["feast"]
    floor_s = [t for run in tidal_runs for t in run["times"]["floor"]]
    tidal_s = [t for run in tidal_runs for t in run["times"]["tidal"]]
    feast_s = [run["seconds"] for run in feast_runs]
    pair_ratios = [t / f for run in tidal_runs
                   for t, f in zip(run["times"]["tidal"], run["times"]["floor"])]
    round_ratios = [feast["seconds"] / statistics.median(tidal["times"]["tidal"])
                    for tidal, feast in zip(tidal_runs, feast_runs)]
    floor_ratios = [feast["seconds"] / statistics.median(tidal["times"]["floor"])
                    for tidal, feast in zip(tidal_runs, feast_runs)]
    p = f"({key})"
    rows = shape["entities"] * shape["per_entity"]
    entities, per = shape["entities"], shape["per_entity"]
    table.add(f"{p} {rows:,} rows: {entities:,} entities x {per} timestamps, {n:,} entity "
              f"rows, TTL {shape['ttl_days']} days")
    table.add(f"{p} get_historical_features, median (floor/Tidal {len(tidal_s)}, "
              f"Feast {len(feast_s)})", fmt_s(statistics.median(floor_s)),
              fmt_s(statistics.median(tidal_s)), fmt_s(statistics.median(feast_s)))
    r = statistics.median(pair_ratios)
    table.add(f"{p} Tidal / floor (median of {len(pair_ratios)} adjacent pairs)", ratio_value=r,
              target=f"<= {FLOOR_RATIO}x", passed=r <= FLOOR_RATIO)
    r = statistics.median(round_ratios)
    table.add(f"{p} Feast / Tidal (median of {len(round_ratios)} rounds)", ratio_value=r,
              target=f">= {FEAST_RATIO[key]:g}x", passed=r >= FEAST_RATIO[key])
    table.add(f"{p} Feast / floor (median of {len(floor_ratios)} rounds)",
              ratio_value=statistics.median(floor_ratios))
    table.add(f"{p} ratio ranges: Tidal/floor, Feast/Tidal",
              target=f"{min(pair_ratios):.2f}..{max(pair_ratios):.2f}x, "
                     f"{min(round_ratios):.1f}..{max(round_ratios):.1f}x")
    tidal_rows = {run["check"]["rows"] for run in tidal_runs}
    vs = data["feast_vs_floor"]
    complete = tidal_rows == {n} and all(run["check"]["expected_rows"] == n for run in tidal_runs)
    table.add(f"{p} rows returned", f"{n:,}", f"{min(tidal_rows):,}", f"{vs['returned']:,}",
              target=f"{n:,} (none dropped)", passed=complete, check=True)
    equal = all(run["check"]["mismatched_rows"] == 0 and run["check"]["columns_equal"]
                for run in tidal_runs)
    mismatched = max(run["check"]["mismatched_rows"] for run in tidal_runs)
    table.add(f"{p} result equals the floor's (rows differing)", "", f"{mismatched:,}",
              f"{vs['mismatched']:,}", target="Tidal: 0", passed=equal, check=True)
    table.add(f"{p} rows with no value inside the TTL (nulls)",
              f"{vs['floor_rows_without_value']:,}",
              f"{tidal_runs[0]['check']['null_rows']:,}",
              f"{vs['dropped']:,} dropped")
    table.add(f"{p} Feast: dropped rows that have no value in TTL", "", "",
              f"{vs['dropped_without_value']:,} of {vs['dropped']:,}")
    table.add(f"{p} peak RSS of the process (floor + Tidal share one)",
              "", fmt_mb(max(run["peak_rss_mb"] for run in tidal_runs)),
              fmt_mb(max(run["peak_rss_mb"] for run in feast_runs)))


def online_rows(table: Table, raw: dict[str, Any], quick: bool) -> None:
    prep_t, prep_f = raw["prepare"]["tidal"], raw["prepare"]["feast"]
    entities = w.shapes(quick)[w.ONLINE_SHAPE]["entities"]
    table.add(f"online: materialize shape ({w.ONLINE_SHAPE}), {entities:,} entities",
              fmt_s(prep_t["floor_build_s"]), fmt_s(prep_t["materialize_s"]),
              fmt_s(prep_f["materialize_s"]),
              ratio_value=prep_f["materialize_s"] / prep_t["materialize_s"])
    runs_t, runs_f = raw["online"]["tidal"], raw["online"]["feast"]
    floor = [s for run in runs_t for s in run["samples_ns"]["floor"]]
    tidal = [s for run in runs_t for s in run["samples_ns"]["tidal"]]
    feast = [s for run in runs_f for s in run["samples_ns"]]
    p50 = {name: percentile(s, 50) for name, s in (("floor", floor), ("tidal", tidal),
                                                     ("feast", feast))}
    p99 = {name: percentile(s, 99) for name, s in (("floor", floor), ("tidal", tidal),
                                                     ("feast", feast))}
    table.add(f"online: single-entity read, p50 ({len(tidal):,} calls each)",
              fmt_ms(p50["floor"]), fmt_ms(p50["tidal"]), fmt_ms(p50["feast"]))
    table.add("online: single-entity read, p99", fmt_ms(p99["floor"]), fmt_ms(p99["tidal"]),
              fmt_ms(p99["feast"]))
    r = p50["feast"] / p50["tidal"]
    table.add("online: Feast p50 / Tidal p50", ratio_value=r, target=f">= {ONLINE_P50_RATIO:g}x",
              passed=r >= ONLINE_P50_RATIO)
    r = p99["tidal"] / p99["floor"]
    table.add("online: Tidal p99 / floor p99", ratio_value=r, target=f"<= {ONLINE_P99_RATIO:g}x",
              passed=r <= ONLINE_P99_RATIO)
    table.add("online: Tidal p50 / floor p50", ratio_value=p50["tidal"] / p50["floor"])
    bad_t = sum(run["mismatched"] for run in runs_t)
    bad_f = sum(run["mismatched"] for run in runs_f)
    table.add("online: values equal the floor's (calls differing)", "", f"{bad_t:,}",
              f"{bad_f:,}", target="Tidal: 0", passed=bad_t == 0, check=True)


def build_table(raw: dict[str, Any], quick: bool) -> Table:
    table = Table()
    for key, data in raw["offline"].items():
        offline_rows(table, key, data, quick)
    online_rows(table, raw, quick)
    if quick:
        table.enforce_checks_only()
    return table


def header(raw: dict[str, Any], quick: bool) -> str:
    t = raw["prepare"]["tidal"]
    f = raw["prepare"]["feast"]
    lines = [
        f"Tidal {t['version']} (Python {t['python']}, DuckDB {t['duckdb']}, embedded SQLite "
        "online store)",
        f"Feast {f['version']} (Python {f['python']}, pandas {f['pandas']}, its own virtual "
        "environment; default offline store: dask; online store: sqlite)",
        "Floor: one hand-written DuckDB ASOF LEFT JOIN (offline); one primary-key SELECT on a "
        "one-row-per-entity SQLite table (online).",
        "All three take the entity rows as a pandas DataFrame and return one.",
    ]
    if quick:
        lines.append("QUICK RUN: reduced sizes; targets apply to the full workload only.")
    return "\n".join(lines)


# -- RESULTS.md ---------------------------------------------------------------------------------

def main() -> None:
    args = parse_args()
    feast_python = args.feast_python or str(DEFAULT_FEAST_PYTHON)
    check_anchor_python(feast_python, "feast", "Feast", "--feast-python",
                        "TIDAL_BENCH_FEAST_PYTHON", CREATE_VENV)
    rounds = args.rounds or (ROUNDS_QUICK if args.quick else ROUNDS)
    w.ensure_data(args.quick)
    load_before = load_average()
    source = source_state()  # taken before the run: the files it measured
    work = Path(tempfile.mkdtemp(prefix="tidal-features-bench-", dir=args.tmp_root))
    try:
        raw = run_all(feast_python, work, args.quick, rounds)
    finally:
        if args.keep:
            print(f"kept {work}", file=sys.stderr)
        else:
            shutil.rmtree(work, ignore_errors=True)
    if args.json:
        Path(args.json).write_text(json.dumps(raw, indent=1), encoding="utf-8")

    table = build_table(raw, args.quick)
    head = header(raw, args.quick)
    finish(table, head, quick=args.quick, write=args.write_results, name="features",
           title="Feature store: Tidal against Feast and a hand-written floor",
           load_before=load_before, facts=[
                f"Tidal source: {source}",
                f"{rounds} rounds; in each, per shape, {PAIRS} floor + Tidal pairs in one "
                "process and one Feast call in another, then the online reads"])


if __name__ == "__main__":
    main()

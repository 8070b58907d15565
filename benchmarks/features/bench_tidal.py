"""Tidal's feature store and the hand-written floor, in Tidal's own interpreter.

    python benchmarks/features/bench_tidal.py prepare --work DIR [--quick]
    python benchmarks/features/bench_tidal.py offline --work DIR --shape i [--pairs 3] [--save]
    python benchmarks/features/bench_tidal.py online --work DIR [--calls 1000]

prepare: materializes shape (i) into Tidal's embedded online store (DIR/online.db) and builds
the floor's table (DIR/floor.db), timing both. offline: point-in-time joins of the shape's
entity rows, the floor's and Tidal's alternating, pandas in and pandas out; checks that both
results are equal. online: single-entity reads alternating in chunks between the floor's
SELECT and Tidal's get_online_features; checks the values. Each prints one JSON line on stdout.
run.py drives them; they also run on their own after a `prepare`.
"""

from __future__ import annotations

import argparse
import gc
import sqlite3
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
import workload as w  # noqa: E402

VIEW = "stats"
REFS = [f"{VIEW}:{name}" for name in w.FEATURES]
WARMUP_ROWS = 1_000
CHUNK = 250  # online calls per turn when the floor and Tidal alternate


def tidal_store(work: Path, shape_key: str, quick: bool, online: bool = False) -> Any:
    import tidal
    from tidal.features import Entity, Feature, FeatureStore, FeatureView

    ws = tidal.workspace(work / "workspace")
    entity = Entity("entity", join_keys=["entity_id"])
    view = FeatureView(name=VIEW, entities=[entity],
                       features=[Feature(name, "float64") for name in w.FEATURES],
                       source=str(w.features_path(shape_key, quick)),
                       timestamp="event_timestamp",
                       ttl=w.ONLINE_TTL if online else w.ttl(w.shapes(quick)[shape_key]))
    return FeatureStore([view], workspace=ws, online=str(work / "online.db"))


# -- the floor: hand-written DuckDB and SQLite --------------------------------------------------

class Floor:
    """The least a correct answer takes: the entity rows handed to DuckDB as Arrow (faster
    than its pandas scan), one ASOF LEFT JOIN to the Parquet file, the TTL as a CASE, the
    entity rows' order restored by their row_id, pandas out. No deduplication: the generated
    data hold one row per (entity_id, event_timestamp), and the floor knows it."""

    def __init__(self, features: str, ttl_us: int) -> None:
        import duckdb

        self.conn = duckdb.connect()
        self.conn.execute("SET TimeZone = 'UTC'")
        fresh = f"v.event_timestamp >= e.event_timestamp - INTERVAL '{ttl_us} microseconds'"
        values = ", ".join(f"CASE WHEN {fresh} THEN v.{n} END AS {n}" for n in w.FEATURES)
        self.sql = (f"SELECT e.entity_id, e.event_timestamp, e.row_id, {values} "
                    f"FROM entity_rows e ASOF LEFT JOIN read_parquet('{features}') v "
                    "ON e.entity_id = v.entity_id AND e.event_timestamp >= v.event_timestamp "
                    "ORDER BY e.row_id")

    def __call__(self, entity_df: Any) -> Any:
        import pyarrow as pa

        self.conn.register("entity_rows", pa.Table.from_pandas(entity_df, preserve_index=False))
        try:
            return self.conn.sql(self.sql).to_arrow_table().to_pandas()
        finally:
            self.conn.unregister("entity_rows")


def build_floor_table(features: str, path: Path) -> int:
    """One row per entity, its latest values: what a materialization leaves online."""
    import duckdb

    end_us = int(w.MATERIALIZE_END.timestamp() * 1_000_000)
    rows = duckdb.sql(
        f"SELECT entity_id, {', '.join(w.FEATURES)} FROM read_parquet('{features}') "
        f"WHERE event_timestamp <= make_timestamptz({end_us}) "
        "QUALIFY row_number() OVER (PARTITION BY entity_id ORDER BY event_timestamp DESC) = 1"
    ).fetchall()
    conn = sqlite3.connect(path)
    conn.execute(f"CREATE TABLE t (entity_id INTEGER PRIMARY KEY, "
                 f"{', '.join(f'{n} REAL' for n in w.FEATURES)})")
    conn.executemany(f"INSERT INTO t VALUES ({', '.join('?' * (1 + len(w.FEATURES)))})", rows)
    conn.commit()
    conn.close()
    return len(rows)


FLOOR_SELECT = f"SELECT {', '.join(w.FEATURES)} FROM t WHERE entity_id = ?"


# -- comparing results --------------------------------------------------------------------------

def compare(got: Any, expected: Any) -> dict[str, Any]:
    """Rows of `got` that differ from `expected` (same row order required), nulls equal."""
    import numpy as np

    out: dict[str, Any] = {"rows": len(got), "expected_rows": len(expected),
                           "columns_equal": list(got.columns) == list(expected.columns)}
    if len(got) != len(expected) or not out["columns_equal"]:
        out["mismatched_rows"] = max(len(got), len(expected))
        return out
    bad = np.zeros(len(got), dtype=bool)
    for name in expected.columns:
        a, b = got[name], expected[name]
        if name == "event_timestamp":
            bad |= (a.astype("int64").to_numpy() != b.astype("int64").to_numpy())
        elif name in w.FEATURES:
            x = a.to_numpy(dtype="float64", na_value=np.nan)
            y = b.to_numpy(dtype="float64", na_value=np.nan)
            bad |= ~((x == y) | (np.isnan(x) & np.isnan(y)))
        else:
            bad |= (a.to_numpy() != b.to_numpy())
    out["mismatched_rows"] = int(bad.sum())
    out["null_rows"] = int(expected[w.FEATURES].isna().all(axis=1).sum())
    return out


# -- commands -----------------------------------------------------------------------------------

def prepare(args: argparse.Namespace) -> dict[str, Any]:
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    features = str(w.features_path(w.ONLINE_SHAPE, args.quick))
    fs = tidal_store(work, w.ONLINE_SHAPE, args.quick, online=True)
    w.progress("tidal", "materializing into the embedded online store...")
    start = time.perf_counter()
    written = fs.materialize(end=w.MATERIALIZE_END)
    materialize_s = time.perf_counter() - start
    start = time.perf_counter()
    floor_rows = build_floor_table(features, work / "floor.db")
    floor_s = time.perf_counter() - start
    return {"materialize_s": materialize_s, "materialized": written[VIEW],
            "floor_build_s": floor_s, "floor_rows": floor_rows}


def offline(args: argparse.Namespace) -> dict[str, Any]:
    import pyarrow.parquet as pq

    shape = w.shapes(args.quick)[args.shape]
    entity_df = pq.read_table(w.entities_path(args.shape, args.quick)).to_pandas()
    features = str(w.features_path(args.shape, args.quick))
    fs = tidal_store(Path(args.work), args.shape, args.quick)
    floor = Floor(features, int(w.ttl(shape).total_seconds() * 1_000_000))

    def run_tidal(frame: Any) -> Any:
        return fs.get_historical_features(frame, REFS)

    runners = {"floor": floor, "tidal": run_tidal}
    for runner in runners.values():  # imports, file metadata, first connection
        runner(entity_df.head(WARMUP_ROWS))
    times: dict[str, list[float]] = {"floor": [], "tidal": []}
    last: dict[str, Any] = {}
    for index in range(args.pairs):  # floor, Tidal, then Tidal, floor: neither always first
        order = ("floor", "tidal") if index % 2 == 0 else ("tidal", "floor")
        for name in order:
            last.pop(name, None)
            gc.collect()
            start = time.perf_counter()
            last[name] = runners[name](entity_df)
            times[name].append(time.perf_counter() - start)
    check = compare(last["tidal"], last["floor"])
    if args.save:
        last["floor"].to_parquet(Path(args.work) / f"floor-{args.shape}.parquet")
    return {"shape": args.shape, "entity_rows": len(entity_df), "times": times,
            "check": check, "tidal_type": type(last["tidal"]).__name__,
            "peak_rss_mb": w.peak_rss_mb()}


def online(args: argparse.Namespace) -> dict[str, Any]:
    work = Path(args.work)
    fs = tidal_store(work, w.ONLINE_SHAPE, args.quick, online=True)
    conn = sqlite3.connect(work / "floor.db")
    keys = w.online_keys(args.calls, args.quick, args.seed_offset)
    warm = w.online_keys(w.ONLINE_WARMUP, args.quick, 999)

    def tidal_call(key: int) -> Any:
        return fs.get_online_features([{"entity_id": key}], REFS)

    def floor_call(key: int) -> Any:
        return conn.execute(FLOOR_SELECT, (key,)).fetchone()

    calls = {"floor": floor_call, "tidal": tidal_call}
    for call in calls.values():
        for key in warm:
            call(key)
    samples: dict[str, list[int]] = {"floor": [], "tidal": []}
    got: dict[str, list[Any]] = {"floor": [], "tidal": []}
    clock = time.perf_counter_ns
    for index, begin in enumerate(range(0, len(keys), CHUNK)):
        order = ("floor", "tidal") if index % 2 == 0 else ("tidal", "floor")
        chunk = keys[begin:begin + CHUNK]
        for name in order:
            call, times, results = calls[name], samples[name], got[name]
            for key in chunk:
                start = clock()
                result = call(key)
                times.append(clock() - start)
                results.append(result)
    mismatched = 0
    missing = 0
    for key, row, expected in zip(keys, got["tidal"], got["floor"]):
        values = tuple(row[name][0] for name in w.FEATURES)
        missing += expected is None
        if row["entity_id"] != [key] or expected is None or values != tuple(expected):
            mismatched += 1
    return {"calls": len(keys), "samples_ns": samples, "mismatched": mismatched,
            "floor_missing": missing}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("command", choices=["prepare", "offline", "online"])
    parser.add_argument("--work", required=True, help="the folder run.py prepared")
    parser.add_argument("--quick", action="store_true", help="the smaller smoke-run data")
    parser.add_argument("--shape", choices=sorted(w.SHAPES), default="i")
    parser.add_argument("--pairs", type=int, default=3,
                        help="offline: timed floor + Tidal pairs after a warm-up")
    parser.add_argument("--save", action="store_true",
                        help="offline: save the floor's result for run.py's checks")
    parser.add_argument("--calls", type=int, default=w.ONLINE_CALLS_QUICK,
                        help="online: single-entity reads of each side")
    parser.add_argument("--seed-offset", type=int, default=0,
                        help="online: draws another set of entity ids (one per round)")
    args = parser.parse_args()
    import contextlib

    real_stdout = sys.stdout
    with contextlib.redirect_stdout(sys.stderr):
        result = {"prepare": prepare, "offline": offline, "online": online}[args.command](args)
    import duckdb

    import tidal

    result.update(tool="tidal", version=tidal.__version__, duckdb=duckdb.__version__,
                  python=sys.version.split()[0])
    w.emit(result, real_stdout)


if __name__ == "__main__":
    main()

"""Feast's side of the feature benchmark, run by the Feast virtual environment's interpreter.

    benchmarks/.venvs/feast/bin/python benchmarks/features/bench_feast.py prepare --work DIR
    benchmarks/.venvs/feast/bin/python benchmarks/features/bench_feast.py offline --work DIR \
        --shape i [--save]
    benchmarks/.venvs/feast/bin/python benchmarks/features/bench_feast.py online --work DIR

prepare: writes a feature repository in DIR/feast (feature_store.yaml with `provider: local`,
no offline_store, so Feast's default; `online_store: type: sqlite`), applies one entity and one
feature view per shape, and materializes shape (i) into the SQLite online store, timing it.
offline: one warm-up with 1,000 entity rows, then one timed
`get_historical_features(entity_df=<pandas>, features=[...]).to_df()` over all the shape's
entity rows; counts the rows that came back. online: single-entity `get_online_features`
calls, each timed with perf_counter_ns; checks the values against the floor's table
(DIR/floor.db). Each prints one JSON line on stdout.
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import sqlite3
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
import workload as w  # noqa: E402

WARMUP_ROWS = 1_000
FLOOR_SELECT = f"SELECT {', '.join(w.FEATURES)} FROM t WHERE entity_id = ?"


def view_name(shape_key: str) -> str:
    return f"stats_{shape_key}"


def refs(shape_key: str) -> list[str]:
    return [f"{view_name(shape_key)}:{name}" for name in w.FEATURES]


def repo_path(work: Path) -> Path:
    return work / "feast"


def open_store(work: Path) -> Any:
    from feast import FeatureStore

    return FeatureStore(repo_path=str(repo_path(work)))


def prepare(args: argparse.Namespace) -> dict[str, Any]:
    from feast import Entity, FeatureView, Field, FileSource, ValueType
    from feast.types import Float64, Int64

    repo = repo_path(Path(args.work))
    repo.mkdir(parents=True, exist_ok=True)
    # No offline_store: Feast's default, the Dask-based file offline store ("dask").
    (repo / "feature_store.yaml").write_text(
        "project: tidal_bench\n"
        f"registry: {repo / 'registry.db'}\n"
        "provider: local\n"
        "online_store:\n"
        "  type: sqlite\n"
        f"  path: {repo / 'online.db'}\n"
        "entity_key_serialization_version: 3\n", encoding="utf-8")
    store = open_store(Path(args.work))
    entity = Entity(name="entity", join_keys=["entity_id"], value_type=ValueType.INT64)
    views = []
    for key, shape in w.shapes(args.quick).items():
        source = FileSource(name=f"source_{key}", path=str(w.features_path(key, args.quick)),
                            timestamp_field="event_timestamp")
        views.append(FeatureView(
            name=view_name(key), entities=[entity], ttl=w.ttl(shape), source=source,
            schema=[Field(name="entity_id", dtype=Int64),
                    *(Field(name=name, dtype=Float64) for name in w.FEATURES)],
            online=True))
    start = time.perf_counter()
    store.apply([entity, *views])
    apply_s = time.perf_counter() - start
    w.progress("feast", "materializing into the SQLite online store...")
    start = time.perf_counter()
    store.materialize(start_date=w.MATERIALIZE_START, end_date=w.MATERIALIZE_END,
                      feature_views=[view_name(w.ONLINE_SHAPE)])
    materialize_s = time.perf_counter() - start
    conn = sqlite3.connect(repo / "online.db")
    tables = [row[0] for row in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")]
    entities = sum(conn.execute(f'SELECT count(DISTINCT entity_key) FROM "{t}"').fetchone()[0]
                   for t in tables if t.endswith(view_name(w.ONLINE_SHAPE)))
    return {"apply_s": apply_s, "materialize_s": materialize_s, "materialized": entities,
            "online_tables": tables}


def offline(args: argparse.Namespace) -> dict[str, Any]:
    import pyarrow.parquet as pq

    entity_df = pq.read_table(w.entities_path(args.shape, args.quick)).to_pandas()
    store = open_store(Path(args.work))
    features = refs(args.shape)
    store.get_historical_features(entity_df=entity_df.head(WARMUP_ROWS),
                                  features=features).to_df()
    gc.collect()
    start = time.perf_counter()
    result = store.get_historical_features(entity_df=entity_df, features=features).to_df()
    seconds = time.perf_counter() - start
    returned = set(result["row_id"].tolist())
    out = {"shape": args.shape, "entity_rows": len(entity_df), "seconds": seconds,
           "rows": len(result), "distinct_rows": len(returned),
           "dropped": len(entity_df) - len(returned), "peak_rss_mb": w.peak_rss_mb(),
           "columns": list(result.columns)}
    if args.save:
        keep = ["row_id", *w.FEATURES]
        result[keep].to_parquet(Path(args.work) / f"feast-{args.shape}.parquet")
    return out


def online(args: argparse.Namespace) -> dict[str, Any]:
    work = Path(args.work)
    store = open_store(work)
    features = refs(w.ONLINE_SHAPE)
    keys = w.online_keys(args.calls, args.quick, args.seed_offset)

    def call(key: int) -> dict[str, Any]:
        return store.get_online_features(features=features,
                                         entity_rows=[{"entity_id": key}]).to_dict()

    for key in w.online_keys(w.ONLINE_WARMUP, args.quick, 999):
        call(key)
    samples, got = [], []
    clock = time.perf_counter_ns
    for key in keys:
        start = clock()
        result = call(key)
        samples.append(clock() - start)
        got.append(result)
    floor = sqlite3.connect(work / "floor.db")
    mismatched = 0
    for key, row in zip(keys, got):
        expected = floor.execute(FLOOR_SELECT, (key,)).fetchone()
        values = tuple(row[name][0] for name in w.FEATURES)
        if row["entity_id"] != [key] or expected is None or values != tuple(expected):
            mismatched += 1
    return {"calls": len(keys), "samples_ns": samples, "mismatched": mismatched}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("command", choices=["prepare", "offline", "online"])
    parser.add_argument("--work", required=True, help="the folder run.py prepared")
    parser.add_argument("--quick", action="store_true", help="the smaller smoke-run data")
    parser.add_argument("--shape", choices=sorted(w.SHAPES), default="i")
    parser.add_argument("--save", action="store_true",
                        help="offline: save the result for run.py's checks")
    parser.add_argument("--calls", type=int, default=w.ONLINE_CALLS_QUICK,
                        help="online: single-entity reads")
    parser.add_argument("--seed-offset", type=int, default=0,
                        help="online: draws another set of entity ids (one per round)")
    args = parser.parse_args()
    real_stdout = sys.stdout
    with contextlib.redirect_stdout(sys.stderr):
        result = {"prepare": prepare, "offline": offline, "online": online}[args.command](args)
    import feast
    import pandas

    result.update(tool="feast", version=feast.__version__, pandas=pandas.__version__,
                  python=sys.version.split()[0])
    w.emit(result, real_stdout)


if __name__ == "__main__":
    main()

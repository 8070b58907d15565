"""The workload all three feature benchmarks run: shapes, seeds, generated data and helpers.

bench_tidal.py imports it under Tidal's interpreter and bench_feast.py under the Feast virtual
environment's, so both read exactly the same files. Only the standard library, numpy and
pyarrow are used; both environments have them. The data are generated once, with fixed seeds,
into benchmarks/features/.data/ (git-ignored) and reused by later runs.
"""

from __future__ import annotations

import json
import os
import resource
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
DATA = HERE / ".data"

# -- shapes -------------------------------------------------------------------------------------
# Each shape: `entities` x `per_entity` feature rows (every entity has exactly `per_entity`
# distinct event timestamps), and `entity_rows` rows to join them to. The TTL is about 2.2
# times the mean gap between two values of one entity (18.2 days on (i), 1.8 days on (ii)), so
# that about one entity row in ten lands more than a TTL after the latest value before it.

SHAPES: dict[str, dict[str, Any]] = {
    "i": {"entities": 100_000, "per_entity": 20, "entity_rows": 200_000, "ttl_days": 40},
    "ii": {"entities": 10_000, "per_entity": 200, "entity_rows": 200_000, "ttl_days": 4},
}
QUICK_SHAPES: dict[str, dict[str, Any]] = {
    "i": {"entities": 10_000, "per_entity": 20, "entity_rows": 20_000, "ttl_days": 40},
    "ii": {"entities": 1_000, "per_entity": 200, "entity_rows": 20_000, "ttl_days": 4},
}

FEATURES = [f"f{i}" for i in range(5)]
#: Feature values start here and span SPAN_DAYS; entity rows reach a little beyond both ends.
START = datetime(2025, 1, 1, tzinfo=UTC)
SPAN_DAYS = 364
MARGIN_DAYS = 20
#: Materialization ends here, after every value: the online store holds each entity's latest.
MATERIALIZE_END = datetime(2026, 1, 1, tzinfo=UTC)
MATERIALIZE_START = datetime(2024, 12, 1, tzinfo=UTC)
#: Online reads compare values against the clock. The data lie in 2025, so the views used
#: online keep values for ten years: every stored value is served (Feast's online read does not
#: check the TTL at all), and Tidal still runs its TTL test on each one.
ONLINE_TTL = timedelta(days=3650)
ONLINE_SHAPE = "i"

SEED = 20_251_123
NULL_SHARE = 0.01          # of each feature's values
UNKNOWN_SHARE = 0.01       # entity rows whose entity has no feature values at all
EXACT_SHARE = 0.02         # entity rows stamped exactly at one of the entity's values
AT_TTL_SHARE = 0.01        # entity rows exactly one TTL after one of the entity's values

ONLINE_CALLS = 5_000
ONLINE_CALLS_QUICK = 1_000
ONLINE_WARMUP = 200


def shapes(quick: bool) -> dict[str, dict[str, Any]]:
    return QUICK_SHAPES if quick else SHAPES


def ttl(shape: dict[str, Any]) -> timedelta:
    return timedelta(days=shape["ttl_days"])


def _name(shape_key: str, quick: bool) -> str:
    s = shapes(quick)[shape_key]
    return f"{s['entities']}x{s['per_entity']}-{s['entity_rows']}"


def features_path(shape_key: str, quick: bool) -> Path:
    return DATA / f"features-{_name(shape_key, quick)}.parquet"


def entities_path(shape_key: str, quick: bool) -> Path:
    return DATA / f"entities-{_name(shape_key, quick)}.parquet"


# -- generation ---------------------------------------------------------------------------------

def _generate(shape: dict[str, Any], seed: int, features: Path, entity_rows: Path) -> None:
    import numpy as np
    import pyarrow as pa
    import pyarrow.parquet as pq

    rng = np.random.default_rng(seed)
    n_entities, per = shape["entities"], shape["per_entity"]
    span_s = SPAN_DAYS * 86_400
    start_us = int(START.timestamp()) * 1_000_000
    # Strictly increasing whole seconds per entity (sorted draws + 0, 1, 2...), plus a random
    # sub-second part: (entity_id, event_timestamp) is unique, so "the latest value at or
    # before" is always one row.
    seconds = np.sort(rng.integers(0, span_s - per, size=(n_entities, per)), axis=1)
    seconds += np.arange(per)
    ts = start_us + seconds * 1_000_000 + rng.integers(0, 1_000_000, size=(n_entities, per))
    ids = np.repeat(np.arange(n_entities, dtype=np.int64), per)
    flat = ts.reshape(-1)
    order = np.argsort(flat, kind="stable")  # an event log: rows in time order
    columns: dict[str, Any] = {
        "entity_id": pa.array(ids[order]),
        "event_timestamp": pa.array(flat[order], pa.timestamp("us", tz="UTC")),
    }
    n = n_entities * per
    for k, name in enumerate(FEATURES):
        values = rng.normal(k, 1 + k, n)
        mask = rng.random(n) < NULL_SHARE
        columns[name] = pa.array(values, pa.float64(), mask=mask)
    pq.write_table(pa.table(columns), features, row_group_size=500_000)

    # Entity rows: mostly a known entity at a random time between MARGIN_DAYS before its first
    # value and MARGIN_DAYS after its last; some exactly at one of its values, some exactly one
    # TTL after one (both bounds are inclusive), and some for entities that have no values.
    m = shape["entity_rows"]
    draw = m + m // 20 + 100  # a few more, for the duplicates dropped below
    ent = rng.integers(0, n_entities, draw)
    first, last = ts[ent, 0], ts[ent, -1]
    margin = MARGIN_DAYS * 86_400 * 1_000_000
    when = rng.integers(first - margin, last + margin)
    kind = rng.random(draw)
    pick = ts[ent, rng.integers(0, per, draw)]
    exact = kind < EXACT_SHARE
    when[exact] = pick[exact]
    at_ttl = (kind >= EXACT_SHARE) & (kind < EXACT_SHARE + AT_TTL_SHARE)
    when[at_ttl] = pick[at_ttl] + int(ttl(shape).total_seconds()) * 1_000_000
    unknown = kind >= 1 - UNKNOWN_SHARE
    ent = ent.astype(np.int64)
    ent[unknown] = n_entities + rng.integers(0, n_entities, int(unknown.sum()))
    # (entity_id, event_timestamp) unique in the entity rows too: Feast collapses duplicates.
    pairs = np.unique(np.stack([ent, when], axis=1), axis=0, return_index=True)[1]
    keep = np.sort(pairs)[:m]
    if len(keep) < m:
        raise RuntimeError("not enough distinct entity rows drawn")
    keep = keep[rng.permutation(m)]  # in random order: the order of the result must follow it
    table = pa.table({
        "entity_id": pa.array(ent[keep]),
        "event_timestamp": pa.array(when[keep], pa.timestamp("us", tz="UTC")),
        "row_id": pa.array(np.arange(m, dtype=np.int64)),
    })
    pq.write_table(table, entity_rows)


def ensure_data(quick: bool) -> dict[str, dict[str, str]]:
    """Generate the files of every shape that are not there yet; return their paths."""
    DATA.mkdir(parents=True, exist_ok=True)
    out = {}
    for index, key in enumerate(shapes(quick)):
        features, entity_rows = features_path(key, quick), entities_path(key, quick)
        if not (features.exists() and entity_rows.exists()):
            progress("data", f"generating shape ({key}) into {DATA}...")
            tmp_f, tmp_e = features.with_suffix(".tmp"), entity_rows.with_suffix(".tmp")
            _generate(shapes(quick)[key], SEED + index, tmp_f, tmp_e)
            os.replace(tmp_f, features)
            os.replace(tmp_e, entity_rows)
        out[key] = {"features": str(features), "entity_rows": str(entity_rows)}
    return out


def online_keys(calls: int, quick: bool, seed_offset: int = 0) -> list[int]:
    """Entity ids for the single-entity online reads: known entities, drawn with a seed."""
    import numpy as np

    rng = np.random.default_rng(SEED + 100 + seed_offset)
    n = shapes(quick)[ONLINE_SHAPE]["entities"]
    return [int(k) for k in rng.integers(0, n, calls)]


# -- helpers ------------------------------------------------------------------------------------

def progress(tool: str, message: str) -> None:
    print(f"[{tool}] {message}", file=sys.stderr, flush=True)


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def emit(result: dict[str, Any], stream: Any = None) -> None:
    """The result as one JSON line on stdout (progress goes to stderr)."""
    print(json.dumps(result, default=str), file=stream or sys.stdout, flush=True)

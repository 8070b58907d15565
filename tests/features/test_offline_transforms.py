"""Transforms of a view's source, and entity rows read from Parquet files or written to one."""

from __future__ import annotations

import os
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import duckdb
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from tidal.errors import InvalidValueError
from tidal.features import offline
from tidal.features.definitions import Entity, Feature, FeatureView
from tidal.features.offline import OfflineStore

BASE = datetime(2026, 1, 1, tzinfo=UTC)
user = Entity("user", "user_id")


def at(minutes: int) -> datetime:
    return BASE + timedelta(minutes=minutes)


def write(rows: list[dict], path: Path) -> str:
    pq.write_table(pa.Table.from_pylist(rows), path)
    return str(path)


def view_rows(store: OfflineStore, name: str, features: list[str]) -> list[tuple]:
    """What materialization reads: the view's rows, one per (keys, event time)."""
    with store.view_rows(name, features) as (conn, sql):
        table = conn.sql(f"SELECT * FROM ({sql}) ORDER BY ALL").to_arrow_table()
    return [tuple(row.values()) for row in table.to_pylist()]


@pytest.fixture
def payments(tmp_path: Path) -> str:
    return write([
        {"uid": 1, "paid_at": at(0), "amount": 10.0, "country": "DE"},
        {"uid": 1, "paid_at": at(10), "amount": None, "country": "FR"},  # filtered out
        {"uid": 2, "paid_at": at(5), "amount": 4.0, "country": "Us"},
    ], tmp_path / "payments.parquet")


def test_a_transform_derives_filters_and_renames(payments):
    view = FeatureView(
        "pay", user, [Feature("double_amount"), Feature("country", "string")], payments,
        transform="SELECT uid AS user_id, paid_at AS event_timestamp, amount * 2 AS double_amount, "
                  "lower(country) AS country FROM source WHERE amount IS NOT NULL;")
    store = OfflineStore([view])
    entity_df = pd.DataFrame({"user_id": [1, 2, 1], "event_timestamp": [at(20), at(5), at(-1)]})
    result = store.get_historical_features(entity_df, ["pay:double_amount", "pay:country"])
    assert result["double_amount"].tolist()[:2] == [20.0, 8.0]  # the null amount was dropped
    assert result["country"].tolist()[:2] == ["de", "us"]
    assert pd.isna(result["double_amount"][2])  # before any value
    # materialization reads the same transformed rows
    assert view_rows(store, "pay", ["double_amount", "country"]) == [
        (1, at(0), 20.0, "de"), (2, at(5), 8.0, "us")]


@pytest.mark.parametrize("transform, field, message", [
    ("SELEC user_id FROM source", "transform", "syntax error"),
    ("SELECT user_id, event_timestamp, nope AS clicks FROM source", "transform", "nope"),
    ("SELECT user_id, event_timestamp FROM source", "source",
     r"output of the transform of feature view 'a' lacks declared column\(s\) \['clicks'\]"),
    ("SELECT user_id, event_timestamp, 'many' AS clicks FROM source", "dtype",
     "declared float64 but its source column holds VARCHAR"),
    ("SELECT user_id, 'today' AS event_timestamp, 1.0 AS clicks FROM source", "source",
     "must hold timestamps"),
])
def test_a_broken_transform_is_refused_naming_the_view(tmp_path, transform, field, message):
    source = write([{"user_id": 1, "event_timestamp": BASE, "clicks": 1.0}],
                   tmp_path / "s.parquet")
    entity_df = pd.DataFrame({"user_id": [1], "event_timestamp": [BASE]})
    with pytest.raises(InvalidValueError, match=message) as caught:
        # One that does not parse is refused as the view is defined; the others when run.
        store = OfflineStore([FeatureView("a", user, [Feature("clicks")], source,
                                          transform=transform)])
        store.get_historical_features(entity_df, ["a:clicks"])
    assert caught.value.field == field
    if field == "transform":  # DuckDB's own message, inside ours
        assert "feature view 'a'" in str(caught.value)
        assert isinstance(caught.value.__cause__, duckdb.Error)


def test_ties_through_a_transform_keep_the_documented_rule(tmp_path):
    # Two files, read in name order: the last row of b.parquet comes last in the source.
    folder = tmp_path / "ties"
    folder.mkdir()
    write([{"user_id": 1, "event_timestamp": BASE, "created": at(5), "v": 3.0},
           {"user_id": 1, "event_timestamp": BASE, "created": at(0), "v": 1.0}],
          folder / "b.parquet")
    write([{"user_id": 1, "event_timestamp": BASE, "created": at(0), "v": 2.0},
           {"user_id": 1, "event_timestamp": BASE, "created": at(5), "v": 0.0}],
          folder / "a.parquet")
    source = str(folder / "*.parquet")
    entity_df = pd.DataFrame({"user_id": [1], "event_timestamp": [at(1)]})

    def value(transform: str | None, created: str | None = None) -> float:
        store = OfflineStore([FeatureView("t", user, [Feature("v")], source,
                                          created_timestamp=created, transform=transform)])
        materialized = view_rows(store, "t", ["v"])
        got = store.get_historical_features(entity_df, ["t:v"])["v"][0]
        assert materialized == [(1, BASE, got)]  # materialization agrees
        return got

    keeps = "SELECT *, v + 0 AS w FROM source"  # keeps __source_file and __source_row
    drops = "SELECT user_id, event_timestamp, created, v FROM source"
    assert value(None) == value(keeps) == 1.0  # last in the source: b.parquet, second row
    assert value(None, "created") == value(keeps, "created") == 3.0  # latest created, then last
    assert value(drops) == 3.0  # no position: the greatest value
    assert value(drops, "created") == 3.0  # latest created first, then the greatest value


def test_a_rewritten_source_is_checked_again_for_ties(tmp_path):
    path = tmp_path / "s.parquet"
    write([{"user_id": 1, "event_timestamp": BASE, "v": 1.0}], path)
    store = OfflineStore([FeatureView("t", user, [Feature("v")], str(path))])
    entity_df = pd.DataFrame({"user_id": [1], "event_timestamp": [at(1)]})
    assert store.get_historical_features(entity_df, ["t:v"])["v"].tolist() == [1.0]
    write([{"user_id": 1, "event_timestamp": BASE, "v": v} for v in (5.0, 1.0, 2.0)], path)
    os.utime(path, ns=(time.time_ns(), time.time_ns() + 1_000_000))
    assert store.get_historical_features(entity_df, ["t:v"])["v"].tolist() == [2.0]


# -- entity rows from files, results to a file ---------------------------------------------

@pytest.fixture
def store(tmp_path: Path) -> OfflineStore:
    source = write([{"user_id": k, "event_timestamp": at(m), "clicks": float(k * 100 + m)}
                    for k in range(4) for m in range(0, 60, 7)], tmp_path / "clicks.parquet")
    return OfflineStore([FeatureView("activity", user, [Feature("clicks")], source,
                                     ttl=timedelta(minutes=10))])


def entity_table(count: int, offset: int = 0) -> pa.Table:
    return pa.table({"user_id": [(i * 7 + offset) % 5 for i in range(count)],
                     "event_timestamp": pa.array([at((i * 13 + offset) % 70) for i in
                                                  range(count)], pa.timestamp("us", "UTC")),
                     "label": [i + offset for i in range(count)]})


def test_entity_rows_from_a_parquet_file_or_glob_match_the_frame(store, tmp_path):
    parts = tmp_path / "entities"
    parts.mkdir()
    # written out of name order: the rows come back in file name order, then row order
    tables = {"part-2.parquet": entity_table(40, 2), "part-0.parquet": entity_table(30, 0),
              "part-1.parquet": entity_table(1, 1)}
    for name, table in tables.items():
        pq.write_table(table, parts / name, row_group_size=8)
    whole = pa.concat_tables([tables[name] for name in sorted(tables)])
    expected = store.get_historical_features(whole, ["activity:clicks"])
    assert expected["label"].to_pylist() == whole["label"].to_pylist()
    assert expected["clicks"].null_count not in (0, whole.num_rows)  # TTL and unknown users
    assert store.get_historical_features(str(parts / "*.parquet"),
                                         ["activity:clicks"]).equals(expected)
    one = store.get_historical_features(parts / "part-2.parquet", ["activity:clicks"])
    assert one.equals(store.get_historical_features(tables["part-2.parquet"],
                                                    ["activity:clicks"]))


def test_to_streams_the_result_to_parquet_in_order(store, tmp_path):
    entities = entity_table(500, 3)
    expected = store.get_historical_features(entities, ["activity:clicks"],
                                             full_feature_names=True)
    out = store.get_historical_features(entities, ["activity:clicks"], to=tmp_path / "a.pq",
                                        full_feature_names=True)
    assert out == tmp_path / "a.pq" and isinstance(out, Path)
    assert pq.read_table(out).equals(expected)
    pq.write_table(entities, tmp_path / "e.parquet")
    from_file = store.get_historical_features(str(tmp_path / "e.parquet"),
                                              ["activity:clicks"], to=str(tmp_path / "b.pq"),
                                              full_feature_names=True)
    assert pq.read_table(from_file).cast(expected.schema).equals(expected)
    frame = store.get_historical_features(entities.to_pandas(), ["activity:clicks"],
                                          to=tmp_path / "a.pq")  # replaces the file
    assert pq.read_table(frame).column("clicks").equals(expected.column("activity__clicks"))
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "a.pq", "b.pq", "clicks.parquet", "e.parquet"]  # no partial file left behind


def test_reading_entity_files_runs_under_a_memory_limit(tmp_path, monkeypatch):
    # A transform may not read the settings (current_setting is refused), so the limit is read
    # from the connection the join runs on.
    limits = []

    def connect(*args, **kwargs):
        conn = real(*args, **kwargs)
        limits.append(conn.execute("SELECT current_setting('memory_limit')").fetchall()[0][0])
        return conn

    real = offline.connect
    monkeypatch.setattr(offline, "connect", connect)
    source = write([{"user_id": 1, "event_timestamp": BASE, "v": 1.0}], tmp_path / "s.parquet")
    store = OfflineStore([FeatureView("m", user, [Feature("v")], source)])
    pq.write_table(entity_table(3, 1), tmp_path / "e.parquet")
    store.get_historical_features(str(tmp_path / "e.parquet"), ["m:v"])
    store.get_historical_features(entity_table(3, 1), ["m:v"])
    assert limits[0] == "953.6 MiB"  # 1GB
    assert limits[1] != "953.6 MiB"


def test_bad_entity_files_are_refused_naming_them(store, tmp_path):
    (tmp_path / "notes.txt").write_text("not parquet")
    pq.write_table(entity_table(3).drop_columns("user_id"), tmp_path / "nokey.parquet")
    pq.write_table(entity_table(3).set_column(1, "event_timestamp", pa.array(["a", "b", "c"])),
                   tmp_path / "text.parquet")
    mixed = tmp_path / "mixed"
    mixed.mkdir()
    pq.write_table(entity_table(3), mixed / "a.parquet")
    (mixed / "b.parquet").write_bytes(b"PAR1 truncated")
    for path, message in [
        (tmp_path / "none-*.parquet", "none-"),
        (tmp_path / "missing.parquet", "missing.parquet"),
        (tmp_path / "notes.txt", "notes.txt"),
        (mixed / "*.parquet", "b.parquet"),
        (tmp_path / "nokey.parquet", r"lacks column\(s\) \['user_id'\]"),
        (tmp_path / "text.parquet", "must hold timestamps, not VARCHAR"),
    ]:
        with pytest.raises(InvalidValueError, match=message) as caught:
            store.get_historical_features(str(path), ["activity:clicks"])
        assert caught.value.field == "entity_df"


def test_a_bad_destination_is_refused(store, tmp_path):
    entities = entity_table(3)
    for to, message in [(tmp_path / "no" / "such" / "dir" / "x.parquet", "does not exist"),
                        (tmp_path, "is a directory"),
                        (42, "local file path"),
                        ("s3://bucket/x.parquet", "local file path")]:
        with pytest.raises(InvalidValueError, match=message) as caught:
            store.get_historical_features(entities, ["activity:clicks"], to=to)
        assert caught.value.field == "to"
    assert not (tmp_path / "no").exists()

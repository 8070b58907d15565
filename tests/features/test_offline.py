"""Point-in-time retrieval: a property test against a brute-force reference, and bad input."""

from __future__ import annotations

import math
import tempfile
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import tidal
from tidal.errors import InvalidValueError
from tidal.features.definitions import Entity, Feature, FeatureView
from tidal.features.offline import OfflineStore

BASE = datetime(2026, 1, 1, tzinfo=UTC)
user = Entity("user", "user_id")


def write(rows: list[dict], path: Path) -> str:
    pq.write_table(pa.Table.from_pylist(rows), path)
    return str(path)


def reference(features: list[dict], entities: list[tuple[int, datetime]],
              ttl: timedelta | None) -> list[tuple[float | None, datetime | None]]:
    """The definition, row by row: the latest row at or before the entity's time (ties: latest
    created, then last in the file), null when older than the TTL."""
    out = []
    for key, moment in entities:
        candidates = [(r["event_timestamp"], r["created"], i, r)
                      for i, r in enumerate(features)
                      if r["user_id"] == key and r["event_timestamp"] <= moment]
        if not candidates:
            out.append((None, None))
            continue
        row = max(candidates, key=lambda c: c[:3])[3]
        if ttl is not None and row["event_timestamp"] < moment - ttl:
            out.append((None, None))
        else:
            out.append((row["value"], row["seen"]))
    return out


minutes = st.integers(min_value=0, max_value=30)
feature_rows = st.lists(st.tuples(st.integers(0, 3), minutes, st.integers(0, 5),
                                  st.floats(-1e6, 1e6, allow_nan=False, width=64)),
                        min_size=0, max_size=40)
entity_rows = st.lists(st.tuples(st.integers(0, 4), minutes), min_size=1, max_size=30)
ttls = st.one_of(st.none(), st.integers(1, 15).map(lambda m: timedelta(minutes=m)))


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(feature_rows, entity_rows, ttls)
def test_point_in_time_join_matches_the_brute_force_reference(frows, erows, ttl):
    features = [{"user_id": k, "event_timestamp": BASE + timedelta(minutes=m),
                 "created": BASE + timedelta(hours=c), "value": v,
                 "seen": BASE + timedelta(minutes=m)} for k, m, c, v in frows]
    entities = [(k, BASE + timedelta(minutes=m)) for k, m in erows]
    with tempfile.TemporaryDirectory() as folder:
        if features:
            source = write(features, Path(folder) / "f.parquet")
        else:  # a source with no rows at all
            schema = pa.schema([("user_id", pa.int64()), ("event_timestamp",
                                pa.timestamp("us", "UTC")), ("created", pa.timestamp("us", "UTC")),
                                ("value", pa.float64()), ("seen", pa.timestamp("us", "UTC"))])
            source = str(Path(folder) / "f.parquet")
            pq.write_table(schema.empty_table(), source)
        view = FeatureView("stats", user, [Feature("value"), Feature("seen", "timestamp")],
                           source, ttl=ttl, created_timestamp="created")
        entity_df = pd.DataFrame({"user_id": [k for k, _ in entities],
                                  "event_timestamp": [t for _, t in entities]})
        result = OfflineStore([view]).get_historical_features(
            entity_df, ["stats:value", "stats:seen"])
    assert len(result) == len(entities)  # no entity row is ever dropped
    assert result["user_id"].tolist() == entity_df["user_id"].tolist()
    expected = reference(features, entities, ttl)
    for (value, seen), got_value, got_seen, (_, moment) in zip(
            expected, result["value"], result["seen"], entities):
        if value is None:
            assert got_value is None or math.isnan(got_value)
            assert pd.isna(got_seen)
        else:
            assert got_value == value
            assert got_seen.to_pydatetime() == seen
            assert got_seen.to_pydatetime() <= moment  # never a value from the future


def test_example_with_two_views_ttl_and_nulls(tmp_path):
    clicks = write([
        {"user_id": 1, "event_timestamp": BASE, "clicks": 3},
        {"user_id": 1, "event_timestamp": BASE + timedelta(hours=2), "clicks": 7},
        {"user_id": 2, "event_timestamp": BASE, "clicks": 1},
    ], tmp_path / "clicks.parquet")
    profile = write([{"user_id": 1, "event_timestamp": BASE - timedelta(days=30),
                      "country": "de"}], tmp_path / "profile.parquet")
    store = OfflineStore([
        FeatureView("activity", user, [Feature("clicks", "int64")], clicks,
                    ttl=timedelta(hours=1)),
        FeatureView("profile", user, [Feature("country", "string")], profile),
    ])
    entity_df = pd.DataFrame({
        "user_id": [1, 1, 2, 3],
        "event_timestamp": [BASE + timedelta(minutes=30), BASE + timedelta(hours=5),
                            BASE + timedelta(minutes=59), BASE],
        "label": [1, 0, 1, 0],
    })
    result = store.get_historical_features(entity_df, ["activity:clicks", "profile:country"])
    assert list(result.columns) == ["user_id", "event_timestamp", "label", "clicks", "country"]
    assert result["clicks"].tolist()[0] == 3 and result["clicks"].tolist()[2] == 1
    assert pd.isna(result["clicks"].tolist()[1])  # 3 hours old, TTL 1 hour
    assert pd.isna(result["clicks"].tolist()[3])  # user 3 has no data: kept, with nulls
    assert result["country"].tolist()[:2] == ["de", "de"]
    full = store.get_historical_features(entity_df, ["activity:clicks"], full_feature_names=True)
    assert "activity__clicks" in full.columns


def test_a_dataset_can_be_a_source(workspace):
    tidal.datasets.register("clicks", pd.DataFrame({
        "user_id": [1, 1], "event_timestamp": [BASE, BASE + timedelta(hours=1)],
        "clicks": [2.0, 5.0]}))
    store = OfflineStore([FeatureView("activity", user, [Feature("clicks")], "clicks")])
    result = store.get_historical_features(
        pd.DataFrame({"user_id": [1], "event_timestamp": [BASE + timedelta(minutes=90)]}),
        ["activity:clicks"])
    assert result["clicks"].tolist() == [5.0]


@pytest.fixture
def store(tmp_path):
    source = write([{"user_id": 1, "event_timestamp": BASE, "clicks": 3.0, "name": "x"}],
                   tmp_path / "s.parquet")
    return OfflineStore([FeatureView("activity", user,
                                     [Feature("clicks"), Feature("name", "string")], source)])


ENTITY = pd.DataFrame({"user_id": [1], "event_timestamp": [BASE]})


@pytest.mark.parametrize("features, message", [
    (["activity:nope"], "has no feature 'nope'"),
    (["other:clicks"], "unknown feature view 'other'"),
    (["clicks"], "not of the form 'view:feature'"),
    ([], "non-empty list"),
    ("activity:clicks", "non-empty list"),
])
def test_unknown_or_malformed_feature_names_are_refused(store, features, message):
    with pytest.raises(InvalidValueError, match=message):
        store.get_historical_features(ENTITY, features)


def test_entity_frames_missing_a_key_or_timestamp_are_refused(store):
    with pytest.raises(InvalidValueError, match=r"lacks column\(s\) \['user_id'\]"):
        store.get_historical_features(ENTITY.drop(columns="user_id"), ["activity:clicks"])
    with pytest.raises(InvalidValueError, match="'event_timestamp'"):
        store.get_historical_features(ENTITY.drop(columns="event_timestamp"),
                                      ["activity:clicks"])
    with pytest.raises(InvalidValueError, match="must hold timestamps"):
        store.get_historical_features(ENTITY.assign(event_timestamp="yesterday"),
                                      ["activity:clicks"])
    with pytest.raises(InvalidValueError, match="pandas DataFrame or an Arrow table"):
        store.get_historical_features({"user_id": [1]}, ["activity:clicks"])


def test_a_source_lacking_a_declared_column_or_type_is_refused(tmp_path):
    source = write([{"user_id": 1, "event_timestamp": BASE, "clicks": "many"}],
                   tmp_path / "s.parquet")
    lacking = OfflineStore([FeatureView("a", user, [Feature("views")], source)])
    with pytest.raises(InvalidValueError, match=r"lacks declared column\(s\) \['views'\]"):
        lacking.get_historical_features(ENTITY, ["a:views"])
    wrong = OfflineStore([FeatureView("a", user, [Feature("clicks", "float64")], source)])
    with pytest.raises(InvalidValueError, match="declared float64 but its source column holds"
                                                " VARCHAR"):
        wrong.get_historical_features(ENTITY, ["a:clicks"])


@pytest.mark.parametrize("build, message", [
    (lambda: Entity("user", []), "at least one join key"),
    (lambda: Entity("bad name", "id"), "not a valid name"),
    (lambda: Feature("x", "float128"), "accepted"),
    (lambda: FeatureView("v", user, [], "s"), "one or more Feature"),
    (lambda: FeatureView("v", [], [Feature("x")], "s"), "one or more Entity"),
    (lambda: FeatureView("v", user, [Feature("x"), Feature("x")], "s"), "twice"),
    (lambda: FeatureView("v", user, [Feature("x")], "s", ttl=timedelta(0)), "positive"),
    (lambda: OfflineStore([FeatureView("v", user, [Feature("x")], "s")] * 2), "two feature"),
])
def test_bad_definitions_are_refused(build, message):
    with pytest.raises(InvalidValueError, match=message):
        build()

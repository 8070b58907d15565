"""Point-in-time retrieval: a property test against a brute-force reference, and bad input."""

from __future__ import annotations

import math
import os
import subprocess
import sys
import tempfile
from concurrent.futures import ThreadPoolExecutor
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


def reference(features: list[dict], entities: list[tuple[int, datetime | None]],
              ttl: timedelta | None, created: bool, by_position: bool,
              ) -> list[tuple[float | None, datetime | None]]:
    """The definition, row by row: the latest row at or before the entity's time, null when
    older than the TTL. Ties: the latest created (a null one oldest) when the view declares it,
    then the last in the file, or, when a transform drops the position, the greatest values."""
    def rank(i: int, row: dict) -> tuple:
        made = (row["created"] is not None, row["created"] or BASE) if created else ()
        rest = (i,) if by_position else (row["value"], row["seen"])
        return (row["event_timestamp"], *made, *rest)

    out = []
    for key, moment in entities:
        candidates = [(rank(i, r), r) for i, r in enumerate(features)
                      if moment is not None and r["user_id"] == key
                      and r["event_timestamp"] <= moment]
        if not candidates:
            out.append((None, None))
            continue
        row = max(candidates, key=lambda c: c[0])[1]
        if ttl is not None and row["event_timestamp"] < moment - ttl:
            out.append((None, None))
        else:
            out.append((row["value"], row["seen"]))
    return out


FEATURE_SCHEMA = pa.schema([("user_id", pa.int64()), ("event_timestamp", pa.timestamp("us", "UTC")),
                            ("created", pa.timestamp("us", "UTC")), ("value", pa.float64()),
                            ("seen", pa.timestamp("us", "UTC"))])
#: How the view reads its source: as it is, through a transform that keeps each row's position
#: (ties stay "last in the file"), or through one that drops it (ties go to the greatest values).
TRANSFORMS = {"none": None,
              "keeps position": "SELECT * FROM source WHERE value IS NOT NULL",
              "drops position": "SELECT user_id, event_timestamp, created, value, seen FROM source"}
# Few keys and minutes, and rows that copy another's key and time, so that rows often tie and
# the entity rows often land on them.
created_hours = st.one_of(st.none(), st.integers(0, 3))
values = st.floats(-1e6, 1e6, allow_nan=False, width=64)


@st.composite
def cases(draw: st.DrawFn) -> tuple[list[tuple], list[tuple]]:
    frows = draw(st.lists(st.tuples(st.integers(0, 2), st.integers(0, 8), created_hours, values),
                          max_size=30))
    if frows:
        for index, hours, value in draw(st.lists(st.tuples(
                st.integers(0, len(frows) - 1), created_hours, values), max_size=15)):
            frows.append((frows[index][0], frows[index][1], hours, value))
        frows = draw(st.permutations(frows))
    anywhere = st.tuples(st.integers(0, 3), st.one_of(st.integers(0, 12), st.none()))
    near = (st.tuples(st.sampled_from(frows), st.integers(0, 2))
            .map(lambda pair: (pair[0][0], pair[0][1] + pair[1])) if frows else anywhere)
    erows = draw(st.lists(st.one_of(anywhere, near), min_size=1, max_size=30))
    return frows, erows


ttls = st.one_of(st.none(), st.integers(1, 6).map(lambda m: timedelta(minutes=m)))


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(cases(), ttls, st.booleans(), st.sampled_from(sorted(TRANSFORMS)))
def test_point_in_time_join_matches_the_brute_force_reference(case, ttl, created, transform):
    frows, erows = case
    features = [{"user_id": k, "event_timestamp": BASE + timedelta(minutes=m),
                 "created": None if c is None else BASE + timedelta(hours=c), "value": v,
                 "seen": BASE + timedelta(minutes=m)} for k, m, c, v in frows]
    entities = [(k, None if m is None else BASE + timedelta(minutes=m)) for k, m in erows]
    with tempfile.TemporaryDirectory() as folder:
        source = str(Path(folder) / "f.parquet")  # with no rows at all when features is empty
        pq.write_table(pa.Table.from_pylist(features, FEATURE_SCHEMA), source)
        view = FeatureView("stats", user, [Feature("value"), Feature("seen", "timestamp")],
                           source, ttl=ttl, created_timestamp="created" if created else None,
                           transform=TRANSFORMS[transform])
        entity_df = pd.DataFrame({
            "user_id": [k for k, _ in entities],
            "event_timestamp": pd.Series([t for _, t in entities], dtype="datetime64[ns, UTC]")})
        result = OfflineStore([view]).get_historical_features(
            entity_df, ["stats:value", "stats:seen"])
    assert len(result) == len(entities)  # no entity row is ever dropped
    assert result["user_id"].tolist() == entity_df["user_id"].tolist()
    expected = reference(features, entities, ttl, created, transform != "drops position")
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
    with pytest.raises(InvalidValueError, match="an Arrow table or a Parquet path"):
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


FORK_SCRIPT = """
import os, sys, time
from datetime import datetime, timezone
import pandas as pd
from tidal.features.definitions import Entity, Feature, FeatureView
from tidal.features.offline import OfflineStore

view = FeatureView("a", Entity("user", "user_id"), [Feature("clicks")], sys.argv[1])
store = OfflineStore([view])
entity_df = pd.DataFrame({"user_id": [1], "event_timestamp": [datetime.now(timezone.utc)]})
store.get_historical_features(entity_df, ["a:clicks"])  # opens the shared DuckDB database
child = os.fork()
if child == 0:  # the child joins too, then exits the ordinary way, running finalizers
    store.get_historical_features(entity_df, ["a:clicks"])
    sys.exit(0)
for _ in range(600):  # a minute at most; a child that hangs is killed, and the test fails
    done, status = os.waitpid(child, os.WNOHANG)
    if done:
        assert status == 0, status
        break
    time.sleep(0.1)
else:
    os.kill(child, 9)
    sys.exit("the forked child hung on exit")
print(store.get_historical_features(entity_df, ["a:clicks"])["clicks"].tolist())
"""


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
def test_a_forked_child_joins_and_exits_cleanly(tmp_path):
    # A child that inherits a DuckDB database with worker threads hangs or crashes on exit.
    source = write([{"user_id": 1, "event_timestamp": BASE, "clicks": 3.0}],
                   tmp_path / "s.parquet")
    done = subprocess.run([sys.executable, "-c", FORK_SCRIPT, source], capture_output=True,
                          text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[3.0]"


def test_threads_join_at_once_each_with_its_own_rows(tmp_path):
    source = write([{"user_id": k, "event_timestamp": BASE, "clicks": float(k)}
                    for k in range(50)], tmp_path / "s.parquet")
    store = OfflineStore([FeatureView("a", user, [Feature("clicks")], source)])

    def join(offset: int) -> list[float]:
        entity_df = pd.DataFrame({"user_id": [(offset + i) % 50 for i in range(200)],
                                  "event_timestamp": [BASE] * 200})
        return store.get_historical_features(entity_df, ["a:clicks"])["clicks"].tolist()

    with ThreadPoolExecutor(8) as pool:
        results = list(pool.map(join, range(32)))
    assert results == [[float((offset + i) % 50) for i in range(200)] for offset in range(32)]

"""Materialization into the embedded online store, online reads, TTL, and bad input."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import pandas as pd
import pytest

import tidal
from tidal.errors import InvalidValueError

Entity, Feature, FeatureView = (tidal.features.Entity, tidal.features.Feature,
                                tidal.features.FeatureView)
NOW = datetime.now(UTC).replace(microsecond=0)
user = Entity("user", "user_id")


def events(rows):
    return pd.DataFrame(rows, columns=["user_id", "event_timestamp", "clicks", "vip", "seen"])


@pytest.fixture(params=["sqlite", "redis"])
def online(request) -> dict:
    """Options of a FeatureStore for each online store; Redis keys get a prefix per test."""
    if request.param == "sqlite":
        return {}
    return {"online": request.getfixturevalue("redis_url"),
            "online_prefix": f"test-{uuid.uuid4().hex}:"}


@pytest.fixture
def store(workspace, online):
    tidal.datasets.register("activity", events([
        (1, NOW - timedelta(hours=3), 1.0, False, NOW - timedelta(hours=3)),
        (1, NOW - timedelta(hours=2), 2.0, True, NOW - timedelta(hours=2)),
        (2, NOW - timedelta(hours=1), 5.0, False, NOW - timedelta(hours=1)),
    ]))
    view = FeatureView("activity", user, [Feature("clicks"), Feature("vip", "bool"),
                                          Feature("seen", "timestamp")], "activity",
                       ttl=timedelta(days=1))
    return tidal.features.FeatureStore([view], **online)


def test_materialize_then_read_the_latest_values(store):
    assert store.materialize(NOW) == {"activity": 2}
    got = store.get_online_features([{"user_id": 1}, {"user_id": 2}, {"user_id": 3}],
                                    ["activity:clicks", "activity:vip", "activity:seen"])
    assert got["user_id"] == [1, 2, 3]
    assert got["clicks"] == [2.0, 5.0, None]
    assert got["vip"] == [True, False, None]
    assert got["seen"][:2] == [NOW - timedelta(hours=2), NOW - timedelta(hours=1)]


def test_materialization_is_incremental_and_never_moves_back_in_time(store):
    store.materialize(NOW - timedelta(minutes=90))  # only user 1's rows are due
    assert store.get_online_features([{"user_id": 2}], ["activity:clicks"])["clicks"] == [None]
    tidal.datasets.register("activity", events([
        (1, NOW - timedelta(hours=3), 1.0, False, NOW - timedelta(hours=3)),
        (1, NOW - timedelta(hours=2), 2.0, True, NOW - timedelta(hours=2)),
        (2, NOW - timedelta(hours=1), 5.0, False, NOW - timedelta(hours=1)),
        (3, NOW - timedelta(minutes=10), 9.0, True, NOW - timedelta(minutes=10)),
    ]))
    # from the previous end on: users 2 and 3 only, user 1 is not rewritten
    assert store.materialize(NOW) == {"activity": 2}
    assert store.materialize(NOW) == {"activity": 0}  # nothing new since
    # replaying an old window cannot overwrite a newer value
    store.materialize(NOW - timedelta(hours=2, minutes=30), start=NOW - timedelta(days=1))
    got = store.get_online_features(pd.DataFrame({"user_id": [1, 2, 3]}), ["activity:clicks"])
    assert got["clicks"] == [2.0, 5.0, 9.0]


def test_values_older_than_the_ttl_are_not_served(workspace, online):
    tidal.datasets.register("old", pd.DataFrame({
        "user_id": [1], "event_timestamp": [NOW - timedelta(days=3)], "clicks": [4.0]}))
    view = FeatureView("old", user, [Feature("clicks")], "old", ttl=timedelta(days=1))
    store = tidal.features.FeatureStore([view], **online)
    store.materialize(NOW)
    assert store.get_online_features([{"user_id": 1}], ["old:clicks"])["clicks"] == [None]


def test_bad_online_input_is_refused(store):
    with pytest.raises(InvalidValueError, match=r"entity row 1 lacks join key\(s\) \['user_id'\]"):
        store.get_online_features([{"user_id": 1}, {"id": 2}], ["activity:clicks"])
    with pytest.raises(InvalidValueError, match="list of dicts"):
        store.get_online_features("user 1", ["activity:clicks"])
    with pytest.raises(InvalidValueError, match="has no feature 'nope'"):
        store.get_online_features([{"user_id": 1}], ["activity:nope"])
    with pytest.raises(InvalidValueError, match=r"unknown feature view\(s\) \['other'\]"):
        store.materialize(NOW, views=["other"])
    with pytest.raises(InvalidValueError, match="end must be a datetime"):
        store.materialize("now")


def test_the_workspace_setting_chooses_the_default_online_store(tmp_path, monkeypatch):
    path = tmp_path / "serving" / "features.db"
    monkeypatch.setenv("TIDAL_ONLINE_STORE", str(path))
    ws = tidal.workspace(tmp_path / "ws")
    store = tidal.features.FeatureStore([FeatureView("v", user, [Feature("x")], "unused")],
                                        workspace=ws)
    assert store.online.path == path

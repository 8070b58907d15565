"""On-demand features and feature services: the same values offline and online, and bad
definitions or requests refused with the culprit named."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest

import tidal
from tidal.errors import InvalidValueError
from tidal.features import (
    Entity,
    Feature,
    FeatureService,
    FeatureStore,
    FeatureView,
    OnDemandFeatureError,
    OnDemandFeatureView,
    on_demand_feature_view,
)

NOW = datetime.now(UTC).replace(microsecond=0)
user = Entity("user", "user_id")


@on_demand_feature_view(inputs=["spend:total", "spend:orders"],
                        request=[Feature("basket", "float64")],
                        features=[Feature("avg_order"), Feature("basket_share"),
                                  Feature("big", "bool")])
def ratios(frame: pd.DataFrame) -> pd.DataFrame:
    """Average order and how this basket compares with it."""
    avg = frame["total"] / frame["orders"]
    return pd.DataFrame({"avg_order": avg, "basket_share": frame["basket"] / avg,
                         "big": frame["basket"] > avg})


@on_demand_feature_view(inputs=["spend:total"], features=[Feature("total_k")], mode="python")
def thousands(columns: dict) -> dict:
    return {"total_k": [None if v is None else v / 1000 for v in columns["total"]]}


@pytest.fixture
def store(workspace):
    tidal.datasets.register("spend", pd.DataFrame({
        "user_id": [1, 1, 2],
        "event_timestamp": [NOW - timedelta(hours=3), NOW - timedelta(hours=1),
                            NOW - timedelta(hours=2)],
        "total": [100.0, 300.0, 50.0], "orders": [2, 3, 1]}))
    spend = FeatureView("spend", user, [Feature("total"), Feature("orders", "int64")], "spend")
    service = FeatureService("checkout", ["spend:total", ratios, thousands])
    return FeatureStore([user, spend, ratios, thousands, service])


def test_on_demand_features_agree_offline_and_online(store):
    entity_df = pd.DataFrame({"user_id": [1, 2, 3], "event_timestamp": [NOW] * 3,
                              "basket": [50.0, 100.0, 10.0]})
    offline = store.get_historical_features(entity_df, "checkout")
    assert list(offline.columns) == ["user_id", "event_timestamp", "basket", "total",
                                     "avg_order", "basket_share", "big", "total_k"]
    assert offline["avg_order"].tolist()[:2] == [100.0, 50.0]
    assert offline["basket_share"].tolist()[:2] == [0.5, 2.0]
    assert offline["total_k"].tolist()[:2] == [0.3, 0.05]
    assert offline["big"].tolist()[:2] == [False, True]
    assert pd.isna(offline["avg_order"][2])  # no history for user 3: null, row kept

    store.materialize(NOW)
    online = store.get_online_features(
        [{"user_id": 1, "basket": 50.0}, {"user_id": 2, "basket": 100.0},
         {"user_id": 3, "basket": 10.0}], "checkout")
    assert list(online) == ["user_id", "total", "avg_order", "basket_share", "big", "total_k"]
    assert online["avg_order"][:2] == [100.0, 50.0]
    assert online["basket_share"][:2] == [0.5, 2.0]
    assert online["big"][:2] == [False, True]
    assert online["total_k"] == [0.3, 0.05, None]
    assert online["avg_order"][2] is None


def test_hidden_inputs_are_read_but_not_returned(store):
    store.materialize(NOW)
    online = store.get_online_features([{"user_id": 1, "basket": 30.0}],
                                       ["ratios:basket_share"])
    assert online == {"user_id": [1], "basket_share": [0.3]}
    table = store.get_historical_features(
        pa.table({"user_id": [1], "event_timestamp": pa.array([NOW], pa.timestamp("us", "UTC")),
                  "basket": [30.0]}), ["ratios:basket_share"], full_feature_names=True)
    assert isinstance(table, pa.Table)
    assert table.column_names == ["user_id", "event_timestamp", "basket", "ratios__basket_share"]
    assert table.column("ratios__basket_share").to_pylist() == [0.3]


def test_a_service_is_asked_for_by_name_or_object(store):
    store.materialize(NOW)
    by_name = store.get_online_features([{"user_id": 2, "basket": 1.0}], "checkout")
    by_object = store.get_online_features([{"user_id": 2, "basket": 1.0}],
                                          store.services["checkout"])
    assert by_name == by_object


def test_request_only_on_demand_view(workspace):
    @on_demand_feature_view(request=[Feature("amount")], features=[Feature("log_amount")])
    def log_amount(frame):
        return pd.DataFrame({"log_amount": np.log1p(frame["amount"])})

    store = FeatureStore([log_amount])
    got = store.get_online_features([{"amount": 0.0}], ["log_amount:log_amount"])
    assert got == {"log_amount": [0.0]}
    frame = store.get_historical_features(
        pd.DataFrame({"event_timestamp": [NOW], "amount": [np.e - 1]}),
        ["log_amount:log_amount"])
    assert frame["log_amount"].tolist() == pytest.approx([1.0])
    with pytest.raises(InvalidValueError, match="nothing to join"):
        store.get_historical_features("entities.parquet", ["log_amount:log_amount"])
    with pytest.raises(InvalidValueError, match="must be a pandas DataFrame or an Arrow table"):
        store.get_historical_features([{"amount": 1.0}], ["log_amount:log_amount"])


def test_missing_request_fields_are_named(store):
    store.materialize(NOW)
    with pytest.raises(InvalidValueError, match="lack 'basket', a request field of on-demand "
                                                "view 'ratios'"):
        store.get_online_features([{"user_id": 1}], ["ratios:avg_order"])
    with pytest.raises(InvalidValueError, match="entity_df lacks column 'basket'"):
        store.get_historical_features(
            pd.DataFrame({"user_id": [1], "event_timestamp": [NOW]}), ["ratios:avg_order"])


def test_a_failing_or_lying_function_is_reported_with_its_view(workspace):
    def boom(frame):
        raise ZeroDivisionError("no orders")

    def wrong_column(frame):
        return pd.DataFrame({"other": frame["x"]})

    def not_a_number(frame):
        return pd.DataFrame({"y": ["a"] * len(frame)})

    def short(columns):
        return {"y": []}

    cases = [(boom, "pandas", "failed: ZeroDivisionError: no orders"),
             (wrong_column, "pandas", "returned no column 'y'"),
             (not_a_number, "pandas", "declared float64 but the function returned values"),
             (short, "python", "has 0 values for 1 rows")]
    for function, mode, message in cases:
        odfv = OnDemandFeatureView("calc", (), [Feature("x")], [Feature("y")], function, mode)
        with pytest.raises(OnDemandFeatureError, match=message) as error:
            FeatureStore([odfv]).get_online_features([{"x": 1.0}], ["calc:y"])
        assert error.value.status_code == 422


def test_bad_definitions_are_refused():
    def f(frame):
        return frame

    with pytest.raises(InvalidValueError, match="input 'total' is not of the form"):
        OnDemandFeatureView("v", ("total",), (), [Feature("y")], f)
    with pytest.raises(InvalidValueError, match="distinct names"):
        OnDemandFeatureView("v", ("a:x",), [Feature("x")], [Feature("y")], f)
    with pytest.raises(InvalidValueError, match="needs inputs, request fields, or both"):
        OnDemandFeatureView("v", (), (), [Feature("y")], f)
    with pytest.raises(InvalidValueError, match="mode 'numpy'"):
        OnDemandFeatureView("v", (), [Feature("x")], [Feature("y")], f, "numpy")
    with pytest.raises(InvalidValueError, match="needs one or more features"):
        FeatureService("empty", [])
    with pytest.raises(InvalidValueError, match="neither a 'view:feature' reference nor a view"):
        FeatureService("odd", [42])


def test_definitions_that_do_not_fit_together_are_refused(workspace, tmp_path):
    spend = FeatureView("spend", user, [Feature("total")], str(tmp_path / "x.parquet"))
    dangling = OnDemandFeatureView("d", ("spend:nope",), (), [Feature("y")], lambda f: f)
    with pytest.raises(InvalidValueError, match="inputs of on-demand view 'd'.*no feature 'nope'"):
        FeatureStore([spend, dangling])
    with pytest.raises(InvalidValueError, match="feature service 's': unknown feature view 'x'"):
        FeatureStore([spend, FeatureService("s", ["x:y"])])
    clash = OnDemandFeatureView("spend", (), [Feature("a")], [Feature("b")], lambda f: f)
    with pytest.raises(InvalidValueError, match="share one namespace"):
        FeatureStore([spend, clash])
    with pytest.raises(InvalidValueError, match="declared with join keys"):
        FeatureStore([spend, Entity("user", "uid")])
    with pytest.raises(InvalidValueError, match="unknown feature service 'nope'"):
        FeatureStore([spend]).get_online_features([{"user_id": 1}], "nope")


def test_on_demand_features_stream_into_a_parquet_result(store, tmp_path):
    import pyarrow.parquet as pq

    entity_df = pd.DataFrame({"user_id": [1, 2, 3], "event_timestamp": [NOW] * 3,
                              "basket": [50.0, 100.0, 10.0]})
    entities = tmp_path / "entities.parquet"
    entity_df.to_parquet(entities)
    written = store.get_historical_features(entities, "checkout", to=tmp_path / "out.parquet")
    assert written == tmp_path / "out.parquet"
    from_file = pq.read_table(written).to_pandas()
    in_memory = store.get_historical_features(entity_df, "checkout")
    pd.testing.assert_frame_equal(from_file, in_memory, check_dtype=False)
    assert not list(tmp_path.glob("*.part"))

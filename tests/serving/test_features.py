"""An endpoint with a feature service: requests carry entity keys and request data, the server
reads the rest from the online store and predicts on the merge."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import numpy as np
import pandas as pd

import tidal
from tidal.features import Entity, Feature, FeatureService, FeatureStore, FeatureView
from tidal.serving.endpoints import deploy


def test_online_features_are_joined_to_the_request_before_predicting(workspace, serve):
    from sklearn.linear_model import LinearRegression

    now = datetime.now(UTC).replace(microsecond=0)
    tidal.datasets.register("spend", pd.DataFrame({
        "user_id": [1, 2, 3], "event_timestamp": [now - timedelta(hours=1)] * 3,
        "total": [100.0, 40.0, 7.5]}))
    user = Entity("user", "user_id")
    spend = FeatureView("spend", user, [Feature("total")], "spend", ttl=timedelta(days=7))
    checkout = FeatureService("checkout", [spend])
    tidal.features.apply([user, spend, checkout])
    FeatureStore([user, spend, checkout]).materialize(now)

    rng = np.random.default_rng(1)
    train = pd.DataFrame({"total": rng.uniform(0, 200, 100), "basket": rng.uniform(0, 50, 100)})
    model = LinearRegression().fit(train, train.total * 0.1 + train.basket)
    tidal.models.register("basket", model, input_example=train.head(5), run=False)
    deploy("checkout", {"models:/basket/1": 100}, feature_service="checkout")
    running = serve(workspace)

    answer = running.post("/predict/checkout", json={"records": [
        {"user_id": 1, "basket": 30.0}, {"user_id": 3, "basket": 2.0}]})
    assert answer.status_code == 200, answer.text
    expected = model.predict(pd.DataFrame({"total": [100.0, 7.5], "basket": [30.0, 2.0]}))
    np.testing.assert_allclose(answer.json()["predictions"], expected)

    unknown = running.post("/predict/checkout", json={"records": [{"user_id": 99,
                                                                   "basket": 1.0}]})
    assert unknown.status_code == 422 and "'total'" in unknown.json()["error"]
    no_key = running.post("/predict/checkout", json={"records": [{"basket": 1.0}]})
    assert no_key.status_code == 400 and "user_id" in no_key.json()["error"]

    running.app.prediction_log.flush()
    logged = tidal.serving.read_prediction_log("checkout")
    assert len(logged) == 1  # only the answered request
    assert '"total":[100.0,7.5]' in logged.inputs.iloc[0]  # what the model saw is logged

"""The loop tests' world: a champion trained before a drift, served on loopback, a policy over
it, and traffic with feedback sent over real HTTP."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pandas as pd
import pytest

import tidal
from tests.loop.flows import FEATURES, model, stream
from tests.serving.conftest import Running, serve, wait_until  # noqa: F401 (fixture)
from tidal.loop import LoopPolicy, apply_policy
from tidal.serving import deploy
from tidal.store.workspace import Workspace

ENDPOINT = "clicks"
MODEL = "clicks"


def policy_dict(**changes: Any) -> dict[str, Any]:
    """A policy small enough for tests: drift over the last 200 requests, retraining on the
    last 400, a two-step canary judged on 40 requests a step."""
    policy: dict[str, Any] = {
        "name": "clicks-loop", "endpoint": ENDPOINT, "model": MODEL,
        "training": {"pipeline": "tests.loop.flows:retrain", "label": "label",
                     "window": 400, "holdout": 0.25, "min_rows": 100},
        "triggers": [{"kind": "drift", "window": 200, "threshold": 0.5, "min_rows": 100}],
        "gate": {"metric": "accuracy", "min_delta": 0.05},
        "rollout": {"steps": [30, 100], "min_duration": "1ms", "max_duration": "10m",
                    "min_requests": 40, "max_error_rate": 0.05, "metric": "accuracy",
                    "tolerance": 0.05, "min_labelled": 30},
        "cooldown": "1h", "interval": "1s"}
    for key, value in changes.items():
        if isinstance(value, dict) and isinstance(policy.get(key), dict):
            policy[key] = {**policy[key], **value}
        else:
            policy[key] = value
    return policy


@dataclass
class World:
    workspace: Workspace
    server: Running
    policy: LoopPolicy

    def send(self, frame: pd.DataFrame, *, feedback: bool = True) -> list[dict[str, Any]]:
        """One request per row over HTTP, then the labels as feedback, then flush the log."""
        answers = []
        for row in frame.to_dict("records"):
            response = self.server.post(f"/predict/{ENDPOINT}", json={
                "records": [{k: row[k] for k in FEATURES}]})
            assert response.status_code in (200, 422), response.text
            answers.append({"status": response.status_code, "label": row["label"],
                            **(response.json() if response.status_code == 200 else {})})
        if feedback:
            ids = [a for a in answers if a["status"] == 200]
            self.server.post(f"/feedback/{ENDPOINT}", json={"feedback": [
                {"request_id": a["request_id"], "label": int(a["label"])} for a in ids]})
        self.server.app.prediction_log.flush()
        return answers

    def routes(self) -> dict[str, float]:
        return {r.uri: r.weight for r in tidal.serving.get_endpoint(
            ENDPOINT, workspace=self.workspace).config.routes}

    def wait_served(self, versions: set[int]) -> None:
        """Until the server's routing snapshot serves exactly ``versions``."""
        def served() -> bool:
            state = self.server.app.states.get(ENDPOINT)
            return state is not None and {c.model.version.version for c in state.live} \
                == versions
        wait_until(served, what=f"the server to serve versions {sorted(versions)}")


@pytest.fixture
def world(workspace: Workspace, serve: Callable[..., Running]) -> Callable[..., World]:  # noqa: F811
    """Champion v1 trained on pre-drift data (with its training set as a dataset version),
    served at 100%, and the policy applied with ``changes``."""
    def make(**changes: Any) -> World:
        train = stream(600, drifted=False, seed=1)
        dataset = tidal.datasets.register("clicks-initial", train, workspace=workspace)
        version = tidal.models.register(
            MODEL, model().fit(train[FEATURES], train["label"]), run=False,
            datasets=[dataset], input_example=train[FEATURES].head(5), workspace=workspace)
        tidal.models.set_alias(MODEL, "champion", version.version, workspace=workspace)
        deploy(ENDPOINT, {f"models:/{MODEL}@champion": 100}, workspace=workspace)
        policy = apply_policy(policy_dict(**changes), workspace=workspace)
        return World(workspace, serve(workspace), policy)

    return make

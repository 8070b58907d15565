"""Routes over real HTTP: canary weights, A/B stickiness, shadows that are logged and never
answer, and route changes picked up by a running server without a failed request."""

from __future__ import annotations

import json
import threading

import httpx
import numpy as np
import pandas as pd
import pytest

from tests.serving.conftest import records, wait_until
from tidal.serving.endpoints import deploy, rollback
from tidal.serving.feedback import join_feedback
from tidal.serving.prediction_log import read_prediction_log

SHADOW_GATE = threading.Event()


LOAD_SCRIPT = """
import http.client, json, sys, threading
from urllib.parse import urlsplit

url, path, count, concurrency = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
body = sys.stdin.read().encode()
target = urlsplit(url)
routes, statuses = [], []

def worker(share):
    conn = http.client.HTTPConnection(target.hostname, target.port, timeout=60)
    for _ in range(share):
        conn.request("POST", path, body, {"Content-Type": "application/json"})
        answer = conn.getresponse()
        data = answer.read()
        statuses.append(answer.status)
        if answer.status == 200:
            routes.append(json.loads(data)["route"])
    conn.close()

threads = [threading.Thread(target=worker, args=(count // concurrency,))
           for _ in range(concurrency)]
for thread in threads:
    thread.start()
for thread in threads:
    thread.join()
print(json.dumps({"routes": routes, "statuses": statuses}))
"""


def _load(url: str, path: str, body: dict, count: int, concurrency: int = 16) -> dict:
    """Send ``count`` requests from another process (so the load generator does not share the
    server's interpreter lock), ``concurrency`` at a time."""
    import subprocess
    import sys

    done = subprocess.run([sys.executable, "-c", LOAD_SCRIPT, url, path, str(count),
                           str(concurrency)], input=json.dumps(body), capture_output=True,
                          text=True, timeout=600, check=True)
    return json.loads(done.stdout)


def test_canary_weights_hold_over_ten_thousand_requests(fast, serve, workspace):
    deploy("ctr", {"models:/fast@champion": 90, "models:/fast@challenger": 10})
    running = serve(workspace, log_predictions=False)
    body = {"records": records(fast["frame"].head(1))}
    answers = _load(running.url, "/predict/ctr", body, 10_000)
    assert answers["statuses"] == [200] * 10_000
    challenger = answers["routes"].count("models:/fast@challenger")
    # Binomial(10,000, 0.1): standard deviation 30; five of them is a 1-in-3-million miss.
    assert abs(challenger - 1000) <= 150, challenger
    assert set(answers["routes"]) == {"models:/fast@champion", "models:/fast@challenger"}


def test_ab_routes_stick_to_the_key_and_split_keys_by_weight(fast, serve, workspace):
    deploy("ctr", {"models:/fast/1": 50, "models:/fast/2": 50}, mode="ab")
    running = serve(workspace, log_predictions=False)
    row = records(fast["frame"].head(1))
    first_seen = {}
    for user in range(400):
        for _ in range(3):
            answer = running.post("/predict/ctr", json={"records": row, "key": f"user-{user}"})
            assert answer.status_code == 200
            first_seen.setdefault(user, answer.json()["route"])
            assert answer.json()["route"] == first_seen[user], "a user saw two variants"
    share = sum(route == "models:/fast/2" for route in first_seen.values()) / len(first_seen)
    assert 0.4 < share < 0.6
    by_header = running.post("/predict/ctr", json={"records": row},
                             headers={"X-Tidal-Key": "user-7"})
    assert by_header.json()["route"] == first_seen[7]
    keyless = running.post("/predict/ctr", json={"records": row})
    assert keyless.status_code == 400 and "routes A/B by key" in keyless.json()["error"]


def test_shadow_answers_are_logged_and_never_returned(ctr, serve, workspace):
    deploy("ctr", {"models:/ctr/1": 100}, shadow=["models:/ctr/2"])
    running = serve(workspace)
    frame = ctr["frame"].head(60)
    ids = []
    for position in range(60):
        answer = running.post("/predict/ctr", json={"records": records(frame.iloc[[position]])})
        body = answer.json()
        assert body["route"] == "models:/ctr/1" and body["model_version"] == 1
        assert body["predictions"] == ctr["models"][1].predict(frame.iloc[[position]]).tolist()
        ids.append(body["request_id"])
    wait_until(lambda: running.app.metrics.shadow.labels("ctr", "models:/ctr/2", "ok")
               ._value.get() >= 60, what="the shadow copies")
    running.app.prediction_log.flush()
    logged = read_prediction_log("ctr")
    live, shadow = logged[~logged.shadow], logged[logged.shadow]
    assert sorted(live.request_id) == sorted(ids) == sorted(shadow.request_id)
    assert set(shadow.model_uri) == {"models:/ctr/2"} and set(live.model_uri) == {"models:/ctr/1"}
    shadow_answers = shadow.set_index("request_id").outputs.map(json.loads)
    expected = ctr["models"][2].predict(frame).tolist()
    assert [shadow_answers[i][0] for i in ids] == expected


class GatedShadow:
    """A shadow model that waits until the test lets it go, and fails on negative ages."""

    def predict(self, frame: pd.DataFrame) -> np.ndarray:
        SHADOW_GATE.wait(30)
        if (frame["age"] < 0).any():
            raise RuntimeError("the shadow model broke")
        return np.zeros(len(frame))


def test_a_slow_or_failing_shadow_never_delays_or_fails_the_answer(ctr, serve, workspace):
    import tidal

    frame = ctr["frame"]
    tidal.models.register("slow", GatedShadow(), flavor="pyfunc", input_example=frame.head(5),
                          signature=ctr["versions"][0].signature, run=False)
    deploy("ctr", {"models:/ctr/1": 100}, shadow=["models:/slow/1"])
    SHADOW_GATE.clear()
    running = serve(workspace, trust=True)
    try:
        for position in range(5):  # answered while every shadow copy is still blocked
            row = records(frame.iloc[[position]])
            assert running.post("/predict/ctr", json={"records": row}).status_code == 200
        negative = records(frame.head(1))
        negative[0]["age"] = -1
        assert running.post("/predict/ctr", json={"records": negative}).status_code == 200
        assert running.app.metrics.shadow.labels("ctr", "models:/slow/1", "ok")._value.get() \
            == 0
    finally:
        SHADOW_GATE.set()
    wait_until(lambda: running.app.metrics.shadow.labels("ctr", "models:/slow/1", "error")
               ._value.get() == 1, what="the failing shadow copy to be counted")


def test_a_route_change_is_picked_up_with_no_failed_request(fast, serve, workspace):
    deploy("ctr", {"models:/fast/1": 100})
    running = serve(workspace, reload_interval=0.1)
    body = {"records": records(fast["frame"].head(2))}
    seen: list[int] = []
    failures: list[str] = []
    stop = threading.Event()

    def load() -> None:
        with httpx.Client(base_url=running.url, timeout=30) as client:
            while not stop.is_set() and len(seen) < 20_000:
                answer = client.post("/predict/ctr", json=body)
                if answer.status_code != 200:
                    failures.append(answer.text)
                else:
                    seen.append(answer.json()["model_version"])

    threads = [threading.Thread(target=load) for _ in range(4)]
    for thread in threads:
        thread.start()
    try:
        wait_until(lambda: len(seen) > 100, what="traffic on version 1")
        deploy("ctr", {"models:/fast/2": 100})
        wait_until(lambda: seen[-1] == 2, what="the switch to version 2")
        mark = len(seen)
        wait_until(lambda: len(seen) > mark + 100, what="traffic after the switch")
        rollback("ctr")
        wait_until(lambda: seen[-1] == 1, what="the rollback to version 1")
        mark = len(seen)
        wait_until(lambda: len(seen) > mark + 100, what="traffic after the rollback")
    finally:
        stop.set()
        for thread in threads:
            thread.join(30)
    assert failures == []
    switches = sum(1 for a, b in zip(seen, seen[1:]) if a != b)
    assert switches >= 2 and seen[-1] == 1


def test_models_taken_off_their_routes_are_closed_when_the_server_stops(fast, serve,
                                                                        workspace):
    deploy("ctr", {"models:/fast/1": 100})
    running = serve(workspace, reload_interval=0.1)
    body = {"records": records(fast["frame"].head(2))}
    assert running.post("/predict/ctr", json=body).json()["model_version"] == 1
    first = running.app.states["ctr"].models()
    deploy("ctr", {"models:/fast/2": 100})
    wait_until(lambda: running.post("/predict/ctr", json=body).json()["model_version"] == 2,
               what="the switch to version 2")
    second = running.app.states["ctr"].models()
    # Version 1 is off every route but inside its grace period: requests routed before the
    # switch may still be using it.
    assert not any(model.closed for model in first)
    running.stop()
    assert all(model.closed for model in first + second)


def test_an_alias_move_is_followed_without_a_deploy(ctr, serve, workspace):
    import tidal

    deploy("ctr", {"models:/ctr@champion": 100})
    running = serve(workspace, log_predictions=False)
    body = {"records": records(ctr["frame"].head(1))}
    assert running.post("/predict/ctr", json=body).json()["model_version"] == 1
    tidal.models.set_alias("ctr", "champion", 2)
    wait_until(lambda: running.post("/predict/ctr", json=body).json()["model_version"] == 2,
               what="the alias move")


def test_feedback_joins_the_logged_answers_by_request_id(ctr, serve, workspace):
    deploy("ctr", {"models:/ctr/1": 100})
    running = serve(workspace)
    frame = ctr["frame"].head(10)
    ids = [running.post("/predict/ctr", json={"records": records(frame.iloc[[i]])})
           .json()["request_id"] for i in range(10)]
    sent = running.post("/feedback/ctr", json={"feedback": [
        {"request_id": rid, "label": i % 2} for i, rid in enumerate(ids[:6])]})
    assert sent.status_code == 200 and sent.json()["recorded"] == 6
    running.app.prediction_log.flush()
    joined = join_feedback("ctr").set_index("request_id")
    assert len(joined) == 10
    assert [joined.label[rid] for rid in ids[:6]] == [0, 1, 0, 1, 0, 1]
    assert joined.label[ids[6:]].isna().all()


@pytest.mark.parametrize("sample", [0.0, 0.5])
def test_inputs_are_logged_for_the_sampled_share_only(ctr, serve, workspace, sample):
    deploy("ctr", {"models:/ctr/1": 100}, log_sample=sample)
    running = serve(workspace)
    body = {"records": records(ctr["frame"].head(1))}
    for _ in range(200):
        assert running.post("/predict/ctr", json=body).status_code == 200
    running.app.prediction_log.flush()
    logged = read_prediction_log("ctr")
    assert len(logged) == 200 and logged.outputs.notna().all()
    with_inputs = logged.inputs.notna().sum()
    if sample == 0.0:
        assert with_inputs == 0
    else:
        assert 60 < with_inputs < 140

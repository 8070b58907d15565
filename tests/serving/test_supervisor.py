"""``tidal serve --workers 2`` keeps serving when its workers die: a model that segfaults is
quarantined while the healthy endpoints keep answering, a model whose load segfaults too, and
kills from outside are only restarts."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from typing import Any

import httpx
import pytest

import tidal
from tests.serving.conftest import records, wait_until
from tests.serving.processes import ServerProcess, start_server
from tidal.models.signature import infer_signature
from tidal.monitoring.alerts import list_alert_events
from tidal.serving.endpoints import deploy
from tidal.serving.quarantine import ALERT_RULE
from tidal.serving.supervisor import BACKOFF_CAP_S, BACKOFF_S, backoff


def _segfaults_on_predict() -> Any:
    class SegfaultOnPredict:  # local: cloudpickle stores it by value
        def predict(self, data: Any) -> Any:
            import ctypes

            return ctypes.string_at(0)  # a real segfault, in the thread running the model

    return SegfaultOnPredict()


def _segfaults_on_load() -> Any:
    class SegfaultOnLoad:
        def predict(self, data: Any) -> Any:
            return [0] * len(data)

        def __reduce__(self) -> Any:
            import ctypes

            return ctypes.string_at, (0,)  # unpickling it reads address 0

    return SegfaultOnLoad()


def _register(name: str, model: Any, frame: Any) -> None:
    # An explicit signature: inferring one would call predict here, in the test process.
    tidal.models.register(name, model, signature=infer_signature(frame.head(5)), run=False)


def _metric(text: str, prefix: str) -> float:
    """The value of the first sample whose line starts with ``prefix`` (0 when absent)."""
    for line in text.splitlines():
        if line.startswith(prefix):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


def _crashes(server: ServerProcess, endpoint: str, model: str) -> float:
    text = httpx.get(f"{server.url}/metrics", timeout=30).text
    return _metric(text, f'tidal_worker_crashes_total{{endpoint="{endpoint}",model="{model}"}}')


@pytest.mark.parametrize("backend", ["sqlite-local"], indirect=True)
def test_a_segfaulting_model_is_quarantined_and_1000_healthy_requests_all_succeed(
        fast, backend, workspace, tmp_path):
    frame, model = fast["frame"], fast["models"][1]
    _register("crash", _segfaults_on_predict(), frame)
    deploy("good", {"models:/fast/1": 100})
    deploy("bad", {"models:/crash/1": 100})
    server = start_server(backend, "--workers", "2", "--trust", stderr=tmp_path / "stderr.txt")
    bad_body = {"records": records(frame.head(2))}
    attacks: list[Any] = []  # status codes, or the transport error of a crashed worker
    healthy: list[tuple[int, Any]] = []
    stop = threading.Event()

    def attack() -> None:
        while not stop.is_set():
            try:  # a fresh connection each time, as separate attackers would
                answer = httpx.post(f"{server.url}/predict/bad", json=bad_body, timeout=30)
            except httpx.TransportError as error:
                attacks.append(type(error).__name__)
                continue
            attacks.append((answer.status_code, answer.json()))

    try:
        started = time.monotonic()
        attacker = threading.Thread(target=attack)
        attacker.start()
        quarantined = wait_until(lambda: [a for a in attacks if a[:1] == (503,)], timeout=120,
                                 what="the crashing endpoint to be quarantined")[0][1]
        seconds_to_quarantine = time.monotonic() - started
        failed_attacks = len([a for a in attacks if isinstance(a, str)])
        wait_until(lambda: len(server.workers()) == 2 and server.ready(), timeout=120,
                   what="both workers to be back")
        crashes_before = _crashes(server, "bad", "models:/crash/1")
        # The 60 s of attack go on while the healthy endpoint gets its 1000 requests, one
        # every 60 ms on a kept-alive connection; no request is retried.
        attacked_from = len(attacks)
        with httpx.Client(base_url=server.url, timeout=30) as client:
            begin = time.monotonic()
            for i in range(1000):
                time.sleep(max(0.0, begin + i * 0.06 - time.monotonic()))
                rows = frame.iloc[[i % 200, (i * 7) % 200]]
                answer = client.post("/predict/good", json={"records": records(rows)})
                healthy.append((answer.status_code, answer.json()["predictions"]
                                if answer.status_code == 200 else answer.text))
                assert answer.status_code == 200, answer.text
                assert answer.json()["predictions"] == model.predict(rows).tolist()
        stop.set()
        attacker.join(60)
        crashes_after = _crashes(server, "bad", "models:/crash/1")
        metrics = httpx.get(f"{server.url}/metrics", timeout=30).text
        assert server.process.poll() is None  # never gave up
    finally:
        stop.set()
        server.stop()
    during = attacks[attacked_from:]
    print(f"quarantined {seconds_to_quarantine:.2f} s into the attack, after {crashes_before:g} "
          f"worker crash(es) and {failed_attacks} attack(s) that got no answer; then "
          f"{len(healthy)} healthy requests and {len(during)} attacks in "
          f"{time.monotonic() - begin:.1f} s")
    assert len(healthy) == 1000 and all(status == 200 for status, _ in healthy)
    assert len(during) > 100
    assert all(a[:1] == (503,) for a in during), [a for a in during if a[:1] != (503,)][:3]
    assert all(a[1] == quarantined for a in during)
    message = quarantined["error"]
    for part in ("endpoint 'bad'", "models:/crash/1", "crashed a server worker", "SIGSEGV",
                 "since", "deploy a new revision", "restart the server"):
        assert part in message, message
    assert quarantined["field"] == "endpoint"
    assert crashes_before == crashes_after >= 1  # no crash once quarantined
    assert 'tidal_endpoint_quarantined{endpoint="bad"} 1.0' in metrics
    assert 'tidal_endpoint_quarantined{endpoint="good"}' not in metrics
    events = list_alert_events(rule=ALERT_RULE)
    assert [(e.subject, e.kind) for e in events] == [("bad", "firing")]


@pytest.mark.parametrize("backend", ["sqlite-local"], indirect=True)
def test_five_external_sigkills_3_5_s_apart_leave_the_server_answering(fast, backend,
                                                                       workspace, tmp_path):
    deploy("ctr", {"models:/fast/1": 100})
    server = start_server(backend, "ctr", "--workers", "2", stderr=tmp_path / "stderr.txt")
    body = {"records": records(fast["frame"].head(3))}
    killed = []
    try:
        for _ in range(5):  # no request in flight: these count for no endpoint
            victim = wait_until(server.workers, timeout=60, what="a worker to kill")[0]
            victim.kill()
            killed.append(victim.pid)
            time.sleep(3.5)
            assert server.process.poll() is None, server.log()
        wait_until(lambda: len(server.workers()) == 2 and server.ready(), timeout=120,
                   what="both workers to be back")
        answers = [httpx.post(f"{server.url}/predict/ctr", json=body, timeout=30)
                   for _ in range(20)]
        crashes = _crashes(server, "ctr", "models:/fast/1")
    finally:
        server.stop()
    assert len(set(killed)) == 5
    assert [a.status_code for a in answers] == [200] * 20, answers[0].text
    expected = fast["models"][1].predict(fast["frame"].head(3)).tolist()
    assert all(a.json()["predictions"] == expected for a in answers)
    assert crashes == 0
    assert server.log().count("died (SIGKILL), counted against no model") == 5


def test_a_model_whose_load_segfaults_is_quarantined_and_a_new_revision_lifts_it(
        fast, backend, workspace, tmp_path):
    frame = fast["frame"]
    _register("crashload", _segfaults_on_load(), frame)
    deploy("good", {"models:/fast/1": 100})
    deploy("bad", {"models:/crashload/1": 100})
    server = start_server(backend, "--workers", "2", "--trust", "--reload-interval", "0.5",
                          stderr=tmp_path / "stderr.txt")
    body = {"records": records(frame.head(2))}
    try:
        refused = httpx.post(f"{server.url}/predict/bad", json=body, timeout=30)
        good = httpx.post(f"{server.url}/predict/good", json=body, timeout=30)
        deploy("bad", {"models:/fast/2": 100})  # a new revision, with other routes

        def answered() -> httpx.Response | None:
            answer = httpx.post(f"{server.url}/predict/bad", json=body, timeout=30)
            return answer if answer.status_code == 200 else None

        lifted = wait_until(answered, timeout=60, what="the new revision to be served")
        metrics = httpx.get(f"{server.url}/metrics", timeout=30).text
    finally:
        server.stop()
    assert refused.status_code == 503
    message = refused.json()["error"]
    assert "models:/crashload/1" in message and "SIGSEGV during load" in message, message
    assert good.status_code == 200
    assert lifted.json()["model_uri"] == "models:/fast/2"
    assert 'tidal_endpoint_quarantined{endpoint="bad"} 0.0' in metrics
    assert _metric(metrics, 'tidal_worker_crashes_total{endpoint="bad",'
                            'model="models:/crashload/1"}') >= 1
    events = list_alert_events(rule=ALERT_RULE)
    assert [(e.subject, e.kind) for e in reversed(events)] == [("bad", "firing"),
                                                              ("bad", "resolved")]


def test_the_restart_backoff_doubles_is_capped_and_jittered():
    for deaths in (1, 2, 3, 10, 100):
        full = min(BACKOFF_CAP_S, BACKOFF_S * 2 ** (deaths - 1))
        waits = {backoff(deaths) for _ in range(50)}
        assert all(full / 2 <= w <= full for w in waits)
        assert len(waits) > 1  # jittered
    assert max(backoff(1000) for _ in range(50)) <= BACKOFF_CAP_S


@pytest.mark.parametrize("backend", ["sqlite-local"], indirect=True)
def test_workers_that_all_keep_failing_to_start_stop_the_server_with_a_clear_error(
        fast, backend, workspace):
    _register("untrusted", _segfaults_on_predict(), fast["frame"])
    deploy("bad", {"models:/untrusted/1": 100})
    # No --trust: every worker refuses to load the pickle and exits; no endpoint can serve.
    done = subprocess.run(
        [sys.executable, "-m", "tidal.cli.main", "serve", "bad", "--workers", "2", "--port",
         "0"], env={**os.environ, **backend.env()}, capture_output=True, text=True,
        timeout=300, check=False)
    assert done.returncode == 2, done.stderr
    assert "server workers keep exiting at start" in done.stderr
    assert "trust" in done.stderr  # the workers' own reason is shown above it

"""Alert rules: one alert per incident, repeats after the cooldown, a resolve, state that
outlives the process, webhooks received over real HTTP, and URLs that must never be called."""

from __future__ import annotations

import json
import logging
import socket
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import numpy as np
import pandas as pd
import pytest

import tidal
from tidal.errors import InvalidValueError, MissingDependencyError
from tidal.monitoring import drift
from tidal.monitoring.alerts import (
    Alert,
    AlertRule,
    Figure,
    WebhookNotAllowedError,
    drift_figures,
    evaluate,
    list_alert_events,
    list_alert_states,
    performance_figures,
    webhook,
)
from tidal.monitoring.drift import ColumnDrift, DriftReport
from tidal.store.workspace import close_all

T0 = datetime(2026, 3, 2, 10, tzinfo=UTC)


@dataclass
class Receiver:
    """A webhook receiver on 127.0.0.1: what it got, and the prefix alerts may go under."""

    base: str
    requests: list[tuple[str, dict[str, str], Any]] = field(default_factory=list)

    @property
    def allow(self) -> list[str]:
        return [f"{self.base}/hooks/"]

    def bodies(self) -> list[Any]:
        return [body for _, _, body in self.requests]


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    """/hooks/ok answers 200, /hooks/fail 500, /hooks/slow after a second, /hooks/moved
    redirects to /hooks/ok."""
    got: list[tuple[str, dict[str, str], Any]] = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802 - http.server's name
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            got.append((self.path, dict(self.headers), body))
            if self.path == "/hooks/slow":
                time.sleep(1.0)
            status = {"/hooks/fail": 500, "/hooks/moved": 302}.get(self.path, 200)
            self.send_response(status)
            if status == 302:
                self.send_header("Location", "/hooks/ok")
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    result = Receiver(f"http://127.0.0.1:{server.server_port}", got)
    yield result
    server.shutdown()
    server.server_close()


def error_rate(value: float, subject: str = "web") -> list[Figure]:
    return [Figure("error_rate", subject, value)]


def at(minutes: float) -> datetime:
    return T0 + timedelta(minutes=minutes)


def test_one_alert_per_incident_a_repeat_after_the_cooldown_and_a_resolve(workspace, receiver):
    rule = AlertRule("errors", "error_rate", ">", 0.05, cooldown="10m",
                     actions=[webhook(f"{receiver.base}/hooks/ok", allow=receiver.allow,
                                      headers={"Authorization": "Bearer s3cret"})])
    kinds = []
    for minute, value in [(0, 0.01), (1, 0.10), (2, 0.20), (10, 0.30), (11, 0.25), (12, 0.5),
                          (22, 0.01), (23, 0.02)]:
        kinds.append([e.kind for e in evaluate([rule], error_rate(value), now=at(minute))])
    assert kinds == [[], ["firing"], [], [], ["repeat"], [], ["resolved"], []]
    assert [body["kind"] for body in receiver.bodies()] == ["firing", "repeat", "resolved"]
    first = receiver.bodies()[0]
    assert first == {"rule": "errors", "subject": "web", "figure": "error_rate", "value": 0.1,
                     "op": ">", "threshold": 0.05, "state": "firing", "kind": "firing",
                     "message": "error_rate of web is 0.1 > 0.05",
                     "at": "2026-03-02T10:01:00+00:00"}
    assert receiver.bodies()[2]["state"] == "resolved"
    assert receiver.bodies()[2]["message"] == "error_rate of web is 0.01, no longer > 0.05"
    assert receiver.requests[0][1]["Authorization"] == "Bearer s3cret"
    assert receiver.requests[0][1]["Content-Type"] == "application/json"

    events = list_alert_events(rule="errors")
    assert [(e.kind, e.value, e.at) for e in events] == [
        ("resolved", 0.01, at(22)), ("repeat", 0.25, at(11)), ("firing", 0.1, at(1))]
    assert events[0].actions == [{"action": "webhook", "ok": True, "status": 200,
                                  "target": f"{receiver.base}/hooks/"}]
    (state,) = list_alert_states(rule="errors")
    assert (state.firing, state.fired_at, state.resolved_at, state.notifications,
            state.last_value) == (False, at(1), at(22), 2, 0.02)


def test_the_condition_must_hold_for_the_whole_duration(workspace):
    rule = AlertRule("slow", "latency_p99_ms", ">=", 250, for_=timedelta(minutes=5))
    fired = []
    for minute, value in [(0, 300), (3, 280), (4, 100), (5, 260), (9, 400), (10, 250)]:
        fired.append([e.kind for e in evaluate([rule], [Figure("latency_p99_ms", "web", value)],
                                               now=at(minute))])
    # Held from 0 to 3, broken at 4; held again from 5, for 5 minutes at 10.
    assert fired == [[], [], [], [], [], ["firing"]]
    (event,) = list_alert_events()
    assert event.message == "latency_p99_ms of web is 250 >= 250 for 0:05:00"
    (state,) = list_alert_states(firing=True)
    assert state.fired_at == at(10) and state.pending_since is None


def test_the_state_survives_a_restart(workspace, backend):
    rule = AlertRule("drifting", "drift_share", ">", 0.3, for_="2m", cooldown=None)
    assert evaluate([rule], [Figure("drift_share", "web", 0.5)], now=at(0)) == []
    close_all()  # the process "restarts": nothing is kept in memory
    tidal.workspace(backend.db_url, backend.artifacts)
    assert [e.kind for e in evaluate([rule], [Figure("drift_share", "web", 0.6)],
                                     now=at(2))] == ["firing"]
    close_all()
    tidal.workspace(backend.db_url, backend.artifacts)
    assert evaluate([rule], [Figure("drift_share", "web", 0.6)], now=at(600)) == []
    assert [e.kind for e in evaluate([rule], [Figure("drift_share", "web", 0.1)],
                                     now=at(601))] == ["resolved"]
    assert [e.kind for e in list_alert_events()] == ["resolved", "firing"]


def test_each_subject_has_its_own_state_and_a_rule_can_watch_some(workspace):
    everywhere = AlertRule("errors", "error_rate", ">", 0.1)
    canary = AlertRule("canary-errors", "error_rate", ">", 0.01, subject="web route=*/2 *")
    figures = [Figure("error_rate", "web route=models:/ctr/1 version=1", 0.05),
               Figure("error_rate", "web route=models:/ctr/2 version=2", 0.2),
               Figure("latency_p99_ms", "web route=models:/ctr/2 version=2", 0.2)]
    events = evaluate([everywhere, canary], figures, now=at(0))
    assert sorted((e.rule, e.subject) for e in events) == [
        ("canary-errors", "web route=models:/ctr/2 version=2"),
        ("errors", "web route=models:/ctr/2 version=2")]
    figures[0] = Figure("error_rate", "web route=models:/ctr/1 version=1", 0.5)
    assert [(e.rule, e.subject) for e in evaluate([everywhere, canary], figures,
                                                  now=at(1))] == [
        ("errors", "web route=models:/ctr/1 version=1")]


def test_no_data_is_not_a_recovery(workspace):
    rule = AlertRule("accuracy", "accuracy", "<", 0.8)
    assert len(evaluate([rule], [Figure("accuracy", "web", 0.7)], now=at(0))) == 1
    assert evaluate([rule], [Figure("accuracy", "web", float("nan"))], now=at(1)) == []
    assert evaluate([rule], [], now=at(2)) == []
    assert list_alert_states()[0].firing
    assert [e.kind for e in evaluate([rule], [Figure("accuracy", "web", 0.9)],
                                     now=at(3))] == ["resolved"]


def test_failing_actions_are_recorded_and_never_raise(workspace, receiver):
    with socket.socket() as probe:  # a port nothing listens on
        probe.bind(("127.0.0.1", 0))
        closed = probe.getsockname()[1]
    called: list[Alert] = []

    def broken(alert: Alert) -> None:
        raise RuntimeError("the pager is down")

    rule = AlertRule("errors", "error_rate", ">", 0.05, actions=[
        webhook(f"http://127.0.0.1:{closed}/hooks/x", allow=[f"http://127.0.0.1:{closed}/"]),
        webhook(f"{receiver.base}/hooks/fail", allow=receiver.allow),
        webhook(f"{receiver.base}/hooks/slow", allow=receiver.allow, timeout=0.2),
        webhook(f"{receiver.base}/hooks/moved", allow=receiver.allow),
        broken, called.append, "log"])
    started = time.monotonic()
    (event,) = evaluate([rule], error_rate(0.5), now=at(0))
    assert time.monotonic() - started < 1.0  # webhooks ran side by side, each cut short
    refused, failed, slow, moved, raised, fine, logged = event.actions
    assert refused["ok"] is False and refused["error"].startswith("ConnectError")
    assert (failed["ok"], failed["status"], failed["error"]) == (False, 500, "HTTP 500")
    assert slow["ok"] is False and "Timeout" in slow["error"]
    assert (moved["ok"], moved["status"]) == (False, 302)  # a redirect is not followed
    assert raised == {"action": "broken", "ok": False,
                      "error": "RuntimeError: the pager is down"}
    assert fine == {"action": "append", "ok": True}
    assert logged == {"action": "log", "ok": True}
    assert [a.kind for a in called] == ["firing"] and called[0].value == 0.5
    assert [path for path, _, _ in receiver.requests].count("/hooks/ok") == 0
    assert list_alert_events()[0].actions == event.actions  # what the store keeps


def test_the_log_action_and_a_silent_resolve(workspace, caplog):
    rule = AlertRule("errors", "error_rate", ">", 0.05, notify_resolved=False)
    with caplog.at_level(logging.INFO, logger="tidal.alerts"):
        evaluate([rule], error_rate(0.5), now=at(0))
        (resolved,) = evaluate([rule], error_rate(0.0), now=at(1))
    assert [r.getMessage() for r in caplog.records] == [
        "alert errors firing: error_rate of web is 0.5 > 0.05"]
    assert caplog.records[0].levelno == logging.WARNING
    assert resolved.kind == "resolved" and resolved.actions == []


def test_concurrent_evaluators_notify_once(workspace):
    rule = AlertRule("errors", "error_rate", ">", 0.05)
    results: list[int] = []
    barrier = threading.Barrier(4)

    def evaluator() -> None:
        barrier.wait()
        results.append(len(evaluate([rule], error_rate(0.5), now=at(0), workspace=workspace)))

    threads = [threading.Thread(target=evaluator) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(results) == [0, 0, 0, 1]
    assert len(list_alert_events()) == 1


def test_figures_of_a_drift_report_and_a_performance_frame(workspace):
    rng = np.random.default_rng(0)
    reference = pd.DataFrame({"age": rng.normal(40, 5, 500), "city": ["a", "b"] * 250})
    current = pd.DataFrame({"age": rng.normal(60, 5, 500), "city": ["a", "b"] * 250})
    report = drift(reference, current)
    figures = {(f.name, f.subject): f.value for f in drift_figures("web", report)}
    assert figures[("drift_share", "web")] == 0.5
    assert figures[("drift_detected", "web")] == 1.0
    assert figures[("column_drifted", "web column=age")] == 1.0
    assert figures[("column_drifted", "web column=city")] == 0.0
    assert figures[("drift_psi", "web column=age")] == report.column("age").psi
    assert figures[("drift_statistic", "web column=city test=chi2")] == \
        report.column("city").statistic
    assert not any(name.startswith("prediction_") for name, _ in figures)
    answers = ColumnDrift("prediction", "numeric", "ks", 0.01, 0.05, True, 0.2, 500, 500)
    figures = {(f.name, f.subject): f.value for f in drift_figures(
        "web", DriftReport(report.columns, 0.5, answers))}
    assert (figures[("prediction_drifted", "web")], figures[("prediction_psi", "web")],
            figures[("prediction_statistic", "web test=ks")]) == (1.0, 0.2, 0.01)

    frame = pd.DataFrame({"window": [0, 1, 1], "start": [T0] * 3, "end": [T0] * 3,
                          "route": ["a", "a", "b"], "model_version": [1, 1, 2],
                          "requests": [10, 20, 5], "error_rate": [0.5, 0.0, 0.2],
                          "accuracy": [0.1, 0.9, float("nan")]})
    figures = {(f.name, f.subject): f.value for f in performance_figures("web", frame)}
    assert set(figures) == {(name, subject) for name in ("requests", "error_rate", "accuracy")
                            for subject in ("web route=a version=1", "web route=b version=2")}
    assert figures[("error_rate", "web route=a version=1")] == 0.0  # the newest window only
    events = evaluate([AlertRule("acc", "accuracy", "<", 0.95),
                       AlertRule("psi", "drift_psi", ">", 0.25)],
                      [*performance_figures("web", frame), *drift_figures("web", report)],
                      now=at(0))
    assert sorted((e.rule, e.subject) for e in events) == [
        ("acc", "web route=a version=1"), ("psi", "web column=age")]


def test_events_are_listed_newest_first_and_filtered(workspace):
    rule = AlertRule("errors", "error_rate", ">", 0.05)
    for minute, value in enumerate([0.5, 0.0, 0.5, 0.0]):
        evaluate([rule], error_rate(value, "web") + error_rate(value, "api"), now=at(minute))
    assert len(list_alert_events()) == 8
    assert [e.kind for e in list_alert_events(subject="api")] == [
        "resolved", "firing", "resolved", "firing"]
    assert [e.at for e in list_alert_events(subject="web", kind="firing")] == [at(2), at(0)]
    assert [e.at for e in list_alert_events(subject="web", since=at(2))] == [at(3), at(2)]
    assert len(list_alert_events(limit=3)) == 3
    assert list_alert_events(rule="other") == []
    with pytest.raises(InvalidValueError, match="kind must be one of"):
        list_alert_events(kind="fired")
    with pytest.raises(InvalidValueError, match="limit"):
        list_alert_events(limit=0)


@pytest.mark.parametrize("url", [
    "http://127.0.0.1:{port}/other/x",  # outside the path prefix
    "http://127.0.0.1:{port}/hooksevil",  # a prefix of the text, not of the path
    "http://127.0.0.1:{port}/hooks/../admin",
    "http://127.0.0.1:{port}/hooks/%2e%2e/admin",
    "http://127.0.0.1:{port}/hooks/..%2fadmin",
    "http://127.0.0.1:{port}/hooks/x;/../admin",
    "http://127.0.0.1:{port}/hooks\\..\\admin",
    "http://127.0.0.1:{port}@169.254.169.254/hooks/",
    "http://user:pw@127.0.0.1:{port}/hooks/x",
    "http://127.0.0.1:{port}/hooks/x#@evil",
    "http://127.0.0.1:1/hooks/x",  # another port
    "http://127.0.0.1/hooks/x",  # the default port
    "https://127.0.0.1:{port}/hooks/x",  # another scheme
    "http://localhost:{port}/hooks/x",  # the same machine, but not the host allowed
    "http://2130706433:{port}/hooks/x",
    "http://127.0.0.1:{port}/hooks/ x",
    "http://127.0.0.1:{port}/hooks/\u00e9",
    "file:///etc/passwd",
    "gopher://127.0.0.1:{port}/hooks/",
    "http://127.0.0.1:99999/hooks/x",
    "/hooks/x",
    "",
])
def test_webhook_urls_outside_the_allow_list_are_refused_at_rule_creation(url):
    allow = ["http://127.0.0.1:8555/hooks"]
    with pytest.raises(WebhookNotAllowedError) as caught:
        AlertRule("errors", "error_rate", ">", 0.05,
                  actions=[webhook(url.format(port=8555), allow=allow)])
    assert caught.value.field == "url"


def test_urls_under_the_allow_list_are_accepted():
    allow = ["http://127.0.0.1:8555/hooks", "https://hooks.example.com/services/"]
    for url in ("http://127.0.0.1:8555/hooks", "http://127.0.0.1:8555/hooks/a/b?x=1",
                "https://HOOKS.example.com:443/services/T000/B000/XXXX"):
        assert webhook(url, allow=allow).url == url


@pytest.mark.parametrize("allow, match", [
    ([], "needs an allow-list"),
    ("http://127.0.0.1:8555/", "needs an allow-list"),
    (["http://127.0.0.1:8555/?token=1"], "without a query"),
    (["ftp://127.0.0.1/"], "only http and https"),
    (["http://u@127.0.0.1:8555/"], "credentials"),
])
def test_a_bad_allow_list_is_refused(allow, match):
    with pytest.raises(WebhookNotAllowedError, match=match):
        webhook("http://127.0.0.1:8555/hooks/x", allow=allow)


@pytest.mark.parametrize("kwargs, field", [
    ({"name": "bad name"}, "name"),
    ({"figure": ""}, "figure"),
    ({"op": "=>"}, "op"),
    ({"threshold": float("nan")}, "threshold"),
    ({"threshold": True}, "threshold"),
    ({"threshold": "0.5"}, "threshold"),
    ({"for_": "-5m"}, "for_"),
    ({"for_": "soon"}, "for_"),
    ({"cooldown": 0}, "cooldown"),
    ({"actions": "log"}, "actions"),
    ({"actions": ["email"]}, "actions"),
    ({"actions": [42]}, "actions"),
    ({"subject": 3}, "subject"),
])
def test_bad_rules_are_refused(kwargs, field):
    arguments = {"name": "errors", "figure": "error_rate", "op": ">", "threshold": 0.05,
                 **kwargs}
    with pytest.raises(InvalidValueError) as caught:
        AlertRule(**arguments)
    assert caught.value.field == field


def test_bad_evaluations_are_refused(tmp_path):
    tidal.workspace(tmp_path / "ws")
    rule = AlertRule("errors", "error_rate", ">", 0.05)
    with pytest.raises(InvalidValueError, match="share a name"):
        evaluate([rule, AlertRule("errors", "accuracy", "<", 0.9)], error_rate(0.1))
    with pytest.raises(InvalidValueError, match="given twice"):
        evaluate([rule], error_rate(0.1) + error_rate(0.2))
    with pytest.raises(InvalidValueError, match="must be Figure"):
        evaluate([rule], [("error_rate", "web", 0.1)])
    with pytest.raises(InvalidValueError, match="must be AlertRule"):
        evaluate(["errors"], error_rate(0.1))
    with pytest.raises(InvalidValueError, match="now must be a datetime"):
        evaluate([rule], error_rate(0.1), now="10:00")
    with pytest.raises(InvalidValueError, match="must be a number"):
        Figure("error_rate", "web", "high")
    with pytest.raises(InvalidValueError, match="at most 250"):
        Figure("error_rate", "w" * 251, 0.1)


def test_without_httpx_a_webhook_names_the_missing_package(monkeypatch):
    monkeypatch.setitem(sys.modules, "httpx", None)
    with pytest.raises(MissingDependencyError, match="'httpx'"):
        webhook("http://127.0.0.1:8555/hooks/x", allow=["http://127.0.0.1:8555/hooks/"])

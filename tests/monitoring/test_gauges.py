"""Prometheus gauges: scraped over real HTTP on loopback, equal to the figures they show, and
no stale series once a column, route or metric is gone."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from datetime import UTC, datetime

import httpx
import numpy as np
import pandas as pd
import pytest
from prometheus_client import CollectorRegistry
from prometheus_client.parser import text_string_to_metric_families

from tidal.errors import InvalidValueError, MissingDependencyError
from tidal.monitoring import drift
from tidal.monitoring.gauges import MonitoringGauges

T0 = datetime(2026, 3, 2, 10, tzinfo=UTC)


@pytest.fixture
def gauges() -> Iterator[MonitoringGauges]:
    made = MonitoringGauges()
    yield made
    made.close()


def scrape(port: int) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample of ``/metrics`` as {(name, sorted labels): value}."""
    response = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=5)
    assert response.status_code == 200
    return {(sample.name, tuple(sorted(sample.labels.items()))): sample.value
            for family in text_string_to_metric_families(response.text)
            for sample in family.samples}


def samples(scraped: dict, name: str) -> dict[tuple[tuple[str, str], ...], float]:
    return {labels: value for (n, labels), value in scraped.items() if n == name}


def report(shift: float = 0.0, columns: tuple[str, ...] = ("age", "city")):
    rng = np.random.default_rng(1)
    data = {"age": rng.normal(40, 5, 400), "city": ["a", "b", "c", "d"] * 100}
    reference = pd.DataFrame(data)[list(columns)]
    current = pd.DataFrame({"age": rng.normal(40 + shift, 5, 400),
                            "city": ["a", "b", "c", "d"] * 100})[list(columns)]
    return drift(reference, current)


def frame(routes: list[tuple[str, int]], accuracy: list[float]) -> pd.DataFrame:
    rows = len(routes)
    return pd.DataFrame({
        "window": [3] * rows, "start": [T0] * rows, "end": [T0] * rows,
        "route": [r for r, _ in routes], "model_version": [v for _, v in routes],
        "requests": [100 + i for i in range(rows)], "rows": [120] * rows,
        "errors": [2] * rows, "error_rate": [0.02 * (i + 1) for i in range(rows)],
        "latency_p50_ms": [4.0] * rows, "latency_p95_ms": [9.5] * rows,
        "latency_p99_ms": [20.25] * rows, "labelled": [50] * rows, "accuracy": accuracy})


def test_drift_gauges_scraped_over_http_equal_the_report(gauges):
    shown = report(shift=6.0)
    gauges.set_drift("web", shown)
    port = gauges.serve()
    scraped = scrape(port)
    assert samples(scraped, "tidal_drift_share") == {(("endpoint", "web"),): 0.5}
    assert samples(scraped, "tidal_drift_detected") == {(("endpoint", "web"),): 1.0}
    for column in shown.columns:
        where = (("column", column.column), ("endpoint", "web"))
        tested = (("column", column.column), ("endpoint", "web"), ("test", column.test))
        assert samples(scraped, "tidal_drift_statistic")[tested] == column.statistic
        assert samples(scraped, "tidal_drift_threshold")[tested] == column.threshold
        assert samples(scraped, "tidal_drift_psi")[where] == column.psi
        assert samples(scraped, "tidal_column_drifted")[where] == float(column.drifted)
    assert shown.column("age").drifted and not shown.column("city").drifted


def test_performance_gauges_show_the_newest_window_per_route_and_version(gauges):
    older = frame([("models:/ctr@champion", 1)], [0.5]).assign(window=2, error_rate=0.9)
    gauges.set_performance("web", pd.concat([older, frame(
        [("models:/ctr@champion", 1), ("models:/ctr/2", 2)], [0.91, 0.87])]))
    scraped = scrape(gauges.serve())
    champion = (("endpoint", "web"), ("route", "models:/ctr@champion"), ("version", "1"))
    canary = (("endpoint", "web"), ("route", "models:/ctr/2"), ("version", "2"))
    assert samples(scraped, "tidal_error_rate") == {champion: 0.02, canary: 0.04}
    assert samples(scraped, "tidal_window_requests") == {champion: 100, canary: 101}
    assert samples(scraped, "tidal_window_labelled_rows")[canary] == 50
    latency = samples(scraped, "tidal_latency_ms")
    assert {dict(labels)["quantile"]: value for labels, value in latency.items()
            if dict(labels)["route"] == "models:/ctr@champion"} == {
        "0.5": 4.0, "0.95": 9.5, "0.99": 20.25}
    metric = samples(scraped, "tidal_model_metric")
    assert metric == {(("endpoint", "web"), ("metric", "accuracy"), ("route",
                       "models:/ctr/2"), ("version", "2")): 0.87,
                      (("endpoint", "web"), ("metric", "accuracy"), ("route",
                       "models:/ctr@champion"), ("version", "1")): 0.91}


def test_an_update_removes_series_that_are_gone(gauges):
    port = gauges.serve()
    gauges.set_drift("web", report())
    gauges.set_drift("api", report())
    gauges.set_performance("web", frame([("a", 1), ("b", 2)], [0.9, 0.8]))
    gauges.set_drift("web", report(columns=("age",)))  # city is no longer compared
    gauges.set_performance("web", frame([("b", 2)], [float("nan")]))  # a is gone, b has no labels
    scraped = scrape(port)
    columns = {dict(labels)["endpoint"] + "/" + dict(labels)["column"]
               for labels in samples(scraped, "tidal_drift_psi")}
    assert columns == {"web/age", "api/age", "api/city"}
    assert list(samples(scraped, "tidal_error_rate")) == [
        (("endpoint", "web"), ("route", "b"), ("version", "2"))]
    assert samples(scraped, "tidal_model_metric") == {}  # NaN: no series, not a stale one
    gauges.clear("api")
    assert {dict(labels)["endpoint"]
            for labels in samples(scrape(port), "tidal_drift_share")} == {"web"}


def test_gauges_listen_on_loopback_and_in_a_given_registry():
    registry = CollectorRegistry()
    gauges = MonitoringGauges(registry)
    try:
        port = gauges.serve(0)
        assert gauges._server.server_address[:2] == ("127.0.0.1", port)
        gauges.set_drift("web", report())
        assert b"tidal_drift_share{endpoint=\"web\"}" in gauges.exposition()
        assert registry.get_sample_value("tidal_drift_share", {"endpoint": "web"}) == 0.0
        with pytest.raises(InvalidValueError, match="already served"):
            gauges.serve(0)
        with pytest.raises(InvalidValueError, match="already holds"):
            MonitoringGauges(registry)
        other = MonitoringGauges()
        with pytest.raises(InvalidValueError, match=f"cannot listen on 127.0.0.1:{port}"):
            other.serve(port)
    finally:
        gauges.close()
        gauges.close()  # idempotent
    with pytest.raises(httpx.ConnectError):
        httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=2)


@pytest.mark.parametrize("port", [-1, 65536, True, "9100"])
def test_a_bad_port_is_refused(gauges, port):
    with pytest.raises(InvalidValueError, match="port must be"):
        gauges.serve(port)


def test_a_frame_that_is_no_performance_frame_is_refused(gauges):
    with pytest.raises(InvalidValueError, match="lacks column"):
        gauges.set_performance("web", pd.DataFrame({"accuracy": [0.9]}))


def test_without_prometheus_client_the_error_names_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "prometheus_client", None)
    with pytest.raises(MissingDependencyError, match=r"tidal-mlops\[serve\]"):
        MonitoringGauges()


def test_the_drift_of_predictions_has_its_own_gauges(gauges):
    from tidal.monitoring.drift import ColumnDrift, DriftReport

    columns = report().columns
    answers = ColumnDrift("prediction", "categorical", "chi2", 0.002, 0.05, True, 0.31, 300,
                          280)
    gauges.set_drift("web", DriftReport(columns, 0.5, answers))
    port = gauges.serve()
    scraped = scrape(port)
    assert samples(scraped, "tidal_prediction_drifted") == {(("endpoint", "web"),): 1.0}
    assert samples(scraped, "tidal_prediction_psi") == {(("endpoint", "web"),): 0.31}
    assert samples(scraped, "tidal_prediction_drift_statistic") == {
        (("endpoint", "web"), ("test", "chi2")): 0.002}
    gauges.set_drift("web", DriftReport(columns, 0.5))  # a report without the answers
    assert samples(scrape(port), "tidal_prediction_psi") == {}

"""Drift and performance figures as Prometheus gauges, for dashboards and Prometheus alerting.

Each ``set_*`` call replaces what an endpoint showed before: series of a column no longer
compared, a route no longer served or a metric that became NaN are removed rather than left
at their last value, because a stale series reads as a live one. A NaN figure has no series
(Prometheus' way of saying "no data"). ``serve`` exposes the registry over HTTP on 127.0.0.1
unless told otherwise, like every Tidal server.
"""

from __future__ import annotations

import math
import threading
from typing import TYPE_CHECKING, Any

from tidal.errors import InvalidValueError, missing_dependency
from tidal.models.gates import METRICS
from tidal.monitoring.performance import latest_window

if TYPE_CHECKING:
    import pandas as pd
    from prometheus_client import CollectorRegistry

    from tidal.monitoring.drift import DriftReport

#: Latency columns of a performance frame and the ``quantile`` label each is exported under.
LATENCY_COLUMNS = {"latency_p50_ms": "0.5", "latency_p95_ms": "0.95", "latency_p99_ms": "0.99"}

# name, help, labels after "endpoint"
_GAUGES = {
    "drift_share": ("tidal_drift_share", "Share of compared columns that drifted", ()),
    "drift_detected": ("tidal_drift_detected", "1 when the share of drifted columns reached "
                       "the report's drift_share, else 0", ()),
    "statistic": ("tidal_drift_statistic", "A column's drift test statistic: a p-value for "
                  "ks and chi2, a distance for wasserstein and jensenshannon",
                  ("column", "test")),
    "threshold": ("tidal_drift_threshold", "The threshold a column's statistic is held to",
                  ("column", "test")),
    "psi": ("tidal_drift_psi", "A column's population stability index", ("column",)),
    "drifted": ("tidal_column_drifted", "1 when the column drifted, else 0", ("column",)),
    "prediction_drifted": ("tidal_prediction_drifted", "1 when the model's answers drifted, "
                           "else 0 (reports comparing two log windows)", ()),
    "prediction_statistic": ("tidal_prediction_drift_statistic", "The drift test statistic of "
                             "the model's answers", ("test",)),
    "prediction_psi": ("tidal_prediction_psi", "The population stability index of the "
                       "model's answers", ()),
    "metric": ("tidal_model_metric", "A model metric on the labelled rows of the newest "
               "window", ("route", "version", "metric")),
    "error_rate": ("tidal_error_rate", "Share of rows the model failed on in the newest window",
                   ("route", "version")),
    "latency": ("tidal_latency_ms", "Request latency percentile in the newest window, in "
                "milliseconds", ("route", "version", "quantile")),
    "requests": ("tidal_window_requests", "Requests in the newest window",
                 ("route", "version")),
    "labelled": ("tidal_window_labelled_rows", "Rows with a label in the newest window",
                 ("route", "version")),
}
_DRIFT = ("drift_share", "drift_detected", "statistic", "threshold", "psi", "drifted",
          "prediction_drifted", "prediction_statistic", "prediction_psi")
_PERFORMANCE = ("metric", "error_rate", "latency", "requests", "labelled")


class MonitoringGauges:
    """Tidal's monitoring gauges in ``registry`` (default: a new one, not the global
    registry, so two sets never collide)."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        try:
            from prometheus_client import CollectorRegistry, Gauge
        except ImportError as error:
            raise missing_dependency("prometheus-client", "serve",
                                     "Prometheus gauges") from error
        self.registry = CollectorRegistry() if registry is None else registry
        self._gauges: dict[str, Any] = {}
        try:
            for key, (name, documentation, labels) in _GAUGES.items():
                self._gauges[key] = Gauge(name, documentation, ["endpoint", *labels],
                                          registry=self.registry)
        except ValueError as error:  # prometheus_client: "Duplicated timeseries"
            raise InvalidValueError(f"this registry already holds Tidal's monitoring gauges "
                                    f"({error}); share one MonitoringGauges instead",
                                    field="registry") from None
        # The label values each gauge shows per endpoint, to remove those an update drops.
        self._shown: dict[tuple[str, str], set[tuple[str, ...]]] = {}
        self._lock = threading.Lock()
        self._server: Any = None
        self._thread: threading.Thread | None = None

    def _replace(self, endpoint: str, keys: tuple[str, ...],
                 values: dict[str, dict[tuple[str, ...], float]]) -> None:
        with self._lock:
            for key in keys:
                gauge, new = self._gauges[key], values.get(key, {})
                shown = self._shown.get((key, endpoint), set())
                for labels in shown - {k for k, v in new.items() if not math.isnan(v)}:
                    gauge.remove(endpoint, *labels)
                kept = set()
                for labels, value in new.items():
                    if not math.isnan(value):
                        gauge.labels(endpoint, *labels).set(value)
                        kept.add(labels)
                self._shown[(key, endpoint)] = kept

    def set_drift(self, endpoint: str, report: DriftReport) -> None:
        """Show a drift report as the endpoint's drift gauges (and its predictions' when the
        report compared them)."""
        values: dict[str, dict[tuple[str, ...], float]] = {
            "drift_share": {(): report.drifted_share},
            "drift_detected": {(): float(report.drifted)},
            "statistic": {}, "threshold": {}, "psi": {}, "drifted": {}}
        for column in report.columns:
            tested = (column.column, column.test)
            values["statistic"][tested] = column.statistic
            values["threshold"][tested] = column.threshold
            values["psi"][(column.column,)] = column.psi
            values["drifted"][(column.column,)] = float(column.drifted)
        answers = report.prediction
        if answers is not None:  # else its series, if any, are removed
            values["prediction_drifted"] = {(): float(answers.drifted)}
            values["prediction_statistic"] = {(answers.test,): answers.statistic}
            values["prediction_psi"] = {(): answers.psi}
        self._replace(endpoint, _DRIFT, values)

    def set_performance(self, endpoint: str, frame: pd.DataFrame) -> None:
        """Show the newest window of a performance frame (``tidal.monitoring.performance``)
        as the endpoint's service and model gauges, per route and version ("" when the
        frame is not split by them)."""
        missing = [c for c in ("window", "error_rate", "requests", "labelled")
                   if c not in frame.columns]
        if missing:
            raise InvalidValueError(f"the frame lacks column(s) {missing}; give what "
                                    "tidal.monitoring.performance returns", field="frame")
        values: dict[str, dict[tuple[str, ...], float]] = {key: {} for key in _PERFORMANCE}
        metrics = [c for c in frame.columns if c in METRICS]
        for row in latest_window(frame).to_dict("records"):
            where = (str(row.get("route", "")), str(row.get("model_version", "")))
            values["error_rate"][where] = float(row["error_rate"])
            values["requests"][where] = float(row["requests"])
            values["labelled"][where] = float(row["labelled"])
            for column, quantile in LATENCY_COLUMNS.items():
                if column in row:
                    values["latency"][(*where, quantile)] = float(row[column])
            for metric in metrics:
                values["metric"][(*where, metric)] = float(row[metric])
        self._replace(endpoint, _PERFORMANCE, values)

    def clear(self, endpoint: str) -> None:
        """Remove every series of an endpoint (one no longer monitored)."""
        self._replace(endpoint, tuple(_GAUGES), {})

    def exposition(self) -> bytes:
        """The registry in Prometheus' text format."""
        from prometheus_client import generate_latest

        return generate_latest(self.registry)

    def serve(self, port: int = 0, addr: str = "127.0.0.1") -> int:
        """Answer scrapes at ``http://addr:port/metrics`` from a daemon thread; the bound port
        (``port`` 0: a free one). Loopback by default: an address reachable from other hosts
        must be asked for."""
        from prometheus_client import start_http_server

        if isinstance(port, bool) or not isinstance(port, int) or not 0 <= port <= 65535:
            raise InvalidValueError(f"port must be an integer from 0 to 65535, got {port!r}",
                                    field="port")
        if self._server is not None:
            raise InvalidValueError(f"these gauges are already served on port "
                                    f"{self._server.server_port}", field="port")
        try:
            self._server, self._thread = start_http_server(port, addr=addr,
                                                           registry=self.registry)
        except OSError as error:
            reason = error.strerror or str(error)
            raise InvalidValueError(f"cannot listen on {addr}:{port} ({reason}); choose "
                                    "another port or address", field="port") from None
        return int(self._server.server_port)

    def close(self) -> None:
        """Stop serving (idempotent)."""
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            if self._thread is not None:
                self._thread.join(5)
            self._server = self._thread = None

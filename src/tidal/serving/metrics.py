"""Prometheus metrics of a server, summed over its worker processes.

With several workers every process writes its values to files in PROMETHEUS_MULTIPROC_DIR
(set by the server before the workers start) and any worker answers ``/metrics`` with the sum;
a single in-process app keeps them in its own registry. Children of labelled metrics are
cached, so counting a request costs a dict lookup rather than a label resolution.
"""

from __future__ import annotations

import os
from typing import Any

LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
                   5.0, 10.0)
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 2048, 4096)
VALUE_BUCKETS = (-1e6, -1e3, -100.0, -10.0, -1.0, -0.1, 0.0, 0.1, 0.25, 0.5, 0.75, 0.9, 1.0,
                 10.0, 100.0, 1e3, 1e6)
#: Distinct predicted labels counted per model before the rest are counted as "other".
MAX_LABELS = 100


class ServingMetrics:
    """The server's metrics: requests, latency, batch sizes, predicted values, in-flight
    requests, dropped log records, shadow outcomes and model load times."""

    def __init__(self) -> None:
        from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

        self.registry = CollectorRegistry(auto_describe=True)
        self.multiprocess = bool(os.environ.get("PROMETHEUS_MULTIPROC_DIR"))
        if self.multiprocess:
            from prometheus_client import multiprocess

            multiprocess.MultiProcessCollector(self.registry)
        registry = None if self.multiprocess else self.registry
        self.requests = Counter("tidal_requests", "Requests answered, by outcome",
                                ["endpoint", "route", "model_version", "status"],
                                registry=registry)
        self.latency = Histogram("tidal_request_duration_seconds",
                                 "Time from reading a request to answering it",
                                 ["endpoint", "route"], buckets=LATENCY_BUCKETS,
                                 registry=registry)
        self.batch_size = Histogram("tidal_batch_rows", "Rows per predict call after batching",
                                    ["model"], buckets=BATCH_BUCKETS, registry=registry)
        self.values = Histogram("tidal_prediction_value", "Numeric predictions", ["model"],
                                buckets=VALUE_BUCKETS, registry=registry)
        self.labels = Counter("tidal_predicted_labels", "Predicted labels (classes)",
                              ["model", "label"], registry=registry)
        self.in_flight = Gauge("tidal_requests_in_flight", "Requests being answered",
                               registry=registry, multiprocess_mode="livesum")
        self.log_dropped = Counter("tidal_prediction_log_dropped",
                                   "Prediction log records dropped (queue full or store "
                                   "unreachable)", registry=registry)
        self.shadow = Counter("tidal_shadow_requests", "Copies of requests sent to shadows",
                              ["endpoint", "route", "status"], registry=registry)
        self.load_seconds = Histogram("tidal_model_load_seconds", "Time to load a model",
                                      ["model"], registry=registry,
                                      buckets=(0.01, 0.05, 0.1, 0.5, 1, 5, 10, 30, 60, 300))
        self._children: dict[tuple[Any, ...], Any] = {}
        self._seen_labels: dict[str, set[str]] = {}

    def _child(self, metric: Any, *labels: str) -> Any:
        key = (id(metric), *labels)
        child = self._children.get(key)
        if child is None:
            child = self._children[key] = metric.labels(*labels)
        return child

    def request_done(self, endpoint: str, route: str, version: str, status: int,
                     seconds: float) -> None:
        self._child(self.requests, endpoint, route, version, str(status)).inc()
        self._child(self.latency, endpoint, route).observe(seconds)

    def batch(self, model: str, rows: int) -> None:
        self._child(self.batch_size, model).observe(rows)

    def outputs(self, model: str, rows: list[Any]) -> None:
        """Record what a model predicted: numbers into a histogram, labels counted (the first
        MAX_LABELS distinct ones per model)."""
        if not rows:
            return
        first = rows[0]
        if isinstance(first, float):
            histogram = self._child(self.values, model)
            for value in rows:
                if isinstance(value, float) and value == value:
                    histogram.observe(value)
            return
        if not isinstance(first, (int, str, bool)):
            return
        seen = self._seen_labels.setdefault(model, set())
        for value in rows:
            label = str(value)
            if label not in seen:
                if len(seen) >= MAX_LABELS:
                    label = "other"
                else:
                    seen.add(label)
            self._child(self.labels, model, label).inc()

    def exposition(self) -> tuple[bytes, str]:
        from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

        return generate_latest(self.registry), CONTENT_TYPE_LATEST

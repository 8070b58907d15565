"""``tidal.monitoring``: whether the data a model sees has drifted from what it was trained
on, column by column, how well the endpoint serves and predicts, window by window, and alerts
when a figure crosses a line."""

from __future__ import annotations

from tidal.monitoring.alerts import (
    Alert,
    AlertEvent,
    AlertRule,
    AlertState,
    Figure,
    LogAction,
    WebhookAction,
    WebhookNotAllowedError,
    drift_figures,
    list_alert_events,
    list_alert_states,
    performance_figures,
    webhook,
)
from tidal.monitoring.alerts import evaluate as evaluate_alerts
from tidal.monitoring.drift import ColumnDrift, DriftInputError, DriftReport, drift
from tidal.monitoring.gauges import MonitoringGauges
from tidal.monitoring.html_report import drift_html, write_drift_html
from tidal.monitoring.log_window import LogWindow, read_window
from tidal.monitoring.performance import performance, prediction_metric, window_performance

__all__ = ["Alert", "AlertEvent", "AlertRule", "AlertState", "ColumnDrift", "DriftInputError",
           "DriftReport", "Figure", "LogAction", "LogWindow", "MonitoringGauges",
           "WebhookAction", "WebhookNotAllowedError", "drift", "drift_figures", "drift_html",
           "evaluate_alerts", "list_alert_events", "list_alert_states", "performance",
           "performance_figures", "prediction_metric", "read_window", "webhook",
           "window_performance", "write_drift_html"]

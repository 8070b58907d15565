"""``tidal.monitoring``: whether the data a model sees has drifted from what it was trained
on, column by column, and how well the endpoint serves and predicts, window by window."""

from __future__ import annotations

from tidal.monitoring.drift import ColumnDrift, DriftInputError, DriftReport, drift
from tidal.monitoring.performance import performance, prediction_metric, window_performance

__all__ = ["ColumnDrift", "DriftInputError", "DriftReport", "drift", "performance",
           "prediction_metric", "window_performance"]

"""``tidal.monitoring``: whether the data a model sees has drifted from what it was trained
on, column by column."""

from __future__ import annotations

from tidal.monitoring.drift import ColumnDrift, DriftInputError, DriftReport, drift

__all__ = ["ColumnDrift", "DriftInputError", "DriftReport", "drift"]

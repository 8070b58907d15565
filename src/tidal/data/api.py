"""``tidal.datasets``: register, get, list and compare dataset versions."""

from __future__ import annotations

from tidal.data.diff import DatasetDiff, diff
from tidal.data.ingest import DataFormatError
from tidal.data.validation import DataValidationError, ValidationReport, expect
from tidal.data.versions import (
    DatasetNotFoundError,
    DatasetVersion,
    get,
    list_datasets,
    list_versions,
    register,
)

__all__ = ["DataFormatError", "DataValidationError", "DatasetDiff", "DatasetNotFoundError",
           "DatasetVersion", "ValidationReport", "diff", "expect", "get", "list_datasets",
           "list_versions", "register"]

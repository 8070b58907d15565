"""Formatting values for people, shared by the command line, model cards and reports.

Plain functions over plain values: no console, no I/O, so any layer may use them.
"""

from __future__ import annotations

import math
from typing import Any

#: Shown where a value is absent.
MISSING = "—"


def is_missing(value: Any) -> bool:
    """None, NaN, or one of pandas' missing markers."""
    if value is None:
        return True
    if isinstance(value, float):
        return math.isnan(value)
    return type(value).__name__ in ("NaTType", "NAType")


def format_bytes(size: float | None) -> str:
    """Binary units: ``512 B``, ``1.5 KiB``, ``23.4 MiB``."""
    if is_missing(size):
        return MISSING
    assert size is not None
    value = float(size)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(value) < 1024 or unit == "TiB":
            return f"{int(value)} B" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    raise AssertionError("unreachable")


def format_number(value: Any, digits: int = 6) -> str:
    """A metric value: integers as integers, other numbers to ``digits`` significant digits."""
    if value is None:
        return MISSING
    if isinstance(value, float):
        if math.isnan(value):
            return "nan"
        if math.isinf(value):
            return "inf" if value > 0 else "-inf"
        if value.is_integer() and abs(value) < 1e15:
            return str(int(value))
        return f"{value:.{digits}g}"
    return str(value)

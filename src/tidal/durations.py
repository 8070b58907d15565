"""Spans of time as people write them ("90s", "15m", "1h30m", "7d") and as timedeltas.

Policies, windows and alert rules are written in files and on the command line, where a
timedelta cannot be; every layer reads them with this one parser so "15m" means the same
everywhere.
"""

from __future__ import annotations

import re
from datetime import timedelta
from typing import Any

from tidal.errors import InvalidValueError

_UNITS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
_PART = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h|d|w)")


def parse_duration(value: Any, field: str = "duration") -> timedelta:
    """A positive span from a timedelta, a number of seconds or text such as "1h30m"."""
    if isinstance(value, timedelta):
        span = value
    elif isinstance(value, (int, float)) and not isinstance(value, bool):
        span = timedelta(seconds=float(value))
    elif isinstance(value, str) and value.strip():
        text = value.strip().lower().replace(" ", "")
        parts = _PART.findall(text)
        if "".join(number + unit for number, unit in parts) != text:
            raise InvalidValueError(
                f"{field} {value!r} is not a duration; write it like 90s, 15m, 1h30m or 7d "
                "(units ms, s, m, h, d, w)", field=field)
        span = timedelta(seconds=sum(float(n) * _UNITS[u] for n, u in parts))
    else:
        raise InvalidValueError(f"{field} must be a duration such as '15m' or a number of "
                                f"seconds, got {value!r}", field=field)
    if span <= timedelta(0):
        raise InvalidValueError(f"{field} must be longer than zero, got {value!r}",
                                field=field)
    return span


def format_duration_text(span: timedelta) -> str:
    """The shortest text ``parse_duration`` reads back as ``span``: "1h30m", "45s"."""
    seconds = span.total_seconds()
    if seconds != int(seconds):
        return f"{seconds:g}s"
    out, left = [], int(seconds)
    for unit in ("d", "h", "m", "s"):
        size = int(_UNITS[unit])
        if left >= size:
            out.append(f"{left // size}{unit}")
            left %= size
    return "".join(out)

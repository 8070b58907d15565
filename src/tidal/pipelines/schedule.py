"""Cron schedules of pipelines, parsed and checked with croniter."""

from __future__ import annotations

from tidal.errors import InvalidValueError, missing_dependency


class InvalidCronError(InvalidValueError):
    """A schedule is not a cron expression croniter accepts."""


def check_cron(expression: str) -> str:
    """The expression, if croniter accepts it (5 fields, or 6 with seconds)."""
    try:
        from croniter import croniter
    except ImportError:
        raise missing_dependency("croniter", "pipelines", "pipeline schedules") from None
    if not isinstance(expression, str) or not croniter.is_valid(expression):
        raise InvalidCronError(
            f"schedule {expression!r} is not a cron expression; use five fields, minute hour "
            "day-of-month month day-of-week, e.g. '0 3 * * *' for 03:00 every day",
            field="schedule")
    return expression

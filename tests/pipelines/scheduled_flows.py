"""Scheduled pipelines the scheduler tests run: importable by path, as ``tidal scheduler``
needs. Their steps are never cached, so every scheduled run executes them."""

from __future__ import annotations

import os
import time
from pathlib import Path

import tidal

#: A folder where ``slow_step`` says it started and finished (set by the SIGTERM test).
MARKER_DIR = "TIDAL_TEST_SCHEDULER_MARKERS"


@tidal.step(cache=False)
def stamp() -> float:
    return time.time()


@tidal.pipeline(schedule="* * * * *")
def minutely():
    stamp()


@tidal.pipeline(schedule="*/5 * * * *")
def every_five_minutes():
    stamp()


@tidal.step(cache=False)
def broken() -> int:
    raise RuntimeError("the scheduled source was down")


@tidal.pipeline(schedule="* * * * *")
def failing_minutely():
    broken()


@tidal.step(cache=False)
def slow_step(seconds: float = 3.0) -> float:
    """Takes long enough for a signal to arrive while it runs, and leaves a trace of it."""
    markers = Path(os.environ[MARKER_DIR])
    (markers / f"started-{time.time_ns()}").touch()
    time.sleep(seconds)
    (markers / f"finished-{time.time_ns()}").touch()
    return seconds


@tidal.pipeline(schedule="* * * * * *")  # every second (croniter's sixth field)
def every_second():
    slow_step()


@tidal.pipeline
def unscheduled():
    stamp()


@tidal.pipeline(schedule="* * * * *")
def needs_a_parameter(rows: int):
    stamp()

"""Executors: where a pipeline's step tasks run. Each takes tasks (plain dicts naming the step
by import path and its inputs by reference) and returns futures of their results, so the
driver is the same whatever runs the steps."""

from __future__ import annotations

import importlib
from typing import Any

from tidal.errors import InvalidValueError

#: Executor names and the ``module:class`` that implements each, imported on first use.
EXECUTORS: dict[str, str] = {
    "inline": "tidal.pipelines.executors.inline:InlineExecutor",
    "process": "tidal.pipelines.executors.process:ProcessExecutor",
    "ray": "tidal.pipelines.executors.ray:RayExecutor",
}


def make_executor(name: str, **options: Any) -> Any:
    """An executor by name; it has ``submit(task) -> Future`` and ``close()``."""
    target = EXECUTORS.get(name)
    if target is None:
        raise InvalidValueError(f"executor {name!r} is not one of {', '.join(EXECUTORS)}",
                                field="executor")
    module, _, attribute = target.partition(":")
    return getattr(importlib.import_module(module), attribute)(**options)

"""The inline executor: each task runs in the driver's process as it is submitted, so a
debugger or a print shows exactly what a step does."""

from __future__ import annotations

from concurrent.futures import Future
from typing import Any


class InlineExecutor:
    def submit(self, task: dict[str, Any]) -> Future[dict[str, Any]]:
        from tidal.pipelines.runner import execute_step

        future: Future[dict[str, Any]] = Future()
        try:
            future.set_result(execute_step(task))
        except BaseException as error:  # noqa: BLE001 - handed to the driver as a pool would
            future.set_exception(error)
        return future

    def close(self) -> None:
        return None

"""The process executor: a pool of worker processes on this machine. Workers are spawned,
not forked, so no database connection, thread or lock leaks from the driver into them."""

from __future__ import annotations

import multiprocessing
import os
from concurrent.futures import Future, ProcessPoolExecutor
from typing import Any


class ProcessExecutor:
    def __init__(self, workers: int | None = None) -> None:
        self._pool = ProcessPoolExecutor(max_workers=workers or os.cpu_count() or 2,
                                         mp_context=multiprocessing.get_context("spawn"))

    def submit(self, task: dict[str, Any]) -> Future[dict[str, Any]]:
        from tidal.pipelines.runner import execute_step

        return self._pool.submit(execute_step, task)

    def close(self) -> None:
        self._pool.shutdown(wait=True, cancel_futures=True)

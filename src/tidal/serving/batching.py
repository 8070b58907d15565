"""Adaptive micro-batching: concurrent requests to one model become one predict call.

A batch starts as soon as the model is free, with whatever arrived meanwhile: under light load
a request is predicted at once (no added latency), under heavy load requests pile up while the
model works and the next call takes them all, up to ``max_batch_size`` rows. ``max_wait_ms``
optionally holds a batch open a little longer to fill it. The predict call runs on a thread
of its own, so the event loop keeps reading and checking requests while the model works.

A batch whose predict raises is retried one request at a time, so a request the model
cannot take fails alone and batching never changes an answer.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from tidal.serving.inputs import Columns

PredictMany = Callable[[Sequence[Columns]], list[list[Any]]]


class Batcher:
    """Coalesces the requests of one model; ``predict_many`` answers a list of requests with
    one list of outputs per request."""

    def __init__(self, predict_many: PredictMany, *, max_batch_size: int, max_wait_ms: float,
                 name: str = "model", on_batch: Callable[[int], None] | None = None) -> None:
        self._predict_many = predict_many
        self.max_batch_size = max_batch_size
        self._max_wait = max_wait_ms / 1000.0
        self._on_batch = on_batch
        self._queue: deque[tuple[Columns, asyncio.Future[list[Any]]]] = deque()
        self._queued_rows = 0
        self._running = False
        self._filled: asyncio.Future[None] | None = None
        self._executor = ThreadPoolExecutor(1, thread_name_prefix=f"tidal-predict-{name}")
        self._closed = False

    async def predict(self, columns: Columns) -> list[Any]:
        """The model's outputs for this request's rows."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[list[Any]] = loop.create_future()
        self._queue.append((columns, future))
        self._queued_rows += columns.rows
        if not self._running:
            self._running = True
            loop.create_task(self._drain())
        elif self._filled is not None and self._queued_rows >= self.max_batch_size \
                and not self._filled.done():
            self._filled.set_result(None)
        return await future

    def _take(self) -> list[tuple[Columns, asyncio.Future[list[Any]]]]:
        batch = [self._queue.popleft()]
        rows = batch[0][0].rows
        while self._queue and rows + self._queue[0][0].rows <= self.max_batch_size:
            item = self._queue.popleft()
            rows += item[0].rows
            batch.append(item)
        self._queued_rows -= rows
        return [item for item in batch if not item[1].done()]  # cancelled: client went away

    async def _gather(self) -> None:
        """Let requests that are ready join: one turn of the loop, or up to max_wait_ms."""
        if self._max_wait <= 0 or self._queued_rows >= self.max_batch_size:
            await asyncio.sleep(0)
            return
        loop = asyncio.get_running_loop()
        self._filled = loop.create_future()
        handle = loop.call_later(self._max_wait, lambda f=self._filled: f.done()
                                 or f.set_result(None))
        try:
            await self._filled
        finally:
            handle.cancel()
            self._filled = None

    async def _drain(self) -> None:
        loop = asyncio.get_running_loop()
        try:
            while self._queue:
                await self._gather()
                batch = self._take()
                if not batch:
                    continue
                if self._on_batch is not None:
                    self._on_batch(sum(c.rows for c, _ in batch))
                try:
                    outputs = await loop.run_in_executor(
                        self._executor, self._predict_many, [c for c, _ in batch])
                except Exception as error:
                    if len(batch) == 1:
                        _settle(batch[0][1], error=error)
                        continue
                    await self._one_by_one(batch)
                    continue
                for (_, future), output in zip(batch, outputs, strict=True):
                    _settle(future, output)
        finally:
            self._running = False

    async def _one_by_one(self, batch: list[tuple[Columns, asyncio.Future[list[Any]]]]) -> None:
        loop = asyncio.get_running_loop()
        for columns, future in batch:
            try:
                output = await loop.run_in_executor(self._executor, self._predict_many,
                                                    [columns])
            except Exception as error:
                _settle(future, error=error)
            else:
                _settle(future, output[0])

    @property
    def closed(self) -> bool:
        return self._closed

    def close(self) -> None:
        self._closed = True
        self._executor.shutdown(wait=False, cancel_futures=True)


def _settle(future: asyncio.Future[list[Any]], result: Any = None, *,
            error: BaseException | None = None) -> None:
    if future.done():
        return
    if error is not None:
        future.set_exception(error)
    else:
        future.set_result(result)

"""Batched, background metric writing: ``log_metric`` costs an append, not a round trip.

Points go into an in-memory buffer; a daemon thread writes whatever has gathered every
``interval`` seconds (sooner when the buffer is large) as one transaction. ``flush()`` writes
everything queued before it was called, in the calling thread, and raises if that fails. An
``atexit`` hook flushes every writer, so no acknowledged point is lost on a normal exit. A
failed batch stays queued and is tried again; a forked child drops its parent's queue (those
points are the parent's to write).

The same thread stamps the heartbeat of the live runs it was given (``keep_alive``) every
``run_heartbeat_interval`` seconds, so a run's liveness costs no thread of its own.
"""

from __future__ import annotations

import atexit
import os
import sys
import threading
import time
import weakref

from tidal.errors import StoreError
from tidal.store.workspace import Workspace
from tidal.tracking.liveness import beat
from tidal.tracking.store import Point, write_points

FLUSH_INTERVAL_S = 0.25
MAX_BATCH = 20_000

_writers: weakref.WeakSet[MetricWriter] = weakref.WeakSet()


class MetricWriter:
    """One buffered writer per workspace."""

    def __init__(self, ws: Workspace, interval: float = FLUSH_INTERVAL_S) -> None:
        self.ws = ws
        self.interval = interval
        self._buffer: list[Point] = []
        self._lock = threading.Lock()  # guards _buffer
        self._io = threading.Lock()  # one batch in flight at a time, so order is kept
        self._wake = threading.Event()
        self._thread: threading.Thread | None = None
        self._pid = os.getpid()
        self.last_error: BaseException | None = None
        self._live: set[str] = set()  # runs of this process whose heartbeat this thread stamps
        self._last_beat = time.monotonic()
        _writers.add(self)

    def add(self, point: Point) -> None:
        with self._lock:
            self._buffer.append(point)
            size = len(self._buffer)
        if self._thread is None or self._pid != os.getpid():
            self._start()
        if size >= MAX_BATCH:
            self._wake.set()

    def keep_alive(self, run_id: str) -> None:
        """Stamp this run's heartbeat from now on, until ``let_go``."""
        with self._lock:
            self._live.add(run_id)
        if self._thread is None or self._pid != os.getpid():
            self._start()

    def let_go(self, run_id: str) -> None:
        with self._lock:
            self._live.discard(run_id)

    def _beat_if_due(self) -> None:
        if time.monotonic() - self._last_beat < self.ws.settings.run_heartbeat_interval:
            return
        with self._lock:
            live = list(self._live)
        self._last_beat = time.monotonic()
        beat(self.ws, live)

    def _start(self) -> None:
        with self._lock:
            if self._thread is not None and self._pid == os.getpid():
                return
            self._pid = os.getpid()
            self._thread = threading.Thread(target=self._loop, name="tidal-metric-writer",
                                            daemon=True)
            self._thread.start()

    def _loop(self) -> None:
        while True:
            self._wake.wait(self.interval)
            self._wake.clear()
            try:
                self._write_pending()
            except Exception as error:  # kept for flush() to raise; retried next round
                self.last_error = error
            try:
                self._beat_if_due()
            except Exception:  # a missed beat is retried next interval; the timeout allows it
                pass

    def _write_pending(self) -> int:
        with self._io:
            with self._lock:
                batch, self._buffer = self._buffer, []
            if not batch:
                return 0
            try:
                for start in range(0, len(batch), MAX_BATCH):
                    write_points(self.ws, batch[start:start + MAX_BATCH])
            except BaseException:
                with self._lock:  # put the batch back in front, in order, for the next try
                    self._buffer[:0] = batch[start:]
                raise
            self.last_error = None
            return len(batch)

    def flush(self) -> int:
        """Write every queued point now; returns how many were written."""
        try:
            return self._write_pending()
        except StoreError:
            raise
        except Exception as error:
            raise StoreError(f"could not write {len(self._buffer)} metric points to "
                             f"{self.ws.location}: {error}") from error

    @property
    def pending(self) -> int:
        return len(self._buffer)

    def _after_fork(self) -> None:
        self._buffer = []
        self._live = set()  # the parent's runs are the parent's to keep alive
        self._thread = None
        self._lock = threading.Lock()
        self._io = threading.Lock()
        self._wake = threading.Event()
        self._pid = os.getpid()


_by_workspace: dict[int, MetricWriter] = {}
_registry_lock = threading.Lock()


def writer_for(ws: Workspace) -> MetricWriter:
    writer = _by_workspace.get(id(ws))
    if writer is None or writer.ws is not ws:
        with _registry_lock:
            writer = _by_workspace.get(id(ws))
            if writer is None or writer.ws is not ws:
                writer = _by_workspace[id(ws)] = MetricWriter(ws)
    return writer


def flush_all() -> None:
    """Flush every writer of this process; the first failure is raised after trying them all."""
    first: BaseException | None = None
    for writer in list(_writers):
        try:
            writer.flush()
        except Exception as error:
            first = first or error
    if first is not None:
        raise first


def _flush_at_exit() -> None:
    for writer in list(_writers):
        try:
            writer.flush()
        except Exception as error:
            print(f"tidal: {writer.pending} metric points could not be written at exit: "
                  f"{error}", file=sys.stderr)


def _reset_after_fork() -> None:
    for writer in list(_writers):
        writer._after_fork()


atexit.register(_flush_at_exit)
os.register_at_fork(after_in_child=_reset_after_fork)

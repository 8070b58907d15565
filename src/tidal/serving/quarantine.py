"""Quarantine: an endpoint whose model keeps killing server workers stops being run.

The supervisor of ``tidal serve --workers N`` attributes each abnormal worker death to the
models its crash marks name (``crashmarks``), and counts the crashes of every endpoint serving
them. A crash that the fault report pins on a model (a fatal signal raised in the thread that
was running it) quarantines its endpoints at once; other crashes (a SIGKILL, which may be the
OOM killer or an operator, while models were running) quarantine an endpoint after ``after``
of them within ``window_s`` seconds. The quarantine holds the endpoint's current revision: the supervisor writes the quarantine to a board file in the server's
runtime folder, which every worker reads (a stat at most every 50 ms on the request path).
A worker never loads nor runs a quarantined endpoint's models, and answers its requests with
503 and the reason; the other endpoints keep answering. A new revision of the endpoint (a
deploy or rollback) lifts the quarantine and the endpoint is tried again; so does a restart
of the server, whose runtime folder is new.

Each quarantine and each lift is recorded as an alert event (rule ``endpoint-quarantined``,
subject the endpoint, figure ``worker_crashes``) and the board is exported by every worker as
``tidal_endpoint_quarantined{endpoint}`` and ``tidal_worker_crashes_total{endpoint,model}``.
"""

from __future__ import annotations

import json
import logging
import os
import time
from collections import deque
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import IO, Any

from tidal.errors import TidalError
from tidal.serving.crashmarks import CrashMarks, enable_fault_report, fault_path, marks_path
from tidal.store.workspace import Workspace

log = logging.getLogger("tidal.serving")

#: Crashes of one endpoint, within the window, that quarantine it.
DEFAULT_QUARANTINE_AFTER = 2
DEFAULT_QUARANTINE_WINDOW_S = 600.0
ALERT_RULE = "endpoint-quarantined"
ALERT_FIGURE = "worker_crashes"
_BOARD = "quarantine.json"
_RECHECK_S = 0.05


class QuarantinedError(TidalError):
    """The endpoint's model kept crashing server workers; it is not run until redeployed
    (503)."""

    status_code = 503


@dataclass(frozen=True)
class Quarantine:
    """Why an endpoint is quarantined: which model, how many crashes since when, of what."""

    endpoint: str
    revision: int
    model_uri: str
    crashes: int
    since_ms: int
    cause: str

    def message(self) -> str:
        since = datetime.fromtimestamp(self.since_ms / 1000, UTC).isoformat(timespec="seconds")
        return (f"endpoint {self.endpoint!r} (revision {self.revision}) is quarantined: its "
                f"model {self.model_uri} crashed a server worker {self.crashes} "
                f"time{'s' if self.crashes != 1 else ''} since "
                f"{since} (last: {self.cause}); deploy a new revision of the endpoint (a fixed "
                f"model version, or 'tidal deploy {self.endpoint} --rollback') or restart the "
                "server to try it again")


class CrashLedger:
    """The supervisor's count of crashes per endpoint, and the quarantines they caused."""

    def __init__(self, after: int = DEFAULT_QUARANTINE_AFTER,
                 window_s: float = DEFAULT_QUARANTINE_WINDOW_S) -> None:
        self.after = after
        self.window_s = window_s
        self.quarantined: dict[str, Quarantine] = {}
        self.totals: dict[tuple[str, str], int] = {}  # (endpoint, model URI): crashes
        self._recent: dict[str, deque[tuple[float, int]]] = {}  # monotonic s, epoch ms

    def crash(self, endpoint: str, revision: int, uri: str, cause: str, *,
              certain: bool = False, now: float | None = None) -> Quarantine | None:
        """Count one crash of ``endpoint`` (at ``revision``) running ``uri``; the quarantine
        it starts, if it is the one too many or ``certain`` (pinned on ``uri``)."""
        now = time.monotonic() if now is None else now
        self.totals[(endpoint, uri)] = self.totals.get((endpoint, uri), 0) + 1
        if endpoint in self.quarantined:
            return None
        recent = self._recent.setdefault(endpoint, deque())
        recent.append((now, int(time.time() * 1000)))
        while recent and now - recent[0][0] > self.window_s:
            recent.popleft()
        if len(recent) < self.after and not certain:
            return None
        quarantine = Quarantine(endpoint, revision, uri, len(recent), recent[0][1], cause)
        self.quarantined[endpoint] = quarantine
        recent.clear()  # a new revision starts with a clean slate
        return quarantine

    def lift(self, endpoint: str) -> Quarantine | None:
        return self.quarantined.pop(endpoint, None)

    def board(self) -> dict[str, Any]:
        return {"quarantined": {name: asdict(q) for name, q in self.quarantined.items()},
                "crashes": [{"endpoint": e, "model": u, "count": n}
                            for (e, u), n in sorted(self.totals.items())]}


def board_path(runtime_dir: str | os.PathLike[str]) -> Path:
    return Path(runtime_dir) / _BOARD


def write_board(runtime_dir: str | os.PathLike[str], ledger: CrashLedger) -> None:
    """Publish the ledger to the workers: written aside and renamed, so a reader sees the old
    board or the new one."""
    target = board_path(runtime_dir)
    temporary = target.with_suffix(".tmp")
    temporary.write_bytes(json.dumps(ledger.board()).encode())
    os.replace(temporary, target)


def endpoints_running(uri: str, workspace: Workspace, names: Iterable[str] | None
                      ) -> list[tuple[str, int]]:
    """(name, revision) of the endpoints (of ``names``; None: all) whose routes or shadows
    resolve to the model version ``uri`` now."""
    from tidal.serving.endpoints import get_endpoint, list_endpoints
    from tidal.serving.runtime import resolve

    endpoints = [get_endpoint(n, workspace=workspace) for n in names] if names is not None \
        else list_endpoints(workspace=workspace)
    found = []
    for endpoint in endpoints:
        live, shadows = resolve(endpoint, workspace)
        if any(version.uri == uri for version in live + shadows):
            found.append((endpoint.name, endpoint.revision))
    return found


def record_alert(quarantine: Quarantine, workspace: Workspace, *, lifted: bool) -> None:
    """An alert event for a quarantine (firing: the crashes that caused it) or its lifting
    (resolved)."""
    from tidal.monitoring.alerts import AlertRule, Figure, evaluate

    # No cooldown to speak of: every quarantine is an event, also one of an endpoint whose
    # earlier quarantine ended with a restart rather than a recorded lift.
    rule = AlertRule(ALERT_RULE, ALERT_FIGURE, ">=", 1, cooldown=timedelta(milliseconds=1))
    value = 0.0 if lifted else float(quarantine.crashes)
    evaluate([rule], [Figure(ALERT_FIGURE, quarantine.endpoint, value)], workspace=workspace)


class WorkerGuard:
    """A supervised worker's side: its crash marks, its fault report, and the board of
    quarantined endpoints (re-read when the file changes)."""

    def __init__(self, runtime_dir: str | os.PathLike[str]) -> None:
        pid = os.getpid()
        self.marks = CrashMarks(marks_path(runtime_dir, pid))
        self._fault: IO[str] = enable_fault_report(fault_path(runtime_dir, pid))
        self._path = board_path(runtime_dir)
        self._checked = 0.0
        self._stamp: tuple[int, int] | None = None
        self._board: dict[str, Any] = {"quarantined": {}, "crashes": []}
        self._quarantined: dict[str, Quarantine] = {}

    def _refresh(self) -> None:
        now = time.monotonic()
        if now - self._checked < _RECHECK_S:
            return
        self._checked = now
        try:
            stat = os.stat(self._path)
        except FileNotFoundError:
            return
        stamp = (stat.st_mtime_ns, stat.st_ino)
        if stamp == self._stamp:
            return
        try:
            board = json.loads(self._path.read_bytes())
        except (OSError, ValueError):
            return  # replaced while read: the next check reads the new one
        self._stamp = stamp
        self._board = board
        self._quarantined = {name: Quarantine(**record)
                             for name, record in board["quarantined"].items()}

    def quarantined(self, endpoint: str) -> Quarantine | None:
        """The endpoint's quarantine, if it is quarantined."""
        self._refresh()
        return self._quarantined.get(endpoint)

    def collector(self) -> BoardCollector:
        return BoardCollector(self)

    def board(self, *, fresh: bool = False) -> dict[str, Any]:
        """The board as last read (``fresh``: read now if the file changed)."""
        if fresh:
            self._checked = 0.0
        self._refresh()
        return self._board


class BoardCollector:
    """Prometheus families from the board: the same in every worker, so summing over workers
    is not needed (a custom collector is not summed by the multi-process registry)."""

    def __init__(self, guard: WorkerGuard) -> None:
        self._guard = guard

    def describe(self) -> list[Any]:
        return list(self._families({"quarantined": {}, "crashes": []}))

    def collect(self) -> Iterator[Any]:
        return self._families(self._guard.board(fresh=True))

    @staticmethod
    def _families(board: dict[str, Any]) -> Iterator[Any]:
        from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

        quarantined = GaugeMetricFamily(
            "tidal_endpoint_quarantined", "1 while the endpoint is quarantined because its "
            "model kept crashing server workers", labels=["endpoint"])
        crashes = CounterMetricFamily(
            "tidal_worker_crashes", "Server worker crashes attributed to an endpoint's model",
            labels=["endpoint", "model"])
        named = {c["endpoint"] for c in board["crashes"]} | set(board["quarantined"])
        for name in sorted(named):
            quarantined.add_metric([name], 1.0 if name in board["quarantined"] else 0.0)
        for entry in board["crashes"]:
            crashes.add_metric([entry["endpoint"], entry["model"]], float(entry["count"]))
        yield quarantined
        yield crashes

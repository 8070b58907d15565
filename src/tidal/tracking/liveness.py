"""Run liveness: heartbeats of live runs, and runs whose process died without ending them.

A process killed by SIGKILL, the OOM killer or a lost host never ends its runs, which would
then say "running" forever. So a live run's process stamps ``runs.heartbeat`` every
``run_heartbeat_interval`` seconds, from the thread that already writes its metrics (one
UPDATE for all of that process's runs in a workspace), and reads of runs (``get_run``,
``search_runs``, the ``tidal runs`` commands) first mark as killed every "running" run whose
heartbeat is older than ``run_timeout``, with its end time set to that last heartbeat.

That costs one indexed SELECT per read, at most once per heartbeat interval per process, and a
write only when there is a run to mark. The UPDATE repeats the condition inside its own
transaction, so a run that beat in the meantime is never marked. Heartbeats are wall-clock
times from each run's host: hosts whose clocks differ by more than the timeout would misjudge
each other's runs, which the 10-minute default leaves ample room for.
"""

from __future__ import annotations

import threading
import time
import weakref
from collections.abc import Collection

from sqlalchemy import Connection, and_, func, or_, select, update

from tidal.ids import now_ms
from tidal.store.workspace import Workspace
from tidal.tracking.schema import runs
from tidal.tracking.store import KILLED, RUNNING

_last_check: weakref.WeakKeyDictionary[Workspace, float] = weakref.WeakKeyDictionary()
_check_lock = threading.Lock()


def beat(ws: Workspace, run_ids: Collection[str], at: int | None = None) -> None:
    """Stamp the heartbeat of these runs (those still running) with ``at`` (default: now)."""
    if not run_ids:
        return
    statement = (update(runs).where(runs.c.id.in_(list(run_ids)), runs.c.status == RUNNING)
                 .values(heartbeat=now_ms() if at is None else at))
    ws.db.write(lambda conn: conn.execute(statement))


def mark_silent_runs_killed(ws: Workspace, *, force: bool = False) -> int:
    """Mark killed every "running" run silent for longer than the workspace's run timeout;
    returns how many were marked. Skipped (0) when this process checked this workspace less
    than a heartbeat interval ago, unless ``force``."""
    settings = ws.settings
    with _check_lock:
        last = _last_check.get(ws)
        if not force and last is not None and \
                time.monotonic() - last < settings.run_heartbeat_interval:
            return 0
        _last_check[ws] = time.monotonic()
    cutoff = now_ms() - int(settings.run_timeout * 1000)
    silent = and_(runs.c.status == RUNNING,
                  or_(runs.c.heartbeat < cutoff,
                      and_(runs.c.heartbeat.is_(None), runs.c.start_time < cutoff)))
    with ws.db.read() as conn:
        if conn.execute(select(runs.c.id).where(silent).limit(1)).first() is None:
            return 0
    error = (f"the run's process sent no heartbeat for more than {settings.run_timeout:g} s "
             "(it was killed, ran out of memory, or its host was lost) and never ended the "
             "run; its end time is its last heartbeat")

    def work(conn: Connection) -> int:
        return conn.execute(update(runs).where(silent).values(
            status=KILLED, error=error,
            end_time=func.coalesce(runs.c.heartbeat, runs.c.start_time))).rowcount

    return ws.db.write(work)

"""The parent of a server's worker processes: it keeps them running, and keeps a model that
crashes them from taking the server down.

A worker that dies is replaced after a backoff that doubles while replacements keep dying
soon after they start (``BACKOFF_S`` up to ``BACKOFF_CAP_S``, each wait jittered to half to
all of it). A death by a fatal signal the process raised itself (SIGSEGV, SIGBUS, SIGILL,
SIGFPE, SIGABRT...), by the OOM killer (a SIGKILL while the cgroup's count of OOM kills went
up), or an error exit while a model was running, is a crash: it is attributed to the models the dead worker's crash marks name (``crashmarks``; the crashing
thread's own mark when its fault report names it, which is certain), counted against every
endpoint serving them, and may quarantine one (``quarantine``). A kill that lands while no model runs counts
for nobody, and so does a kill from outside (a SIGKILL or SIGTERM the OOM killer did not
send): that worker is only replaced. The supervisor never gives up on crashes; it stops only on SIGTERM or Ctrl-C, or
when every worker keeps exiting with an error at start with no model running (a
configuration that cannot serve), which it reports as a ``ConfigError``.
"""

from __future__ import annotations

import logging
import random
import signal
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from multiprocessing.connection import wait
from pathlib import Path
from typing import Any

from tidal.errors import ConfigError
from tidal.serving.crashmarks import (
    Mark,
    crashed_models,
    fault_path,
    marks_path,
    read_fault,
    read_marks,
)
from tidal.serving.endpoints import current_revision
from tidal.serving.quarantine import (
    CrashLedger,
    Quarantine,
    endpoints_running,
    record_alert,
    write_board,
)
from tidal.store.workspace import Workspace

log = logging.getLogger("tidal.serving")

#: A worker that exits this soon after starting failed to start.
STARTUP_S = 15.0
#: Error exits at start, in a row and in every worker, that stop the server.
MAX_QUICK_FAILURES = 3
BACKOFF_S = 0.25
BACKOFF_CAP_S = 30.0
_TICK_S = 0.2
#: Signals a process gets from its own code (a bad pointer, an abort, a trap).
_FATAL = frozenset({signal.SIGSEGV, signal.SIGBUS, signal.SIGILL, signal.SIGFPE,
                    signal.SIGABRT, signal.SIGSYS, signal.SIGTRAP})


def backoff(quick_deaths: int) -> float:
    """Seconds to wait before replacing a worker after ``quick_deaths`` deaths in a row soon
    after starting (1 or more)."""
    full = min(BACKOFF_CAP_S, BACKOFF_S * 2 ** min(max(quick_deaths, 1) - 1, 30))
    return full * random.uniform(0.5, 1.0)


@dataclass
class _Slot:
    process: Any = None
    started: float = 0.0
    restart_at: float = 0.0
    quick_deaths: int = 0
    error_exits: int = 0  # error exits at start with no model running, in a row


class Supervisor:
    """Runs ``count`` workers made by ``spawn`` (a started process each call) until stopped.

    ``runtime_dir`` holds the workers' crash marks and the quarantine board; ``endpoints``
    (None: all) are the served ones, whose revisions are checked every ``lift_every_s`` to
    lift the quarantine of one redeployed."""

    def __init__(self, spawn: Callable[[], Any], count: int, *, runtime_dir: str | Path,
                 workspace: Workspace, endpoints: Iterable[str] | None, ledger: CrashLedger,
                 lift_every_s: float = 2.0,
                 on_death: Callable[[int], None] | None = None) -> None:
        self._spawn = spawn
        self._slots = [_Slot() for _ in range(count)]
        self._runtime = Path(runtime_dir)
        self._workspace = workspace
        self._endpoints = None if endpoints is None else tuple(endpoints)
        self.ledger = ledger
        self._lift_every = lift_every_s
        self._on_death = on_death
        self._stopping = False
        self._oom_kills = oom_kills()

    def run(self) -> None:
        previous = {sig: signal.signal(sig, self._stop) for sig in (signal.SIGTERM,
                                                                    signal.SIGINT)}
        write_board(self._runtime, self.ledger)
        try:
            for slot in self._slots:
                self._start(slot)
            next_lift = time.monotonic() + self._lift_every
            while not self._stopping:
                self._wait()
                now = time.monotonic()
                for slot in self._slots:
                    if self._stopping:
                        break
                    if slot.process is not None and not slot.process.is_alive():
                        self._reap(slot, now)
                    if slot.process is None and now >= slot.restart_at:
                        self._start(slot)
                if all(slot.error_exits >= MAX_QUICK_FAILURES for slot in self._slots):
                    raise ConfigError("server workers keep exiting at start; see the errors "
                                      "above", field="serve")
                if now >= next_lift:
                    self._lift_redeployed()
                    next_lift = now + self._lift_every
        finally:
            self._stop_all()
            for sig, handler in previous.items():
                signal.signal(sig, handler)

    def _stop(self, _signum: int, _frame: Any) -> None:
        self._stopping = True

    def _start(self, slot: _Slot) -> None:
        slot.process = self._spawn()
        slot.started = time.monotonic()

    def _wait(self) -> None:
        """Until a worker dies, a restart is due, or a tick passes."""
        now = time.monotonic()
        timeout = min([_TICK_S] + [max(0.0, s.restart_at - now) for s in self._slots
                                   if s.process is None])
        sentinels = [s.process.sentinel for s in self._slots if s.process is not None]
        if sentinels:
            wait(sentinels, timeout)
        else:
            time.sleep(timeout)

    def _reap(self, slot: _Slot, now: float) -> None:
        process, slot.process = slot.process, None
        process.join(1)
        pid, code = process.pid, process.exitcode
        if self._on_death is not None:
            self._on_death(pid)
        marks = read_marks(marks_path(self._runtime, pid))
        fault, thread = read_fault(fault_path(self._runtime, pid))
        for path in (marks_path(self._runtime, pid), fault_path(self._runtime, pid)):
            path.unlink(missing_ok=True)
        quick = now - slot.started < STARTUP_S
        slot.quick_deaths = slot.quick_deaths + 1 if quick else 1
        slot.error_exits = slot.error_exits + 1 if quick and code is not None and code > 0 \
            and not marks else 0
        wait_s = backoff(slot.quick_deaths)
        slot.restart_at = now + wait_s
        cause, by_model = self._cause(code)
        blamed, certain = crashed_models(marks, thread) if by_model else ([], False)
        report = f"\n{fault.strip()}" if fault.strip() else ""
        if blamed:
            running = ", ".join(sorted({f"{m.kind} of {m.uri}" for m in blamed}))
            log.warning("worker %s died (%s) during %s; starting another in %.1f s%s", pid,
                        cause, running, wait_s, report)
            self._attribute(blamed, cause, certain)
        else:
            log.warning("worker %s died (%s), counted against no model; starting another in "
                        "%.1f s%s", pid, cause, wait_s, report)

    def _cause(self, code: int | None) -> tuple[str, bool]:
        """What ended a worker, and whether a model it ran may have (see the module)."""
        if code is None or code >= 0:
            return f"exit code {code}", code not in (0, None)
        try:
            name = signal.Signals(-code).name
        except ValueError:
            name = f"signal {-code}"
        if -code in _FATAL:
            return name, True
        if -code == signal.SIGKILL:
            before, self._oom_kills = self._oom_kills, oom_kills()
            if before is not None and self._oom_kills is not None and self._oom_kills > before:
                return f"{name} by the OOM killer", True
        return name, False

    def _attribute(self, blamed: list[Mark], cause: str, certain: bool) -> None:
        started: list[Quarantine] = []
        for uri, kind in sorted({(m.uri, m.kind) for m in blamed}):
            try:
                serving = endpoints_running(uri, self._workspace, self._endpoints)
            except Exception as error:  # a store outage must not stop the supervisor
                log.warning("could not find the endpoints serving %s: %s", uri, error)
                continue
            for name, revision in serving:
                quarantine = self.ledger.crash(name, revision, uri, f"{cause} during {kind}",
                                               certain=certain)
                if quarantine is not None:
                    started.append(quarantine)
        write_board(self._runtime, self.ledger)
        for quarantine in started:
            log.error("%s", quarantine.message())
            self._alert(quarantine, lifted=False)

    def _lift_redeployed(self) -> None:
        lifted = []
        for name, quarantine in list(self.ledger.quarantined.items()):
            try:
                revision = current_revision(name, workspace=self._workspace)
            except Exception as error:
                log.warning("could not read the revision of endpoint %s: %s", name, error)
                continue
            if revision != quarantine.revision:
                self.ledger.lift(name)
                lifted.append(quarantine)
        if not lifted:
            return
        write_board(self._runtime, self.ledger)
        for quarantine in lifted:
            log.warning("endpoint %s has a new revision: its quarantine is lifted and it is "
                        "tried again", quarantine.endpoint)
            self._alert(quarantine, lifted=True)

    def _alert(self, quarantine: Quarantine, *, lifted: bool) -> None:
        try:
            record_alert(quarantine, self._workspace, lifted=lifted)
        except Exception as error:  # the quarantine holds whether or not it is recorded
            log.warning("could not record the alert for endpoint %s: %s",
                        quarantine.endpoint, error)

    def _stop_all(self) -> None:
        processes = [slot.process for slot in self._slots if slot.process is not None]
        for process in processes:
            if process.is_alive():
                process.terminate()
        deadline = time.monotonic() + 20
        for process in processes:
            process.join(max(0.1, deadline - time.monotonic()))
            if process.is_alive():
                process.kill()
                process.join(5)


def oom_kills() -> int | None:
    """How many processes of this process's cgroup the OOM killer has killed (cgroup v2's
    memory.events, or v1's memory.oom_control); None where neither can be read."""
    try:
        lines = Path("/proc/self/cgroup").read_text().splitlines()
    except OSError:
        return None
    places = []
    for line in lines:
        _, controllers, path = line.split(":", 2)
        if controllers == "":
            places += [f"/sys/fs/cgroup{path}/memory.events", "/sys/fs/cgroup/memory.events"]
        elif "memory" in controllers.split(","):
            places += [f"/sys/fs/cgroup/memory{path}/memory.oom_control",
                       "/sys/fs/cgroup/memory/memory.oom_control"]
    for place in places:
        try:
            text = Path(place).read_text()
        except OSError:
            continue
        for line in text.splitlines():
            key, _, value = line.partition(" ")
            if key == "oom_kill" and value.strip().isdigit():
                return int(value)
    return None

"""The scheduler: starts the runs of pipelines that carry a cron schedule, when they are due.

Several schedulers may watch one workspace (a standby for when the active one dies), so two
things in the metadata store keep them from starting a fire time twice:

* a lease per set of pipelines (``scheduler_leases``): the scheduler holding it evaluates the
  schedules; the others stand by and take it over once it has expired, i.e. once its holder
  stopped renewing it. Taking and renewing is one conditional UPDATE (expired, or mine), so
  two schedulers can never both think they took it from the same state;
* a row per fire time (``schedule_triggers``, unique on pipeline and fire time): whoever
  inserts it runs that fire time, and an insert that conflicts means someone else did. This
  holds even when two schedulers both believe they lead (clocks apart, a paused process
  waking up after its lease moved on).

Due fire times are those after the pipeline's latest trigger (or, for a pipeline never
triggered, after the scheduler first looked at it) up to now. Only the latest of them may run,
so a pipeline never runs twice in a row to catch up; earlier ones are recorded as skipped.
With ``catch_up="skip"`` the latest runs only if it is no more than ``grace_seconds`` late,
so after downtime nothing missed runs and the scheduler waits for the next fire time; with
``catch_up="last"`` the latest missed one runs once. Schedules are read in UTC.
"""

from __future__ import annotations

import importlib
import os
import signal
import sys
import threading
import traceback
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import ModuleType
from typing import Any

from sqlalchemy import Connection, Table, case, exc, func, or_, select, update

from tidal.errors import InvalidValueError, TidalError
from tidal.ids import digest_bytes, new_id, now_ms
from tidal.pipelines.errors import PipelineDefinitionError
from tidal.pipelines.graph import Pipeline, load_pipeline
from tidal.pipelines.runner import run_pipeline
from tidal.pipelines.schedule import check_cron
from tidal.pipelines.schema import pipeline_runs, schedule_triggers, scheduler_leases
from tidal.store.schema import KEY_LENGTH
from tidal.store.workspace import Workspace, current_workspace

CATCH_UP_POLICIES = ("skip", "last")

#: At most this many missed fire times of one pipeline are recorded after a long downtime (the
#: latest ones); a minutely schedule down for a month would otherwise write 43,200 rows.
MAX_RECORDED_MISSED = 1000


@dataclass(frozen=True)
class Trigger:
    """What the scheduler did with one fire time of one pipeline."""

    pipeline: str
    fire_time: datetime
    status: str  # skipped, finished or failed
    owner: str
    pipeline_run_id: str | None = None
    error: str | None = None


def _ms(moment: datetime) -> int:
    return int(moment.timestamp() * 1000)


def _utc(moment: datetime) -> datetime:
    if moment.tzinfo is None:
        raise InvalidValueError("the scheduler's clock must give timezone-aware datetimes",
                                field="clock")
    return moment.astimezone(UTC)


def _system_clock() -> datetime:
    return datetime.now(UTC)


def due_fire_times(schedule: str, after: datetime, now: datetime,
                   limit: int = MAX_RECORDED_MISSED + 1) -> list[datetime]:
    """The fire times of ``schedule`` in (``after``, ``now``], oldest first: at most the
    ``limit`` latest, found walking back from ``now`` so a long downtime costs ``limit``
    steps, not one per missed fire time."""
    from croniter import croniter

    # croniter's get_prev is strictly before its start; a microsecond later includes ``now``
    times = []
    walk = croniter(schedule, now + timedelta(microseconds=1))
    while len(times) < limit:
        moment = walk.get_prev(datetime).replace(fold=0)
        if moment <= after:
            break
        times.append(moment)
    times.reverse()
    return times


def _insert_if_absent(conn: Connection, table: Table, values: dict[str, Any]) -> bool:
    """INSERT ... ON CONFLICT DO NOTHING: True if the row went in, False if a row with the
    same key was there (left as it is, with no error to roll back the transaction for). The
    answer comes from RETURNING, as an INSERT's rowcount is not reported on every driver."""
    if conn.dialect.name == "sqlite":
        from sqlalchemy.dialects.sqlite import insert
    else:
        from sqlalchemy.dialects.postgresql import insert
    return conn.execute(insert(table).values(values).on_conflict_do_nothing()
                        .returning(*table.primary_key.columns)).first() is not None


class Scheduler:
    """Starts the due runs of scheduled pipelines on one workspace; see the module docstring.

    ``tick(now)`` is one evaluation (what tests drive with their own times); ``run_forever()``
    ticks every ``poll_seconds`` until ``stop()``, SIGTERM or SIGINT. ``clock`` returns the
    current time as an aware datetime (default: the system clock, UTC). ``lease`` names the
    lease; by default it is derived from the pipelines' names, so schedulers of the same
    pipelines exclude each other while schedulers of other pipelines run beside them.
    ``lease_seconds``: how long a lease lasts unrenewed (default: 30 s, or three polls), i.e.
    how soon a standby takes over from a scheduler that died. ``grace_seconds``: how late a
    fire time may be seen and still run under ``catch_up="skip"`` (default: a minute, or two
    polls). ``report`` receives a line for each trigger and each lease taken or lost;
    ``leader`` says whether the last tick held the lease.
    """

    def __init__(self, pipelines: Sequence[Pipeline], *, workspace: Workspace | None = None,
                 catch_up: str = "skip", poll_seconds: float = 5.0,
                 clock: Callable[[], datetime] | None = None, executor: str = "inline",
                 owner: str | None = None, lease: str | None = None,
                 lease_seconds: float | None = None, grace_seconds: float | None = None,
                 report: Callable[[str], None] | None = None) -> None:
        from tidal.pipelines.executors import EXECUTORS
        from tidal.tracking.environment import host_name

        self.pipelines = _checked_pipelines(pipelines)
        if catch_up not in CATCH_UP_POLICIES:
            raise InvalidValueError(f"catch-up policy {catch_up!r} is not one of "
                                    f"{', '.join(CATCH_UP_POLICIES)}", field="catch_up")
        if executor not in EXECUTORS:
            raise InvalidValueError(f"executor {executor!r} is not one of "
                                    f"{', '.join(EXECUTORS)}", field="executor")
        if not poll_seconds > 0:
            raise InvalidValueError(f"poll_seconds must be positive, got {poll_seconds!r}",
                                    field="poll_seconds")
        self.lease_seconds = max(30.0, 3 * poll_seconds) if lease_seconds is None \
            else lease_seconds
        if not self.lease_seconds >= 2 * poll_seconds:
            # a lease shorter than two polls would lapse between the holder's own renewals
            raise InvalidValueError(f"lease_seconds ({self.lease_seconds}) must be at least "
                                    f"twice poll_seconds ({poll_seconds})",
                                    field="lease_seconds")
        self.workspace = workspace or current_workspace()
        self.catch_up = catch_up
        self.poll_seconds = poll_seconds
        self.grace_seconds = max(60.0, 2 * poll_seconds) if grace_seconds is None \
            else grace_seconds
        self.clock = clock or _system_clock
        self.executor = executor
        self.owner = owner or f"{host_name()}:{os.getpid()}:{new_id()[:8]}"
        self.lease = lease or _lease_name(self.pipelines)
        self.report = report or (lambda line: None)
        self.leader = False
        self._stop = threading.Event()
        # where a pipeline with no trigger yet starts counting: this scheduler's first tick
        # (leading or not, so a standby that takes over counts from its start), so that
        # starting a scheduler never runs history
        self._started: datetime | None = None

    # -- one evaluation ------------------------------------------------------------------

    def tick(self, now: datetime | None = None) -> list[Trigger]:
        """Take or renew the lease, then record and run what is due at ``now`` (default: the
        clock). A standby (the lease is someone else's) does nothing and returns []."""
        now = _utc(now or self.clock())
        self._started = self._started or now
        leader = self._take_lease(now)
        if leader != self.leader:
            self.report(f"{self.owner} {'took' if leader else 'lost'} the lease {self.lease!r}")
            self.leader = leader
        if not leader:
            return []
        triggers: list[Trigger] = []
        for pipeline in self.pipelines:
            if self._stop.is_set():
                break  # what is left is due at the next start, under the catch-up policy
            triggers += self._evaluate(pipeline, now)
        return triggers

    def _evaluate(self, pipeline: Pipeline, now: datetime) -> list[Trigger]:
        assert pipeline.schedule is not None
        with self.workspace.db.read() as conn:
            last = conn.execute(select(func.max(schedule_triggers.c.fire_time)).where(
                schedule_triggers.c.pipeline == pipeline.name)).scalar()
        assert self._started is not None
        after = self._started if last is None else datetime.fromtimestamp(last / 1000, UTC)
        due = due_fire_times(pipeline.schedule, after, now)
        if not due:
            return []
        latest = due[-1]
        run_latest = self.catch_up == "last" \
            or (now - latest).total_seconds() <= self.grace_seconds
        triggers = self._skip(pipeline, due if not run_latest else due[:-1])
        if run_latest:
            trigger = self._fire(pipeline, latest)
            if trigger is not None:
                triggers.append(trigger)
        return triggers

    def _skip(self, pipeline: Pipeline, fire_times: list[datetime]) -> list[Trigger]:
        """Record missed fire times as skipped (those another scheduler recorded first stay
        as they are)."""
        if not fire_times:
            return []
        claimed = _ms(_utc(self.clock()))

        def work(conn: Connection) -> list[datetime]:
            recorded = []
            for moment in fire_times:
                if _insert_if_absent(conn, schedule_triggers, self._row(
                        pipeline, moment, claimed, "skipped", ended_at=claimed)):
                    recorded.append(moment)
            return recorded

        recorded = self.workspace.db.write(work)
        if recorded:
            self.report(f"{pipeline.name}: skipped {len(recorded)} missed fire time(s), the "
                        f"latest {recorded[-1].isoformat()} (catch-up: {self.catch_up})")
        return [Trigger(pipeline.name, moment, "skipped", self.owner) for moment in recorded]

    def _fire(self, pipeline: Pipeline, fire_time: datetime) -> Trigger | None:
        """Claim ``fire_time`` and run the pipeline for it; None if another scheduler claimed
        it first."""
        claimed = _ms(_utc(self.clock()))
        row = self._row(pipeline, fire_time, claimed, "started")
        if not self.workspace.db.write(
                lambda conn: _insert_if_absent(conn, schedule_triggers, row)):
            return None
        self.report(f"{pipeline.name}: started the run for {fire_time.isoformat()}")
        run_id: str | None = None
        error: str | None = None
        started = now_ms()
        try:
            with self._renewing_lease():
                run_id = run_pipeline(pipeline, {}, executor=self.executor,
                                      workspace=self.workspace).id
        except BaseException as failure:
            error = failure.message if isinstance(failure, TidalError) \
                else "".join(traceback.format_exception_only(failure)).strip()
            run_id = self._run_started_since(pipeline, started)
            self._end_trigger(row["id"], "failed", run_id, error)
            if not isinstance(failure, Exception):
                raise  # an interrupt or exit: recorded, then let through
        else:
            self._end_trigger(row["id"], "finished", run_id, None)
        status = "failed" if error is not None else "finished"
        self.report(f"{pipeline.name}: run {run_id or '(none)'} for {fire_time.isoformat()} "
                    f"{status}" + (f": {error.splitlines()[0]}" if error else ""))
        return Trigger(pipeline.name, fire_time, status, self.owner, run_id, error)

    def _row(self, pipeline: Pipeline, fire_time: datetime, claimed: int, status: str,
             ended_at: int | None = None) -> dict[str, Any]:
        return {"id": new_id(), "pipeline": pipeline.name, "schedule": pipeline.schedule,
                "fire_time": _ms(fire_time), "claimed_at": claimed, "owner": self.owner,
                "status": status, "ended_at": ended_at}

    def _end_trigger(self, trigger_id: str, status: str, run_id: str | None,
                     error: str | None) -> None:
        ended = _ms(_utc(self.clock()))
        self.workspace.db.write(lambda conn: conn.execute(update(schedule_triggers).where(
            schedule_triggers.c.id == trigger_id).values(
            status=status, pipeline_run_id=run_id, ended_at=ended, error=error)))

    def _run_started_since(self, pipeline: Pipeline, started: int) -> str | None:
        """The pipeline run this process started for a trigger that failed: run_pipeline
        raises without handing back the run's id, so it is looked up (None when the failure
        came before the run was recorded, e.g. a pipeline that no longer traces)."""
        from tidal.tracking.environment import host_name
        from tidal.tracking.schema import runs

        with self.workspace.db.read() as conn:
            return conn.execute(
                select(pipeline_runs.c.id).join(runs, runs.c.id == pipeline_runs.c.id)
                .where(pipeline_runs.c.pipeline == pipeline.name,
                       pipeline_runs.c.target == pipeline.target,
                       runs.c.start_time >= started, runs.c.pid == os.getpid(),
                       runs.c.host == host_name())
                .order_by(runs.c.start_time.desc()).limit(1)).scalar()

    # -- the lease ---------------------------------------------------------------------------

    def _take_lease(self, now: datetime) -> bool:
        """Take the lease if it is free or expired, renew it if it is ours: True if we hold
        it now. One UPDATE decides between contenders (SQLite serializes writers; PostgreSQL
        re-checks the condition on the row a concurrent writer just changed)."""
        at, until = _ms(now), _ms(now) + int(self.lease_seconds * 1000)
        leases = scheduler_leases

        def work(conn: Connection) -> bool:
            if conn.execute(update(leases).where(
                    leases.c.name == self.lease,
                    or_(leases.c.owner == self.owner, leases.c.expires_at < at)).values(
                    owner=self.owner, expires_at=until,
                    acquired_at=case((leases.c.owner == self.owner, leases.c.acquired_at),
                                     else_=at))).rowcount:
                return True
            return _insert_if_absent(conn, leases, {"name": self.lease, "owner": self.owner,
                                                    "acquired_at": at, "expires_at": until})

        return self.workspace.db.write(work)

    def _release_lease(self) -> None:
        """Let a standby take over at its next poll instead of after the lease expires."""
        self.workspace.db.write(lambda conn: conn.execute(update(scheduler_leases).where(
            scheduler_leases.c.name == self.lease, scheduler_leases.c.owner == self.owner)
            .values(expires_at=0)))
        self.leader = False

    @contextmanager
    def _renewing_lease(self) -> Iterator[None]:
        """Keep renewing the lease while a run blocks the ticks, so a long run does not hand
        the schedule to a standby."""
        done = threading.Event()

        def renew() -> None:
            while not done.wait(self.lease_seconds / 3):
                try:
                    held = self._take_lease(_utc(self.clock()))
                except TidalError as error:  # tried again at the next renewal
                    self.report(f"{self.owner} could not renew the lease: {error.message}")
                    continue
                if not held:  # the run goes on: its trigger is claimed, so nobody repeats it
                    self.report(f"{self.owner} lost the lease {self.lease!r} during a run")

        keeper = threading.Thread(target=renew, name="tidal-scheduler-lease", daemon=True)
        keeper.start()
        try:
            yield
        finally:
            done.set()
            keeper.join()

    # -- the loop ----------------------------------------------------------------------------

    def stop(self) -> None:
        """Ask ``run_forever`` to return once the run in progress (if any) has finished."""
        self._stop.set()

    def run_forever(self) -> None:
        """Tick every ``poll_seconds`` until ``stop()``, SIGTERM or SIGINT (handled only when
        called from the main thread). A signal lets the run in progress finish; a second one
        gets the default behaviour, for when that run must not be waited for. A store that
        fails a tick (a database restarting) is reported and tried again at the next one."""
        previous: dict[int, Any] = {}

        def on_signal(signum: int, frame: Any) -> None:
            self.report(f"{signal.Signals(signum).name}: stopping after the run in progress")
            self.stop()
            for number, handler in previous.items():
                signal.signal(number, handler)

        if threading.current_thread() is threading.main_thread():
            for number in (signal.SIGTERM, signal.SIGINT):
                previous[number] = signal.signal(number, on_signal)
        try:
            while not self._stop.is_set():
                try:
                    self.tick()
                except TidalError as error:
                    self.report(f"tick failed: {error.message}")
                except exc.DBAPIError as error:
                    self.report(f"tick failed: {error.orig}")
                self._stop.wait(self.poll_seconds)
        finally:
            for number, handler in previous.items():
                signal.signal(number, handler)
            if self.leader:
                self._release_lease()


def _checked_pipelines(pipelines: Sequence[Pipeline]) -> list[Pipeline]:
    """Scheduled pipelines only, with valid schedules and runnable without parameters: each
    is refused here, before the scheduler starts, rather than at its first fire time."""
    checked: dict[str, Pipeline] = {}
    for item in pipelines:
        if not isinstance(item, Pipeline):
            raise InvalidValueError(f"the scheduler takes @tidal.pipeline functions, got "
                                    f"{type(item).__name__}", field="pipelines")
        if item.schedule is None:
            raise InvalidValueError(
                f"pipeline {item.name!r} has no schedule; give it one with "
                "@tidal.pipeline(schedule='0 3 * * *'), or run it with tidal pipeline run",
                field="schedule")
        check_cron(item.schedule)
        try:
            item.parameters({})
        except PipelineDefinitionError as error:
            raise PipelineDefinitionError(f"{error.message}; a scheduled run passes no "
                                          "parameters, so each needs a default",
                                          field="params") from None
        if checked.setdefault(item.name, item) is not item:
            raise InvalidValueError(f"two pipelines are named {item.name!r}; triggers are "
                                    "recorded by name, so each needs its own", field="name")
    if not checked:
        raise InvalidValueError("no pipelines to schedule", field="pipelines")
    return list(checked.values())


def _lease_name(pipelines: Iterable[Pipeline]) -> str:
    name = "pipelines:" + ",".join(sorted(p.name for p in pipelines))
    return name if len(name) <= KEY_LENGTH else "pipelines:" + digest_bytes(name.encode())


# -- discovery ------------------------------------------------------------------------------

def load_pipelines(specs: str | Iterable[str]) -> list[Pipeline]:
    """The pipelines named by ``specs``: ``MODULE:PIPELINE``, ``FILE.py:PIPELINE``, or a
    module or ``FILE.py`` alone for every scheduled pipeline it defines at module level.

    A file is imported as a module under its own name with its folder on ``sys.path``, so the
    targets of its steps import in any process (the process executor's workers included)."""
    found: dict[int, Pipeline] = {}
    for spec in [specs] if isinstance(specs, str) else specs:
        for item in _load_one(spec):
            found.setdefault(id(item), item)
    return list(found.values())


def _load_one(spec: str) -> list[Pipeline]:
    module_name, attribute = spec, ""
    head, sep, tail = spec.rpartition(":")
    if sep and all(part.isidentifier() for part in tail.split(".")):
        module_name, attribute = head, tail
    module = _import_file(Path(module_name), spec) if module_name.endswith(".py") \
        else _import(module_name, spec)
    if attribute:
        return [load_pipeline(f"{module.__name__}:{attribute}")]
    scheduled = [value for value in vars(module).values()
                 if isinstance(value, Pipeline) and value.schedule is not None]
    if not scheduled:
        raise InvalidValueError(f"{spec!r} defines no pipeline with a schedule at module "
                                "level", field="pipeline")
    return scheduled


def _import(name: str, spec: str) -> ModuleType:
    try:
        return importlib.import_module(name)
    except TidalError:  # a bad definition (an invalid schedule...) says so itself
        raise
    except ImportError as error:
        raise InvalidValueError(f"pipeline {spec!r}: cannot import {name!r} ({error})",
                                field="pipeline") from None
    except Exception as error:  # the user's module failed: one line rather than a traceback
        raise InvalidValueError(f"pipeline {spec!r}: importing {name!r} raised "
                                f"{type(error).__name__}: {error}", field="pipeline") from error


def _import_file(path: Path, spec: str) -> ModuleType:
    if not path.is_file():
        raise InvalidValueError(f"no Python file {str(path)!r}", field="pipeline")
    folder, name = str(path.resolve().parent), path.stem
    loaded = sys.modules.get(name)
    if loaded is not None:
        if Path(getattr(loaded, "__file__", "") or "").resolve() != path.resolve():
            raise InvalidValueError(f"{str(path)!r} would be imported as module {name!r}, "
                                    f"which is already {loaded!r}; rename the file",
                                    field="pipeline")
        return loaded
    if folder not in sys.path:
        sys.path.insert(0, folder)
    return _import(name, spec)

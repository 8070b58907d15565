"""The scheduler: one run per fire time however many schedulers watch a workspace, catch-up
after downtime, lease takeover, a clean stop on SIGTERM, and schedules refused up front."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import func, select
from typer.testing import CliRunner

import tidal
from tests.pipelines import flows, scheduled_flows
from tidal.cli.main import app
from tidal.errors import InvalidValueError
from tidal.pipelines import InvalidCronError, Pipeline, PipelineDefinitionError
from tidal.pipelines.scheduler import (
    MAX_RECORDED_MISSED,
    Scheduler,
    Trigger,
    due_fire_times,
    load_pipelines,
)
from tidal.pipelines.schema import pipeline_runs, schedule_triggers, scheduler_leases

REPO = Path(__file__).resolve().parents[2]
#: Half a minute past a minute, so each minutely fire time is 30 s old when a tick sees it.
T0 = datetime(2026, 1, 5, 10, 0, 30, tzinfo=UTC)


class FakeClock:
    """The time every scheduler of a test reads; the test moves it."""

    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now


def at(minute: int, second: int = 0) -> datetime:
    return datetime(2026, 1, 5, 10, minute, second, tzinfo=UTC)


def trigger_rows(ws, pipeline: str | None = None) -> list:
    query = select(schedule_triggers).order_by(schedule_triggers.c.fire_time)
    if pipeline is not None:
        query = query.where(schedule_triggers.c.pipeline == pipeline)
    with ws.db.read() as conn:
        return conn.execute(query).all()


def run_rows(ws, pipeline: str) -> list:
    with ws.db.read() as conn:
        return conn.execute(select(pipeline_runs).where(pipeline_runs.c.pipeline == pipeline)
                            .order_by(pipeline_runs.c.created_at)).all()


def lease_row(ws):
    with ws.db.read() as conn:
        return conn.execute(select(scheduler_leases)).one()


def tick_together(schedulers: list[Scheduler], now: datetime) -> list[list[Trigger]]:
    """Every scheduler ticks at ``now`` in its own thread, released at the same moment."""
    barrier = threading.Barrier(len(schedulers))
    results: list = [None] * len(schedulers)

    def tick(index: int) -> None:
        barrier.wait()
        try:
            results[index] = schedulers[index].tick(now)
        except BaseException as error:  # noqa: BLE001 - re-raised in the test's thread
            results[index] = error

    threads = [threading.Thread(target=tick, args=(i,)) for i in range(len(schedulers))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    for result in results:
        if isinstance(result, BaseException):
            raise result
    return results


@pytest.fixture
def local_ws(tmp_path):
    """A SQLite workspace, for what does not depend on the backend."""
    return tidal.workspace(tmp_path / "local")


def scheduler(ws, pipelines: list[Pipeline], clock: Callable[[], datetime], owner: str,
              **options) -> Scheduler:
    return Scheduler(pipelines, workspace=ws, clock=clock, owner=owner, **options)


# -- two schedulers, one workspace -------------------------------------------------------------

@pytest.mark.parametrize("leases", ["shared", "separate"])
def test_two_schedulers_start_exactly_one_run_per_tick(workspace, leases):
    """A lease shorter than a tick lapses before every tick, so both schedulers race for it
    each time; with separate leases both lead and only the trigger row decides."""
    clock = FakeClock(T0)
    pair = [scheduler(workspace, [scheduled_flows.minutely], clock, owner, lease_seconds=30,
                      lease=None if leases == "shared" else f"lease-{owner}")
            for owner in ("a", "b")]
    assert tick_together(pair, T0) == [[], []]  # the start: nothing is due yet
    for minute in range(1, 6):
        clock.now = at(minute, 30)
        results = tick_together(pair, clock.now)
        started = [t for result in results for t in result]
        assert [(t.fire_time, t.status) for t in started] == [(at(minute), "finished")], \
            f"tick {minute}: {started}"
    rows = trigger_rows(workspace)
    runs = run_rows(workspace, "minutely")
    assert [r.fire_time for r in rows] == [int(at(m).timestamp() * 1000) for m in range(1, 6)]
    assert {r.status for r in rows} == {"finished"}
    assert len(runs) == 5 and {r.status for r in runs} == {"finished"}
    assert sorted(r.pipeline_run_id for r in rows) == sorted(r.id for r in runs)
    if leases == "shared":  # whoever won each race, the other never ran a thing
        assert {r.owner for r in rows} <= {"a", "b"}


def test_the_unique_trigger_lets_one_of_many_claims_through(workspace):
    """The second line of defence alone: eight schedulers that all lead claim one fire
    time at once; one runs it."""
    clock = FakeClock(T0)
    many = [scheduler(workspace, [scheduled_flows.minutely], clock, f"s{i}", lease=f"l{i}")
            for i in range(8)]
    tick_together(many, T0)
    results = tick_together(many, at(1, 5))
    assert sorted(len(result) for result in results) == [0] * 7 + [1]
    assert len(trigger_rows(workspace)) == 1 and len(run_rows(workspace, "minutely")) == 1


# -- catch-up after downtime -------------------------------------------------------------------

@pytest.mark.parametrize("catch_up, expected", [
    ("skip", [(10, "skipped"), (15, "skipped"), (20, "skipped")]),
    ("last", [(10, "skipped"), (15, "skipped"), (20, "finished")]),
])
def test_catch_up_after_downtime(workspace, catch_up, expected):
    clock = FakeClock(at(4, 50))
    first = scheduler(workspace, [scheduled_flows.every_five_minutes], clock, "first")
    first.tick()
    clock.now = at(5, 10)
    assert [t.status for t in first.tick()] == ["finished"]
    # down from 10:05:10 to 10:22: 10:10, 10:15 and 10:20 were missed
    clock.now = at(22)
    restarted = scheduler(workspace, [scheduled_flows.every_five_minutes], clock, "second",
                          catch_up=catch_up)
    triggers = restarted.tick()
    assert [(t.fire_time.minute, t.status) for t in triggers] == expected
    assert len(run_rows(workspace, "every_five_minutes")) == 1 + (catch_up == "last")
    clock.now = at(24)
    assert restarted.tick() == []  # nothing new is due before 10:25
    clock.now = at(25, 5)
    assert [(t.fire_time.minute, t.status) for t in restarted.tick()] == [(25, "finished")]
    rows = trigger_rows(workspace)
    assert [(datetime.fromtimestamp(r.fire_time / 1000, UTC).minute, r.status) for r in rows] \
        == [(5, "finished"), *expected, (25, "finished")]
    assert all(r.pipeline_run_id is None for r in rows if r.status == "skipped")


def test_a_late_fire_time_within_the_grace_still_runs_under_skip(workspace):
    clock = FakeClock(at(0, 30))
    one = scheduler(workspace, [scheduled_flows.minutely], clock, "one")
    one.tick()
    clock.now = at(1, 50)  # 50 s late, under the default grace of 60 s
    assert [t.status for t in one.tick()] == ["finished"]


def test_a_long_downtime_records_only_the_latest_missed_fire_times(workspace):
    clock = FakeClock(at(0, 30))
    one = scheduler(workspace, [scheduled_flows.minutely], clock, "one", catch_up="last")
    one.tick()
    clock.now = at(1, 30)
    one.tick()
    clock.now = at(1, 30) + timedelta(days=3)
    triggers = one.tick()
    assert len(triggers) == MAX_RECORDED_MISSED + 1
    assert [t.status for t in triggers[-2:]] == ["skipped", "finished"]
    assert triggers[-1].fire_time == at(1) + timedelta(days=3)


# -- the lease -----------------------------------------------------------------------------------

def test_a_standby_takes_over_when_the_lease_expires(workspace):
    clock = FakeClock(T0)
    leader = scheduler(workspace, [scheduled_flows.minutely], clock, "leader",
                       lease_seconds=120)
    standby = scheduler(workspace, [scheduled_flows.minutely], clock, "standby",
                        lease_seconds=120)
    for minute in (0, 1, 2):
        clock.now = at(minute, 30)
        assert len(leader.tick()) == (minute > 0)
        assert standby.tick() == []
    assert leader.leader and not standby.leader
    # the leader dies at 10:02:30 without a word; its lease runs until 10:04:30
    clock.now = at(3, 30)
    assert standby.tick() == [] and not standby.leader
    clock.now = at(4, 30)
    assert standby.tick() == [] and not standby.leader  # expires_at is not yet in the past
    clock.now = at(5, 30)
    triggers = standby.tick()
    assert standby.leader and lease_row(workspace).owner == "standby"
    assert [(t.fire_time.minute, t.status) for t in triggers] == \
        [(3, "skipped"), (4, "skipped"), (5, "finished")]
    # the old leader comes back: the lease is taken, so it stands by
    clock.now = at(6, 30)
    assert leader.tick() == [] and not leader.leader
    assert [t.fire_time.minute for t in standby.tick()] == [6]
    owners = {datetime.fromtimestamp(r.fire_time / 1000, UTC).minute: r.owner
              for r in trigger_rows(workspace)}
    assert owners == {1: "leader", 2: "leader", 3: "standby", 4: "standby", 5: "standby",
                      6: "standby"}


def test_a_stopped_scheduler_hands_its_lease_over_at_once(workspace):
    clock = FakeClock(T0)
    first = scheduler(workspace, [scheduled_flows.minutely], clock, "first", poll_seconds=0.01)
    second = scheduler(workspace, [scheduled_flows.minutely], clock, "second")
    loop = threading.Thread(target=first.run_forever)
    loop.start()
    deadline = time.monotonic() + 30
    while not first.leader and time.monotonic() < deadline:
        time.sleep(0.01)
    assert first.leader and second.tick() == []
    first.stop()
    loop.join(timeout=30)
    assert not loop.is_alive() and not first.leader
    assert lease_row(workspace).expires_at == 0
    second.tick()
    assert second.leader


def test_renewals_keep_the_lease_through_a_long_run(workspace, monkeypatch):
    """A run longer than the lease does not hand the schedule to a standby."""
    clock = FakeClock(T0)
    leader = scheduler(workspace, [scheduled_flows.minutely], clock, "leader",
                       poll_seconds=0.05, lease_seconds=0.6)
    standby = scheduler(workspace, [scheduled_flows.minutely], clock, "standby",
                        poll_seconds=0.05, lease_seconds=0.6)
    leader.tick()
    standby.tick()
    seen: list[bool] = []

    def slow_run(*args, **kwargs):
        for _ in range(12):  # the clock moves 0.1 s per 0.1 s at most: two leases in all
            time.sleep(0.1)
            clock.now += timedelta(seconds=0.1)
            seen.append(standby.tick() == [] and not standby.leader)
        return tidal.pipelines.runner.PipelineRun("r" * 32, "minutely", "finished")

    monkeypatch.setattr("tidal.pipelines.scheduler.run_pipeline", slow_run)
    clock.now = at(1, 0)
    assert [t.status for t in leader.tick()] == ["finished"]
    assert seen == [True] * 12


# -- failures ------------------------------------------------------------------------------------

def test_a_failing_run_is_recorded_and_the_schedule_goes_on(workspace):
    clock = FakeClock(T0)
    one = scheduler(workspace, [scheduled_flows.failing_minutely, scheduled_flows.minutely],
                    clock, "one")
    one.tick()
    for minute in (1, 2):
        clock.now = at(minute, 30)
        triggers = {t.pipeline: t for t in one.tick()}
        assert triggers["minutely"].status == "finished"
        failed = triggers["failing_minutely"]
        assert failed.status == "failed" and "the scheduled source was down" in failed.error
    rows = trigger_rows(workspace, "failing_minutely")
    runs = run_rows(workspace, "failing_minutely")
    assert [r.status for r in rows] == ["failed", "failed"]
    assert [r.pipeline_run_id for r in rows] == [r.id for r in runs]
    assert {r.status for r in runs} == {"failed"}
    assert all("the scheduled source was down" in r.error for r in rows)


# -- refused up front ------------------------------------------------------------------------------

def test_an_invalid_cron_expression_is_refused_before_anything_runs(local_ws):
    with pytest.raises(InvalidCronError, match="'every minute' is not a cron expression"):
        tidal.pipeline(schedule="every minute")
    bad = Pipeline(scheduled_flows.minutely.function, "bad", "61 * * * *")
    with pytest.raises(InvalidCronError, match="'61 \\* \\* \\* \\*' is not a cron"):
        Scheduler([bad], workspace=local_ws)


@pytest.mark.parametrize("pipelines, error, message", [
    ([scheduled_flows.unscheduled], InvalidValueError, "'unscheduled' has no schedule"),
    ([scheduled_flows.needs_a_parameter], PipelineDefinitionError,
     "missing a required argument: 'rows'; a scheduled run passes no parameters"),
    ([scheduled_flows.minutely, scheduled_flows.minutely], None, None),
    ([], InvalidValueError, "no pipelines to schedule"),
])
def test_pipelines_a_scheduler_cannot_run_are_refused(local_ws, pipelines, error, message):
    if error is None:  # the same pipeline twice is one pipeline
        assert len(Scheduler(pipelines, workspace=local_ws).pipelines) == 1
        return
    with pytest.raises(error, match=message):
        Scheduler(pipelines, workspace=local_ws)


@pytest.mark.parametrize("options, field", [
    ({"catch_up": "all"}, "catch_up"), ({"executor": "cloud"}, "executor"),
    ({"poll_seconds": 0}, "poll_seconds"), ({"poll_seconds": 10, "lease_seconds": 15},
                                            "lease_seconds"),
])
def test_bad_options_are_refused(local_ws, options, field):
    with pytest.raises(InvalidValueError) as caught:
        Scheduler([scheduled_flows.minutely], workspace=local_ws, **options)
    assert caught.value.field == field


def _cli(*args: str):
    return CliRunner().invoke(app, list(args), env={"NO_COLOR": "1", "COLUMNS": "200"},
                              catch_exceptions=False)


def test_the_command_refuses_an_unscheduled_pipeline_and_a_bad_cron(workspace, backend,
                                                                   tmp_path, monkeypatch):
    monkeypatch.setattr(sys, "path", list(sys.path))  # the command adds folders to it
    where = ["-w", backend.db_url, "--artifacts", backend.artifacts]
    result = _cli("scheduler", "tests.pipelines.scheduled_flows:unscheduled", *where)
    assert result.exit_code == 2 and result.stdout == ""
    assert result.stderr.startswith("error: pipeline 'unscheduled' has no schedule")
    name = f"bad_cron_{uuid.uuid4().hex[:8]}"
    (tmp_path / f"{name}.py").write_text(
        "import tidal\n\n@tidal.step\ndef touch() -> int:\n    raise SystemExit('ran')\n\n"
        "@tidal.pipeline(schedule='every minute')\ndef nightly():\n    touch()\n")
    result = _cli("scheduler", str(tmp_path / f"{name}.py"), *where)
    assert result.exit_code == 2
    assert "'every minute' is not a cron expression" in result.stderr
    assert "Traceback" not in result.stderr
    assert run_rows(workspace, "nightly") == [] and trigger_rows(workspace) == []


# -- loading pipelines -----------------------------------------------------------------------------

def test_pipelines_load_from_modules_and_files(tmp_path, monkeypatch):
    monkeypatch.setattr(sys, "path", list(sys.path))  # a file's folder is added to it
    assert load_pipelines("tests.pipelines.scheduled_flows:minutely") == \
        [scheduled_flows.minutely]
    everything = load_pipelines(["tests.pipelines.scheduled_flows",
                                 "tests.pipelines.scheduled_flows:minutely"])
    assert set(everything) == {scheduled_flows.minutely, scheduled_flows.every_five_minutes,
                               scheduled_flows.failing_minutely, scheduled_flows.every_second,
                               scheduled_flows.needs_a_parameter}
    name = f"nightly_{uuid.uuid4().hex[:8]}"
    path = tmp_path / f"{name}.py"
    path.write_text("import tidal\n\n@tidal.step\ndef one() -> int:\n    return 1\n\n"
                    "@tidal.pipeline(schedule='0 3 * * *')\ndef nightly():\n    one()\n\n"
                    "@tidal.pipeline\ndef by_hand():\n    one()\n")
    (found,) = load_pipelines(str(path))
    assert found.name == "nightly" and found.target == f"{name}:nightly"
    assert load_pipelines(f"{path}:by_hand")[0].name == "by_hand"
    with pytest.raises(InvalidValueError, match="defines no pipeline with a schedule"):
        load_pipelines("tests.pipelines.flows")
    with pytest.raises(InvalidValueError, match="no Python file"):
        load_pipelines(str(tmp_path / "absent.py"))
    with pytest.raises(InvalidValueError, match="is not a @tidal.pipeline"):
        load_pipelines("tests.pipelines.flows:load")
    with pytest.raises(InvalidValueError, match="cannot import 'tests.pipelines.absent'"):
        load_pipelines("tests.pipelines.absent:daily")
    broken = tmp_path / f"broken_{uuid.uuid4().hex[:8]}.py"
    broken.write_text("import tidal\n\nraise KeyError('no settings')\n")
    with pytest.raises(InvalidValueError, match="raised KeyError: 'no settings'"):
        load_pipelines(f"{broken}:daily")
    assert flows.training.schedule is None


def test_due_fire_times_walk_back_from_now():
    assert due_fire_times("* * * * *", at(0), at(3)) == [at(1), at(2), at(3)]
    assert due_fire_times("* * * * *", at(0), at(2, 59)) == [at(1), at(2)]
    assert due_fire_times("*/5 * * * *", at(1), at(4)) == []
    assert due_fire_times("* * * * *", at(0), at(30), limit=2) == [at(29), at(30)]


# -- the process, stopped by SIGTERM ---------------------------------------------------------------

def test_sigterm_stops_the_scheduler_after_the_run_in_progress(workspace, tmp_path):
    markers = tmp_path / "markers"
    markers.mkdir()
    proc = subprocess.Popen(
        [sys.executable, "-m", "tidal.cli.main", "scheduler",
         "tests.pipelines.scheduled_flows:every_second", "--poll", "0.2"],
        cwd=REPO, env={**os.environ, scheduled_flows.MARKER_DIR: str(markers),
                       "NO_COLOR": "1", "COLUMNS": "200"},
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 90
        while not list(markers.glob("started-*")) and proc.poll() is None \
                and time.monotonic() < deadline:
            time.sleep(0.05)
        assert list(markers.glob("started-*")), proc.communicate(timeout=5)
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 0, err
    assert "SIGTERM: stopping after the run in progress" in out and out.rstrip().endswith(
        "stopped"), out
    assert len(list(markers.glob("started-*"))) == len(list(markers.glob("finished-*"))) == 1
    (row,) = trigger_rows(workspace)
    assert row.status == "finished" and row.ended_at is not None
    (run,) = run_rows(workspace, "every_second")
    assert run.id == row.pipeline_run_id and run.status == "finished"
    with workspace.db.read() as conn:
        assert conn.execute(select(func.max(scheduler_leases.c.expires_at))).scalar() == 0

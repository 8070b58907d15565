"""Run liveness: a run whose process is SIGKILLed becomes killed once it has been silent for
the run timeout; a live run, which keeps beating, never does."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest
from sqlalchemy import select

import tidal
from tidal.tracking.schema import runs

HEARTBEAT_S = 0.5
TIMEOUT_S = 2.0
DEADLINE_S = 60  # a bound on waiting, never a claim about speed

# A run in a process of its own: prints its id, then lives until it is signalled.
RUN_FOREVER = """
import sys, time, tidal
run = tidal.start_run("liveness", name=sys.argv[1])
print(run.id, flush=True)
while True:
    time.sleep(0.05)
"""


@pytest.fixture(autouse=True)
def _short_timeout(monkeypatch: pytest.MonkeyPatch) -> None:
    """Heartbeats every half second, silence of two seconds taken as death (set before the
    workspace fixture opens the workspace, and inherited by the run processes)."""
    monkeypatch.setenv("TIDAL_RUN_HEARTBEAT_INTERVAL", str(HEARTBEAT_S))
    monkeypatch.setenv("TIDAL_RUN_TIMEOUT", str(TIMEOUT_S))


def _start(name: str) -> tuple[subprocess.Popen[str], str]:
    proc = subprocess.Popen([sys.executable, "-c", RUN_FOREVER, name], stdout=subprocess.PIPE,
                            text=True)
    run_id = proc.stdout.readline().strip()
    assert run_id, f"the run process exited with {proc.wait()}"
    return proc, run_id


def _wait_for(condition, what: str) -> None:
    deadline = time.monotonic() + DEADLINE_S
    while not condition():
        assert time.monotonic() < deadline, f"still waiting for {what} after {DEADLINE_S} s"
        time.sleep(0.2)


def test_a_sigkilled_run_becomes_killed_and_a_live_one_stays_running(workspace):
    victim, victim_id = _start("victim")
    survivor, survivor_id = _start("survivor")
    try:
        time.sleep(2 * HEARTBEAT_S)  # let it beat once or twice before it dies
        os.kill(victim.pid, signal.SIGKILL)
        victim.wait(timeout=30)

        _wait_for(lambda: tidal.get_run(victim_id).status == "killed", "the victim to be killed")
        killed = tidal.get_run(victim_id)
        last_beat = _heartbeat(workspace, victim_id)
        assert last_beat > killed.start_time.timestamp() * 1000  # it did beat while alive
        assert killed.end_time.timestamp() * 1000 == pytest.approx(last_beat, abs=1)
        assert "no heartbeat for more than 2 s" in killed.error

        survivor_run = tidal.get_run(survivor_id)
        assert survivor_run.status == "running"
        # well past the timeout since it started: only its heartbeats keep it running
        _wait_for(lambda: time.time() - survivor_run.start_time.timestamp() > 2 * TIMEOUT_S,
                  "two timeouts to pass")
        frame = tidal.search_runs("liveness")
        assert dict(zip(frame["run_id"], frame["status"])) == {
            victim_id: "killed", survivor_id: "running"}
        assert survivor.poll() is None
    finally:
        for proc in (victim, survivor):
            if proc.poll() is None:
                proc.kill()
                proc.wait(timeout=30)


def test_an_ended_run_stops_beating_and_keeps_its_status(workspace):
    with tidal.start_run("liveness") as run:
        run.log_metric("x", 1.0)
    time.sleep(TIMEOUT_S + HEARTBEAT_S)
    stored = tidal.get_run(run.id)
    assert stored.status == "finished" and stored.error is None


def _heartbeat(ws, run_id: str) -> int:
    with ws.db.read() as conn:
        return conn.execute(select(runs.c.heartbeat).where(runs.c.id == run_id)).scalar_one()

"""A controller killed at the worst moments: mid-rollout (SIGKILL of a real `tidal loop run`
process) and between the writes of a promotion. The next controller waits for the dead one's
lease, takes over, says so in the history, and finishes; at no point are there two champions,
two deployed versions or an endpoint without a live route."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
from pathlib import Path

import pytest

import tidal
from tests.loop.conftest import ENDPOINT, MODEL
from tests.loop.flows import stream
from tests.serving.conftest import wait_until
from tidal.loop import Controller, LeaseHeldError, history, read_state, tick
from tidal.serving import endpoint_history

ROOT = Path(__file__).resolve().parents[2]


def _controller(*args: str) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.Popen([sys.executable, "-m", "tidal.cli.main", "loop", "run",
                             "clicks-loop", "--lease-ttl", "3", *args], env=env, cwd=ROOT,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            start_new_session=True)


def _kinds(workspace) -> list[tuple[str, str]]:
    return [(d.kind, d.outcome) for d in history(ENDPOINT, workspace=workspace)]


def _check_invariants(workspace) -> None:
    """One champion, at most one deployed version, and every revision the endpoint ever had
    routes traffic somewhere."""
    versions = tidal.models.list_versions(MODEL, workspace=workspace)
    assert sum("champion" in v.aliases for v in versions) == 1
    assert sum(v.stage == "deployed" for v in versions) <= 1
    for revision in endpoint_history(ENDPOINT, workspace=workspace):
        assert revision.config.routes and sum(r.weight for r in revision.config.routes) > 0


def test_a_controller_killed_mid_rollout_is_resumed_by_the_next_one(world):
    w = world(interval="1s")
    w.send(stream(400, drifted=True, seed=3))
    first = _controller()
    try:
        wait_until(lambda: ("rollout", "started") in _kinds(w.workspace), timeout=120,
                   what="the first controller to start the canary")
    finally:
        os.killpg(first.pid, signal.SIGKILL)  # no chance to release its lease
        first.wait(10)
    state = read_state("clicks-loop", workspace=w.workspace)
    assert state.phase == "rollout" and state.step == 0 and state.challenger == 2
    _check_invariants(w.workspace)
    with pytest.raises(LeaseHeldError, match="another controller"):
        tick("clicks-loop", workspace=w.workspace)  # the dead one's lease has not expired

    second = _controller()
    try:
        wait_until(lambda: ("resume", "rollout") in _kinds(w.workspace), timeout=60,
                   what="the second controller to take over")
        w.wait_served({1, 2})
        w.send(stream(200, drifted=True, seed=4))
        wait_until(lambda: w.routes() == {f"models:/{MODEL}@challenger": 100.0}, timeout=60,
                   what="the second step")
        w.wait_served({2})
        w.send(stream(80, drifted=True, seed=5))
        wait_until(lambda: ("promote", "done") in _kinds(w.workspace), timeout=60,
                   what="the promotion")
    finally:
        second.send_signal(signal.SIGTERM)
        output = second.communicate(timeout=60)[0].decode()
    assert second.returncode == 0, output
    assert "loop controller stopped" in output
    assert _kinds(w.workspace) == [
        ("trigger", "fired"), ("retrain", "trained"), ("gate", "passed"),
        ("rollout", "started"), ("resume", "rollout"), ("rollout", "passed"),
        ("rollout", "started"), ("rollout", "passed"), ("promote", "done")]
    _check_invariants(w.workspace)
    assert tidal.models.get_version(f"models:/{MODEL}@champion",
                                    workspace=w.workspace).version == 2
    assert w.routes() == {f"models:/{MODEL}@champion": 100.0}
    tick("clicks-loop", workspace=w.workspace)  # SIGTERM gave the lease back: no wait


class _Died(BaseException):
    """A controller dying between two writes (BaseException: nothing catches it)."""


def test_a_promotion_cut_short_is_finished_by_the_next_controller(world, monkeypatch):
    w = world(rollout={"steps": [100]})
    w.send(stream(400, drifted=True, seed=3))
    first = Controller("clicks-loop", workspace=w.workspace, lease_ttl=1)
    first.tick()
    w.wait_served({2})
    w.send(stream(80, drifted=True, seed=4))
    real = tidal.models.aliases.set_alias

    def die_after_moving(*args, **kwargs):
        real(*args, **kwargs)
        raise _Died

    monkeypatch.setattr(tidal.models.aliases, "set_alias", die_after_moving)
    with pytest.raises(_Died):
        first.tick()  # the champion alias moved; nothing after it happened
    monkeypatch.undo()
    state = read_state("clicks-loop", workspace=w.workspace)
    assert state.phase == "promoting"
    assert "challenger" in tidal.models.get_version(f"models:/{MODEL}/2",
                                                    workspace=w.workspace).aliases
    _check_invariants(w.workspace)

    second = Controller("clicks-loop", workspace=w.workspace, lease_ttl=1)
    second.run(threading.Event(), ticks=1)  # waits out the dead controller's lease
    assert _kinds(w.workspace)[-3:] == [("rollout", "passed"), ("resume", "promoting"),
                                        ("promote", "done")]
    v2 = tidal.models.get_version(f"models:/{MODEL}/2", workspace=w.workspace)
    assert v2.aliases == ["champion"] and v2.stage == "deployed"
    assert read_state("clicks-loop", workspace=w.workspace).phase == "idle"
    assert w.routes() == {f"models:/{MODEL}@champion": 100.0}
    _check_invariants(w.workspace)

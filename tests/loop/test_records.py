"""The lease that keeps one controller per policy, fencing of a controller that lost it, and
retraining requests."""

from __future__ import annotations

import time

import pytest

from tests.loop.conftest import policy_dict
from tidal.loop import (
    Controller,
    LeaseHeldError,
    LeaseLostError,
    apply_policy,
    history,
    read_state,
    request_retrain,
    tick,
)
from tidal.loop.records import acquire_lease, release_lease, save_state


def test_one_holder_at_a_time_and_a_dead_holders_lease_can_be_taken_over(workspace):
    apply_policy(policy_dict())
    assert acquire_lease("clicks-loop", "a", 60_000, workspace=workspace) is None
    assert acquire_lease("clicks-loop", "a", 60_000, workspace=workspace) is None  # renewal
    with pytest.raises(LeaseHeldError, match="run by another controller \\(a\\)"):
        acquire_lease("clicks-loop", "b", 60_000, workspace=workspace)
    release_lease("clicks-loop", "a", workspace=workspace)
    assert acquire_lease("clicks-loop", "b", 50, workspace=workspace) is None
    time.sleep(0.1)  # b dies: its lease runs out
    assert acquire_lease("clicks-loop", "c", 60_000, workspace=workspace) == "b"


def test_a_controller_that_lost_its_lease_cannot_write(workspace):
    apply_policy(policy_dict())
    acquire_lease("clicks-loop", "stalled", 50, workspace=workspace)
    time.sleep(0.1)
    acquire_lease("clicks-loop", "newer", 60_000, workspace=workspace)
    state = read_state("clicks-loop")
    state.phase = "rollout"
    with pytest.raises(LeaseLostError, match="held by newer"):
        save_state(state, [], holder="stalled", workspace=workspace)
    assert read_state("clicks-loop").phase == "idle"
    with pytest.raises(LeaseHeldError):
        Controller("clicks-loop").tick()


def test_a_retraining_request_is_recorded_and_consumed_once(workspace):
    apply_policy(policy_dict())
    with pytest.raises(Exception, match="needs a reason"):
        request_retrain("clicks-loop", " ")
    request_retrain("clicks-loop", "new catalogue loaded")
    decisions = tick("clicks-loop")
    # the request fires; there is no champion yet, which the loop says instead of failing
    assert [(d.kind, d.outcome) for d in decisions] == [("trigger", "fired"),
                                                         ("retrain", "skipped")]
    assert "asked: new catalogue loaded" in decisions[0].summary
    assert "no champion" in decisions[1].summary
    assert [d.kind for d in history("clicks")] == ["request", "trigger", "retrain"]
    assert tick("clicks-loop") == []  # consumed: no second retraining

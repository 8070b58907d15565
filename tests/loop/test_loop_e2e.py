"""The closed loop end to end on small data, over a real server on loopback: drift fires, a
challenger is retrained on the endpoint's own labelled traffic, gated against the champion on
a newer holdout, rolled out as a canary and promoted; a worse challenger is stopped at the
gate; a challenger that fails on live traffic is rolled back by itself. Every scenario is
read back from ``tidal loop history``, as an operator would."""

from __future__ import annotations

import json
from typing import Any

from typer.testing import CliRunner

import tidal
from tests.loop.conftest import ENDPOINT, MODEL
from tests.loop.flows import stream
from tidal.cli.main import app
from tidal.loop import read_state, tick


def loop_history(workspace: Any) -> list[tuple[str, str]]:
    result = CliRunner().invoke(app, ["loop", "history", ENDPOINT, "--json",
                                      "-w", workspace.settings.db_url])
    assert result.exit_code == 0, result.output
    return [(d["kind"], d["outcome"]) for d in json.loads(result.output)], \
        json.loads(result.output)


def test_drift_retrains_gates_rolls_out_and_promotes(world):
    w = world()
    w.send(stream(200, drifted=False, seed=2))
    assert tick("clicks-loop", workspace=w.workspace) == []  # no drift: nothing to decide

    w.send(stream(400, drifted=True, seed=3))
    decisions = tick("clicks-loop", workspace=w.workspace)
    assert [(d.kind, d.outcome) for d in decisions] == [
        ("trigger", "fired"), ("retrain", "trained"), ("gate", "passed"),
        ("rollout", "started")]
    challenger = tidal.models.get_version(f"models:/{MODEL}@challenger",
                                          workspace=w.workspace)
    assert challenger.version == 2 and challenger.stage == "approved"
    assert w.routes() == {f"models:/{MODEL}@champion": 70.0,
                          f"models:/{MODEL}@challenger": 30.0}
    # the challenger was trained on the logged traffic, recorded as a dataset version
    assert [d.name for d in challenger.datasets()] == ["clicks-loop-train"]

    w.wait_served({1, 2})
    w.send(stream(200, drifted=True, seed=4))
    decisions = tick("clicks-loop", workspace=w.workspace)
    assert [(d.kind, d.outcome) for d in decisions] == [("rollout", "passed"),
                                                         ("rollout", "started")]
    assert w.routes() == {f"models:/{MODEL}@challenger": 100.0}

    w.wait_served({2})
    w.send(stream(80, drifted=True, seed=5))
    decisions = tick("clicks-loop", workspace=w.workspace)
    assert [(d.kind, d.outcome) for d in decisions] == [("rollout", "passed"),
                                                         ("promote", "done")]
    champion = tidal.models.get_version(f"models:/{MODEL}@champion", workspace=w.workspace)
    assert champion.version == 2 and champion.stage == "deployed"
    assert w.routes() == {f"models:/{MODEL}@champion": 100.0}
    assert read_state("clicks-loop", workspace=w.workspace).phase == "idle"

    kinds, decisions = loop_history(w.workspace)
    assert kinds == [("trigger", "fired"), ("retrain", "trained"), ("gate", "passed"),
                     ("rollout", "started"), ("rollout", "passed"), ("rollout", "started"),
                     ("rollout", "passed"), ("promote", "done")]
    assert len({d["cycle"] for d in decisions}) == 1  # one cycle from trigger to promotion
    trigger, _, gate = decisions[:3]
    assert trigger["details"]["drift"]["drifted_share"] >= 0.5
    primary = gate["details"]["better_than_champion(accuracy, by >= 0.05)"]
    assert primary["value"] - primary["champion_value"] >= 0.05
    assert decisions[4]["details"]["error_rate"] == 0.0
    assert decisions[-1]["model_uri"] == f"models:/{MODEL}/2"


def test_a_worse_challenger_is_rejected_at_the_gate(world):
    w = world(training={"params": {"shuffle_labels": True}})
    w.send(stream(400, drifted=True, seed=3))
    decisions = tick("clicks-loop", workspace=w.workspace)
    assert [(d.kind, d.outcome) for d in decisions] == [
        ("trigger", "fired"), ("retrain", "trained"), ("gate", "rejected")]
    assert "accuracy" in decisions[-1].summary
    assert w.routes() == {f"models:/{MODEL}@champion": 100.0}
    assert tidal.models.get_version(f"models:/{MODEL}@champion",
                                    workspace=w.workspace).version == 1
    # the trigger keeps firing, but the cooldown stops a retraining on every tick
    w.send(stream(50, drifted=True, seed=4))
    assert [(d.kind, d.outcome) for d in tick("clicks-loop", workspace=w.workspace)] == [
        ("trigger", "cooldown")]
    assert tick("clicks-loop", workspace=w.workspace) == []
    kinds, _ = loop_history(w.workspace)
    assert kinds == [("trigger", "fired"), ("retrain", "trained"), ("gate", "rejected"),
                     ("trigger", "cooldown")]


def test_a_canary_that_fails_on_live_traffic_is_rolled_back(world):
    """The challenger refuses a device it never saw in training; live traffic brings one, so
    its live error rate is far above the policy's and the rollout undoes itself."""
    w = world(training={"params": {"handle_unknown": "error"}})
    w.send(stream(400, drifted=True, seed=3))
    decisions = tick("clicks-loop", workspace=w.workspace)
    assert decisions[-1].kind == "rollout" and decisions[-1].outcome == "started"
    w.wait_served({1, 2})
    answers = w.send(stream(300, drifted=True, seed=4, devices=("ios", "android", "web")))
    assert any(a["status"] == 422 for a in answers)  # the challenger's failures
    decisions = tick("clicks-loop", workspace=w.workspace)
    assert [(d.kind, d.outcome) for d in decisions] == [("rollout", "failed"),
                                                         ("rollback", "done")]
    assert "error rate" in decisions[0].summary
    assert decisions[0].details["error_rate"] > 0.05
    assert w.routes() == {f"models:/{MODEL}@champion": 100.0}
    assert tidal.models.get_version(f"models:/{MODEL}@champion",
                                    workspace=w.workspace).version == 1
    assert tidal.models.get_version(f"models:/{MODEL}/2", workspace=w.workspace).stage \
        == "registered"
    kinds, _ = loop_history(w.workspace)
    assert kinds == [("trigger", "fired"), ("retrain", "trained"), ("gate", "passed"),
                     ("rollout", "started"), ("rollout", "failed"), ("rollback", "done")]

"""``tidal loop``: apply, list, show, tick and history from the command line, and clean
refusals of bad input."""

from __future__ import annotations

import json

from typer.testing import CliRunner

from tests.loop.conftest import policy_dict
from tidal.cli.main import app


def invoke(*args: str):
    return CliRunner().invoke(app, list(args))


def test_a_policy_is_applied_listed_shown_and_ticked(workspace, tmp_path):
    path = tmp_path / "policy.json"
    path.write_text(json.dumps(policy_dict()))
    applied = invoke("loop", "apply", str(path))
    assert applied.exit_code == 0, applied.output
    assert "applied loop policy clicks-loop" in applied.output
    listed = json.loads(invoke("loop", "list", "--json").output)
    assert [(p["name"], p["phase"]) for p in listed] == [("clicks-loop", "idle")]
    shown = json.loads(invoke("loop", "show", "clicks-loop", "--json").output)
    assert shown["rollout"]["steps"] == [30.0, 100.0] and shown["state"]["phase"] == "idle"
    ticked = invoke("loop", "tick", "clicks-loop", "--json")
    assert ticked.exit_code == 0, ticked.output
    assert json.loads(ticked.output) == []  # no traffic yet: nothing to decide
    assert "no loop decisions for endpoint clicks yet" in invoke("loop", "history",
                                                                 "clicks").output


def test_bad_input_is_refused_with_a_message_and_no_traceback(workspace, tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text('name = "x"\nendpoint = "e"\nmodel = "m"\ntriggers = []\n'
                   '[training]\npipeline = "tests.loop.flows:retrain"\n')
    result = invoke("loop", "apply", str(bad))
    assert result.exit_code == 2 and "at least one trigger" in result.output
    assert "Traceback" not in result.output
    result = invoke("loop", "apply", str(tmp_path / "policy.yaml"))
    assert result.exit_code == 2 and "not a .toml or .json" in result.output
    result = invoke("loop", "tick", "nope")
    assert result.exit_code == 1 and "no loop policy 'nope'" in result.output
    result = invoke("loop", "history", "bad/name")
    assert result.exit_code == 2 and "not valid" in result.output

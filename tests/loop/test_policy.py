"""Policies: what a valid one looks like, round trips through JSON and files, and a clear
PolicyError naming the field for each thing that can be wrong."""

from __future__ import annotations

import json
from datetime import timedelta

import pytest

from tests.loop.conftest import policy_dict
from tidal.errors import InvalidValueError
from tidal.loop import (
    LoopPolicy,
    PolicyError,
    PolicyNotFoundError,
    apply_policy,
    get_policy,
    list_policies,
    read_policy_file,
)


def test_a_policy_round_trips_through_its_dict_and_files(tmp_path):
    policy = LoopPolicy.from_dict(policy_dict(
        training={"mode": "decay", "half_life": "6h", "window": "2d"},
        triggers=[{"kind": "drift", "window": "30m", "threshold": 0.3, "correction": "bh"},
                  {"kind": "performance", "metric": "roc_auc", "threshold": 0.7,
                   "window": 500},
                  {"kind": "schedule", "cron": "0 3 * * *"},
                  {"kind": "labels", "rows": 1000}]))
    assert policy.training.half_life == timedelta(hours=6)
    assert policy.triggers[0].window == timedelta(minutes=30)
    assert policy.triggers[0].correction == "bh"
    assert policy.triggers[1].window == 500
    assert policy.rollout.steps == (30.0, 100.0)
    assert LoopPolicy.from_dict(policy.to_dict()) == policy
    (tmp_path / "p.json").write_text(json.dumps(policy.to_dict()))
    assert read_policy_file(tmp_path / "p.json") == policy
    (tmp_path / "p.toml").write_text('''
name = "retail-loop"
endpoint = "retail"
model = "retail-ctr"
cooldown = "2h"
[training]
pipeline = "tidal.examples.retail.pipeline:retrain"
label = "clicked"
[[triggers]]
kind = "drift"
threshold = 0.4
[rollout]
steps = [10, 50, 100]
''')
    toml = read_policy_file(tmp_path / "p.toml")
    assert toml.cooldown == timedelta(hours=2) and toml.rollout.steps == (10.0, 50.0, 100.0)
    assert toml.champion_uri == "models:/retail-ctr@champion"


@pytest.mark.parametrize(("changes", "field", "words"), [
    ({"name": "bad/name"}, "name", "not valid"),
    ({"triggers": []}, "triggers", "at least one trigger"),
    ({"triggers": [{"kind": "vibes"}]}, "triggers[0].kind", "drift, performance"),
    ({"triggers": [{"kind": "drift", "cron": "* * * * *"}]}, "triggers[0]", "not cron"),
    ({"triggers": [{"kind": "drift", "threshold": 2}]}, "triggers[0].threshold", "between"),
    ({"triggers": [{"kind": "performance", "metric": "vibes", "threshold": 1}]},
     "triggers[0].metric", "accuracy"),
    ({"triggers": [{"kind": "performance", "metric": "accuracy"}]}, "triggers[0].threshold",
     "needs a threshold"),
    ({"triggers": [{"kind": "schedule", "cron": "every day"}]}, "triggers[0].cron", "cron"),
    ({"triggers": [{"kind": "labels", "rows": 0}]}, "triggers[0].rows", "positive"),
    ({"triggers": [{"kind": "drift", "window": "soon"}]}, "triggers[0].window", "duration"),
    ({"triggers": [{"kind": "drift", "correction": "fdr"}]}, "triggers[0].correction",
     "none, bonferroni, bh"),
    ({"triggers": [{"kind": "performance", "metric": "accuracy", "threshold": 0.5,
                    "correction": "bh"}]}, "triggers[0]", "not correction"),
    ({"training": {"pipeline": "no_colon"}}, "training.pipeline", "module:name"),
    ({"training": {"pipeline": "flows.py:retrain"}}, "training.pipeline", "not a file"),
    ({"training": {"pipeline": "/tmp/flows.py:retrain"}}, "training.pipeline", "not a file"),
    ({"training": {"pipeline": "tests.loop.flows:retrain.__call__"}}, "training.pipeline",
     "module:name"),
    ({"training": {"code_digest": "md5:0f"}}, "training.code_digest", "blake2b"),
    ({"training": {"code_digest": 7}}, "training.code_digest", "blake2b"),
    ({"training": {"mode": "decay"}}, "training.half_life", "half_life"),
    ({"training": {"mode": "forever"}}, "training.mode", "sliding, decay"),
    ({"training": {"holdout": 0.99}}, "training.holdout", "between"),
    ({"training": {"epochs": 3}}, "training", "epochs"),
    ({"gate": {"metric": "vibes"}}, "gate.metric", "accuracy"),
    ({"gate": {"guards": {"log_loss": -1}}}, "gate.guards.log_loss", "at least"),
    ({"rollout": {"steps": [50, 10, 100]}}, "rollout.steps", "rise and end at 100"),
    ({"rollout": {"steps": [10, 50]}}, "rollout.steps", "end at 100"),
    ({"rollout": {"min_duration": "2h", "max_duration": "1h"}}, "rollout.max_duration",
     "at least"),
    ({"rollout": {"max_error_rate": 1.5}}, "rollout.max_error_rate", "between"),
    ({"cooldown": "0s"}, "cooldown", "longer than zero"),
    ({"owner": "me"}, "policy", "unknown setting"),
])
def test_every_bad_setting_is_refused_by_name(changes, field, words):
    with pytest.raises(InvalidValueError, match=words) as caught:  # PolicyError, or a name's
        LoopPolicy.from_dict(policy_dict(**changes))
    assert caught.value.field == field


def test_bad_files_are_refused_clearly(tmp_path):
    with pytest.raises(PolicyError, match="not a .toml or .json"):
        read_policy_file(tmp_path / "policy.yaml")
    with pytest.raises(PolicyError, match="cannot read"):
        read_policy_file(tmp_path / "missing.toml")
    (tmp_path / "broken.toml").write_text("name = ")
    with pytest.raises(PolicyError, match="not valid TOML"):
        read_policy_file(tmp_path / "broken.toml")


def test_applying_stores_checks_the_pipeline_and_replaces(workspace):
    with pytest.raises(PolicyNotFoundError, match="no loop policy 'clicks-loop'"):
        get_policy("clicks-loop")
    with pytest.raises(Exception, match="nowhere"):
        apply_policy(policy_dict(training={"pipeline": "tests.loop.nowhere:retrain"}))
    assert list_policies() == []
    apply_policy(policy_dict())
    apply_policy(policy_dict(cooldown="3h"))  # a second apply replaces the first
    (stored,) = list_policies()
    assert stored.cooldown == timedelta(hours=3) and get_policy("clicks-loop") == stored
    with pytest.raises(PolicyError, match="LoopPolicy, a dict or a policy file"):
        apply_policy(42)


def test_the_readme_policy_is_a_valid_policy():
    import re
    import tomllib
    from pathlib import Path

    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    section = readme[readme.index("## The closed loop"):]
    text = re.search(r"```toml\n(.*?)```", section, re.DOTALL).group(1)
    policy = LoopPolicy.from_dict(tomllib.loads(text))
    assert policy.rollout.steps == (10.0, 50.0, 100.0)
    assert policy.gate.guards == {"log_loss": 0.02}

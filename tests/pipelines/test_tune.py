"""Tuning with Optuna: trials are pipeline runs under one tuning run, the best trial is the one
with the best logged metric, pruned and failing trials are told to Optuna as such, and a bad
search space is refused before any trial runs."""

from __future__ import annotations

import pytest

import tidal
from tidal.errors import InvalidValueError

from . import flows


def test_tuning_finds_the_best_trial_among_child_runs(workspace):
    result = tidal.tune(flows.training, {"c": ("float", 1e-4, 10.0, "log")}, "accuracy",
                        n_trials=4, params={"rows": 120})
    assert len(result.trials) == 4 and {t.state for t in result.trials} == {"complete"}
    assert result.best.value == max(t.value for t in result.trials)
    parent = tidal.get_run(result.run_id)
    assert sorted(parent.children) == sorted(t.run_id for t in result.trials)
    assert parent.metrics["best/accuracy"] == result.best.value
    assert parent.tags["best_run_id"] == result.best.run_id
    best_run = tidal.get_run(result.best.run_id)
    assert float(best_run.params["c"]) == result.best.params["c"]
    assert len(result.study.trials) == 4


def test_trials_run_in_parallel_on_the_process_executor(workspace):
    result = tidal.tune(flows.training, {"c": [0.01, 1.0]}, "accuracy", n_trials=2,
                        executor="process", params={"rows": 100}, parallel=2)
    assert {t.params["c"] for t in result.trials} <= {0.01, 1.0}
    assert {t.state for t in result.trials} == {"complete"}
    assert sorted(tidal.get_run(result.run_id).children) == sorted(t.run_id
                                                                   for t in result.trials)


def test_a_single_step_can_be_tuned_on_a_metric_it_logs(workspace):
    import optuna

    result = tidal.tune(flows.parabola, {"x": ("float", -5.0, 5.0)}, "score", n_trials=12,
                        sampler=optuna.samplers.TPESampler(seed=0))
    assert abs(result.best.params["x"] - 2.0) < 1.5
    assert result.best.value == max(t.value for t in result.trials)
    with pytest.raises(InvalidValueError, match="no trial of"):
        tidal.tune(flows.first, {"value": ("int", 1, 5)}, "accuracy", n_trials=2)


@pytest.mark.parametrize(("space", "fragment"), [
    ({"c": ("float", 1.0)}, "use ('float', low, high"),
    ({"c": ("float", 10.0, 1.0)}, "space 'c'"),
    ({"nope": [1, 2]}, "no parameter 'nope'"),
    ({}, "at least one parameter"),
])
def test_a_bad_space_is_refused(workspace, space, fragment):
    with pytest.raises(InvalidValueError, match=fragment.replace("(", r"\(")):
        tidal.tune(flows.training, space, "accuracy", n_trials=1)
    with pytest.raises(InvalidValueError, match="direction"):
        tidal.tune(flows.training, {"c": [1.0]}, "accuracy", direction="up")

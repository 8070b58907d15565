"""Run lifecycle, params, tags, metrics, nesting and environment, on every backend."""

from __future__ import annotations

import math
import sys

import pytest

import tidal
from tidal.errors import NoActiveRunError, ParamConflictError, RunNotFoundError, RunStateError


def test_context_manager_records_everything(workspace):
    with tidal.start_run(experiment="ctr", params={"lr": 0.1, "model": "lgbm"},
                         tags={"team": "recs"}) as run:
        run.log_metric("auc", 0.81, step=1)
        run.log_metrics({"loss": 0.3, "acc": 0.9}, step=1)
        run.log_metric("auc", 0.83, step=2)
    stored = tidal.get_run(run.id)
    assert stored.status == "finished"
    assert stored.experiment == "ctr"
    assert stored.params == {"lr": "0.1", "model": "lgbm"}
    assert stored.tags == {"team": "recs"}
    assert stored.metrics == {"auc": 0.83, "loss": 0.3, "acc": 0.9}
    assert stored.end_time is not None and stored.end_time >= stored.start_time
    assert stored.python_version == ".".join(map(str, sys.version_info[:3]))
    assert stored.packages_digest.startswith("blake2b:")
    history = stored.metric_history("auc")
    assert list(history.columns) == ["step", "value", "timestamp"]
    assert history["step"].tolist() == [1, 2]
    assert history["value"].tolist() == [0.81, 0.83]


def test_failed_block_marks_run_failed_with_traceback(workspace):
    with pytest.raises(ZeroDivisionError):
        with tidal.start_run(experiment="e") as run:
            run.log_metric("x", 1.0)
            1 / 0
    stored = tidal.get_run(run.id)
    assert stored.status == "failed"
    assert "ZeroDivisionError" in stored.error and "Traceback" in stored.error
    assert stored.metrics == {"x": 1.0}  # points logged before the failure are kept


def test_keyboard_interrupt_marks_run_killed(workspace):
    with pytest.raises(KeyboardInterrupt):
        with tidal.start_run(experiment="e") as run:
            raise KeyboardInterrupt
    assert tidal.get_run(run.id).status == "killed"


def test_fluent_calls_log_to_the_active_run(workspace):
    with tidal.start_run(experiment="e") as run:
        tidal.log_metric("auc", 0.82)
        tidal.log_metrics({"auc": 0.84})
        tidal.log_param("depth", 6)
        tidal.log_params({"eta": 0.3})
        tidal.set_tag("stage", "dev")
        assert tidal.active_run() is run
    assert tidal.active_run() is None
    stored = tidal.get_run(run.id)
    assert stored.params == {"depth": "6", "eta": "0.3"}
    assert stored.tags == {"stage": "dev"}
    # without explicit steps, each key counts up from 0
    assert stored.metric_history("auc")["step"].tolist() == [0, 1]
    assert stored.metrics["auc"] == 0.84


def test_fluent_call_without_active_run_is_refused(workspace):
    with pytest.raises(NoActiveRunError, match="start_run"):
        tidal.log_metric("auc", 0.5)


def test_param_set_again_with_other_value_is_refused(workspace):
    with tidal.start_run(experiment="e", params={"lr": 0.1}) as run:
        run.log_param("lr", 0.1)  # same value: fine
        with pytest.raises(ParamConflictError, match="'lr'.*'0.1'.*'0.2'"):
            run.log_param("lr", 0.2)
        with pytest.raises(ParamConflictError):  # nothing of a mixed batch is written
            run.log_params({"new": 1, "lr": 0.3})
    assert tidal.get_run(run.id).params == {"lr": "0.1"}


def test_tags_can_be_overwritten_even_after_the_run(workspace):
    with tidal.start_run(experiment="e", tags={"stage": "dev"}) as run:
        run.set_tag("stage", "test")
    run.set_tag("reviewed", "yes")
    assert tidal.get_run(run.id).tags == {"stage": "test", "reviewed": "yes"}


def test_logging_to_an_ended_run_is_refused(workspace):
    with tidal.start_run(experiment="e") as run:
        pass
    with pytest.raises(RunStateError, match="finished"):
        run.log_metric("x", 1)
    with pytest.raises(RunStateError):
        run.log_param("x", 1)


def test_nested_runs_record_parent_and_children(workspace):
    with tidal.start_run(experiment="tune", name="search") as parent:
        for i in range(3):
            with tidal.start_run(name=f"trial-{i}", params={"i": i}) as child:
                child.log_metric("score", i / 10)
                assert child.parent_id == parent.id
        assert tidal.active_run() is parent
    stored = tidal.get_run(parent.id)
    assert len(stored.children) == 3
    for child_id in stored.children:
        child = tidal.get_run(child_id)
        assert child.parent_id == parent.id and child.experiment == "tune"


def test_nan_and_infinity_are_stored_faithfully(workspace):
    with tidal.start_run(experiment="e") as run:
        run.log_metric("loss", 1.0, step=0)
        run.log_metric("loss", float("inf"), step=1)
        run.log_metric("loss", float("-inf"), step=2)
        run.log_metric("loss", float("nan"), step=3)
    stored = tidal.get_run(run.id)
    values = stored.metric_history("loss")["value"].tolist()
    assert values[:3] == [1.0, math.inf, -math.inf]
    assert math.isnan(values[3])
    assert math.isnan(stored.metrics["loss"])


def test_numpy_scalars_are_accepted(workspace):
    np = pytest.importorskip("numpy")
    with tidal.start_run(experiment="e") as run:
        run.log_metric("a", np.float32(0.5), step=np.int64(3))
        run.log_metric("b", np.int64(7))
    assert tidal.get_run(run.id).metrics == {"a": 0.5, "b": 7.0}


def test_latest_value_is_the_highest_step_not_the_last_logged(workspace):
    with tidal.start_run(experiment="e") as run:
        run.log_metric("auc", 0.9, step=10)
        run.log_metric("auc", 0.1, step=3)  # a late point of an earlier step
    assert tidal.get_run(run.id).metrics["auc"] == 0.9


def test_environment_and_cost_are_recorded(workspace, tmp_path):
    import subprocess

    subprocess.run(["git", "init", "-q", str(tmp_path)], check=True)
    subprocess.run(["git", "-C", str(tmp_path), "-c", "user.email=t@t", "-c", "user.name=t",
                    "commit", "-q", "--allow-empty", "-m", "init"], check=True)
    from tidal.tracking.environment import git_state

    git_state.cache_clear()
    with tidal.start_run(experiment="e", system_metrics=0.05) as run:
        total = sum(i * i for i in range(300_000))  # burn a little CPU
        run.log_metric("total", total)
        import time

        time.sleep(0.3)
    stored = tidal.get_run(run.id)
    assert len(stored.git_commit) == 40 and stored.git_dirty is False
    assert stored.cpu_seconds > 0 and stored.peak_rss_bytes > 10_000_000
    assert stored.cost > 0
    history = stored.metric_history("system/rss_mb")
    assert len(history) >= 2 and (history["value"] > 1).all()
    assert "system/cpu_percent" in stored.metrics


def test_unknown_run_id_is_refused(workspace):
    with pytest.raises(RunNotFoundError, match="no run with id 'nope'"):
        tidal.get_run("nope")
    with pytest.raises(RunNotFoundError):
        tidal.get_run("")


def test_unknown_parent_is_refused(workspace):
    with pytest.raises(RunNotFoundError):
        tidal.start_run(experiment="e", parent="0" * 32)


def test_experiments_are_listed_with_run_counts(workspace):
    for _ in range(2):
        with tidal.start_run(experiment="a"):
            pass
    with tidal.start_run(experiment="b"):
        pass
    listed = {e.name: e.run_count for e in tidal.list_experiments()}
    assert listed == {"a": 2, "b": 1}

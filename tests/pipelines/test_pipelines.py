"""Pipelines: caching by content, exact invalidation downstream of a change, identical
outputs across executors, failures that stop only descendants, and bad definitions refused
before anything runs."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

import tidal
from tidal.errors import InvalidValueError
from tidal.pipelines import (
    InvalidCronError,
    PipelineDefinitionError,
    StepFailedError,
    StepOutputError,
    run_pipeline,
)
from tidal.pipelines.schema import step_runs

from . import flows


@pytest.fixture(autouse=True)
def _count():
    flows.CALLS.clear()


def statuses(result) -> dict[str, str]:
    return {name: record.status for name, record in result.steps.items()}


def test_a_second_run_hits_the_cache_on_every_step(workspace):
    first = run_pipeline(flows.training, {"rows": 120})
    assert set(statuses(first).values()) == {"done"}
    second = run_pipeline(flows.training, {"rows": 120})
    assert set(statuses(second).values()) == {"cached"}
    assert sum(flows.CALLS.values()) == 5  # each step ran once, in the first run
    assert second.output("evaluate") == first.output("evaluate")
    pd.testing.assert_frame_equal(second.output("split", 1), first.output("split", 1))
    assert second.steps["train"].cached_from is not None


def test_a_changed_parameter_reruns_exactly_that_step_and_its_descendants(workspace):
    run_pipeline(flows.training, {"rows": 120})
    flows.CALLS.clear()
    changed = run_pipeline(flows.training, {"rows": 120, "c": 0.01})
    assert statuses(changed) == {"load": "cached", "split": "cached", "describe": "cached",
                                 "train": "done", "evaluate": "done"}
    flows.CALLS.clear()
    more_rows = run_pipeline(flows.training, {"rows": 160, "c": 0.01})
    assert set(statuses(more_rows).values()) == {"done"}  # the root changed: everything reruns


def test_changed_code_reruns_the_step_and_its_descendants(workspace, monkeypatch):
    run_pipeline(flows.training, {"rows": 120})
    # Step.code_digest is cached per step object: this is what editing split's source does
    monkeypatch.setitem(flows.split.__dict__, "code_digest", "changed-source")
    result = run_pipeline(flows.training, {"rows": 120})
    # split ran again; its outputs were the same bytes, so what reads them stays cached
    assert statuses(result) == {"load": "cached", "describe": "cached", "split": "done",
                                "train": "cached", "evaluate": "cached"}

    def halves(frame: pd.DataFrame, share: float = 0.25) -> tuple[pd.DataFrame, pd.DataFrame]:
        cut = len(frame) // 2
        return frame.iloc[:cut].reset_index(drop=True), frame.iloc[cut:].reset_index(drop=True)

    monkeypatch.setattr(flows.split, "function", halves)
    monkeypatch.setitem(flows.split.__dict__, "code_digest", "halves")
    result = run_pipeline(flows.training, {"rows": 120})
    assert statuses(result) == {"load": "cached", "describe": "cached", "split": "done",
                                "train": "done", "evaluate": "done"}
    assert result.output("evaluate")["rows"] == 60


def test_cache_can_be_turned_off(workspace):
    run_pipeline(flows.training, {"rows": 120})
    again = run_pipeline(flows.training, {"rows": 120}, cache=False)
    assert set(statuses(again).values()) == {"done"}


def test_outputs_are_identical_on_inline_and_process_executors(workspace):
    inline = run_pipeline(flows.training, {"rows": 150}, cache=False)
    process = run_pipeline(flows.training, {"rows": 150}, executor="process", cache=False)
    for node in ("load", "describe", "evaluate"):
        assert inline.steps[node].outputs[0]["digest"] == process.steps[node].outputs[0]["digest"]
    np.testing.assert_array_equal(inline.output("describe"), process.output("describe"))
    assert inline.steps["train"].cache_key == process.steps["train"].cache_key


def test_each_step_is_a_child_run_with_its_metrics_and_lineage(workspace):
    result = run_pipeline(flows.training, {"rows": 120})
    parent = tidal.get_run(result.id)
    assert parent.tags["tidal.pipeline"] == "training"
    assert sorted(parent.children) == sorted(r.run_id for r in result.steps.values())
    evaluate_run = tidal.get_run(result.steps["evaluate"].run_id)
    assert 0.5 < evaluate_run.metrics["accuracy"] <= 1.0
    test_part = tidal.datasets.get("training.split.1")
    assert evaluate_run.id in test_part.runs()  # the step read that dataset version
    table = result.steps["load"].outputs[0]
    assert table["materializer"] == "table" and table["dataset"] == "datasets:/training.load/1"


def test_a_failed_step_stops_its_descendants_while_other_branches_finish(workspace):
    with pytest.raises(StepFailedError, match="fail_always") as caught:
        run_pipeline(flows.partly_failing)
    assert "RuntimeError: boom" in str(caught.value)
    assert caught.value.run.steps["after_failure"].status == "skipped"
    with workspace.db.read() as conn:
        rows = dict(conn.execute(step_runs.select().with_only_columns(
            step_runs.c.node, step_runs.c.status)).all())
    assert rows == {"load": "done", "fail_always": "failed", "after_failure": "skipped",
                    "describe": "done"}


def test_retries_back_off_and_then_succeed(workspace, tmp_path):
    result = run_pipeline(flows.retrying, {"marker": str(tmp_path / "count")})
    assert result.steps["flaky"].attempts == 3 and result.output("flaky") == 3


def test_bad_definitions_fail_before_any_step_runs(workspace):
    with pytest.raises(PipelineDefinitionError, match="has a cycle: first"):
        run_pipeline(flows.cyclic)
    with pytest.raises(PipelineDefinitionError, match="no parameter 'row'; its parameters: "
                                                      "rows, c"):
        run_pipeline(flows.training, {"row": 5})
    assert sum(flows.CALLS.values()) == 0
    with pytest.raises(PipelineDefinitionError, match="neither the output of a step nor a "
                                                      "JSON value"):
        @tidal.pipeline
        def odd():
            flows.train(flows.load(), c=object())

        run_pipeline(odd)
    with pytest.raises(InvalidValueError, match="pipeline name 'daily run' is not valid"):
        tidal.pipeline(name="daily run")(lambda: None)
    with pytest.raises(InvalidValueError, match="step name '../x' is not valid"):
        tidal.step(name="../x")(lambda: 1)
    with pytest.raises(InvalidCronError, match="not a cron expression"):
        tidal.pipeline(schedule="every day at noon")(lambda: None)


def test_bad_outputs_fail_at_the_step(workspace):
    with pytest.raises(StepFailedError) as caught:
        run_pipeline(flows.lying)
    assert "returned a str, which does not match its annotation int" in str(caught.value)
    with pytest.raises(StepFailedError, match="which no materializer stores"):
        run_pipeline(flows.unstorable)
    assert issubclass(StepOutputError, tidal.TidalError)


def test_steps_called_outside_a_pipeline_are_plain_functions():
    frame = flows.load(rows=10)
    assert isinstance(frame, pd.DataFrame) and len(frame) == 10

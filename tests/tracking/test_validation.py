"""Bad input: each gets a TidalError subclass naming what was wrong, and nothing is stored."""

from __future__ import annotations

import pytest

import tidal
from tidal.errors import InvalidKeyError, InvalidValueError, TidalError


@pytest.mark.parametrize("value", ["0.5", None, True, [1.0], {"v": 1}, object()])
def test_non_numeric_metric_values_are_refused(workspace, value):
    with tidal.start_run(experiment="e") as run:
        with pytest.raises(InvalidValueError, match="metric 'auc' value must be a real number"):
            run.log_metric("auc", value)
    assert tidal.get_run(run.id).metrics == {}


@pytest.mark.parametrize("key, problem", [
    ("", "empty"),
    ("   ", "empty"),
    ("a" * 251, "limit is 250"),
    ("bad\x00key", "not allowed"),
    ("semi;colon", "not allowed"),
    ("new\nline", "not allowed"),
    (42, "must be a string"),
])
def test_bad_keys_are_refused_for_metrics_params_and_tags(workspace, key, problem):
    with tidal.start_run(experiment="e") as run:
        with pytest.raises(InvalidKeyError, match=problem):
            run.log_metric(key, 1.0)
        with pytest.raises(InvalidKeyError, match=problem):
            run.log_param(key, 1)
        with pytest.raises(InvalidKeyError, match=problem):
            run.set_tag(key, "x")
    stored = tidal.get_run(run.id)
    assert stored.metrics == {} and stored.params == {} and stored.tags == {}


def test_bad_keys_are_refused_at_start_run(workspace):
    with pytest.raises(InvalidKeyError, match="experiment key is empty"):
        tidal.start_run(experiment=" ")
    with pytest.raises(InvalidKeyError):
        tidal.start_run(experiment="e", params={"": 1})
    with pytest.raises(InvalidKeyError):
        tidal.start_run(experiment="e", tags={"x" * 300: 1})
    with pytest.raises(InvalidValueError, match="params must be a mapping"):
        tidal.start_run(experiment="e", params=[("lr", 0.1)])
    with pytest.raises(InvalidValueError, match="tags must be a mapping"):
        tidal.start_run(experiment="e", tags="team=recs")
    assert tidal.list_experiments() == []  # nothing was created by the refused calls


def test_over_long_param_and_tag_values_are_refused(workspace):
    with tidal.start_run(experiment="e") as run:
        with pytest.raises(InvalidValueError, match="param 'p' value is 6001 characters"):
            run.log_param("p", "x" * 6001)
        with pytest.raises(InvalidValueError, match="tag 't' value is 8001 characters"):
            run.set_tag("t", "x" * 8001)
        with pytest.raises(InvalidValueError, match="None"):
            run.log_param("p", None)


@pytest.mark.parametrize("step", [1.5, "3", True, 2**64])
def test_bad_steps_are_refused(workspace, step):
    with tidal.start_run(experiment="e") as run:
        with pytest.raises(InvalidValueError, match="step"):
            run.log_metric("auc", 0.5, step=step)


@pytest.mark.parametrize("timestamp", [-1, 1.5, "now"])
def test_bad_timestamps_are_refused(workspace, timestamp):
    with tidal.start_run(experiment="e") as run:
        with pytest.raises(InvalidValueError, match="timestamp"):
            run.log_metric("auc", 0.5, timestamp=timestamp)


def test_bad_mappings_are_refused(workspace):
    with tidal.start_run(experiment="e") as run:
        with pytest.raises(InvalidValueError, match="mapping"):
            run.log_metrics([("a", 1.0)])
        with pytest.raises(InvalidValueError, match="mapping"):
            run.log_params(["a"])
        with pytest.raises(InvalidValueError, match="mapping"):
            run.set_tags("a=b")


def test_bad_end_status_and_system_metrics_are_refused(workspace):
    with pytest.raises(InvalidValueError, match="system_metrics"):
        tidal.start_run(experiment="e", system_metrics=-1)
    with tidal.start_run(experiment="e") as run:
        with pytest.raises(InvalidValueError, match="ends as one of"):
            run.end("done")


def test_every_error_is_a_tidal_error_with_a_field():
    from tidal.tracking.validation import check_key

    with pytest.raises(TidalError) as info:
        check_key("", "metric")
    assert info.value.field == "metric key"
    assert info.value.status_code == 400

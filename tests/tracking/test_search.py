"""search_runs: the filter language compiled to SQL, ordering, limits and malformed input."""

from __future__ import annotations

import math

import pytest

import tidal
from tidal.errors import ExperimentNotFoundError, FilterSyntaxError, InvalidValueError


@pytest.fixture
def runs(workspace):
    """Twelve runs over two experiments with known params and metrics."""
    ids = {}
    for i in range(12):
        experiment = "ctr" if i < 10 else "other"
        model = ["lgbm", "xgb", "linear"][i % 3]
        with tidal.start_run(experiment=experiment, name=f"run-{i}",
                             params={"model": model, "i": i},
                             tags={"team": "recs" if i % 2 else "ads"}) as run:
            run.log_metric("auc", 0.70 + i * 0.02)
            if i % 4 == 0:
                run.log_metric("val loss", 1.0 / (i + 1))
        ids[i] = run.id
    return ids


def names(frame):
    return frame["name"].tolist()


def test_issue_example(runs):
    frame = tidal.search_runs("ctr", filter="metrics.auc > 0.8 and params.model = 'lgbm'",
                              order_by=["metrics.auc DESC"], limit=100)
    # auc > 0.8 means i >= 6; lgbm means i % 3 == 0; in ctr means i < 10
    assert names(frame) == ["run-9", "run-6"]
    assert frame["metrics.auc"].tolist() == pytest.approx([0.88, 0.82])
    assert set(frame["params.model"]) == {"lgbm"}
    assert {"run_id", "experiment", "status", "start_time", "tags.team"} <= set(frame.columns)


@pytest.mark.parametrize("expression, expected", [
    ("metrics.auc >= 0.859", {8, 9}),
    ("metrics.auc < 0.72", {0}),
    ("metrics.auc = 0.7", {0}),
    ("metrics.auc != 0.7 AND metrics.auc < 0.75", {1, 2}),
    ("params.model = 'xgb'", {1, 4, 7}),
    ("params.model != 'xgb' and params.model != 'linear'", {0, 3, 6, 9}),
    ("params.model IN ('xgb', 'linear') AND metrics.auc > 0.8", {7, 8}),
    ("params.model NOT IN ('xgb', 'linear')", {0, 3, 6, 9}),
    ("params.model LIKE 'l%'", {0, 2, 3, 5, 6, 8, 9}),
    ("params.model ILIKE 'LG%'", {0, 3, 6, 9}),
    ("params.i = 5", {5}),
    ("tags.team = 'ads' or metrics.auc > 0.87", {0, 2, 4, 6, 8, 9}),
    ("not (tags.team = 'ads') and metrics.auc < 0.75", {1}),
    ("metrics.`val loss` < 0.5", {4, 8}),
    ("metrics.`val loss` IS NULL and metrics.auc < 0.75", {1, 2}),
    ("params.missing IS NOT NULL", set()),
    ("name = 'run-3'", {3}),
    ("attributes.status = 'finished' and run_name LIKE 'run-1%'", {1}),
    ("status = 'failed'", set()),
    ("start_time > '2000-01-01' and metrics.auc < 0.72", {0}),
])
def test_filters(runs, expression, expected):
    frame = tidal.search_runs("ctr", filter=expression, limit=None)
    assert set(names(frame)) == {f"run-{i}" for i in expected}


def test_order_by_and_limit(runs):
    frame = tidal.search_runs("ctr", order_by=["metrics.auc ASC"], limit=3)
    assert names(frame) == ["run-0", "run-1", "run-2"]
    frame = tidal.search_runs("ctr", order_by=["params.model", "metrics.auc DESC"], limit=4)
    assert names(frame) == ["run-9", "run-6", "run-3", "run-0"]
    # runs without the ordering metric come last, whatever the direction
    frame = tidal.search_runs("ctr", order_by="metrics.`val loss` DESC", limit=None)
    assert names(frame)[:3] == ["run-0", "run-4", "run-8"]
    assert frame["metrics.val loss"].iloc[3:].isna().all()


def test_default_order_is_newest_first_and_all_experiments(runs):
    frame = tidal.search_runs(limit=None)
    assert len(frame) == 12
    assert frame["start_time"].is_monotonic_decreasing
    both = tidal.search_runs(["ctr", "other"], filter="metrics.auc > 0.88", limit=None)
    assert set(names(both)) == {"run-10", "run-11"}


def test_nan_metrics_do_not_match_comparisons(workspace):
    with tidal.start_run(experiment="e") as run:
        run.log_metric("loss", float("nan"))
    assert tidal.search_runs("e", filter="metrics.loss > -1e300").empty
    frame = tidal.search_runs("e")
    assert math.isnan(frame["metrics.loss"].iloc[0])


@pytest.mark.parametrize("expression, message, position", [
    ("metrics.auc >", "expected a value", 13),
    ("metrics.auc > 0.8 and", "expected a field", 21),
    ("metrics.auc 0.8", "expected a comparison", 12),
    ("metrics.auc > 0.8 params.x = 'a'", "expected AND, OR", 18),
    ("bogus.auc > 1", "unknown field prefix 'bogus'", 0),
    ("colour = 'red'", "unknown field 'colour'", 0),
    ("metrics.auc > 'high'", "compare it with a number", 14),
    ("params.model > 'a'", "params are text", 13),
    ("metrics.auc LIKE '0.%'", "metrics are numbers", 12),
    ("(metrics.auc > 1", "expected ')'", 0),
    ("metrics.auc > 1 $", "unexpected character '$'", 16),
    ("params.model IN ('a' 'b')", "expected ',' or ')'", 21),
    ("metrics.` ` > 1 and metrics.`` > 1", "quoted key is empty", 28),
    ("start_time > 'yesterday'", "ISO date", 13),
    ("metrics.auc IS 5", "expected NULL", 15),
])
def test_malformed_filters_point_at_the_bad_token(runs, expression, message, position):
    with pytest.raises(FilterSyntaxError) as info:
        tidal.search_runs("ctr", filter=expression)
    assert message in str(info.value)
    assert info.value.position == position
    # the message shows the expression with a caret under the culprit
    lines = str(info.value).splitlines()
    assert lines[1].strip() == expression.strip()
    assert lines[2].index("^") - 2 == position


def test_malformed_order_by_limit_and_experiment(runs):
    with pytest.raises(FilterSyntaxError, match="expected ASC, DESC"):
        tidal.search_runs("ctr", order_by=["metrics.auc DOWN"])
    with pytest.raises(FilterSyntaxError, match="unknown field"):
        tidal.search_runs("ctr", order_by=["auc"])
    with pytest.raises(InvalidValueError, match="limit"):
        tidal.search_runs("ctr", limit=0)
    with pytest.raises(InvalidValueError, match="limit"):
        tidal.search_runs("ctr", limit="10")
    with pytest.raises(InvalidValueError, match="filter must be a string"):
        tidal.search_runs("ctr", filter=5)
    with pytest.raises(ExperimentNotFoundError, match="no experiment named 'nope'"):
        tidal.search_runs("nope")


def test_filter_values_are_bound_not_spliced(runs):
    """A quote in a value is data: the filter cannot inject SQL."""
    frame = tidal.search_runs("ctr", filter="params.model = 'x'' OR ''1''=''1'", limit=None)
    assert frame.empty
    assert len(tidal.search_runs("ctr", limit=None)) == 10

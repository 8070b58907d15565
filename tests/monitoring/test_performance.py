"""Performance monitoring: metrics equal scikit-learn's, windows cut where they should, and
what cannot be computed is NaN rather than an error."""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
import pandas as pd
import pytest
from sklearn import metrics as skm

from tests.monitoring.test_log_window import BASE, answer, write_log
from tidal.errors import InvalidValueError
from tidal.models.gates import METRICS
from tidal.monitoring.log_window import LogWindow
from tidal.monitoring.performance import (
    default_metrics,
    performance,
    prediction_metric,
    window_performance,
)
from tidal.serving.feedback import record_feedback

T0 = datetime(2026, 3, 2, 10, tzinfo=UTC)


def window(rows: list[dict[str, Any]], *, end: datetime | None = None) -> LogWindow:
    """A log window from rows given as dicts with at least request_id and minute."""
    meta = pd.DataFrame([{
        "request_id": row["request_id"],
        "timestamp": T0 + timedelta(minutes=row["minute"]),
        "route": row.get("route", "champion"), "model_uri": "models:/ctr/1",
        "model_version": row.get("version", 1), "latency_ms": row.get("latency", 1.0),
        "error": row.get("error"), "prediction": row.get("prediction"),
        "label": row.get("label"), "has_inputs": True} for row in rows])
    for name in ("error", "prediction", "label"):
        meta[name] = pd.Series([row.get(name) for row in rows], dtype=object)
    meta["timestamp"] = pd.to_datetime(meta["timestamp"], utc=True)
    return LogWindow("ctr", None, end, pd.DataFrame(index=meta.index), meta)


# -- one metric -------------------------------------------------------------------------------

RNG = np.random.default_rng(3)
BINARY = RNG.integers(0, 2, 200)
SCORES = np.clip(BINARY * 0.3 + RNG.random(200) * 0.7, 0, 1)
TARGET = RNG.normal(10, 3, 200)
ESTIMATE = TARGET + RNG.normal(0, 1, 200)


@pytest.mark.parametrize("metric, expected", [
    ("accuracy", skm.accuracy_score(BINARY, SCORES >= 0.5)),
    ("balanced_accuracy", skm.balanced_accuracy_score(BINARY, SCORES >= 0.5)),
    ("f1", skm.f1_score(BINARY, SCORES >= 0.5)),
    ("precision", skm.precision_score(BINARY, SCORES >= 0.5)),
    ("recall", skm.recall_score(BINARY, SCORES >= 0.5)),
    ("roc_auc", skm.roc_auc_score(BINARY, SCORES)),
    ("log_loss", skm.log_loss(BINARY, SCORES)),
])
def test_binary_scores_give_scikit_learns_figures(metric, expected):
    truth, scores = BINARY.tolist(), SCORES.tolist()
    assert prediction_metric(metric, truth, scores) == pytest.approx(expected, rel=1e-12)
    # The same answers as probability rows, as lists and as {class: probability} objects.
    rows = [[1 - p, p] for p in scores]
    assert prediction_metric(metric, truth, rows) == pytest.approx(expected, rel=1e-12)
    objects = [{"0": 1 - p, "1": p} for p in scores]
    assert prediction_metric(metric, truth, objects) == pytest.approx(expected, rel=1e-12)


@pytest.mark.parametrize("metric, expected", [
    ("rmse", math.sqrt(skm.mean_squared_error(TARGET, ESTIMATE))),
    ("mae", skm.mean_absolute_error(TARGET, ESTIMATE)),
    ("r2", skm.r2_score(TARGET, ESTIMATE)),
])
def test_regression_figures_equal_scikit_learns(metric, expected):
    assert prediction_metric(metric, TARGET.tolist(), [[v] for v in ESTIMATE]) == \
        pytest.approx(expected, rel=1e-12)


def test_multiclass_labels_and_probabilities():
    truth = ["cat", "dog", "bird", "dog", "cat", "bird"]
    proba = [[0.1, 0.7, 0.2], [0.1, 0.2, 0.7], [0.6, 0.3, 0.1], [0.2, 0.1, 0.7],
             [0.3, 0.4, 0.3], [0.5, 0.1, 0.4]]
    # Rows follow the sorted labels (bird, cat, dog), as scikit-learn's classes_ do.
    labels = ["cat", "dog", "bird", "dog", "cat", "bird"]
    assert prediction_metric("accuracy", truth, proba) == 1.0
    assert prediction_metric("f1", truth, labels) == 1.0
    assert prediction_metric("roc_auc", truth, proba) == pytest.approx(skm.roc_auc_score(
        truth, proba, multi_class="ovr"))
    assert prediction_metric("log_loss", truth, proba) == pytest.approx(skm.log_loss(
        truth, proba))
    # Integer labels name columns 0..k-1 even when a class is absent from the labels.
    assert prediction_metric("accuracy", [0, 2, 2], [[0.9, 0.05, 0.05], [0.1, 0.1, 0.8],
                                                     [0.1, 0.8, 0.1]]) == pytest.approx(2 / 3)
    # An explicit class order wins.
    assert prediction_metric("accuracy", ["n", "y"], [[0.2, 0.8], [0.9, 0.1]],
                             classes=["y", "n"]) == 1.0


@pytest.mark.parametrize("metric, truth, predictions", [
    ("roc_auc", [1, 1, 1], [0.2, 0.7, 0.9]),  # one class
    ("precision", [0, 1, 1], [0, 0, 0]),  # no positive prediction
    ("r2", [1.5], [2.5]),  # one row
    ("rmse", ["a", "b"], ["a", "b"]),  # labels are no numbers
    ("roc_auc", [0, 1], ["no", "yes"]),  # labels are no probabilities
    ("log_loss", [0, 1], [3.5, -2.0]),  # scores outside [0, 1]
    ("accuracy", ["a", "b"], [[0.2, 0.5, 0.3], [0.1, 0.1, 0.8]]),  # which column is "a"?
    ("accuracy", [None, float("nan")], [1, 0]),  # no label at all
    ("accuracy", [], []),
    ("accuracy", [1, 2], ["1", "2"]),  # numbers against strings: scikit-learn refuses
])
def test_what_a_window_cannot_support_is_nan(metric, truth, predictions):
    assert math.isnan(prediction_metric(metric, truth, predictions))


def test_pairs_with_a_missing_side_are_left_out():
    assert prediction_metric("accuracy", [1, 0, None, 1], [1, 1, 0, None]) == 0.5


@pytest.mark.parametrize("call, match", [
    (lambda: prediction_metric("auc", [1], [1]), "unknown metric.*accepted: accuracy"),
    (lambda: prediction_metric("accuracy", [1, 0], [1]), "truth has 2 values"),
    (lambda: prediction_metric("accuracy", [1], [[0.5, 0.5]], classes=[0, 1, 2]),
     "2 class probabilities"),
    (lambda: prediction_metric("roc_auc", [1], [0.5], classes=[0, 1, 2]), "two classes"),
])
def test_bad_metric_calls_are_refused(call, match):
    with pytest.raises(InvalidValueError, match=match):
        call()


def test_default_metrics_follow_the_data():
    classification = [m for m in METRICS if m not in ("rmse", "mae", "r2")]
    labels_only = [m for m in classification if m not in ("roc_auc", "log_loss")]
    assert default_metrics([0, 1, 1], [0.2, 0.9, 0.6]) == classification
    assert default_metrics(["a", "b"], [{"a": 0.4, "b": 0.6}, {"a": 1, "b": 0}]) == \
        classification
    assert default_metrics([0, 1, 2], [0, 2, 2]) == labels_only
    assert default_metrics([3.5, 2.0], [3.1, 2.2]) == ["rmse", "mae", "r2"]
    assert default_metrics([12, 40], [13.7, 38.2]) == ["rmse", "mae", "r2"]
    assert default_metrics([None, None], [1, 0]) == []


# -- windows ----------------------------------------------------------------------------------

def test_tumbling_time_windows_end_at_the_log_windows_end():
    rows = [{"request_id": f"r{i}", "minute": 5 * i, "latency": float(10 * i),
             "prediction": i % 2, "label": 1, "error": "boom" if i == 4 else None}
            for i in range(12)]
    frame = window_performance(window(rows, end=T0 + timedelta(hours=1)),
                               size=timedelta(minutes=20), metrics=["accuracy", "recall"],
                               by=())
    assert list(frame.columns) == [
        "window", "start", "end", "requests", "rows", "errors", "error_rate",
        "latency_p50_ms", "latency_p95_ms", "latency_p99_ms", "labelled", "invalid_labels",
        "accuracy", "recall"]
    assert list(frame["window"]) == [0, 1, 2]
    assert list(frame["start"]) == [T0 + timedelta(minutes=m) for m in (0, 20, 40)]
    assert list(frame["end"]) == [T0 + timedelta(minutes=m) for m in (20, 40, 60)]
    assert list(frame["requests"]) == [4, 4, 4]
    assert list(frame["errors"]) == [0, 1, 0]
    assert list(frame["error_rate"]) == [0.0, 0.25, 0.0]
    assert list(frame["labelled"]) == [4, 3, 4]  # a failed answer is not scored
    # The second window's answers: r4 failed, r5 and r7 right, r6 wrong.
    assert frame["accuracy"].tolist() == pytest.approx([0.5, 2 / 3, 0.5])
    assert frame["latency_p50_ms"].tolist() == [15.0, 55.0, 95.0]
    assert frame["latency_p99_ms"].iloc[0] == pytest.approx(np.percentile([0, 10, 20, 30], 99))


def test_sliding_windows_overlap_and_only_the_oldest_is_partial():
    rows = [{"request_id": f"r{i}", "minute": i} for i in range(30)]
    frame = window_performance(window(rows, end=T0 + timedelta(minutes=30)),
                               size=timedelta(minutes=10), step=timedelta(minutes=5), by=())
    assert [(s.minute, e.minute) for s, e in zip(frame["start"], frame["end"])] == [
        (0, 10), (5, 15), (10, 20), (15, 25), (20, 30)]
    assert list(frame["requests"]) == [10] * 5
    frame = window_performance(window(rows, end=T0 + timedelta(minutes=33)),
                               size=timedelta(minutes=10), step=timedelta(minutes=5), by=())
    assert [(s.minute, e.minute) for s, e in zip(frame["start"], frame["end"])] == [
        (58, 8), (3, 13), (8, 18), (13, 23), (18, 28), (23, 33)]  # one covers minute 0
    assert list(frame["requests"]) == [8, 10, 10, 10, 10, 7]


def test_without_an_end_time_windows_fall_on_multiples_of_their_step():
    rows = [{"request_id": f"r{i}", "minute": 7 * i} for i in range(5)]  # 0, 7, ..., 28
    frame = window_performance(window(rows), size=timedelta(minutes=15), by=())
    assert list(frame["start"]) == [T0, T0 + timedelta(minutes=15)]
    assert list(frame["requests"]) == [3, 2]


def test_count_windows_count_requests_not_rows_and_latency_is_per_request():
    rows = []
    for i in range(7):  # request i has i % 3 + 1 rows
        rows += [{"request_id": f"r{i}", "minute": i, "latency": float(i), "prediction": 1,
                  "label": 1 if i != 6 else 0} for _ in range(i % 3 + 1)]
    frame = window_performance(window(rows), size=3, metrics=["accuracy"], by=())
    assert list(frame["requests"]) == [1, 3, 3]  # the newest window is whole
    assert list(frame["rows"]) == [1, 6, 6]
    assert list(frame["start"]) == [T0, T0 + timedelta(minutes=1),
                                    T0 + timedelta(minutes=4)]
    assert list(frame["end"]) == [T0, T0 + timedelta(minutes=3), T0 + timedelta(minutes=6)]
    assert frame["latency_p50_ms"].tolist() == [0.0, 2.0, 5.0]  # not weighted by rows
    assert frame["accuracy"].tolist() == pytest.approx([1.0, 1.0, 5 / 6])
    sliding = window_performance(window(rows), size=4, step=2, metrics=[], by=())
    assert list(sliding["requests"]) == [3, 4, 4]  # requests 0-2, 1-4, 3-6


def test_figures_per_route_and_version_from_a_real_log(workspace):
    records, labels = [], []
    for i in range(40):
        champion = i % 4 != 0  # a quarter of the traffic goes to the canary
        outputs = [[0.3, 0.7]] if i % 3 else [[0.8, 0.2]]
        records.append(answer(
            f"q{i}", BASE + i * 30_000, outputs=[] if i == 8 else outputs,
            error="RuntimeError: down" if i == 8 else None,
            route="models:/ctr@champion" if champion else "models:/ctr/2",
            version=1 if champion else 2, latency_ms=2.0 if champion else 8.0))
        if i < 30:
            labels.append({"request_id": f"q{i}", "label": 1 if i % 2 else 0})
    write_log(workspace, records)
    record_feedback("ctr", labels)
    frame = performance("ctr", start=datetime(2026, 3, 2, 10, tzinfo=UTC),
                        end=datetime(2026, 3, 2, 10, 20, tzinfo=UTC),
                        size=timedelta(minutes=10), metrics=["accuracy", "roc_auc"])
    assert list(frame[["window", "route", "model_version"]].itertuples(index=False)) == [
        (0, "models:/ctr/2", 2), (0, "models:/ctr@champion", 1),
        (1, "models:/ctr/2", 2), (1, "models:/ctr@champion", 1)]
    assert list(frame["requests"]) == [5, 15, 5, 15]
    assert list(frame["errors"]) == [1, 0, 0, 0]
    assert frame["latency_p95_ms"].tolist() == [8.0, 2.0, 8.0, 2.0]
    assert list(frame["labelled"]) == [4, 15, 3, 7]
    for row in frame.itertuples():
        ids = [i for i in range(row.window * 20, row.window * 20 + 20)
               if (i % 4 == 0) == (row.model_version == 2) and i < 30 and i != 8]
        truth = [1 if i % 2 else 0 for i in ids]
        predicted = [1 if i % 3 else 0 for i in ids]
        scores = [0.7 if i % 3 else 0.2 for i in ids]
        assert row.accuracy == pytest.approx(skm.accuracy_score(truth, predicted))
        if row.model_version == 2:  # the canary's requests are even: every label is 0
            assert set(truth) == {0} and math.isnan(row.roc_auc)
        else:
            assert row.roc_auc == pytest.approx(skm.roc_auc_score(truth, scores))


def test_an_empty_window_gives_an_empty_frame_with_the_columns(workspace):
    frame = performance("quiet", last=timedelta(hours=1), size=timedelta(minutes=5),
                        metrics=["mae"])
    assert frame.empty and list(frame.columns)[-3:] == ["labelled", "invalid_labels", "mae"]


@pytest.mark.parametrize("kwargs, field", [
    ({"size": timedelta(0)}, "size"),
    ({"size": timedelta(minutes=-5)}, "size"),
    ({"size": 0}, "size"),
    ({"size": True}, "size"),
    ({"size": 2.5}, "size"),
    ({"size": "15m"}, "size"),
    ({"step": 5}, "step"),
    ({"size": 10, "step": timedelta(minutes=1)}, "step"),
    ({"size": timedelta(minutes=5), "step": timedelta(minutes=10)}, "step"),
    ({"size": timedelta(hours=1), "step": timedelta(milliseconds=1)}, "step"),
    ({"metrics": ["accuracy", "auc"]}, "metric"),
    ({"by": ["region"]}, "by"),
    ({"by": ["route", "route"]}, "by"),
    ({"last": timedelta(hours=1)}, "last"),
])
def test_bad_arguments_are_refused(kwargs, field):
    rows = [{"request_id": "a", "minute": 0}, {"request_id": "b", "minute": 59}]
    with pytest.raises(InvalidValueError) as caught:
        performance(window(rows), **kwargs)
    assert caught.value.field == field


def write_feedback_as_an_attacker(workspace, labels: dict[str, str]) -> None:
    """Labels (as JSON text) written straight into the feedback store, past every check, as
    someone with write access to the artifact store could."""
    import pyarrow as pa

    from tidal.serving.feedback import FEEDBACK_FOLDER, SCHEMA
    from tidal.serving.prediction_log import partition, write_parquet

    stamp = BASE + 3_600_000
    table = pa.table({"request_id": list(labels), "label": list(labels.values()),
                      "timestamp": [stamp] * len(labels)}, schema=SCHEMA)
    write_parquet(workspace.artifacts,
                  f"{partition(FEEDBACK_FOLDER, 'ctr', stamp // 3_600_000)}/x.parquet", table)


def test_a_label_that_cannot_be_compared_is_counted_and_left_out_never_nan(workspace):
    records = [answer(f"q{i}", BASE + i * 1000, outputs=[i % 2]) for i in range(10)]
    records.append(answer("pair", BASE + 20_000, outputs=[1, 0]))
    write_log(workspace, records)
    labels = {f"q{i}": "1" if i % 2 else "0" for i in range(8)}  # 8 right answers
    labels.update({"q8": '"yes"', "q9": "[1, 0]", "pair": "[1, 0, 1]"})
    write_feedback_as_an_attacker(workspace, labels)
    frame = performance("ctr", metrics=["accuracy", "f1"], by=())
    assert frame["accuracy"].tolist() == [1.0] and frame["f1"].tolist() == [1.0]
    assert frame["labelled"].tolist() == [8]
    # "yes", a list on a one-row answer, and a list of 3 labels for a request of 2 rows.
    assert frame["invalid_labels"].tolist() == [4]
    picked = performance("ctr", by=())  # metrics picked by the valid labels: classification
    assert picked["accuracy"].tolist() == [1.0]

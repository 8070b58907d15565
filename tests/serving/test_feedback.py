"""Feedback: labels stored apart from the prediction log and joined to it by request id."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import numpy as np
import pandas as pd
import pytest

import tidal
from tidal.errors import InvalidValueError
from tidal.ids import now_ms
from tidal.serving.feedback import join_feedback, read_feedback, record_feedback
from tidal.serving.prediction_log import SCHEMA, PredictionLog, PredictionRecord


def prediction(request_id: str, *, shadow: bool = False, at: int | None = None) -> PredictionRecord:
    return PredictionRecord(
        request_id=request_id, timestamp_ms=now_ms() if at is None else at, endpoint="ctr",
        route="models:/ctr@champion", model_uri="models:/ctr/3", model_version=3, shadow=shadow,
        inputs={"x": [1.0]}, outputs=[0.5], latency_ms=2.0)


def next_ms() -> None:
    """Wait for the clock's next millisecond, so that a later call gets a later timestamp."""
    first = now_ms()
    while now_ms() == first:
        pass


def test_feedback_is_recorded_read_and_joined_to_the_log(workspace):
    log = PredictionLog(workspace)
    for record in (prediction("a"), prediction("a", shadow=True), prediction("b"),
                   prediction("c")):
        log.log(record)
    log.close()

    assert record_feedback("ctr", [{"request_id": "a", "label": 1},
                                   {"request_id": "b", "label": "clicked"}]) == 2
    next_ms()
    assert record_feedback("ctr", [{"request_id": "a", "label": np.array([0.25, 0.75])},
                                   {"request_id": "elsewhere", "label": np.int64(7)}],
                           workspace=workspace) == 2

    feedback = read_feedback("ctr", workspace=workspace)
    assert list(feedback.columns) == ["request_id", "label", "timestamp"]
    assert list(feedback["request_id"]) == ["a", "b", "a", "elsewhere"]
    assert list(feedback["label"]) == [1, "clicked", [0.25, 0.75], 7]
    assert str(feedback["timestamp"].dtype) == "datetime64[ms, UTC]"

    joined = join_feedback("ctr")
    assert list(joined.columns) == SCHEMA.names + ["label", "feedback_timestamp"]
    assert list(joined["request_id"]) == ["a", "b", "c"] and not joined["shadow"].any()
    assert list(joined["label"]) == [[0.25, 0.75], "clicked", None]  # the later label for a wins
    assert joined["feedback_timestamp"].iloc[0] == feedback["timestamp"].iloc[2]
    assert pd.isna(joined["feedback_timestamp"].iloc[2])

    with_shadows = join_feedback("ctr", include_shadow=True, workspace=workspace)
    shadow_rows = with_shadows[with_shadows["shadow"]]
    assert list(shadow_rows["request_id"]) == ["a"] and shadow_rows["label"].iloc[0] == [0.25,
                                                                                         0.75]


def test_the_later_of_two_labels_in_one_call_wins(tmp_path):
    ws = tidal.workspace(tmp_path / "ws")
    log = PredictionLog(ws)
    log.log(prediction("a"))
    log.close()
    record_feedback("ctr", [{"request_id": "a", "label": False},
                            {"request_id": "a", "label": True}])
    assert list(join_feedback("ctr")["label"]) == [True]


def test_reads_filter_by_time_and_an_endpoint_without_data_is_empty(tmp_path):
    ws = tidal.workspace(tmp_path / "ws")
    assert read_feedback("ctr").empty
    assert list(read_feedback("ctr").columns) == ["request_id", "label", "timestamp"]
    joined = join_feedback("ctr")
    assert joined.empty and list(joined.columns) == SCHEMA.names + ["label",
                                                                      "feedback_timestamp"]

    old = int((datetime.now(UTC) - timedelta(days=3)).timestamp() * 1000)
    log = PredictionLog(ws)
    log.log(prediction("old", at=old))
    log.log(prediction("new"))
    log.close()
    record_feedback("ctr", [{"request_id": "old", "label": 0}, {"request_id": "new", "label": 1}])
    since = datetime.now(UTC) - timedelta(days=1)
    assert list(join_feedback("ctr", start=since)["request_id"]) == ["new"]
    assert list(join_feedback("ctr", start=since)["label"]) == [1]
    assert list(join_feedback("ctr", end=since)["label"]) == [0]
    assert read_feedback("ctr", end=since).empty
    assert len(read_feedback("ctr", start=since)) == 2


def test_labels_imported_later_carry_the_moment_they_became_known(tmp_path):
    ws = tidal.workspace(tmp_path / "ws")
    known = datetime(2024, 3, 1, 17, 30, tzinfo=UTC)
    record_feedback("ctr", [{"request_id": "a", "label": 1}], at=known)
    record_feedback("ctr", [{"request_id": "b", "label": 0}], at=datetime(2024, 3, 2, 9))
    stored = read_feedback("ctr")
    assert list(stored["timestamp"]) == [pd.Timestamp(known),
                                         pd.Timestamp("2024-03-02T09:00", tz="UTC")]
    assert ws.artifacts.list_files("feedback/ctr/date=2024-03-01/hour=17")
    assert list(read_feedback("ctr", end=datetime(2024, 3, 2, tzinfo=UTC))["request_id"]) == ["a"]

    with pytest.raises(InvalidValueError, match="at must be a datetime .* got str") as error:
        record_feedback("ctr", [{"request_id": "c", "label": 1}], at="2024-03-01")
    assert error.value.field == "at"
    assert len(read_feedback("ctr")) == 2


def test_an_empty_list_records_nothing(tmp_path):
    ws = tidal.workspace(tmp_path / "ws")
    assert record_feedback("ctr", []) == 0
    assert ws.artifacts.list_files("feedback") == []


@pytest.mark.parametrize(("endpoint", "items", "field", "message"), [
    ("../x", [{"request_id": "a", "label": 1}], "endpoint", "endpoint name '../x' is not valid"),
    ("ctr", {"request_id": "a", "label": 1}, "items", "must be a list of objects .*, got dict"),
    ("ctr", "a", "items", "must be a list of objects .*, got str"),
    ("ctr", [{"request_id": "a", "label": 1}, ["b", 1]], "items[1]",
     r"items\[1\] must be an object with 'request_id' and 'label', got list"),
    ("ctr", [{"label": 1}], "items[0].request_id", "must be a non-empty string .* got none"),
    ("ctr", [{"request_id": 5, "label": 1}], "items[0].request_id", "got int"),
    ("ctr", [{"request_id": "", "label": 1}], "items[0].request_id", "got 0 characters"),
    ("ctr", [{"request_id": "r" * 129, "label": 1}], "items[0].request_id",
     "at most 128 characters .* got 129 characters"),
    ("ctr", [{"request_id": "a", "label": object()}], "items[0].label",
     "cannot be stored as JSON .* accepted: a number, string, boolean"),
    ("ctr", [{"request_id": "a"}], "items[0].label", "is missing, null or NaN"),
    ("ctr", [{"request_id": "a", "label": float("nan")}], "items[0].label", "NaN"),
    ("ctr", [{"request_id": "a", "label": 1, "lable": 2}], "items[0].lable",
     "unknown key.* lable; accepted: request_id, label"),
    ("ctr", [{"request_id": str(i), "label": 1} for i in range(10_001)], "items",
     "10001 feedback items in one call; the limit is 10000"),
])
def test_bad_feedback_is_refused_and_nothing_is_written(tmp_path, endpoint, items, field,
                                                        message):
    ws = tidal.workspace(tmp_path / "ws")
    with pytest.raises(InvalidValueError, match=message) as error:
        record_feedback(endpoint, items)
    assert error.value.field == field
    assert ws.artifacts.list_files("feedback") == []

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


# -- feedback over HTTP: only for answers a server gave, with labels the models can be judged by


def _answer(running, frame, rows: int = 1, **body) -> dict:
    from tests.serving.conftest import records

    response = running.post("/predict/ctr", json={"records": records(frame.head(rows)), **body})
    assert response.status_code == 200, response.text
    return response.json()


def test_feedback_for_an_id_no_server_issued_is_refused(ctr, serve, workspace):
    tidal.serving.deploy("ctr", {"models:/ctr/1": 100})
    tidal.serving.deploy("other", {"models:/ctr/1": 100})
    running = serve(workspace)
    real = _answer(running, ctr["frame"])["request_id"]
    forged = [real[:-1] + ("0" if real[-1] != "0" else "1"), "never-answered",
              "0" * 24 + ".1-" + "0" * 32]
    for request_id in forged:
        refused = running.post("/feedback/ctr", json={"feedback": [
            {"request_id": real, "label": 1}, {"request_id": request_id, "label": 0}]})
        assert refused.status_code == 404, refused.text
        assert refused.json()["field"] == "items[1].request_id"
        assert "not an id this server gave an answer of 'ctr'" in refused.json()["error"]
    # An id is bound to its endpoint.
    elsewhere = running.post("/feedback/other", json={"feedback": [
        {"request_id": real, "label": 1}]})
    assert elsewhere.status_code == 404 and elsewhere.json()["field"] == "items[0].request_id"
    assert read_feedback("ctr", workspace=workspace).empty  # nothing of a refused call is kept
    accepted = running.post("/feedback/ctr", json={"feedback": [{"request_id": real,
                                                                 "label": 1}]})
    assert accepted.status_code == 200 and accepted.json()["recorded"] == 1


def test_another_server_of_the_workspace_accepts_an_id_before_the_log_is_written(
        ctr, serve, workspace):
    tidal.serving.deploy("ctr", {"models:/ctr/1": 100})
    answering, other = serve(workspace), serve(workspace)
    request_id = _answer(answering, ctr["frame"])["request_id"]
    assert read_prediction_log_ids(workspace) == []  # the answer is not in the log yet
    sent = other.post("/feedback/ctr", json={"feedback": [{"request_id": request_id,
                                                           "label": 0}]})
    assert sent.status_code == 200, sent.text


def read_prediction_log_ids(workspace) -> list[str]:
    from tidal.serving.prediction_log import read_prediction_log

    return list(read_prediction_log("ctr", workspace=workspace)["request_id"])


def test_a_client_id_is_echoed_and_logged_but_never_shared_by_two_answers(ctr, serve,
                                                                           workspace):
    tidal.serving.deploy("ctr", {"models:/ctr/1": 100})
    running = serve(workspace)
    first = _answer(running, ctr["frame"], id="dup")
    second = _answer(running, ctr["frame"], id="dup")
    assert first["id"] == second["id"] == "dup"
    assert first["request_id"] != second["request_id"]
    assert "dup" not in (first["request_id"], second["request_id"])
    running.app.prediction_log.flush()
    log = tidal.serving.read_prediction_log("ctr", workspace=workspace)
    assert log["request_id"].is_unique and len(log) == 2
    assert list(log["client_id"]) == ["dup", "dup"]
    assert sorted(log["request_id"]) == sorted([first["request_id"], second["request_id"]])


@pytest.mark.parametrize(("label", "rows", "expected"), [
    ("yes", 1, "an integer class label"),
    ([1, 0], 1, "an integer class label"),
    (True, 1, "an integer class label"),
    (0.5, 1, "an integer class label"),
    ({"class": 1}, 1, "an integer class label"),
    ([1, 0], 3, "or a list of 3 such labels"),
    ([1, "no", 0], 3, "or a list of 3 such labels"),
])
def test_a_label_of_the_wrong_type_or_shape_is_refused(ctr, serve, workspace, label, rows,
                                                       expected):
    tidal.serving.deploy("ctr", {"models:/ctr/1": 100})
    running = serve(workspace)
    request_id = _answer(running, ctr["frame"], rows)["request_id"]
    refused = running.post("/feedback/ctr", json={"feedback": [{"request_id": request_id,
                                                               "label": label}]})
    assert refused.status_code == 422, refused.text
    body = refused.json()
    assert body["field"] == "items[0].label" and expected in body["error"]
    assert "int64" in body["error"]
    # The Python API refuses it the same way.
    with pytest.raises(InvalidValueError, match=expected) as error:
        record_feedback("ctr", [{"request_id": request_id, "label": label}],
                        workspace=workspace)
    assert error.value.status_code == 422 and error.value.field == "items[0].label"
    assert read_feedback("ctr", workspace=workspace).empty


def test_labels_of_the_model_type_are_taken_one_or_one_a_row(ctr, serve, workspace):
    tidal.serving.deploy("ctr", {"models:/ctr/1": 100})
    running = serve(workspace)
    one = _answer(running, ctr["frame"])["request_id"]
    three = _answer(running, ctr["frame"], 3)["request_id"]
    sent = running.post("/feedback/ctr", json={"feedback": [
        {"request_id": one, "label": 1}, {"request_id": three, "label": [1, 0, 1]},
        {"request_id": three, "label": 0}, {"request_id": one, "label": 1.0}]})
    assert sent.status_code == 200, sent.text
    assert sent.json()["recorded"] == 4


def test_a_regressor_takes_finite_numbers_only(workspace, serve):
    from sklearn.linear_model import LinearRegression

    rng = np.random.default_rng(2)
    frame = pd.DataFrame(rng.normal(size=(40, 2)), columns=["a", "b"])
    model = LinearRegression().fit(frame, frame.a * 2.0)
    tidal.models.register("lin", model, input_example=frame.head(5), run=False)
    tidal.serving.deploy("lin", {"models:/lin/1": 100})
    running = serve(workspace)
    answer = running.post("/predict/lin", json={"records": [{"a": 0.5, "b": 1.0}]}).json()
    rid = answer["request_id"]
    for bad in ("3.2", True, [1.0, 2.0]):
        refused = running.post("/feedback/lin", json={"feedback": [{"request_id": rid,
                                                                   "label": bad}]})
        assert refused.status_code == 422 and "a finite number" in refused.json()["error"]
    # JSON has no infinity; Python's float('inf') is refused before it is stored.
    with pytest.raises(InvalidValueError, match="missing, null or NaN"):
        record_feedback("lin", [{"request_id": rid, "label": float("inf")}])
    assert running.post("/feedback/lin", json={"feedback": [{"request_id": rid,
                                                             "label": 1.25}]}).status_code == 200


def test_labels_imported_with_ids_from_the_log_still_go_in(ctr, serve, workspace):
    """A backfill through the Python API, with the ids the log holds and the time the labels
    became known."""
    tidal.serving.deploy("ctr", {"models:/ctr/1": 100})
    running = serve(workspace)
    for _ in range(3):
        _answer(running, ctr["frame"])
    running.app.prediction_log.flush()
    ids = read_prediction_log_ids(workspace)
    known = datetime(2024, 3, 1, 9, tzinfo=UTC)
    assert record_feedback("ctr", [{"request_id": rid, "label": 1} for rid in ids],
                           at=known, workspace=workspace) == 3
    with pytest.raises(InvalidValueError, match="an integer class label"):
        record_feedback("ctr", [{"request_id": ids[0], "label": "yes"}], at=known,
                        workspace=workspace)

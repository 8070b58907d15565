"""Log windows: the prediction log and its feedback as one row per predicted row."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from tidal.errors import InvalidValueError
from tidal.monitoring.log_window import META_COLUMNS, read_window
from tidal.serving.feedback import record_feedback
from tidal.serving.prediction_log import PredictionLog, PredictionRecord
from tidal.store.workspace import Workspace

#: 2026-03-02 10:00 UTC, in milliseconds.
BASE = int(datetime(2026, 3, 2, 10, tzinfo=UTC).timestamp() * 1000)


def answer(request_id: str, at: int, *, outputs: list[Any] | None = None,
           inputs: dict[str, list[Any]] | None = None, route: str = "models:/ctr@champion",
           version: int = 1, latency_ms: float = 5.0, error: str | None = None,
           shadow: bool = False, endpoint: str = "ctr",
           sampled_out: bool = False) -> PredictionRecord:
    """One logged answer; ``at`` in milliseconds since the epoch; ``sampled_out``: logged
    without its inputs, as under ``log_sample`` < 1."""
    if outputs is None:
        outputs = [] if error else [1]
    if inputs is None and not sampled_out:
        inputs = {"x": [float(i) for i in range(max(len(outputs), 1))]}
    return PredictionRecord(request_id, at, endpoint, route, f"models:/ctr/{version}", version,
                            shadow, inputs, outputs, latency_ms, error)


def write_log(workspace: Workspace, records: list[PredictionRecord]) -> None:
    """Write records through the serving layer's own writer, and wait for the files."""
    log = PredictionLog(workspace, worker="test")
    for record in records:
        assert log.log(record)
    log.close()


def test_requests_become_rows_with_their_answers_labels_and_inputs(workspace):
    write_log(workspace, [
        answer("a", BASE, outputs=[0, 1], inputs={"x": [1.5, 2.5], "city": ["paris", "lyon"]}),
        answer("a", BASE, outputs=[1, 1], shadow=True, version=2),
        answer("b", BASE + 1, outputs=[[0.2, 0.8]], sampled_out=True),
        answer("c", BASE + 2, inputs={"x": [9.0], "member": [True]}, error="ValueError: bad"),
    ])
    record_feedback("ctr", [{"request_id": "a", "label": [0, 0]},
                            {"request_id": "b", "label": 1}])
    window = read_window("ctr")

    meta = window.meta
    assert list(meta.columns) == [*META_COLUMNS, "has_inputs"]
    assert list(meta["request_id"]) == ["a", "a", "b", "c"]  # the shadow answer is left out
    assert list(meta["prediction"]) == [0, 1, [0.2, 0.8], None]
    assert [type(v) for v in meta["prediction"][:2]] == [int, int]  # not made floats
    assert list(meta["label"]) == [0, 0, 1, None]  # a list label is split over the rows
    assert list(meta["error"]) == [None, None, None, "ValueError: bad"]
    assert list(meta["has_inputs"]) == [True, True, False, True]
    assert list(meta["model_version"]) == [1, 1, 1, 1]
    assert meta["timestamp"].iloc[2] == datetime(2026, 3, 2, 10, 0, 0, 1000, tzinfo=UTC)
    # Inputs sit on the index of their rows; columns missing from a request are empty.
    assert list(window.inputs.index) == [0, 1, 3]
    assert list(window.inputs["x"]) == [1.5, 2.5, 9.0]
    assert list(window.inputs["city"][:2]) == ["paris", "lyon"]
    assert list(window.inputs["member"].isna()) == [True, True, False]
    assert list(window.labelled["request_id"]) == ["a", "a", "b"]
    assert len(window) == 4


def test_a_window_is_chosen_by_time_count_and_route(workspace):
    write_log(workspace, [answer(f"r{i}", BASE + i * 60_000,
                                 route="models:/ctr@champion" if i % 2 else "models:/ctr/2")
                          for i in range(10)])
    start = datetime(2026, 3, 2, 10, 2, tzinfo=UTC)
    end = datetime(2026, 3, 2, 10, 5, tzinfo=UTC)
    assert list(read_window("ctr", start=start, end=end).meta["request_id"]) == [
        "r2", "r3", "r4"]
    last = read_window("ctr", last=timedelta(minutes=3), end=end)
    assert list(last.meta["request_id"]) == ["r2", "r3", "r4"]
    assert (last.start, last.end) == (start, end)
    assert list(read_window("ctr", requests=3).meta["request_id"]) == ["r7", "r8", "r9"]
    champion = read_window("ctr", route="models:/ctr@champion", requests=2)
    assert list(champion.meta["request_id"]) == ["r7", "r9"]
    recent = read_window("ctr", last=timedelta(hours=1))
    assert recent.end is not None and recent.start == recent.end - timedelta(hours=1)


def test_an_endpoint_with_no_log_gives_an_empty_window(workspace):
    window = read_window("quiet")
    assert len(window) == 0 and window.inputs.empty
    assert list(window.meta.columns) == [*META_COLUMNS, "has_inputs"]
    assert window.labelled.empty


@pytest.mark.parametrize("kwargs, field", [
    ({"requests": 0}, "requests"),
    ({"requests": True}, "requests"),
    ({"requests": "5"}, "requests"),
    ({"last": timedelta(0)}, "last"),
    ({"last": 3600}, "last"),
    ({"last": timedelta(hours=1), "start": datetime(2026, 1, 1, tzinfo=UTC)}, "last"),
    ({"start": "yesterday"}, "start"),
])
def test_bad_window_arguments_are_refused(tmp_path, kwargs, field):
    import tidal

    tidal.workspace(tmp_path / "ws")
    with pytest.raises(InvalidValueError) as caught:
        read_window("ctr", **kwargs)
    assert caught.value.field == field


def test_a_bad_endpoint_name_is_refused(tmp_path):
    import tidal

    tidal.workspace(tmp_path / "ws")
    with pytest.raises(InvalidValueError, match="endpoint name"):
        read_window("../etc")


def test_labels_the_answers_cannot_be_compared_with_are_kept_out_of_labelled(workspace):
    """A string label for a model of numbers, an object, a list on one row: counted in
    invalid_labels, never in labelled (which performance triggers and retraining read)."""
    from tests.monitoring.test_performance import write_feedback_as_an_attacker

    write_log(workspace, [answer(f"r{i}", BASE + i, outputs=[1]) for i in range(5)])
    write_feedback_as_an_attacker(workspace, {"r0": "1", "r1": "0", "r2": '"yes"',
                                              "r3": '{"a": 1}', "r4": "[1, 0]"})
    window = read_window("ctr")
    assert list(window.labelled["request_id"]) == ["r0", "r1"]
    assert list(window.invalid_labels["request_id"]) == ["r2", "r3", "r4"]
    assert list(window.meta["label"][:2]) == [1, 0]  # the meta keeps what was sent

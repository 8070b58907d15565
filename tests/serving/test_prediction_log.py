"""The prediction log: a non-blocking writer of Parquet files, on local disk and on S3."""

from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from datetime import UTC, datetime

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

import tidal
from tidal.errors import InvalidValueError
from tidal.serving.prediction_log import (
    SCHEMA,
    PredictionLog,
    PredictionRecord,
    read_prediction_log,
)

HOUR_MS = 3_600_000
BASE = int(datetime(2024, 3, 1, 10, tzinfo=UTC).timestamp() * 1000)  # 10:00 UTC


def record(i: int, *, timestamp_ms: int = BASE, endpoint: str = "ctr", shadow: bool = False,
           inputs: dict | None = ..., outputs: list = ...) -> PredictionRecord:
    return PredictionRecord(
        request_id=f"req-{i:06d}", timestamp_ms=timestamp_ms, endpoint=endpoint,
        route="models:/ctr@champion", model_uri="models:/ctr/3", model_version=3, shadow=shadow,
        inputs={"x": [i, i + 1]} if inputs is ... else inputs,
        outputs=[i * 0.5] if outputs is ... else outputs, latency_ms=1.25)


def log_files(store, endpoint: str = "ctr") -> list[str]:
    return [p for p in store.list_files(f"prediction-log/{endpoint}") if p.endswith(".parquet")]


def test_records_from_several_threads_are_all_written_and_round_trip(workspace):
    log = PredictionLog(workspace, worker="w1", flush_rows=100, flush_interval=0.05)
    log.start()
    threads, per_thread = 4, 250

    def produce(t: int) -> None:
        for j in range(per_thread):
            i = t * per_thread + j
            # Odd records an hour later: they belong to the next partition.
            log.log(record(i, timestamp_ms=BASE + (i % 2) * HOUR_MS + i,
                           shadow=i % 3 == 0,
                           inputs={"x": [np.float32(i / 4)], "tag": [f"t{i}"],
                                   "v": [np.arange(3) + i]},
                           outputs=[np.int64(i), [0.25, np.float64(0.75)], True]))

    workers = [threading.Thread(target=produce, args=(t,)) for t in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    log.flush()
    assert (log.written, log.dropped) == (threads * per_thread, 0)

    frame = read_prediction_log("ctr", workspace=workspace)
    assert list(frame.columns) == SCHEMA.names
    assert len(frame) == threads * per_thread
    assert frame["timestamp"].is_monotonic_increasing
    for row in frame.itertuples():
        i = int(row.request_id.removeprefix("req-"))
        assert row.timestamp.value // 1_000_000 == BASE + (i % 2) * HOUR_MS + i
        assert (row.endpoint, row.route, row.model_uri) == (
            "ctr", "models:/ctr@champion", "models:/ctr/3")
        assert row.model_version == 3 and row.shadow == (i % 3 == 0) and row.latency_ms == 1.25
        assert json.loads(row.inputs) == {"x": [i / 4], "tag": [f"t{i}"],
                                          "v": [[i, i + 1, i + 2]]}
        assert json.loads(row.outputs) == [i, [0.25, 0.75], True]
    partitions = {"/".join(path.split("/")[2:4]) for path in log_files(workspace.artifacts)}
    assert partitions == {"date=2024-03-01/hour=10", "date=2024-03-01/hour=11"}
    assert all(path.split("/")[-1].startswith("w1-") for path in log_files(workspace.artifacts))
    log.close()


def test_a_time_range_reads_only_that_range(workspace):
    log = PredictionLog(workspace, worker="w1")
    for i, offset in enumerate([-1, 0, HOUR_MS - 1, HOUR_MS, 5 * HOUR_MS, 30 * HOUR_MS]):
        log.log(record(i, timestamp_ms=BASE + offset))
    log.log(record(99, timestamp_ms=BASE, endpoint="other"))
    log.close()

    def ids(**kwargs) -> list[str]:
        return list(read_prediction_log("ctr", workspace=workspace, **kwargs)["request_id"])

    start = datetime(2024, 3, 1, 10, tzinfo=UTC)
    assert ids() == [f"req-{i:06d}" for i in range(6)]
    assert ids(start=start, end=datetime(2024, 3, 1, 11, tzinfo=UTC)) == ["req-000001",
                                                                         "req-000002"]
    # Naive datetimes are UTC; no end means everything after the start.
    assert ids(start=datetime(2024, 3, 1, 11)) == ["req-000003", "req-000004", "req-000005"]
    assert ids(end=start) == ["req-000000"]
    assert list(read_prediction_log("other", workspace=workspace)["request_id"]) == [
        "req-000099"]


def test_a_range_of_months_reads_only_the_days_it_touches(workspace):
    """Past a month, the reader picks day folders rather than hours: the rows it returns are
    the same, and stray folders beside the days are ignored."""
    day = 24 * HOUR_MS
    log = PredictionLog(workspace, worker="w1")
    for i in range(120):  # one answer every 1.5 days over six months, at varying hours
        log.log(record(i, timestamp_ms=BASE + i * 36 * HOUR_MS))
    log.close()
    workspace.artifacts.write_file("prediction-log/ctr/date=bogus/hour=00/x.parquet", b"x")
    workspace.artifacts.write_file("prediction-log/ctr/notes/readme.txt", b"x")

    def ids(**kwargs) -> list[str]:
        return list(read_prediction_log("ctr", workspace=workspace, **kwargs)["request_id"])

    def expected(start: int | None, end: int | None) -> list[str]:
        return [f"req-{i:06d}" for i in range(120)
                if (start is None or BASE + i * 36 * HOUR_MS >= start)
                and (end is None or BASE + i * 36 * HOUR_MS < end)]

    def at(ms: int) -> datetime:
        return datetime.fromtimestamp(ms / 1000, UTC)

    start, end = BASE + 10 * day + 5 * HOUR_MS, BASE + 100 * day + 7 * HOUR_MS
    assert ids(start=at(start), end=at(end)) == expected(start, end)  # 90 days
    assert ids(start=at(start)) == expected(start, None)
    assert ids(end=at(end)) == expected(None, end)
    assert ids(start=at(BASE - 400 * day), end=at(BASE - 40 * day)) == []
    assert len(ids()) == 120


def test_an_endpoint_with_no_log_reads_as_an_empty_frame_and_names_are_checked(workspace):
    frame = read_prediction_log("nothing-yet", workspace=workspace)
    assert frame.empty and list(frame.columns) == SCHEMA.names
    assert str(frame["timestamp"].dtype) == "datetime64[ms, UTC]"
    with pytest.raises(InvalidValueError, match="endpoint name '../x' is not valid") as error:
        read_prediction_log("../x", workspace=workspace)
    assert error.value.field == "endpoint"
    with pytest.raises(InvalidValueError, match="start must be a datetime"):
        read_prediction_log("ctr", start="yesterday", workspace=workspace)


def test_the_current_workspace_is_used_when_none_is_given(workspace):
    log = PredictionLog(workspace)
    log.log(record(1))
    log.close()
    assert list(read_prediction_log("ctr")["request_id"]) == ["req-000001"]


def test_a_full_queue_refuses_records_and_counts_them_without_blocking(tmp_path):
    ws = tidal.workspace(tmp_path / "ws")
    log = PredictionLog(ws, max_queue=10)
    began = time.perf_counter()
    accepted = [log.log(record(i)) for i in range(1000)]  # no writer yet: the queue fills
    assert time.perf_counter() - began < 0.5
    assert accepted.count(True) == 10 and accepted[:10] == [True] * 10
    assert log.dropped == accepted.count(False) == 990
    log.start()
    log.flush()
    assert (log.written, log.dropped) == (10, 990)
    assert len(read_prediction_log("ctr", workspace=ws)) == 10
    log.close()


def test_a_stalled_writer_never_blocks_log(workspace, monkeypatch):
    store = workspace.artifacts
    release, stalled = threading.Event(), threading.Event()
    write_file = store.write_file

    def stuck_write(path, data):
        stalled.set()
        release.wait(10)
        write_file(path, data)

    monkeypatch.setattr(store, "write_file", stuck_write)
    log = PredictionLog(workspace, max_queue=50, flush_rows=20, flush_interval=0.01)
    log.start()
    assert log.log(record(0))
    assert stalled.wait(5)
    results: list[bool] = []
    began = time.perf_counter()
    for i in range(1, 2001):
        results.append(log.log(record(i)))
    assert time.perf_counter() - began < 0.5
    # max_queue bounds every record not yet in the store, the one being written included.
    assert results.count(True) == 49 and log.dropped == results.count(False) == 1951
    with pytest.raises(TimeoutError, match="still had records to write"):
        log.flush(timeout=0.05)
    release.set()
    log.close()
    assert log.written + log.dropped == 2001 and log.dropped == 1951
    assert len(read_prediction_log("ctr", workspace=workspace)) == log.written == 50


def test_a_failing_store_drops_records_and_the_writer_keeps_going(workspace, monkeypatch,
                                                                  caplog):
    store = workspace.artifacts
    write_file = store.write_file

    def unreachable(path, data):
        raise OSError("connection refused")

    monkeypatch.setattr(store, "write_file", unreachable)
    log = PredictionLog(workspace, flush_interval=0.01)
    log.start()
    with caplog.at_level(logging.WARNING, logger="tidal.serving.prediction_log"):
        for i in range(5):
            assert log.log(record(i))
        log.flush()
    assert (log.written, log.dropped) == (0, 5)
    assert "5 record(s) dropped" in caplog.text and "connection refused" in caplog.text

    monkeypatch.setattr(store, "write_file", write_file)
    for i in range(5, 8):
        assert log.log(record(i))
    log.flush()
    assert (log.written, log.dropped) == (3, 5)
    assert list(read_prediction_log("ctr", workspace=workspace)["request_id"]) == [
        "req-000005", "req-000006", "req-000007"]
    log.close()


def test_a_record_json_cannot_hold_is_dropped_alone(tmp_path, caplog):
    ws = tidal.workspace(tmp_path / "ws")
    log = PredictionLog(ws)
    log.log(record(1))
    log.log(record(2, outputs=[object()]))
    log.log(record(3, inputs=None))
    with caplog.at_level(logging.WARNING, logger="tidal.serving.prediction_log"):
        log.close()
    assert (log.written, log.dropped) == (2, 1)
    assert "req-000002" in caplog.text
    frame = read_prediction_log("ctr", workspace=ws)
    assert list(frame["request_id"]) == ["req-000001", "req-000003"]
    assert frame["inputs"].isna().tolist() == [False, True]


def test_close_is_idempotent_and_later_records_are_refused(tmp_path):
    ws = tidal.workspace(tmp_path / "ws")
    log = PredictionLog(ws)
    log.start()
    log.log(record(1))
    log.close()
    log.close()
    log.flush()
    assert log.log(record(2)) is False
    assert (log.written, log.dropped) == (1, 1)
    with pytest.raises(RuntimeError, match="closed"):
        log.start()


@pytest.mark.parametrize(("kwargs", "field"), [
    ({"worker": "../x"}, "worker"), ({"worker": "_tmp"}, "worker"),
    ({"max_queue": 0}, "max_queue"), ({"flush_rows": 1.5}, "flush_rows"),
    ({"flush_interval": 0}, "flush_interval"),
])
def test_bad_settings_are_refused(tmp_path, kwargs, field):
    ws = tidal.workspace(tmp_path / "ws")
    with pytest.raises(InvalidValueError) as error:
        PredictionLog(ws, **kwargs)
    assert error.value.field == field


_VICTIM = textwrap.dedent("""
    import time
    from tidal.serving.prediction_log import PredictionLog, PredictionRecord
    from tidal.store.workspace import current_workspace

    log = PredictionLog(current_workspace(), worker="victim", flush_rows=20,
                        flush_interval=0.005)
    log.start()
    i = 0
    while True:
        log.log(PredictionRecord(f"req-{i}", time.time_ns() // 1_000_000, "ctr", "models:/ctr@a",
                                 "models:/ctr/1", 1, False, {"x": list(range(i % 50))}, [i], 0.5))
        i += 1
        if i % 20 == 0:
            time.sleep(0.001)
""")


def test_a_worker_killed_mid_stream_leaves_only_readable_files(workspace):
    store = workspace.artifacts
    victim = subprocess.Popen([sys.executable, "-c", _VICTIM], stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 8
        while len(log_files(store)) < 10:
            assert victim.poll() is None, victim.stderr.read().decode()
            assert time.monotonic() < deadline, "the subprocess wrote too few files"
            time.sleep(0.02)
    finally:
        os.kill(victim.pid, signal.SIGKILL)
        victim.wait()
        victim.stderr.close()
    assert victim.returncode == -signal.SIGKILL

    frame = read_prediction_log("ctr", workspace=workspace)
    files = log_files(store)
    rows = sum(pq.read_table(pa.BufferReader(store.read_file(path))).num_rows for path in files)
    assert len(files) >= 10 and len(frame) == rows >= 200
    assert frame["request_id"].is_unique
    assert all(json.loads(text) == [int(rid[4:])]
               for rid, text in zip(frame["request_id"], frame["outputs"], strict=True))
    assert set(store.list_files("prediction-log")) == set(files)  # nothing half-written there

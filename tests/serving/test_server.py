"""``tidal serve`` as users run it: worker processes on one socket, a token off loopback, the
prediction log complete after a clean stop and never corrupt after a killed worker."""

from __future__ import annotations

import io
import threading

import httpx
import pyarrow.parquet as pq
import pytest

from tests.serving.conftest import records, wait_until
from tests.serving.processes import free_port, start_server
from tidal.cpus import available_cpus
from tidal.errors import ConfigError, InvalidValueError
from tidal.serving.endpoints import deploy
from tidal.serving.prediction_log import read_prediction_log
from tidal.serving.server import (
    THREAD_VARIABLES,
    model_threads_per_worker,
    read_token,
    serve,
)


def _rows_in_log_files(workspace, endpoint: str) -> int:
    """Rows in every file under the endpoint's log folder, each read whole: a corrupt or
    partial file raises."""
    store = workspace.artifacts
    files = store.list_files(f"prediction-log/{endpoint}")
    assert files and all(f.endswith(".parquet") for f in files), files
    return sum(pq.read_table(io.BytesIO(store.read_file(f))).num_rows for f in files)


def test_every_answer_is_logged_across_workers_after_a_clean_stop(fast, backend, workspace):
    deploy("ctr", {"models:/fast/1": 100})
    server = start_server(backend, "ctr", "--workers", "2")
    body = {"records": records(fast["frame"].head(1))}
    try:
        with httpx.Client(base_url=server.url, timeout=30) as client:
            ids = [client.post("/predict/ctr", json=body).json()["request_id"]
                   for _ in range(300)]
            metrics = client.get("/metrics").text
    finally:
        server.stop()
    assert ('tidal_requests_total{endpoint="ctr",model_version="1",route="models:/fast/1",'
            'status="200"} 300.0') in metrics  # summed over both workers
    assert "tidal_prediction_log_dropped_total 0.0" in metrics
    logged = read_prediction_log("ctr")
    assert sorted(logged.request_id) == sorted(ids)


def test_a_worker_killed_mid_stream_is_replaced_and_leaves_no_corrupt_file(fast, backend,
                                                                           workspace):
    deploy("ctr", {"models:/fast/1": 100})
    server = start_server(backend, "ctr", "--workers", "2")
    body = {"records": records(fast["frame"].head(1))}
    answered: list[str] = []
    failures: list[str] = []
    stop = threading.Event()

    def load() -> None:
        with httpx.Client(base_url=server.url, timeout=30) as client:
            while not stop.is_set() and len(answered) < 50_000:
                try:
                    answer = client.post("/predict/ctr", json=body)
                except httpx.TransportError as error:  # the killed worker's connection
                    failures.append(str(error))
                    continue
                if answer.status_code == 200:
                    answered.append(answer.json()["request_id"])
                else:
                    failures.append(answer.text)

    threads = [threading.Thread(target=load) for _ in range(3)]
    try:
        for thread in threads:
            thread.start()
        wait_until(lambda: len(answered) > 1500, timeout=120, what="traffic to be logged")
        victim = server.workers()[0]
        victim.kill()  # SIGKILL: mid-write of whatever it was doing
        wait_until(lambda: len(server.workers()) == 2 and victim.pid not in
                   [w.pid for w in server.workers()], timeout=60, what="a new worker")
        mark = len(answered)
        wait_until(lambda: len(answered) > mark + 500, timeout=120,
                   what="answers after the kill")
    finally:
        stop.set()
        for thread in threads:
            thread.join(60)
        server.stop()
    assert all("Server error" not in f for f in failures)
    rows_in_files = _rows_in_log_files(workspace, "ctr")
    logged = read_prediction_log("ctr")
    assert len(logged) == rows_in_files
    assert set(logged.request_id) <= set(answered)
    # Only what the killed worker still held in memory is missing.
    assert len(logged) >= len(answered) - len(answered) // 2


def test_worker_thread_pools_are_sized_and_a_users_setting_wins(fast, backend, workspace):
    deploy("ctr", {"models:/fast/1": 100})
    unset = {name: None for name in THREAD_VARIABLES}
    server = start_server(backend, "ctr", "--workers", "2", "--model-threads", "3",
                          env_changes={**unset, "OMP_NUM_THREADS": "5"})
    try:
        answer = httpx.post(f"{server.url}/predict/ctr", timeout=30,
                            json={"records": records(fast["frame"].head(1))})
        workers = wait_until(lambda: len(server.workers()) == 2 and server.workers(),
                             what="two workers")
        environments = [worker.environ() for worker in workers]
    finally:
        server.stop()
    assert answer.status_code == 200
    for environment in environments:
        assert environment["OMP_NUM_THREADS"] == "5"  # set by the user
        assert {name: environment[name] for name in THREAD_VARIABLES[1:]} == \
            dict.fromkeys(THREAD_VARIABLES[1:], "3")


def test_model_threads_default_to_the_cpus_shared_among_workers():
    cpus = available_cpus()
    assert model_threads_per_worker(1) == cpus
    assert model_threads_per_worker(2) == max(1, cpus // 2)
    assert model_threads_per_worker(cpus * 4) == 1
    assert model_threads_per_worker(3, 7) == 7
    for bad in (0, -1, 2.5, "4", True, 5000):
        with pytest.raises(InvalidValueError, match="model threads must be an integer") as error:
            model_threads_per_worker(2, bad)
        assert error.value.field == "model_threads"


def test_a_public_address_needs_a_token(fast, workspace, tmp_path):
    with pytest.raises(ConfigError, match="bearer token"):
        serve(["ctr"], host="0.0.0.0", port=free_port())
    short = tmp_path / "short"
    short.write_text("abc\n")
    with pytest.raises(ConfigError, match="at least 16"):
        read_token(short)
    with pytest.raises(ConfigError, match="cannot read the token file"):
        read_token(tmp_path / "missing")
    good = tmp_path / "token"
    good.write_text("  0123456789abcdef0123  \n")
    assert read_token(good) == "0123456789abcdef0123"

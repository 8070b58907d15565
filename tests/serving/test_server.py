"""``tidal serve`` as users run it: worker processes on one socket, a token off loopback, the
prediction log complete after a clean stop and never corrupt after a killed worker."""

from __future__ import annotations

import io
import os
import signal
import socket
import subprocess
import sys
import threading

import httpx
import psutil
import pyarrow.parquet as pq
import pytest

from tests.serving.conftest import records, wait_until
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


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _start(backend, *args: str, env_changes: dict[str, str | None] | None = None,
           ) -> tuple[subprocess.Popen, str]:
    port = _free_port()
    env = {**os.environ, **backend.env()}
    for name, value in (env_changes or {}).items():
        if value is None:
            env.pop(name, None)
        else:
            env[name] = value
    process = subprocess.Popen(
        [sys.executable, "-m", "tidal.cli.main", "serve", *args, "--port", str(port)],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True)
    url = f"http://127.0.0.1:{port}"

    def ready() -> bool:
        if process.poll() is not None:
            raise AssertionError(process.stderr.read().decode())
        try:
            return httpx.get(f"{url}/v2/health/ready", timeout=5).status_code == 200
        except httpx.HTTPError:
            return False

    wait_until(ready, timeout=120, what="tidal serve to be ready")
    return process, url


def _stop(process: subprocess.Popen) -> None:
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(60)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait(10)
        raise AssertionError("tidal serve did not stop on SIGTERM") from None


def _workers(process: subprocess.Popen) -> list[psutil.Process]:
    """The server's live worker processes (a killed one is gone, or a zombie until reaped)."""
    found = []
    for child in psutil.Process(process.pid).children(recursive=True):
        try:
            if "spawn_main" in " ".join(child.cmdline()):
                found.append(child)
        except psutil.Error:
            continue
    return found


def _rows_in_log_files(workspace, endpoint: str) -> int:
    """Rows in every file under the endpoint's log folder, each read whole: a corrupt or
    partial file raises."""
    store = workspace.artifacts
    files = store.list_files(f"prediction-log/{endpoint}")
    assert files and all(f.endswith(".parquet") for f in files), files
    return sum(pq.read_table(io.BytesIO(store.read_file(f))).num_rows for f in files)


def test_every_answer_is_logged_across_workers_after_a_clean_stop(fast, backend, workspace):
    deploy("ctr", {"models:/fast/1": 100})
    process, url = _start(backend, "ctr", "--workers", "2")
    body = {"records": records(fast["frame"].head(1))}
    try:
        with httpx.Client(base_url=url, timeout=30) as client:
            ids = [client.post("/predict/ctr", json=body).json()["request_id"]
                   for _ in range(300)]
            metrics = client.get("/metrics").text
    finally:
        _stop(process)
    assert ('tidal_requests_total{endpoint="ctr",model_version="1",route="models:/fast/1",'
            'status="200"} 300.0') in metrics  # summed over both workers
    assert "tidal_prediction_log_dropped_total 0.0" in metrics
    logged = read_prediction_log("ctr")
    assert sorted(logged.request_id) == sorted(ids)


def test_a_worker_killed_mid_stream_is_replaced_and_leaves_no_corrupt_file(fast, backend,
                                                                           workspace):
    deploy("ctr", {"models:/fast/1": 100})
    process, url = _start(backend, "ctr", "--workers", "2")
    body = {"records": records(fast["frame"].head(1))}
    answered: list[str] = []
    failures: list[str] = []
    stop = threading.Event()

    def load() -> None:
        with httpx.Client(base_url=url, timeout=30) as client:
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
        victim = _workers(process)[0]
        victim.kill()  # SIGKILL: mid-write of whatever it was doing
        wait_until(lambda: len(_workers(process)) == 2 and victim.pid not in
                   [w.pid for w in _workers(process)], timeout=60, what="a new worker")
        mark = len(answered)
        wait_until(lambda: len(answered) > mark + 500, timeout=120,
                   what="answers after the kill")
    finally:
        stop.set()
        for thread in threads:
            thread.join(60)
        _stop(process)
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
    process, url = _start(backend, "ctr", "--workers", "2", "--model-threads", "3",
                          env_changes={**unset, "OMP_NUM_THREADS": "5"})
    try:
        answer = httpx.post(f"{url}/predict/ctr", timeout=30,
                            json={"records": records(fast["frame"].head(1))})
        workers = wait_until(lambda: len(_workers(process)) == 2 and _workers(process),
                             what="two workers")
        environments = [worker.environ() for worker in workers]
    finally:
        _stop(process)
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
        serve(["ctr"], host="0.0.0.0", port=_free_port())
    short = tmp_path / "short"
    short.write_text("abc\n")
    with pytest.raises(ConfigError, match="at least 16"):
        read_token(short)
    with pytest.raises(ConfigError, match="cannot read the token file"):
        read_token(tmp_path / "missing")
    good = tmp_path / "token"
    good.write_text("  0123456789abcdef0123  \n")
    assert read_token(good) == "0123456789abcdef0123"

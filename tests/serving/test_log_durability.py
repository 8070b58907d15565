"""What a SIGKILL of ``tidal serve`` costs the prediction log: only the answers of its last
spool interval, and never silently: the missing records show as missing sequence numbers."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time

import httpx
import psutil

from tests.serving.conftest import records, wait_until
from tests.serving.processes import start_server
from tidal.serving import log_gaps, read_prediction_log
from tidal.serving.endpoints import deploy
from tidal.serving.prediction_log import PredictionLog, PredictionRecord, recover_spool
from tidal.serving.spool import spool_folder

#: The most answered traffic, by the time of its answers, that a SIGKILL may take.
MAX_LOST_S = 0.100


def _group_gone(process: subprocess.Popen) -> bool:
    try:
        return all(child.status() == psutil.STATUS_ZOMBIE
                   for child in psutil.Process(process.pid).children(recursive=True))
    except psutil.NoSuchProcess:
        return True


def test_a_sigkilled_server_loses_at_most_its_last_100_ms_and_counts_them(fast, backend,
                                                                          workspace):
    deploy("ctr", {"models:/fast/1": 100})
    server = start_server(backend, "ctr", "--workers", "2")
    body = {"records": records(fast["frame"].head(1))}
    answered: dict[str, tuple[str, float]] = {}  # request id -> (client id, when answered)
    in_flight: dict[int, str] = {}  # client thread -> the client id it waits on
    stop = threading.Event()

    def load(thread: int) -> None:
        # A new connection every 50 requests, so that both workers get some (the kernel
        # spreads connections, not requests).
        for chunk in range(400):  # bounded, and stopped long before
            with httpx.Client(base_url=server.url, timeout=30) as client:
                for n in range(chunk * 50, chunk * 50 + 50):
                    if stop.is_set():
                        return
                    client_id = f"c{thread}-{n}"
                    in_flight[thread] = client_id
                    try:
                        answer = client.post("/predict/ctr", json=body,
                                             headers={"X-Request-ID": client_id})
                    except httpx.TransportError:  # the kill
                        return
                    now = time.monotonic()
                    if answer.status_code == 200:
                        answered[answer.json()["request_id"]] = (client_id, now)
                    del in_flight[thread]

    threads = [threading.Thread(target=load, args=(t,)) for t in range(3)]
    try:
        for thread in threads:
            thread.start()
        wait_until(lambda: len(answered) >= 2000, timeout=120, what="traffic")
        killed_at = time.monotonic()
        os.killpg(server.process.pid, signal.SIGKILL)  # the supervisor and both workers at once
        server.process.wait(30)
        wait_until(lambda: _group_gone(server.process), what="the workers to die")
    finally:
        stop.set()
        for thread in threads:
            thread.join(60)
        server.close()
    unanswered = set(in_flight.values())  # sent; the answer, if any, died with the server

    # The next `tidal serve` recovers what the killed workers spooled.
    again = start_server(backend, "ctr")
    # A graceful stop: uvicorn re-raises the signal after it.
    again.process.send_signal(signal.SIGTERM)
    assert again.process.wait(60) in (0, -signal.SIGTERM)
    again.close()

    log = read_prediction_log("ctr")
    assert log["request_id"].is_unique
    logged = set(log["request_id"])
    assert logged - set(answered) == {rid for rid, cid in zip(log["request_id"],
                                                              log["client_id"], strict=True)
                                      if cid in unanswered}
    lost = {rid: at for rid, (_, at) in answered.items() if rid not in logged}
    span_ms = (killed_at - min(lost.values())) * 1000 if lost else 0.0
    print(f"\nanswered {len(answered)}, lost {len(lost)}, lost span {span_ms:.1f} ms, "
          f"in flight {len(unanswered)}")
    assert span_ms <= MAX_LOST_S * 1000, f"lost answers from the last {span_ms:.0f} ms"
    gaps = log_gaps("ctr")
    missing = int(gaps["missing"].sum())
    print(f"log_gaps: {missing} missing in {len(gaps)} range(s) over "
          f"{log['worker'].nunique()} workers")
    # Every lost answer is a missing number; any other missing number is a request the kill
    # took between logging it and answering (its client never had the answer).
    in_flight_unlogged = len(unanswered - set(log["client_id"].dropna()))
    assert len(lost) <= missing <= len(lost) + in_flight_unlogged
    assert set(gaps["worker"]) <= set(log["worker"])
    assert log["worker"].nunique() == 2  # both killed workers' records were judged


_VICTIM = textwrap.dedent("""
    import sys, time
    from tidal.serving.prediction_log import PredictionLog, PredictionRecord
    from tidal.store.workspace import current_workspace

    # Nothing is compacted before the kill: what it logged is in its spool, or refused once
    # 5,000 records wait for the store.
    log = PredictionLog(current_workspace(), worker="victim", max_queue=5000,
                        flush_rows=1_000_000, flush_interval=60.0)
    log.start()
    i = 0
    while True:
        log.log(PredictionRecord(f"req-{i}", time.time_ns() // 1_000_000, "ctr", "models:/ctr@a",
                                 "models:/ctr/1", 1, False, {"x": [i]}, [i], 0.5))
        i += 1
        if i == 3000:
            print("ready", flush=True)
        if i % 50 == 0:
            time.sleep(0.001)
""")


def test_a_killed_writers_spool_is_recovered_and_every_number_is_accounted_for(backend,
                                                                               workspace):
    """Killed mid-spool, with a full queue refusing records, the writer's records are in the
    log once its spool is recovered, or counted missing: logged + missing is exactly the count
    it gave out."""
    victim = subprocess.Popen([sys.executable, "-c", _VICTIM], env={**os.environ,
                                                                    **backend.env()},
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        assert victim.stdout.readline() == b"ready\n", victim.stderr.read().decode()
        time.sleep(0.3)
    finally:
        victim.kill()
        victim.wait()
        victim.stdout.close()
        victim.stderr.close()
    folder = spool_folder(workspace)
    before = len(read_prediction_log("ctr"))
    recovered = recover_spool(workspace.artifacts, folder)
    assert recovered > 0 and not list(folder.glob("victim-*"))  # the spool is gone
    assert recover_spool(workspace.artifacts, folder) == 0  # safe to repeat
    log = read_prediction_log("ctr")
    # A segment the writer had compacted but not yet removed when it died is written again
    # under the same file names: recovered counts it, the log holds it once.
    assert before <= len(log) <= before + recovered and log["request_id"].is_unique
    # Each log() call took the next number, refused or not: number i is request req-i.
    assert all(log["request_id"] == "req-" + log["sequence"].astype(str))
    (statement,) = workspace.artifacts.list_files("prediction-ends/ctr")
    given = json.loads(workspace.artifacts.read_file(statement))["sequences"]
    assert given >= 3000
    gaps = log_gaps("ctr")
    missing = {n for row in gaps.itertuples() for n in range(row.first, row.last + 1)}
    assert len(missing) == int(gaps["missing"].sum())
    assert missing | set(log["sequence"]) == set(range(given)) and not missing & set(
        log["sequence"])
    print(f"\nvictim: {given} records given numbers, {len(log)} logged ({recovered} "
          f"recovered from the spool), {len(missing)} missing")


def test_gaps_count_refused_and_unwritable_records_and_the_tail_after_a_stop(workspace):
    log = PredictionLog(workspace, worker="w", max_queue=5)
    stamp = int(time.time() * 1000)

    def record(i: int, outputs: list) -> PredictionRecord:
        return PredictionRecord(f"r{i}", stamp, "ctr", "models:/ctr@a", "models:/ctr/1", 1,
                                False, None, outputs, 1.0)

    accepted = [log.log(record(i, [i])) for i in range(8)]  # no writer yet: 3 refused
    log.start()
    log.flush()
    assert log.log(record(8, [object()]))  # JSON cannot hold it: dropped when written
    assert log.log(record(9, [9]))
    log.close()
    assert accepted == [True] * 5 + [False] * 3 and log.dropped == 4
    gaps = log_gaps("ctr", workspace=workspace)
    assert gaps[["first", "last", "missing"]].values.tolist() == [[5, 8, 4]]
    assert list(gaps["worker"]) == [log.worker_id]
    empty = log_gaps("nothing", workspace=workspace)
    assert empty.empty and list(empty.columns) == ["worker", "first", "last", "missing"]

"""Nothing lost, nothing half-written: concurrent writers, exits, forks and SIGKILL."""

from __future__ import annotations

import random
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
from sqlalchemy import func, select

import tidal
from tidal.ids import digest_bytes
from tidal.tracking.schema import artifacts, metrics, runs

WRITER = textwrap.dedent("""
    import os, sys, time
    import tidal
    go, index = sys.argv[1], int(sys.argv[2])
    while not os.path.exists(go):
        time.sleep(0.005)
    with tidal.start_run(experiment="concurrent", name=f"writer-{index}") as run:
        for step in range(5000):
            run.log_metric("loss", 1.0 / (step + 1), step=step)
            if index % 2 and step % 50 == 49:
                tidal.flush()  # half the writers force many small transactions
    print("ok", run.id)
""")


def _run_python(code: str, *args: str, **kwargs) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-c", code, *args], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, **kwargs)


@pytest.mark.slow
def test_eight_processes_logging_at_once_lose_nothing(workspace, tmp_path):
    go = tmp_path / "go"
    procs = [_run_python(WRITER, str(go), str(i)) for i in range(8)]
    time.sleep(1.0)  # let every process import tidal and wait at the gate
    go.touch()
    outputs = [p.communicate(timeout=240) for p in procs]
    for proc, (out, err) in zip(procs, outputs):
        assert proc.returncode == 0, err
        assert out.startswith("ok"), err
        assert "Traceback" not in err and "error" not in err.lower(), err
    with workspace.db.read() as conn:
        total = conn.execute(select(func.count()).select_from(metrics)).scalar_one()
        statuses = conn.execute(select(runs.c.status)).scalars().all()
    assert total == 40_000
    assert statuses == ["finished"] * 8


EXIT_WITHOUT_END = textwrap.dedent("""
    import tidal
    run = tidal.start_run(experiment="exit")
    for step in range(1000):
        tidal.log_metric("x", step)
    print(run.id)
""")


def test_points_queued_at_a_normal_exit_are_written(workspace):
    proc = _run_python(EXIT_WITHOUT_END)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    stored = tidal.get_run(out.strip())
    assert stored.status == "finished"  # open runs are ended at exit
    assert len(stored.metric_history("x")) == 1000


FORK = textwrap.dedent("""
    import os, tidal
    with tidal.start_run(experiment="fork") as run:
        for step in range(100):
            run.log_metric("x", step)
        pid = os.fork()  # 100 points are still queued in memory
        if pid == 0:
            import sys; sys.exit(0)  # a normal exit of the child: atexit runs there too
        os.waitpid(pid, 0)
    print(run.id)
""")


def test_a_forked_child_does_not_write_its_parents_points_twice(workspace):
    proc = _run_python(FORK)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    assert len(tidal.get_run(out.strip().splitlines()[-1]).metric_history("x")) == 100


CRASHER = textwrap.dedent("""
    import os, random, sys
    import tidal
    scratch = sys.argv[1]
    rng = random.Random(int(sys.argv[2]))
    with tidal.start_run(experiment="crash") as run:
        print("started", flush=True)
        i = 0
        while True:
            path = os.path.join(scratch, f"payload-{i}.bin")
            with open(path, "wb") as f:
                f.write(os.urandom(rng.randint(1, 6) * 300_000))
            run.log_artifact(path, name=f"blobs/payload-{i}.bin")
            for j in range(rng.randint(100, 2000)):
                run.log_metric("m", j, step=i * 10_000 + j)
            if i % 3 == 0:
                tidal.flush()
            i += 1
""")


def _verify_store(ws) -> int:
    """Every recorded artifact's blob is complete and matches its digest; so is every blob."""
    with ws.db.read() as conn:
        recorded = conn.execute(select(artifacts.c.digest, artifacts.c.size)).all()
    for digest, size in recorded:
        assert len(ws.artifacts.get_bytes(digest)) == size
    store = ws.artifacts
    if store.is_local:
        blob_files = [p for p in Path(store._root, "blobs").rglob("*") if p.is_file()]
        for path in blob_files:
            assert digest_bytes(path.read_bytes()).endswith(path.name), path
    else:
        blob_files = [p for p in store._fs.find(f"{store._root}/blobs")]
        for path in blob_files:
            assert digest_bytes(store._fs.cat_file(path)).endswith(path.rsplit("/", 1)[1])
    return len(recorded)


@pytest.mark.slow
def test_sigkill_while_writing_never_leaves_partial_artifacts_or_a_corrupt_db(workspace,
                                                                            tmp_path):
    rng = random.Random(7)
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    for attempt in range(20):
        proc = _run_python(CRASHER, str(scratch), str(attempt))
        line = proc.stdout.readline()
        assert line.strip() == "started", proc.stderr.read()
        time.sleep(rng.uniform(0.05, 0.8))
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
        assert proc.returncode == -signal.SIGKILL
        if workspace.db.is_sqlite:
            with workspace.db.engine.connect() as conn:
                assert conn.exec_driver_sql("PRAGMA integrity_check").scalar() == "ok"
        _verify_store(workspace)
    with workspace.db.read() as conn:
        killed_runs = conn.execute(select(func.count()).select_from(runs)).scalar_one()
    assert killed_runs == 20
    assert _verify_store(workspace) > 0  # the kills did land after some artifacts were stored

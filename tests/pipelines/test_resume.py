"""Resume: a pipeline process killed with SIGKILL mid-run is finished by ``resume`` without
running its completed steps again and without duplicating their outputs."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from sqlalchemy import select

import tidal
from tidal.errors import InvalidValueError, NotFoundError
from tidal.pipelines.runner import resume_pipeline
from tidal.pipelines.schema import pipeline_runs, step_runs

REPO = Path(__file__).resolve().parents[2]
DRIVER = """
import sys, tidal
from tests.pipelines import flows
from tidal.pipelines import run_pipeline
run_pipeline(flows.resumable, {"marker_dir": sys.argv[1]})
"""


def test_a_killed_run_is_resumed_without_rerunning_finished_steps(workspace, backend,
                                                                   tmp_path):
    markers = tmp_path / "markers"
    markers.mkdir()
    env = {**os.environ, **backend.env(), "PYTHONPATH": str(REPO)}
    process = subprocess.Popen([sys.executable, "-c", DRIVER, str(markers)], env=env,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 120
    while not (markers / "stalled").exists():  # the second step has started and hangs
        assert process.poll() is None, process.communicate()[1].decode()
        assert time.monotonic() < deadline, "the pipeline never reached its second step"
        time.sleep(0.1)
    process.send_signal(signal.SIGKILL)
    process.wait(timeout=30)

    with workspace.db.read() as conn:
        (run_id,) = conn.execute(select(pipeline_runs.c.id)).scalars().all()
        before = dict(conn.execute(select(step_runs.c.node, step_runs.c.status)).all())
    assert before == {"counted_load": "done", "stall_once": "running"}
    assert tidal.get_run(run_id).status == "running"  # what a killed process leaves

    result = resume_pipeline(run_id)
    assert result.status == "finished"
    assert {n: r.status for n, r in result.steps.items()} == {
        "counted_load": "done", "stall_once": "done", "double": "done"}
    assert (markers / "counted_load").read_text() == "1"  # not run again
    assert result.output("double") == 90.0
    with workspace.db.read() as conn:
        nodes = conn.execute(select(step_runs.c.node).where(
            step_runs.c.pipeline_run_id == run_id)).scalars().all()
    assert sorted(nodes) == ["counted_load", "double", "stall_once"]  # one row per step
    assert [v.version for v in tidal.datasets.list_versions("resumable.counted_load")] == [1]
    parent = tidal.get_run(run_id)
    assert parent.status == "finished"
    statuses = sorted(tidal.get_run(child).status for child in parent.children)
    assert statuses == ["finished", "finished", "finished", "killed"]
    with pytest.raises(InvalidValueError, match="already finished"):
        resume_pipeline(run_id)


def test_resuming_an_unknown_run_is_refused(workspace):
    with pytest.raises(NotFoundError, match="no pipeline run"):
        resume_pipeline("0" * 32)

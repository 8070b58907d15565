"""``tidal runs`` against runs whose process died, and against configs another user owns."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from tests.cli.conftest import Invoke

START_AND_HANG = """
import time, tidal
run = tidal.start_run("crashy")
print(run.id, flush=True)
time.sleep(600)
"""


def test_runs_list_shows_a_sigkilled_run_as_killed(cli: Invoke, ws_dir: Path):
    env = {**os.environ, "TIDAL_HOME": str(ws_dir), "TIDAL_RUN_HEARTBEAT_INTERVAL": "0.5",
           "TIDAL_RUN_TIMEOUT": "1"}
    proc = subprocess.Popen([sys.executable, "-c", START_AND_HANG], stdout=subprocess.PIPE,
                            text=True, env=env)
    try:
        run_id = proc.stdout.readline().strip()
        assert run_id
    finally:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
    settings = {k: env[k] for k in ("TIDAL_RUN_HEARTBEAT_INTERVAL", "TIDAL_RUN_TIMEOUT")}
    deadline = time.monotonic() + 60  # a bound on waiting, never a claim about speed
    while True:
        result = cli("-w", str(ws_dir), "runs", "list", "--json", env=settings)
        assert result.exit_code == 0, result.output
        status = {r["id"]: r["status"] for r in json.loads(result.stdout)}[run_id]
        if status == "killed" or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    assert status == "killed"
    shown = cli("-w", str(ws_dir), "runs", "show", run_id, env=settings)
    assert "killed" in shown.stdout and "no heartbeat" in shown.stdout


def test_a_tidal_toml_owned_by_another_user_is_refused(cli: Invoke, tmp_path: Path):
    config = tmp_path / "tidal.toml"
    config.write_text(f'home = "{tmp_path / "theirs"}"\n')
    os.chown(config, 65534, 65534)
    project = tmp_path / "project"
    project.mkdir()
    os.chdir(project)
    result = cli("runs", "list")
    assert result.exit_code == 2
    assert "belongs to another user" in result.stderr
    assert f"TIDAL_SAFE_DIRECTORIES={tmp_path}" in result.stderr
    assert not (tmp_path / "theirs").exists()
    allowed = cli("runs", "list", env={"TIDAL_SAFE_DIRECTORIES": str(tmp_path)})
    assert allowed.exit_code == 0, allowed.output

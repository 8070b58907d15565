"""A real ``tidal serve`` process on a loopback port, for tests that need uvicorn's own HTTP
parser and connection handling rather than the app called in process."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import httpx

from tests.serving.conftest import wait_until


@dataclass
class Served:
    process: subprocess.Popen
    url: str
    port: int
    stderr_path: Path

    def stderr(self) -> str:
        return self.stderr_path.read_text(errors="replace")

    def stop(self) -> None:
        """SIGTERM, as a supervisor would; the server must stop within a minute."""
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(60)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(10)
            raise AssertionError("tidal serve did not stop on SIGTERM") from None


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start_serve(workspace: Path, *args: str, stderr_path: Path) -> Served:
    """``tidal serve -w workspace ARGS`` on a free loopback port, once it answers ready; its
    stderr goes to ``stderr_path`` (a file, so a chatty server never blocks on a pipe)."""
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("TIDAL_")}
    with open(stderr_path, "wb") as stderr:
        process = subprocess.Popen(
            [sys.executable, "-m", "tidal.cli.main", "serve", "-w", str(workspace), *args,
             "--port", str(port)],
            env=env, stdout=subprocess.DEVNULL, stderr=stderr, start_new_session=True)
    served = Served(process, f"http://127.0.0.1:{port}", port, stderr_path)

    def ready() -> bool:
        if process.poll() is not None:
            raise AssertionError(f"tidal serve exited: {served.stderr()}")
        try:
            return httpx.get(f"{served.url}/v2/health/ready", timeout=5).status_code == 200
        except httpx.HTTPError:
            return False

    wait_until(ready, timeout=120, what="tidal serve to be ready")
    return served

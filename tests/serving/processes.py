"""``tidal serve`` as a real process for the tests: started on a free loopback port against a
test backend, its stderr kept in a file (a supervisor logs every crash), stopped by SIGTERM."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import httpx
import psutil

from tests.serving.conftest import wait_until


@dataclass
class ServerProcess:
    process: subprocess.Popen
    url: str
    stderr: Path

    def log(self) -> str:
        return self.stderr.read_text(errors="replace")

    def workers(self) -> list[psutil.Process]:
        """The live worker processes (a killed one is gone, or a zombie until reaped)."""
        found = []
        for child in psutil.Process(self.process.pid).children(recursive=True):
            try:
                if "spawn_main" in " ".join(child.cmdline()) and \
                        child.status() != psutil.STATUS_ZOMBIE:
                    found.append(child)
            except psutil.Error:
                continue
        return found

    def ready(self) -> bool:
        if self.process.poll() is not None:
            raise AssertionError(f"tidal serve exited ({self.process.returncode}):\n"
                                 f"{self.log()}")
        try:
            return httpx.get(f"{self.url}/v2/health/ready", timeout=5).status_code == 200
        except httpx.HTTPError:
            return False

    def stop(self) -> None:
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


def start_server(backend, folder: Path, *args: str) -> ServerProcess:
    """``tidal serve ARGS`` on 127.0.0.1, once it answers ready."""
    port = free_port()
    stderr = folder / f"serve-{port}.log"
    with open(stderr, "wb") as handle:
        process = subprocess.Popen(
            [sys.executable, "-m", "tidal.cli.main", "serve", *args, "--port", str(port)],
            env={**os.environ, **backend.env()}, stdout=subprocess.DEVNULL, stderr=handle,
            start_new_session=True)
    server = ServerProcess(process, f"http://127.0.0.1:{port}", stderr)
    try:
        wait_until(server.ready, timeout=120, what="tidal serve to be ready")
    except BaseException:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(10)
        raise
    return server

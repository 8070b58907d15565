"""``tidal serve`` as a real process for the tests that need uvicorn's own HTTP parser, worker
processes or signals rather than the app called in process: started on a free loopback port,
returned once it answers ready, stopped by SIGTERM as a supervisor would stop it."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Protocol

import httpx
import psutil

from tests.serving.conftest import wait_until


class HasEnv(Protocol):
    """A test backend: the variables that point a subprocess at it."""

    def env(self) -> dict[str, str]: ...


@dataclass
class ServerProcess:
    """A started server, in a process group of its own so that a kill can reach its workers."""

    process: subprocess.Popen[bytes]
    url: str
    port: int
    #: The file its stderr goes to; None when it is only kept for a failure message.
    stderr: Path | None
    _kept: IO[bytes] | None = field(default=None, repr=False)

    def log(self) -> str:
        """What the server wrote to stderr so far (a kept one: until ``close``)."""
        if self.stderr is not None:
            return self.stderr.read_text(errors="replace")
        if self._kept is None or self._kept.closed:
            return ""
        fd = self._kept.fileno()
        # pread: the server shares the file's offset, so a seek here would misplace its writes
        return os.pread(fd, os.fstat(fd).st_size, 0).decode(errors="replace")

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
        """Whether it answers ready; a server that exited fails with its stderr."""
        if self.process.poll() is not None:
            raise AssertionError(f"tidal serve exited ({self.process.returncode}):\n"
                                 f"{self.log()}")
        try:
            return httpx.get(f"{self.url}/v2/health/ready", timeout=5).status_code == 200
        except httpx.HTTPError:
            return False

    def stop(self) -> None:
        """SIGTERM, as a supervisor would; the server must stop within a minute."""
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(60)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(10)
            raise AssertionError("tidal serve did not stop on SIGTERM") from None
        finally:
            self.close()

    def close(self) -> None:
        """Let go of a kept stderr, for a test that ended the server its own way."""
        if self._kept is not None:
            self._kept.close()


def free_port() -> int:
    """A loopback port nothing listens on now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start_server(where: HasEnv | Path, *args: str, stderr: Path | None = None,
                 env_changes: Mapping[str, str | None] | None = None) -> ServerProcess:
    """``tidal serve ARGS`` on 127.0.0.1, once it answers ready.

    ``where`` is a test backend (its ``env()`` added to this process's environment) or a
    workspace folder (``-w`` it, with every TIDAL_* variable removed, so that only the folder
    counts). ``env_changes`` sets variables, or removes those given None. Its stderr goes to
    the file ``stderr``, or else to an unnamed file kept for the failure message: a file
    rather than a pipe, so that a chatty server never blocks on it.
    """
    port = free_port()
    if isinstance(where, Path):
        env = {k: v for k, v in os.environ.items() if not k.startswith("TIDAL_")}
        args = ("-w", str(where), *args)
    else:
        env = {**os.environ, **where.env()}
    for name, value in (env_changes or {}).items():
        if value is None:
            env.pop(name, None)
        else:
            env[name] = value
    # Not a with: a kept file stays open until stop() or close().
    handle = open(stderr, "wb") if stderr is not None else tempfile.TemporaryFile()  # noqa: SIM115
    try:
        process = subprocess.Popen(
            [sys.executable, "-m", "tidal.cli.main", "serve", *args, "--port", str(port)],
            env=env, stdout=subprocess.DEVNULL, stderr=handle, start_new_session=True)
    except BaseException:
        handle.close()
        raise
    if stderr is not None:
        handle.close()  # the server has its own copy
    server = ServerProcess(process, f"http://127.0.0.1:{port}", port, stderr,
                           None if stderr is not None else handle)
    try:
        wait_until(server.ready, timeout=120, what="tidal serve to be ready")
    except BaseException:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(10)
        server.close()
        raise
    return server

"""Running the app: uvicorn worker processes on one port, supervised.

Listening sockets are made here, with TCP_NODELAY set so that every accepted connection
inherits it (uvicorn's own ``--workers`` leaves Nagle's algorithm on for its shared socket,
which costs tens of milliseconds a request), and one per worker on the same port
(SO_REUSEPORT), so the kernel spreads connections evenly. Workers are spawned processes, each
loading the models itself; one that dies is replaced, and SIGTERM or Ctrl-C stops them all
gracefully so their prediction logs are flushed.
"""

from __future__ import annotations

import ipaddress
import logging
import multiprocessing
import os
import shutil
import signal
import socket
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from tidal.cpus import available_cpus
from tidal.errors import ConfigError, InvalidValueError
from tidal.serving.app import ServerSettings, ServingApp
from tidal.serving.endpoints import get_endpoint
from tidal.store.workspace import Workspace, current_workspace, open_workspace

log = logging.getLogger("tidal.serving")

#: A worker that exits this soon after starting failed to start (a model that cannot load).
_STARTUP_S = 15.0
_MAX_QUICK_FAILURES = 3
LOG_LEVELS = ("critical", "error", "warning", "info", "debug", "trace")
#: What the numerical libraries (OpenMP, OpenBLAS, MKL, Accelerate, numexpr) read, once, when
#: they load, for the size of their thread pools.
THREAD_VARIABLES = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS",
                    "VECLIB_MAXIMUM_THREADS", "NUMEXPR_NUM_THREADS")


@dataclass(frozen=True)
class _WorkerSpec:
    db_url: str
    artifacts: str
    settings: ServerSettings
    log_level: str


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def read_token(path: str | os.PathLike[str]) -> str:
    """The bearer token in a file (whitespace around it ignored)."""
    try:
        with open(path, encoding="utf-8") as handle:
            token = handle.read().strip()
    except OSError as error:
        raise ConfigError(f"cannot read the token file {os.fspath(path)!r}: {error.strerror}",
                          field="token_file") from None
    if len(token) < 16:
        raise ConfigError(f"the token in {os.fspath(path)!r} is {len(token)} characters; use at "
                          "least 16 (e.g. python -c 'import secrets; "
                          "print(secrets.token_urlsafe(32))')", field="token_file")
    return token


def bind_socket(host: str, port: int, *, listen: bool = True,
                reuse_port: bool = False) -> socket.socket:
    """A TCP socket on ``host:port`` with TCP_NODELAY (inherited by accepted connections).
    ``reuse_port``: one of several sockets on the same port, among which the kernel spreads
    new connections; ``listen=False`` only reserves the port."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    if reuse_port:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    try:
        sock.bind((host, port))
    except OSError as error:
        sock.close()
        raise ConfigError(f"cannot listen on {host}:{port}: {error.strerror}",
                          field="port") from None
    if listen:
        sock.listen(2048)
    return sock


def _uvicorn_config(app: Any, log_level: str) -> Any:
    import importlib.util

    import uvicorn

    return uvicorn.Config(
        app, lifespan="on", access_log=False, log_level=log_level,
        loop="uvloop" if importlib.util.find_spec("uvloop") else "asyncio",
        http="httptools" if importlib.util.find_spec("httptools") else "h11",
        # Longer than clients keep idle connections (httpx and requests: 5 s), so a client
        # never reuses a connection at the instant the server closes it.
        timeout_keep_alive=75, timeout_graceful_shutdown=10)


def _run_worker(where: socket.socket | tuple[str, int], spec: _WorkerSpec) -> None:
    """Serve on a socket, or on a socket of its own at (host, port) beside its siblings'."""
    import uvicorn

    sock = where if isinstance(where, socket.socket) else bind_socket(*where, reuse_port=True)
    ws = open_workspace(spec.db_url, spec.artifacts)
    app = ServingApp(ws, spec.settings)
    uvicorn.Server(_uvicorn_config(app, spec.log_level)).run(sockets=[sock])


def model_threads_per_worker(workers: int, model_threads: int | None = None) -> int:
    """The threads each worker's models may use: by default the CPUs shared among the
    workers, so that models with OpenMP or BLAS pools (boosting, linear algebra) in several
    workers do not start more threads than there are CPUs. Oversubscribed pools spin against
    each other and stretch the slowest answers from milliseconds to seconds."""
    if model_threads is None:
        return max(1, available_cpus() // workers)
    if type(model_threads) is not int or not 1 <= model_threads <= 1024:
        raise InvalidValueError(f"model threads must be an integer from 1 to 1024, got "
                                f"{model_threads!r}", field="model_threads")
    return model_threads


@contextmanager
def _thread_variables(threads: int) -> Iterator[None]:
    """Set the thread variables that are not set already, for the workers started inside
    (spawned processes inherit them); a variable the user set wins."""
    added = [name for name in THREAD_VARIABLES if name not in os.environ]
    for name in added:
        os.environ[name] = str(threads)
    try:
        yield
    finally:
        for name in added:
            os.environ.pop(name, None)


def serve(endpoints: list[str] | None = None, *, host: str = "127.0.0.1", port: int = 8080,
          workers: int = 1, model_threads: int | None = None, token: str | None = None,
          settings: ServerSettings | None = None, workspace: Workspace | None = None,
          log_level: str = "warning", announce: Callable[[str], None] | None = None) -> None:
    """Serve ``endpoints`` (None: all of the workspace's, new ones included) until SIGTERM or
    Ctrl-C. Binding anything but a loopback address needs a bearer ``token``. ``announce``
    gets one line saying where the server listens, once the socket is bound.
    ``model_threads``: see ``model_threads_per_worker``; thread variables already set in the
    environment are left as they are."""
    if type(workers) is not int or not 1 <= workers <= 64:
        raise InvalidValueError(f"workers must be an integer from 1 to 64, got {workers!r}",
                                field="workers")
    threads = model_threads_per_worker(workers, model_threads)
    if type(port) is not int or not 0 <= port <= 65535:
        raise InvalidValueError(f"port must be an integer from 0 to 65535, got {port!r}",
                                field="port")
    if log_level not in LOG_LEVELS:
        raise InvalidValueError(f"log level {log_level!r} is not one of "
                                f"{', '.join(LOG_LEVELS)}", field="log_level")
    if not is_loopback(host) and token is None:
        raise ConfigError(f"serving on {host} exposes the models beyond this machine; give a "
                          "bearer token (--token-file) or bind 127.0.0.1", field="host")
    ws = workspace or current_workspace()
    for name in endpoints or ():
        get_endpoint(name, workspace=ws)  # a typo fails here, not in every worker
    base = settings or ServerSettings()
    settings = ServerSettings(
        endpoints=tuple(endpoints) if endpoints else None, token=token,
        max_body_bytes=base.max_body_bytes, reload_interval=base.reload_interval,
        trust=base.trust, log_predictions=base.log_predictions,
        trust_feature_code=base.trust_feature_code)
    spec = _WorkerSpec(ws.settings.db_url, ws.settings.artifacts, settings, log_level)
    # Several workers each listen on a socket of their own (SO_REUSEPORT), so the kernel
    # spreads connections over them; with one shared socket, whichever worker is idle when
    # connections arrive takes them all and keeps them, and the others sit idle.
    sock = bind_socket(host, port, listen=workers == 1, reuse_port=workers > 1)
    if announce is not None:
        what = ", ".join(endpoints) if endpoints else "all endpoints"
        announce(f"serving {what} at http://{host}:{sock.getsockname()[1]} with {workers} "
                 "worker(s); Ctrl-C stops")
    try:
        with _thread_variables(threads):
            _serve_on(sock, host, spec, workers)
    finally:
        sock.close()


def _serve_on(sock: socket.socket, host: str, spec: _WorkerSpec, workers: int) -> None:
    if workers == 1:
        _run_worker(sock, spec)
        return
    # Workers write their metrics to files here, so any of them can answer with the sum.
    metrics_dir = tempfile.mkdtemp(prefix="tidal-metrics-")
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = metrics_dir
    try:
        _supervise((host, sock.getsockname()[1]), spec, workers)
    finally:
        os.environ.pop("PROMETHEUS_MULTIPROC_DIR", None)
        shutil.rmtree(metrics_dir, ignore_errors=True)


def _supervise(address: tuple[str, int], spec: _WorkerSpec, count: int) -> None:
    from prometheus_client import multiprocess

    context = multiprocessing.get_context("spawn")
    stopping = False

    def stop(_signum: int, _frame: Any) -> None:
        nonlocal stopping
        stopping = True

    previous = {sig: signal.signal(sig, stop) for sig in (signal.SIGTERM, signal.SIGINT)}

    def start() -> tuple[Any, float]:
        process = context.Process(target=_run_worker, args=(address, spec), daemon=False)
        process.start()
        return process, time.monotonic()

    processes = [start() for _ in range(count)]
    quick_failures = 0
    try:
        while not stopping:
            time.sleep(0.2)
            for position, (process, started) in enumerate(processes):
                if process.is_alive() or stopping:
                    continue
                multiprocess.mark_process_dead(process.pid)
                if time.monotonic() - started < _STARTUP_S:
                    quick_failures += 1
                    if quick_failures >= _MAX_QUICK_FAILURES:
                        raise ConfigError(f"server workers keep exiting at start (exit code "
                                          f"{process.exitcode}); see the errors above",
                                          field="serve")
                else:
                    quick_failures = 0
                log.warning("worker %s exited with code %s; starting another", process.pid,
                            process.exitcode)
                processes[position] = start()
    finally:
        for process, _ in processes:
            if process.is_alive():
                process.terminate()
        deadline = time.monotonic() + 20
        for process, _ in processes:
            process.join(max(0.1, deadline - time.monotonic()))
            if process.is_alive():
                process.kill()
                process.join(5)
        for sig, handler in previous.items():
            signal.signal(sig, handler)

"""Running the app: uvicorn worker processes on one port, supervised.

Listening sockets are made here, with TCP_NODELAY set so that every accepted connection
inherits it (uvicorn's own ``--workers`` leaves Nagle's algorithm on for its shared socket,
which costs tens of milliseconds a request), and one per worker on the same port
(SO_REUSEPORT), so the kernel spreads connections evenly. Workers are spawned processes, each
loading the models itself, and listening only once they are loaded (a worker that dies while
loading takes no connection with it). SIGTERM or Ctrl-C stops them all gracefully so their
prediction logs are flushed.

A worker that dies is replaced, after a backoff that doubles while replacements keep dying
soon after they start (capped, and jittered so that several servers on one host do not
restart in step). The supervisor never gives up while a worker could serve: a death by a
signal (a model's segfault, an OOM kill, a kill from outside) is attributed to the models the
worker was running (``crashmarks``) and an endpoint whose model keeps crashing workers is
quarantined (``quarantine``) while the others keep answering. Only workers that keep exiting
with an error at start, every one of them, stop the server: that is a configuration that
cannot serve (a model that refuses to load untrusted, a store that is not there).
"""

from __future__ import annotations

import ipaddress
import logging
import multiprocessing
import os
import shutil
import socket
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from typing import Any

from tidal.cpus import available_cpus
from tidal.errors import ConfigError, InvalidValueError
from tidal.serving.app import ServerSettings, ServingApp
from tidal.serving.endpoints import get_endpoint
from tidal.serving.quarantine import (
    DEFAULT_QUARANTINE_AFTER,
    DEFAULT_QUARANTINE_WINDOW_S,
    CrashLedger,
    WorkerGuard,
)
from tidal.serving.supervisor import Supervisor
from tidal.store.workspace import Workspace, current_workspace, open_workspace

log = logging.getLogger("tidal.serving")

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
    runtime_dir: str | None = None  # supervised: crash marks and the quarantine board


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


def _uvicorn_config(app: ServingApp, log_level: str) -> Any:
    """uvicorn's settings for a worker, with the app's connection limits (ServerSettings)."""
    import importlib.util

    import uvicorn

    from tidal.serving.protocol import protocol_class

    limits = app.settings
    return uvicorn.Config(
        app, lifespan="on", access_log=False, log_level=log_level,
        loop="uvloop" if importlib.util.find_spec("uvloop") else "asyncio",
        http=protocol_class(limits.header_timeout, limits.body_timeout),
        timeout_keep_alive=limits.idle_timeout,
        # uvicorn answers 503 once the open connections, the asking one included, reach
        # this: one more, so that max_connections connections are served.
        limit_concurrency=limits.max_connections + 1, timeout_graceful_shutdown=10)


def _run_worker(where: socket.socket | tuple[str, int], spec: _WorkerSpec) -> None:
    """Serve on a socket, or on a socket of its own at (host, port) beside its siblings'."""
    import uvicorn

    # Bound but not listening: the server listens once the models are loaded, so that the
    # kernel hands this worker no connection it could drop by dying while loading.
    sock = where if isinstance(where, socket.socket) else bind_socket(*where, listen=False,
                                                                      reuse_port=True)
    ws = open_workspace(spec.db_url, spec.artifacts)
    guard = None if spec.runtime_dir is None else WorkerGuard(spec.runtime_dir)
    app = ServingApp(ws, spec.settings, guard=guard)
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
          log_level: str = "warning", announce: Callable[[str], None] | None = None,
          quarantine_after: int = DEFAULT_QUARANTINE_AFTER,
          quarantine_window: float = DEFAULT_QUARANTINE_WINDOW_S) -> None:
    """Serve ``endpoints`` (None: all of the workspace's, new ones included) until SIGTERM or
    Ctrl-C. Binding anything but a loopback address needs a bearer ``token``. ``announce``
    gets one line saying where the server listens, once the socket is bound.
    ``model_threads``: see ``model_threads_per_worker``; thread variables already set in the
    environment are left as they are. With several workers, an endpoint whose model crashes
    workers ``quarantine_after`` times within ``quarantine_window`` seconds is quarantined
    (see ``tidal.serving.quarantine``)."""
    if type(workers) is not int or not 1 <= workers <= 64:
        raise InvalidValueError(f"workers must be an integer from 1 to 64, got {workers!r}",
                                field="workers")
    if type(quarantine_after) is not int or not 1 <= quarantine_after <= 1000:
        raise InvalidValueError(f"quarantine after must be an integer from 1 to 1000 crashes, "
                                f"got {quarantine_after!r}", field="quarantine_after")
    if isinstance(quarantine_window, bool) or not isinstance(quarantine_window, int | float) \
            or not 1 <= quarantine_window <= 7 * 86400:
        raise InvalidValueError(f"the quarantine window must be from 1 to 604800 seconds, got "
                                f"{quarantine_window!r}", field="quarantine_window")
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
    settings = replace(base, endpoints=tuple(endpoints) if endpoints else None, token=token)
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
            if workers == 1:
                _run_worker(sock, spec)
            else:
                _supervise((host, sock.getsockname()[1]), spec, workers, ws,
                           CrashLedger(quarantine_after, float(quarantine_window)))
    finally:
        sock.close()


def _supervise(address: tuple[str, int], spec: _WorkerSpec, count: int, ws: Workspace,
               ledger: CrashLedger) -> None:
    from prometheus_client import multiprocess

    # The server's runtime folder: the workers' crash marks, the quarantine board, and their
    # metrics files (so any of them can answer /metrics with the sum).
    runtime_dir = tempfile.mkdtemp(prefix="tidal-serve-")
    metrics_dir = os.path.join(runtime_dir, "metrics")
    os.mkdir(metrics_dir)
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = metrics_dir
    spec = replace(spec, runtime_dir=runtime_dir)
    context = multiprocessing.get_context("spawn")

    def spawn() -> Any:
        process = context.Process(target=_run_worker, args=(address, spec), daemon=False)
        process.start()
        return process

    try:
        Supervisor(spawn, count, runtime_dir=runtime_dir, workspace=ws,
                   endpoints=spec.settings.endpoints, ledger=ledger,
                   lift_every_s=spec.settings.reload_interval,
                   on_death=multiprocess.mark_process_dead).run()
    finally:
        os.environ.pop("PROMETHEUS_MULTIPROC_DIR", None)
        shutil.rmtree(runtime_dir, ignore_errors=True)


"""The Ray executor: each step task runs as a Ray task, on a cluster or on a Ray runtime this
machine starts on demand.

A task holds references only (the step's import path, its inputs' places in the artifact
store), so a Ray worker needs nothing but the task dict and access to the workspace's stores:
on a cluster, the metadata database and artifact store must be reachable from every node
(PostgreSQL and S3, say), and the steps' code importable there. A step's ``resources``
(``{"cpus": 2, "gpus": 1, "memory": "4GB"}``) become the Ray task's ``num_cpus``, ``num_gpus``
and ``memory``; a step that asks for more than any node of the cluster has fails at once
instead of waiting forever for a node that never comes.

Where Ray runs: an explicit ``address`` (``ray://host:10001``, or any address ``ray.init``
takes), else ``TIDAL_RAY_ADDRESS``, else the Ray this process is already connected to, else a
local runtime started here, bound to 127.0.0.1 with no dashboard and as many CPUs as this
process may use. ``close()`` shuts down what the executor started or connected to, and leaves
a Ray it found running alone.
"""

from __future__ import annotations

import math
import os
import re
import sys
from collections.abc import Mapping
from concurrent.futures import Future
from typing import Any

from tidal.cpus import available_cpus
from tidal.errors import ConfigError, InvalidValueError, TidalError, missing_dependency

#: The resource names a step may ask for, and the ``ray.remote`` option each becomes.
RESOURCE_OPTIONS = {"cpus": "num_cpus", "gpus": "num_gpus", "memory": "memory"}

_UNITS = {"": 1, "b": 1, "k": 10**3, "kb": 10**3, "m": 10**6, "mb": 10**6, "g": 10**9,
          "gb": 10**9, "t": 10**12, "tb": 10**12, "kib": 2**10, "mib": 2**20, "gib": 2**30,
          "tib": 2**40}
_SIZE = re.compile(r"\s*(\d+(?:\.\d*)?|\.\d+)\s*([a-z]*)\s*", re.IGNORECASE)
#: Ray's names for the node resources the options above draw on.
_NODE_RESOURCES = {"num_cpus": "CPU", "num_gpus": "GPU", "memory": "memory"}


def _ray() -> Any:
    try:
        import ray
    except ImportError:
        raise missing_dependency("ray", "ray", "the Ray executor") from None
    return ray


def parse_memory(value: Any, field: str = "resources.memory") -> int:
    """Bytes from a number of bytes or a size such as ``"4GB"`` (powers of 1000) or
    ``"512MiB"`` (powers of 1024)."""
    if isinstance(value, bool):
        raise InvalidValueError(f"{field} must be a size such as '4GB' or a number of bytes, "
                                f"got {value!r}", field=field)
    if isinstance(value, (int, float)):
        size = float(value)
    elif isinstance(value, str) and (match := _SIZE.fullmatch(value)) \
            and match.group(2).lower() in _UNITS:
        size = float(match.group(1)) * _UNITS[match.group(2).lower()]
    else:
        raise InvalidValueError(
            f"{field} must be a size such as '4GB', '512MiB' or a number of bytes, got "
            f"{value!r}", field=field)
    if not math.isfinite(size) or size < 1:
        raise InvalidValueError(f"{field} must be at least one byte, got {value!r}",
                                field=field)
    return int(size)


def _count(value: Any, field: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) \
            or not math.isfinite(value) or value < 0:
        raise InvalidValueError(f"{field} must be a number >= 0, got {value!r}", field=field)
    if value > 1 and value != int(value):
        raise InvalidValueError(f"{field} above 1 must be a whole number (Ray shares a CPU or "
                                f"a GPU in fractions below 1 only), got {value!r}", field=field)
    return int(value) if value == int(value) else float(value)


def ray_options(resources: Mapping[str, Any]) -> dict[str, Any]:
    """A step's ``resources`` as ``ray.remote`` options: ``cpus`` -> ``num_cpus``, ``gpus``
    -> ``num_gpus``, ``memory`` ('4GB', '512MiB' or bytes) -> ``memory`` in bytes. Unknown
    names and bad values are refused, naming the field."""
    if not isinstance(resources, Mapping):
        raise InvalidValueError(f"resources must be a mapping such as {{'cpus': 2}}, got "
                                f"{type(resources).__name__}", field="resources")
    options: dict[str, Any] = {}
    for name, value in resources.items():
        if name not in RESOURCE_OPTIONS:
            raise InvalidValueError(
                f"resources has no entry {name!r}; the entries a step may ask for: "
                f"{', '.join(RESOURCE_OPTIONS)}", field=f"resources.{name}")
        field = f"resources.{name}"
        options[RESOURCE_OPTIONS[name]] = parse_memory(value, field) if name == "memory" \
            else _count(value, field)
    return options


def _run_task(task: dict[str, Any], paths: tuple[str, ...]) -> dict[str, Any]:
    """What a Ray worker runs: the driver's import paths (on a runtime on this machine, so the
    steps import as they do in the driver), then the step."""
    for path in paths:
        if path not in sys.path:
            sys.path.append(path)
    from tidal.pipelines.runner import execute_step

    return execute_step(task)


class RayExecutor:
    def __init__(self, address: str | None = None, *, num_cpus: int | None = None) -> None:
        """``address``: where Ray runs (see the module's doc). ``num_cpus``: the CPUs of a
        local runtime this executor starts (default: those this process may use)."""
        if address is not None and (not isinstance(address, str) or not address.strip()):
            raise InvalidValueError(f"address must be a Ray address such as "
                                    f"'ray://host:10001', got {address!r}", field="address")
        address = address or os.environ.get("TIDAL_RAY_ADDRESS") or None
        ray = self._ray = _ray()
        self._started = False
        if not ray.is_initialized():
            if address is not None:
                self._connect(address)
            else:
                self._start_local(num_cpus)
            self._started = True
        self._client = bool(ray.util.client.ray.is_connected())
        # on this machine a worker may lack the driver's import paths (a notebook's folder,
        # a script's); a remote worker has its own
        self._paths = () if self._client else tuple(
            dict.fromkeys(os.path.abspath(p or os.curdir) for p in sys.path
                          if os.path.isdir(p or os.curdir)))
        self._remote = ray.remote(max_retries=0, retry_exceptions=False)(_run_task)
        self._options: dict[str, dict[str, Any]] = {}
        self._nodes: list[dict[str, float]] | None = None
        self._running: dict[Any, Any] = {}

    def _connect(self, address: str) -> None:
        try:
            self._ray.init(address=address, logging_level="WARNING")
        except (ConnectionError, RuntimeError, ValueError) as error:
            raise ConfigError(f"cannot connect to Ray at {address!r}: {error}",
                              field="address") from None

    def _start_local(self, num_cpus: int | None) -> None:
        if num_cpus is None:
            num_cpus = available_cpus()
        # Ray turns 127.0.0.1 into the machine's network address unless it believes clusters
        # are off (as on Windows and macOS); then every server it starts listens on 127.0.0.1
        constants = getattr(getattr(self._ray, "_private", None), "ray_constants", None)
        saved = getattr(constants, "ENABLE_RAY_CLUSTER", None)
        if saved is not None:
            constants.ENABLE_RAY_CLUSTER = False
        try:
            self._ray.init(address="local", num_cpus=num_cpus, include_dashboard=False,
                           dashboard_host="127.0.0.1", _node_ip_address="127.0.0.1",
                           logging_level="WARNING")
        finally:
            if saved is not None:
                constants.ENABLE_RAY_CLUSTER = saved

    # -- tasks ----------------------------------------------------------------------------------

    def _options_for(self, target: str) -> dict[str, Any]:
        options = self._options.get(target)
        if options is None:
            from tidal.pipelines.runner import import_step

            step = import_step(target)
            options = self._options[target] = ray_options(step.options.resources)
        return options

    def _check_feasible(self, node: str, options: Mapping[str, Any]) -> None:
        """Refuse a request no node of the cluster can meet: Ray would keep it waiting."""
        wanted = {_NODE_RESOURCES[k]: v for k, v in options.items() if v}
        if not wanted:
            return
        for refresh in (False, True):
            if self._nodes is None or refresh:
                self._nodes = [dict(n["Resources"]) for n in self._ray.nodes() if n["Alive"]]
            if any(all(n.get(k, 0) >= v for k, v in wanted.items()) for n in self._nodes):
                return
        names = {v: k for k, v in RESOURCE_OPTIONS.items()}
        short = next(k for k, v in wanted.items()
                     if not any(n.get(k, 0) >= v for n in self._nodes))
        option = next(o for o, r in _NODE_RESOURCES.items() if r == short)
        most = max((n.get(short, 0) for n in self._nodes), default=0)
        shown = (lambda v: f"{v:,.0f} bytes") if short == "memory" else (lambda v: f"{v:g}")
        raise InvalidValueError(
            f"step {node!r} asks for {names[option]}={shown(wanted[short])}, which no node of "
            f"the Ray cluster has (the most any node has: {shown(most)}); it would wait "
            "forever", field=f"resources.{names[option]}")

    def submit(self, task: dict[str, Any]) -> Future[dict[str, Any]]:
        future: Future[dict[str, Any]] = Future()
        try:
            options = self._options_for(task["target"])
            self._check_feasible(task["node"], options)
            remote = self._remote.options(**options) if options else self._remote
            ref = remote.remote(task, self._paths)
        except TidalError as error:
            future.set_exception(error)
            return future
        self._running[ref] = future
        ref.future().add_done_callback(lambda done: self._finish(ref, future, done))
        return future

    def _finish(self, ref: Any, future: Future[dict[str, Any]],
                done: Future[dict[str, Any]]) -> None:
        self._running.pop(ref, None)
        error = done.exception()
        if error is None:
            future.set_result(done.result())
            return
        # a step's own failure reaches the driver as itself, as with the other executors
        cause = getattr(error, "cause", None)
        if isinstance(error, self._ray.exceptions.RayTaskError) \
                and isinstance(cause, TidalError):
            error = cause
        future.set_exception(error)

    def close(self) -> None:
        for ref in list(self._running):
            self._ray.cancel(ref)
        self._running.clear()
        if self._started:
            self._ray.shutdown()
            self._started = False

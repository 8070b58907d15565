"""The fluent tracking API: ``tidal.start_run`` and module-level logging on the active run.

Active runs form one process-wide stack: a run started while another is active becomes its
child (nested runs for tuning), and ending it makes the parent active again. Runs still open
when the interpreter exits are ended as finished, after which every queued point is flushed.
"""

from __future__ import annotations

import atexit
import os
import threading
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from tidal.errors import InvalidValueError, NoActiveRunError
from tidal.ids import new_id, now_ms
from tidal.store.workspace import Workspace, current_workspace
from tidal.tracking import environment, liveness, store
from tidal.tracking.run import ActiveRun, Run
from tidal.tracking.store import RUNNING, ExperimentInfo
from tidal.tracking.validation import check_key, check_params, check_tags
from tidal.tracking.writer import flush_all

if TYPE_CHECKING:
    import pandas as pd

DEFAULT_EXPERIMENT = "default"

_stack: list[ActiveRun] = []
_stack_lock = threading.Lock()


def _workspace(workspace: Workspace | None) -> Workspace:
    if workspace is not None and not isinstance(workspace, Workspace):
        raise InvalidValueError(
            f"workspace must be a Workspace from tidal.workspace(), got "
            f"{type(workspace).__name__}", field="workspace")
    return workspace or current_workspace()


def _pop(run: ActiveRun) -> None:
    with _stack_lock:
        if run in _stack:
            _stack.remove(run)


def start_run(
    experiment: str | None = None,
    *,
    name: str | None = None,
    params: Mapping[str, Any] | None = None,
    tags: Mapping[str, Any] | None = None,
    parent: ActiveRun | str | None = None,
    workspace: Workspace | None = None,
    system_metrics: bool | float | None = None,
) -> ActiveRun:
    """Start a run and make it the active one; use it in a ``with`` block.

    ``experiment`` defaults to the parent's experiment, else TIDAL_EXPERIMENT, else "default";
    it is created on first use. ``parent`` defaults to the active run, if any.
    ``system_metrics``: True/False, or the sampling interval in seconds (default: the
    workspace's ``system_metrics_interval``).
    """
    ws = _workspace(workspace)
    if parent is None and _stack and _stack[-1].workspace is ws:
        parent = _stack[-1]
    parent_id = parent.id if isinstance(parent, ActiveRun) else parent
    experiment_id = None
    if parent_id is not None:
        parent_experiment = store.experiment_of(ws, parent_id)  # RunNotFoundError if unknown
        if experiment is None or experiment == parent_experiment[1]:
            experiment_id, experiment = parent_experiment
    experiment = experiment or os.environ.get("TIDAL_EXPERIMENT") or DEFAULT_EXPERIMENT
    check_key(experiment, "experiment")
    run_id = new_id()
    name = run_id[:8] if name is None else check_key(name, "run name")
    checked_params = check_params({} if params is None else params)
    checked_tags = check_tags({} if tags is None else tags)
    if system_metrics is None or system_metrics is True:
        interval = ws.settings.system_metrics_interval
    elif system_metrics is False:
        interval = 0.0
    elif isinstance(system_metrics, (int, float)) and system_metrics > 0:
        interval = float(system_metrics)
    else:
        raise InvalidValueError(f"system_metrics must be True, False or a positive number of "
                                f"seconds, got {system_metrics!r}", field="system_metrics")

    git = environment.git_state(os.getcwd())
    experiment_id = experiment_id or store.get_or_create_experiment(ws, experiment)
    started = now_ms()  # after the experiment: a run never starts before its experiment exists
    store.create_run(ws, {
        "id": run_id,
        "experiment_id": experiment_id,
        "parent_id": parent_id,
        "name": name,
        "status": RUNNING,
        "start_time": started,
        "heartbeat": started,
        "user": environment.user_name(),
        "host": environment.host_name(),
        "pid": os.getpid(),
        "source": environment.source(),
        "git_commit": git.commit,
        "git_dirty": git.dirty,
        "python_version": environment.python_version(),
        "packages_digest": environment.packages_digest(),
    }, checked_params, checked_tags)
    run = ActiveRun(ws, run_id, experiment, name, parent_id, interval)
    run._on_end.append(_pop)
    with _stack_lock:
        _stack.append(run)
    return run


def active_run() -> ActiveRun | None:
    """The innermost run started and not yet ended, or None."""
    return _stack[-1] if _stack else None


def _active() -> ActiveRun:
    if not _stack:
        raise NoActiveRunError("no active run: start one with `with tidal.start_run(...):` "
                               "before logging")
    return _stack[-1]


def end_run(status: str = "finished") -> None:
    """End the active run (no-op when none is active)."""
    if _stack:
        _stack[-1].end(status)


def log_metric(key: str, value: float, step: int | None = None,
               timestamp: int | None = None) -> None:
    _active().log_metric(key, value, step, timestamp)


def log_metrics(values: Mapping[str, float], step: int | None = None) -> None:
    _active().log_metrics(values, step)


def log_param(key: str, value: Any) -> None:
    _active().log_param(key, value)


def log_params(values: Mapping[str, Any]) -> None:
    _active().log_params(values)


def set_tag(key: str, value: Any) -> None:
    _active().set_tag(key, value)


def set_tags(values: Mapping[str, Any]) -> None:
    _active().set_tags(values)


def log_artifact(local_path: str | os.PathLike[str], name: str | None = None) -> str:
    return _active().log_artifact(local_path, name)


def log_artifacts(local_dir: str | os.PathLike[str], name: str | None = None) -> str:
    return _active().log_artifacts(local_dir, name)


def flush() -> None:
    """Write every queued metric point now (they are otherwise written within a fraction of a
    second, and always at exit)."""
    flush_all()


def get_run(run_id: str, *, workspace: Workspace | None = None) -> Run:
    """A stored run by id; unknown ids raise RunNotFoundError. Runs whose process died
    without ending them are marked killed first (see tidal.tracking.liveness)."""
    ws = _workspace(workspace)
    flush_all()
    liveness.mark_silent_runs_killed(ws)
    return Run.load(ws, run_id)


def search_runs(
    experiment: str | Sequence[str] | None = None,
    filter: str | None = None,
    order_by: Sequence[str] | str | None = None,
    limit: int | None = 100,
    *,
    workspace: Workspace | None = None,
) -> pd.DataFrame:
    """Runs matching ``filter`` (see tidal.tracking.search for the language), as a DataFrame."""
    from tidal.tracking.search import search_runs as _search

    ws = _workspace(workspace)
    flush_all()
    liveness.mark_silent_runs_killed(ws)
    return _search(ws, experiment, filter, order_by, limit)


def list_experiments(*, workspace: Workspace | None = None) -> list[ExperimentInfo]:
    return store.list_experiments(_workspace(workspace))


def _end_open_runs() -> None:
    for run in reversed(list(_stack)):
        try:
            run.end("finished")
        except Exception:  # at exit there is no one left to tell but stderr, via the writer
            pass


def _reset_after_fork() -> None:
    # Runs of the parent are the parent's to end; a forked child starts with none active.
    global _stack_lock
    _stack.clear()
    _stack_lock = threading.Lock()


atexit.register(_end_open_runs)
os.register_at_fork(after_in_child=_reset_after_fork)

"""Runs: the live handle a training script logs into, and the stored record read back later."""

from __future__ import annotations

import json
import os
import threading
import traceback
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any

from tidal.errors import ArtifactNotFoundError, InvalidValueError, RunStateError
from tidal.ids import now_ms
from tidal.store.artifacts import clean_artifact_path
from tidal.store.workspace import Workspace
from tidal.tracking import store
from tidal.tracking.store import FAILED, FINISHED, KILLED, RUNNING
from tidal.tracking.system import UsageMonitor
from tidal.tracking.validation import (
    check_key,
    check_metric_value,
    check_params,
    check_step,
    check_tags,
    check_timestamp,
)
from tidal.tracking.writer import writer_for

if TYPE_CHECKING:
    import pandas as pd

_END_STATUSES = (FINISHED, FAILED, KILLED)


def _datetime(ms: int | None) -> datetime | None:
    return None if ms is None else datetime.fromtimestamp(ms / 1000, tz=UTC)


@dataclass(frozen=True)
class ArtifactInfo:
    path: str
    digest: str
    size: int


@dataclass(frozen=True)
class Run:
    """A run as stored: identity, status, params, tags, latest metrics, environment and cost."""

    id: str
    experiment: str
    experiment_id: str
    name: str
    status: str
    parent_id: str | None
    start_time: datetime
    end_time: datetime | None
    error: str | None
    params: dict[str, str]
    tags: dict[str, str]
    metrics: dict[str, float]
    children: list[str]
    user: str | None
    host: str | None
    source: str | None
    git_commit: str | None
    git_dirty: bool | None
    python_version: str | None
    packages_digest: str | None
    cpu_seconds: float | None
    peak_rss_bytes: int | None
    gpu_seconds: float | None
    cost: float | None
    workspace: Workspace = field(repr=False, compare=False)

    @classmethod
    def load(cls, ws: Workspace, run_id: str) -> Run:
        record = store.fetch_run(ws, run_id)
        names = {f for f in cls.__dataclass_fields__ if f != "workspace"}
        values = {k: v for k, v in record.items() if k in names}
        values["start_time"] = _datetime(record["start_time"])
        values["end_time"] = _datetime(record["end_time"])
        return cls(workspace=ws, **values)

    @property
    def duration_seconds(self) -> float | None:
        if self.end_time is None:
            return None
        return (self.end_time - self.start_time).total_seconds()

    def metric_history(self, key: str) -> pd.DataFrame:
        """Every point of one metric: a DataFrame of step, value and timestamp (UTC)."""
        import pandas as pd

        points = store.metric_history(self.workspace, self.id, key)
        frame = pd.DataFrame(points, columns=["step", "value", "timestamp"])
        frame["step"] = frame["step"].astype("int64")
        frame["value"] = frame["value"].astype("float64")
        frame["timestamp"] = pd.to_datetime(frame["timestamp"].astype("int64"), unit="ms",
                                            utc=True)
        return frame

    def artifacts(self) -> list[ArtifactInfo]:
        return [ArtifactInfo(*row) for row in store.list_artifacts(self.workspace, self.id)]

    def _artifact(self, path: str) -> ArtifactInfo:
        path = clean_artifact_path(path)
        for info in self.artifacts():
            if info.path == path:
                return info
        raise ArtifactNotFoundError(f"run {self.id} has no artifact {path!r}", field="path")

    def read_artifact(self, path: str) -> bytes:
        """One artifact's bytes, verified against the digest recorded when it was logged."""
        return self.workspace.artifacts.get_bytes(self._artifact(path).digest)

    def download_artifacts(self, destination: str | os.PathLike[str],
                           path: str | None = None) -> Path:
        """Copy the run's artifacts (or those under ``path``) into a local folder."""
        destination = Path(destination)
        prefix = None if path is None else clean_artifact_path(path)
        chosen = [a for a in self.artifacts()
                  if prefix is None or a.path == prefix or a.path.startswith(prefix + "/")]
        if prefix is not None and not chosen:
            raise ArtifactNotFoundError(f"run {self.id} has no artifact {prefix!r}",
                                        field="path")
        for info in chosen:  # names were checked when logged; the check is cheap, so again
            self.workspace.artifacts.get_file(info.digest,
                                              destination / clean_artifact_path(info.path))
        return destination

    def to_dict(self) -> dict[str, Any]:
        data = {k: getattr(self, k) for k in self.__dataclass_fields__ if k != "workspace"}
        for key in ("start_time", "end_time"):
            data[key] = data[key].isoformat() if data[key] else None
        return data


class ActiveRun:
    """A run in progress. Use it as a context manager: leaving the block ends the run, marking
    it failed (with the traceback) if the block raised, killed on KeyboardInterrupt."""

    def __init__(self, ws: Workspace, run_id: str, experiment: str, name: str,
                 parent_id: str | None, system_metrics_interval: float) -> None:
        self.workspace = ws
        self.id = run_id
        self.experiment = experiment
        self.name = name
        self.parent_id = parent_id
        self.status = RUNNING
        self._writer = writer_for(ws)
        self._writer.keep_alive(run_id)
        self._next_step: dict[str, int] = {}
        self._lock = threading.Lock()
        self._monitor = UsageMonitor(self._log_system, system_metrics_interval)
        self._on_end: list[Any] = []

    def __repr__(self) -> str:
        return f"ActiveRun(id={self.id!r}, experiment={self.experiment!r}, name={self.name!r})"

    # -- metrics ---------------------------------------------------------------------------

    def _check_running(self) -> None:
        if self.status != RUNNING:
            raise RunStateError(f"run {self.id} is {self.status}; start a new run to log more")

    def log_metric(self, key: str, value: float, step: int | None = None,
                   timestamp: int | None = None) -> None:
        """Queue one point. ``step`` defaults to one past this key's last step (0 first);
        ``timestamp`` to now, in integer milliseconds."""
        if self.status != RUNNING:
            self._check_running()
        key = check_key(key, "metric")
        number, is_nan = check_metric_value(key, value)
        if step is None:
            step = self._next_step.get(key, 0)
        else:
            step = check_step(key, step)
        self._next_step[key] = step + 1
        ts = now_ms() if timestamp is None else check_timestamp(key, timestamp)
        self._writer.add((self.id, key, step, ts, number, is_nan))

    def log_metrics(self, values: Mapping[str, float], step: int | None = None,
                    timestamp: int | None = None) -> None:
        if not isinstance(values, Mapping):
            raise InvalidValueError(f"metrics must be a mapping of key to number, got "
                                    f"{type(values).__name__}", field="metrics")
        ts = now_ms() if timestamp is None else timestamp
        for key, value in values.items():
            self.log_metric(key, value, step, ts)

    def _log_system(self, values: dict[str, float], step: int) -> None:
        if self.status == RUNNING:
            ts = now_ms()
            for key, value in values.items():
                self._writer.add((self.id, key, step, ts, float(value), False))

    # -- params and tags -------------------------------------------------------------------

    def log_param(self, key: str, value: Any) -> None:
        self.log_params({key: value})

    def log_params(self, values: Mapping[str, Any]) -> None:
        """Params are write-once: the same value again is a no-op, another value an error."""
        self._check_running()
        checked = check_params(values)
        if checked:
            store.log_params(self.workspace, self.id, checked)

    def set_tag(self, key: str, value: Any) -> None:
        self.set_tags({key: value})

    def set_tags(self, values: Mapping[str, Any]) -> None:
        """Tags can change while the run lives and after it ends (labels such as 'reviewed')."""
        checked = check_tags(values)
        if checked:
            store.set_tags(self.workspace, self.id, checked)

    # -- artifacts -------------------------------------------------------------------------

    def log_artifact(self, local_path: str | os.PathLike[str], name: str | None = None) -> str:
        """Store a file, or a folder with everything in it, under ``name`` (default: its
        basename). All its files become visible together, once every byte is stored."""
        self._check_running()
        source = Path(local_path)
        if not source.exists():
            raise InvalidValueError(f"artifact source {str(source)!r} does not exist",
                                    field="local_path")
        base = clean_artifact_path(name if name is not None else source.name)
        if source.is_dir():
            files = sorted(p for p in source.rglob("*") if p.is_file())
            targets = [(p, clean_artifact_path(f"{base}/{p.relative_to(source).as_posix()}"))
                       for p in files]
        else:
            targets = [(source, base)]
        entries = []
        for path, artifact_path in targets:
            blob = self.workspace.artifacts.put_file(path)
            entries.append((artifact_path, blob.digest, blob.size))
        store.add_artifacts(self.workspace, self.id, entries)
        return base

    def log_artifacts(self, local_dir: str | os.PathLike[str], name: str | None = None) -> str:
        if not Path(local_dir).is_dir():
            raise InvalidValueError(f"{str(local_dir)!r} is not a folder", field="local_dir")
        return self.log_artifact(local_dir, name)

    def log_bytes(self, data: bytes, name: str) -> str:
        self._check_running()
        name = clean_artifact_path(name)
        blob = self.workspace.artifacts.put_bytes(bytes(data))
        store.add_artifacts(self.workspace, self.id, [(name, blob.digest, blob.size)])
        return name

    def log_text(self, text: str, name: str) -> str:
        return self.log_bytes(text.encode("utf-8"), name)

    def log_dict(self, data: Any, name: str) -> str:
        """Store a JSON-serialisable object as a JSON artifact."""
        try:
            text = json.dumps(data, indent=2, sort_keys=True, default=str)
        except (TypeError, ValueError) as error:
            raise InvalidValueError(f"artifact {name!r} is not JSON-serialisable: {error}",
                                    field="data") from error
        return self.log_text(text, name)

    # -- lineage ---------------------------------------------------------------------------

    def log_input(self, dataset: Any) -> None:
        """Record that this run read a dataset version (from ``tidal.datasets``)."""
        from tidal.data.lineage import record_input

        self._check_running()
        record_input(self.workspace, self.id, dataset)

    def inputs(self) -> list[str]:
        """URIs of the dataset versions this run read."""
        from tidal.data.lineage import inputs_of

        return inputs_of(self.workspace, self.id)

    # -- lifecycle -------------------------------------------------------------------------

    @property
    def info(self) -> Run:
        """The run as stored now (metrics flushed first)."""
        self._writer.flush()
        return Run.load(self.workspace, self.id)

    def end(self, status: str = FINISHED, error: str | None = None) -> None:
        """Flush this run's points, record its usage and cost, and set its final status."""
        if status not in _END_STATUSES:
            raise InvalidValueError(f"a run ends as one of {list(_END_STATUSES)}, not {status!r}",
                                    field="status")
        with self._lock:
            if self.status != RUNNING:
                return
            usage = self._monitor.stop()
            self.status = status
        self._writer.let_go(self.id)
        flush_error: Exception | None = None
        try:
            self._writer.flush()
        except Exception as exc:  # the status is still recorded; the error is raised after
            flush_error = exc
        store.end_run(self.workspace, self.id, status, {
            "end_time": now_ms(),
            "error": error,
            "cpu_seconds": usage.cpu_seconds,
            "peak_rss_bytes": usage.peak_rss_bytes,
            "gpu_seconds": usage.gpu_seconds,
            "cost": usage.cost(self.workspace.settings.prices),
        })
        for callback in self._on_end:
            callback(self)
        if flush_error is not None:
            raise flush_error

    def __enter__(self) -> ActiveRun:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        if exc_type is None:
            self.end(FINISHED)
        elif issubclass(exc_type, KeyboardInterrupt):
            self.end(KILLED, "KeyboardInterrupt")
        else:
            self.end(FAILED, "".join(traceback.format_exception(exc_type, exc, tb)))


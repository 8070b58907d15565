"""Reading pipeline runs back: the list of runs, and one run's graph with each step's state.

Reading runs back imports nothing: the graph shown is the one the run recorded."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import select

from tidal.errors import InvalidValueError, NotFoundError
from tidal.pipelines.runner import PipelineRun, StepRecord
from tidal.pipelines.schema import pipeline_runs, step_runs
from tidal.store.workspace import Workspace, current_workspace


@dataclass(frozen=True)
class PipelineRunInfo:
    id: str
    pipeline: str
    target: str
    params: dict[str, Any]
    executor: str
    status: str
    created_at: datetime
    ended_at: datetime | None
    created_by: str | None
    #: digest of the source file that defined the pipeline when it ran (None for older runs)
    code_digest: str | None = None
    #: ``[node, [upstream nodes]]`` in run order, as recorded (empty for older runs)
    graph: list[list[Any]] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        data = dict(self.__dict__)
        data["created_at"] = self.created_at.isoformat()
        data["ended_at"] = None if self.ended_at is None else self.ended_at.isoformat()
        return data


def _when(ms: int | None) -> datetime | None:
    return None if ms is None else datetime.fromtimestamp(ms / 1000, tz=UTC)


def _info(row: Any) -> PipelineRunInfo:
    return PipelineRunInfo(row.id, row.pipeline, row.target, json.loads(row.params),
                           row.executor, row.status, _when(row.created_at),  # type: ignore[arg-type]
                           _when(row.ended_at), row.created_by, row.code_digest,
                           [] if row.graph is None else json.loads(row.graph))


def list_pipeline_runs(pipeline: str | None = None, *, limit: int = 50,
                       workspace: Workspace | None = None) -> list[PipelineRunInfo]:
    """Pipeline runs, newest first (of one pipeline when named)."""
    if isinstance(limit, bool) or not isinstance(limit, int) or limit < 1:
        raise InvalidValueError(f"limit must be a whole number >= 1, got {limit!r}",
                                field="limit")
    ws = workspace or current_workspace()
    query = select(pipeline_runs).order_by(pipeline_runs.c.created_at.desc()).limit(limit)
    if pipeline is not None:
        query = query.where(pipeline_runs.c.pipeline == pipeline)
    with ws.db.read() as conn:
        return [_info(row) for row in conn.execute(query)]


def get_pipeline_run(run_id: str, *,
                     workspace: Workspace | None = None) -> tuple[PipelineRunInfo, PipelineRun]:
    """One run: its record, and what each of its steps did (in the order they were recorded)."""
    ws = workspace or current_workspace()
    with ws.db.read() as conn:
        row = conn.execute(select(pipeline_runs).where(pipeline_runs.c.id == run_id)).first()
        if row is None:
            raise NotFoundError(f"no pipeline run {run_id!r} in this workspace",
                                field="run_id")
        steps = conn.execute(select(step_runs).where(step_runs.c.pipeline_run_id == run_id)
                             .order_by(step_runs.c.started_at)).all()
    result = PipelineRun(row.id, row.pipeline, row.status, workspace=ws)
    for s in steps:
        result.steps[s.node] = StepRecord(
            s.node, s.step, s.status, s.cache_key, s.run_id, s.cached_from,
            None if s.outputs is None else json.loads(s.outputs), s.attempts, s.error)
    return _info(row), result

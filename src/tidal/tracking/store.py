"""Every SQL statement of experiment tracking, over a workspace's metadata database."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, and_, bindparam, func, insert, or_, select, update

from tidal.errors import (
    ExperimentNotFoundError,
    ParamConflictError,
    RunNotFoundError,
    RunStateError,
)
from tidal.ids import new_id, now_ms
from tidal.store.db import upsert
from tidal.store.workspace import Workspace
from tidal.tracking.schema import (
    artifacts,
    experiments,
    latest_metrics,
    metrics,
    params,
    runs,
    tags,
)

RUNNING, FINISHED, FAILED, KILLED = "running", "finished", "failed", "killed"
STATUSES = (RUNNING, FINISHED, FAILED, KILLED)

#: One metric point as the writer queues it: (run_id, key, step, timestamp, value, is_nan).
Point = tuple[str, str, int, int, float, bool]


@dataclass(frozen=True)
class ExperimentInfo:
    id: str
    name: str
    created_at: int
    run_count: int = 0
    last_run_at: int | None = None


# -- experiments ------------------------------------------------------------------------------

def get_or_create_experiment(ws: Workspace, name: str) -> str:
    """The id of the experiment called ``name``, created if it does not exist (race-safe)."""
    with ws.db.read() as conn:
        found = conn.execute(select(experiments.c.id).where(experiments.c.name == name)).first()
    if found:
        return found[0]

    def create(conn: Connection) -> str:
        conn.execute(upsert(conn, experiments).values(
            id=new_id(), name=name, created_at=now_ms()).on_conflict_do_nothing())
        return conn.execute(select(experiments.c.id).where(experiments.c.name == name)).scalar_one()

    return ws.db.write(create)


def experiment_ids(ws: Workspace, names: Sequence[str]) -> dict[str, str]:
    """Map experiment names to ids, refusing any name that does not exist."""
    with ws.db.read() as conn:
        rows = conn.execute(select(experiments.c.name, experiments.c.id)
                            .where(experiments.c.name.in_(list(names)))).all()
    found = dict(rows)
    missing = [name for name in names if name not in found]
    if missing:
        known = list_experiments(ws)
        raise ExperimentNotFoundError(
            f"no experiment named {missing[0]!r}; known experiments: "
            f"{[e.name for e in known][:20] or 'none yet'}", field="experiment")
    return found


def list_experiments(ws: Workspace) -> list[ExperimentInfo]:
    query = (
        select(experiments.c.id, experiments.c.name, experiments.c.created_at,
               func.count(runs.c.id), func.max(runs.c.start_time))
        .select_from(experiments.outerjoin(runs, runs.c.experiment_id == experiments.c.id))
        .group_by(experiments.c.id, experiments.c.name, experiments.c.created_at)
        .order_by(experiments.c.name)
    )
    with ws.db.read() as conn:
        return [ExperimentInfo(*row) for row in conn.execute(query)]


# -- runs -------------------------------------------------------------------------------------

def create_run(ws: Workspace, row: Mapping[str, Any], run_params: Mapping[str, str],
               run_tags: Mapping[str, str]) -> None:
    def work(conn: Connection) -> None:
        conn.execute(insert(runs), [dict(row)])  # parameters, not .values(): compiled once
        if run_params:
            conn.execute(insert(params), [
                {"run_id": row["id"], "key": k, "value": v} for k, v in run_params.items()])
        if run_tags:
            conn.execute(insert(tags), [
                {"run_id": row["id"], "key": k, "value": v} for k, v in run_tags.items()])

    ws.db.write(work)


def _require_running(conn: Connection, run_id: str) -> None:
    status = conn.execute(select(runs.c.status).where(runs.c.id == run_id)).scalar()
    if status is None:
        raise RunNotFoundError(f"no run with id {run_id!r}", field="run_id")
    if status != RUNNING:
        raise RunStateError(f"run {run_id} is {status}; only a running run can be changed")


def log_params(ws: Workspace, run_id: str, new: Mapping[str, str]) -> None:
    """Add params; a key already set to the same value is a no-op, to another value an error."""
    def work(conn: Connection) -> None:
        _require_running(conn, run_id)
        existing = dict(conn.execute(
            select(params.c.key, params.c.value)
            .where(params.c.run_id == run_id, params.c.key.in_(list(new)))).all())
        for key, value in new.items():
            if key in existing and existing[key] != value:
                raise ParamConflictError(
                    f"param '{key}' of run {run_id} is already {existing[key]!r} and cannot "
                    f"become {value!r}; params are write-once (log a metric or a tag for "
                    "values that change)", field=f"params.{key}")
        rows = [{"run_id": run_id, "key": k, "value": v} for k, v in new.items()
                if k not in existing]
        if rows:
            conn.execute(insert(params), rows)

    ws.db.write(work)


def set_tags(ws: Workspace, run_id: str, new: Mapping[str, str]) -> None:
    def work(conn: Connection) -> None:
        if conn.execute(select(runs.c.id).where(runs.c.id == run_id)).first() is None:
            raise RunNotFoundError(f"no run with id {run_id!r}", field="run_id")
        stmt = upsert(conn, tags)
        conn.execute(stmt.on_conflict_do_update(
            index_elements=[tags.c.run_id, tags.c.key], set_={"value": stmt.excluded.value}),
            [{"run_id": run_id, "key": k, "value": v} for k, v in new.items()])

    ws.db.write(work)


def end_run(ws: Workspace, run_id: str, status: str, values: Mapping[str, Any]) -> None:
    # bound parameters rather than .values(...): the statement compiles once per set of keys
    statement = update(runs).where(runs.c.id == bindparam("run_id_"))
    ws.db.write(lambda conn: conn.execute(statement, [
        {"run_id_": run_id, "status": status, **values}]))


def write_points(ws: Workspace, points: Sequence[Point]) -> None:
    """Insert a batch of metric points and move each series' latest value, in one transaction."""
    rows = [{"run_id": p[0], "key": p[1], "step": p[2], "timestamp": p[3], "value": p[4],
             "is_nan": p[5]} for p in points]
    newest: dict[tuple[str, str], dict[str, Any]] = {}
    for row in rows:
        current = newest.get((row["run_id"], row["key"]))
        if current is None or (row["step"], row["timestamp"]) >= \
                (current["step"], current["timestamp"]):
            newest[(row["run_id"], row["key"])] = row

    def work(conn: Connection) -> None:
        conn.execute(insert(metrics), rows)
        stmt = upsert(conn, latest_metrics)
        newer = or_(stmt.excluded.step > latest_metrics.c.step,
                    and_(stmt.excluded.step == latest_metrics.c.step,
                         stmt.excluded.timestamp >= latest_metrics.c.timestamp))
        conn.execute(stmt.on_conflict_do_update(
            index_elements=[latest_metrics.c.run_id, latest_metrics.c.key],
            set_={c: stmt.excluded[c] for c in ("step", "timestamp", "value", "is_nan")},
            where=newer), list(newest.values()))

    ws.db.write(work)


def add_artifacts(ws: Workspace, run_id: str, entries: Iterable[tuple[str, str, int]]) -> None:
    """Record (path, digest, size) artifacts of a run; a path logged again points at new bytes."""
    created = now_ms()
    rows = [{"run_id": run_id, "path": p, "digest": d, "size": s, "created_at": created}
            for p, d, s in entries]
    if not rows:
        return

    def work(conn: Connection) -> None:
        _require_running(conn, run_id)
        stmt = upsert(conn, artifacts)
        conn.execute(stmt.on_conflict_do_update(
            index_elements=[artifacts.c.run_id, artifacts.c.path],
            set_={c: stmt.excluded[c] for c in ("digest", "size", "created_at")}), rows)

    ws.db.write(work)


# -- reads ------------------------------------------------------------------------------------

def experiment_of(ws: Workspace, run_id: str) -> tuple[str, str]:
    """(experiment id, experiment name) of a run, in one query: what starting a child run
    needs of its parent, which may have thousands of children."""
    if not isinstance(run_id, str) or not run_id:
        raise RunNotFoundError(f"run id must be a non-empty string, got {run_id!r}",
                               field="run_id")
    with ws.db.read() as conn:
        row = conn.execute(select(runs.c.experiment_id, experiments.c.name)
                           .join(experiments, experiments.c.id == runs.c.experiment_id)
                           .where(runs.c.id == run_id)).first()
    if row is None:
        raise RunNotFoundError(f"no run with id {run_id!r} in {ws.location}", field="run_id")
    return row[0], row[1]


def fetch_run(ws: Workspace, run_id: str) -> dict[str, Any]:
    """Everything about one run: its row, experiment name, params, tags and latest metrics."""
    if not isinstance(run_id, str) or not run_id:
        raise RunNotFoundError(f"run id must be a non-empty string, got {run_id!r}",
                               field="run_id")
    with ws.db.read() as conn:
        row = conn.execute(
            select(runs, experiments.c.name.label("experiment"))
            .join(experiments, experiments.c.id == runs.c.experiment_id)
            .where(runs.c.id == run_id)).mappings().first()
        if row is None:
            raise RunNotFoundError(f"no run with id {run_id!r} in {ws.location}",
                                   field="run_id")
        record = dict(row)
        record["params"] = dict(conn.execute(
            select(params.c.key, params.c.value).where(params.c.run_id == run_id)).all())
        record["tags"] = dict(conn.execute(
            select(tags.c.key, tags.c.value).where(tags.c.run_id == run_id)).all())
        record["metrics"] = {
            key: float("nan") if is_nan else value
            for key, value, is_nan in conn.execute(
                select(latest_metrics.c.key, latest_metrics.c.value, latest_metrics.c.is_nan)
                .where(latest_metrics.c.run_id == run_id))}
        record["children"] = list(conn.execute(
            select(runs.c.id).where(runs.c.parent_id == run_id)
            .order_by(runs.c.start_time)).scalars())
    return record


def metric_history(ws: Workspace, run_id: str, key: str) -> list[tuple[int, float, int]]:
    """(step, value, timestamp) points of one series in logging order, NaN restored."""
    with ws.db.read() as conn:
        rows = conn.execute(
            select(metrics.c.step, metrics.c.value, metrics.c.timestamp, metrics.c.is_nan)
            .where(metrics.c.run_id == run_id, metrics.c.key == key)
            .order_by(metrics.c.step, metrics.c.timestamp, metrics.c.id)).all()
    return [(step, float("nan") if is_nan else value, ts) for step, value, ts, is_nan in rows]


def list_artifacts(ws: Workspace, run_id: str) -> list[tuple[str, str, int]]:
    with ws.db.read() as conn:
        return [tuple(r) for r in conn.execute(  # type: ignore[misc]
            select(artifacts.c.path, artifacts.c.digest, artifacts.c.size)
            .where(artifacts.c.run_id == run_id).order_by(artifacts.c.path))]


def artifact_digests(ws: Workspace) -> set[str]:
    """Digests of every run's artifacts: the blobs tracking needs garbage collection to keep."""
    with ws.db.read() as conn:
        return set(conn.execute(select(artifacts.c.digest).distinct()).scalars())


def count_points(ws: Workspace, run_ids: Sequence[str] | None = None) -> int:
    query = select(func.count()).select_from(metrics)
    if run_ids is not None:
        query = query.where(metrics.c.run_id.in_(list(run_ids)))
    with ws.db.read() as conn:
        return conn.execute(query).scalar_one()

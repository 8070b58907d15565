"""Lineage edges from runs to the dataset versions they read."""

from __future__ import annotations

from sqlalchemy import Connection, select

from tidal.data.schema import dataset_versions, datasets, run_inputs
from tidal.data.versions import DatasetVersion
from tidal.errors import InvalidValueError
from tidal.ids import now_ms
from tidal.store.workspace import Workspace


def record_input(ws: Workspace, run_id: str, version: DatasetVersion) -> None:
    """Record that ``run_id`` read ``version`` (once; logging it again changes nothing)."""
    if not isinstance(version, DatasetVersion):
        raise InvalidValueError(f"log_input takes a dataset version from tidal.datasets, got "
                                f"{type(version).__name__}", field="dataset")
    if version.workspace.settings.db_url != ws.settings.db_url:
        raise InvalidValueError(f"{version.uri} belongs to another workspace than the run",
                                field="dataset")

    def work(conn: Connection) -> None:
        seen = conn.execute(select(run_inputs.c.run_id).where(
            run_inputs.c.run_id == run_id,
            run_inputs.c.dataset_version_id == version.id)).first()
        if seen is None:
            conn.execute(run_inputs.insert().values(run_id=run_id, dataset_version_id=version.id,
                                                    created_at=now_ms()))

    ws.db.write(work)


def inputs_of(ws: Workspace, run_id: str) -> list[str]:
    """URIs (datasets:/name/version) of the dataset versions a run read."""
    with ws.db.read() as conn:
        rows = conn.execute(
            select(datasets.c.name, dataset_versions.c.version)
            .join(dataset_versions, dataset_versions.c.dataset_id == datasets.c.id)
            .join(run_inputs, run_inputs.c.dataset_version_id == dataset_versions.c.id)
            .where(run_inputs.c.run_id == run_id).order_by(run_inputs.c.created_at)).all()
    return [f"datasets:/{name}/{number}" for name, number in rows]

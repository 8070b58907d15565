"""Dataset versions: register data as an immutable, numbered, content-addressed Parquet version.

Registering streams the input once: each batch (re-cut to a fixed size) is hashed in Arrow's
IPC form for the content digest and written to a local Parquet file. Content already stored
under that name returns the existing version; otherwise the file goes to the artifact store,
DuckDB profiles it, and one transaction records the next version number.
"""

from __future__ import annotations

import base64
import json
import os
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pyarrow as pa
from sqlalchemy import Connection, func, insert, select

from tidal.data.ingest import BATCH_ROWS, open_source
from tidal.data.profile import profile_parquet
from tidal.data.schema import dataset_versions, datasets, run_inputs
from tidal.errors import InvalidValueError, NotFoundError
from tidal.ids import check_name as check_name_of
from tidal.ids import format_digest, hasher, new_id, now_ms
from tidal.store.db import upsert
from tidal.store.workspace import Workspace, current_workspace

if TYPE_CHECKING:
    import duckdb
    import pandas as pd


class DatasetNotFoundError(NotFoundError):
    """No dataset of that name, or no version matching the request."""


def check_name(name: Any) -> str:
    return check_name_of(name, what="dataset")


def _rebatch(batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
    """Re-cut batches to BATCH_ROWS rows, so that the digest does not depend on how the input
    happened to be chunked."""
    pending: list[pa.RecordBatch] = []
    rows = 0
    for batch in batches:
        pending.append(batch)
        rows += batch.num_rows
        while rows >= BATCH_ROWS:
            table = pa.Table.from_batches(pending)
            head, rest = table.slice(0, BATCH_ROWS), table.slice(BATCH_ROWS)
            yield head.combine_chunks().to_batches()[0]
            pending = rest.combine_chunks().to_batches() if rest.num_rows else []
            rows = rest.num_rows
    if rows:
        yield pa.Table.from_batches(pending).combine_chunks().to_batches()[0]


def _write_and_hash(schema: pa.Schema, batches: Iterator[pa.RecordBatch],
                    path: str) -> tuple[str, int]:
    import pyarrow.parquet as pq

    h = hasher()
    h.update(schema.serialize().to_pybytes())
    rows = 0
    with pq.ParquetWriter(path, schema, compression="zstd") as writer:
        for batch in _rebatch(batches):
            sink = pa.BufferOutputStream()
            with pa.ipc.new_stream(sink, schema) as ipc:
                ipc.write_batch(batch)
            h.update(sink.getvalue().to_pybytes())
            writer.write_batch(batch)
            rows += batch.num_rows
    return format_digest(h.hexdigest()), rows


@dataclass(frozen=True)
class DatasetVersion:
    """One immutable version of a dataset, with its schema, profile and a way to read it."""

    id: str
    name: str
    version: int
    digest: str
    blob: str
    num_rows: int
    num_columns: int
    size_bytes: int
    schema: pa.Schema
    profile: dict[str, Any]
    source: str | None
    description: str | None
    created_at: datetime
    created_by: str | None
    workspace: Workspace = field(repr=False, compare=False)

    @classmethod
    def _from_row(cls, ws: Workspace, row: Any, name: str) -> DatasetVersion:
        return cls(
            id=row.id, name=name, version=row.version, digest=row.digest, blob=row.blob,
            num_rows=row.num_rows, num_columns=row.num_columns, size_bytes=row.size_bytes,
            schema=pa.ipc.read_schema(pa.py_buffer(base64.b64decode(row.arrow_schema))),
            profile=json.loads(row.profile), source=row.source, description=row.description,
            created_at=datetime.fromtimestamp(row.created_at / 1000, tz=UTC),
            created_by=row.created_by, workspace=ws)

    @property
    def uri(self) -> str:
        return f"datasets:/{self.name}/{self.version}"

    def local_path(self) -> Path:
        """The Parquet file, verified against its digest and cached in the workspace."""
        cache = Path(self.workspace.settings.home) / "cache" / "datasets"
        path = cache / f"{self.blob.split(':', 1)[1]}.parquet"
        if not path.exists():
            self.workspace.artifacts.get_file(self.blob, path)
        return path

    def to_arrow(self) -> pa.Table:
        import pyarrow.parquet as pq

        return pq.read_table(self.local_path())

    def to_pandas(self) -> pd.DataFrame:
        return self.to_arrow().to_pandas()

    def to_polars(self) -> Any:
        try:
            import polars as pl
        except ImportError as error:
            from tidal.errors import missing_dependency

            raise missing_dependency("polars", "polars", "to_polars()") from error
        return pl.read_parquet(self.local_path())

    def duckdb(self, connection: duckdb.DuckDBPyConnection | None = None
               ) -> duckdb.DuckDBPyRelation:
        """A DuckDB relation over the version's Parquet file, for out-of-core queries."""
        import duckdb

        return (connection or duckdb.default_connection()).read_parquet(str(self.local_path()))

    def validate(self, expectations: Any, *, raise_on_failure: bool = False) -> Any:
        """Check expectations (``tidal.datasets.expect``) and store the report with this
        version; see tidal.data.validation."""
        from tidal.data.validation import validate

        return validate(self, expectations, raise_on_failure=raise_on_failure)

    def validation_reports(self) -> list[Any]:
        """Every stored validation report of this version, oldest first."""
        from tidal.data.validation import reports

        return reports(self)

    def runs(self) -> list[str]:
        """Ids of the runs that read this version (``run.log_input``), oldest first."""
        with self.workspace.db.read() as conn:
            return list(conn.execute(
                select(run_inputs.c.run_id).where(run_inputs.c.dataset_version_id == self.id)
                .order_by(run_inputs.c.created_at)).scalars())


def _workspace(workspace: Workspace | None) -> Workspace:
    return workspace or current_workspace()


def _find(conn: Connection, name: str) -> str | None:
    return conn.execute(select(datasets.c.id).where(datasets.c.name == name)).scalar()


def register(name: str, data: Any, *, description: str | None = None,
             workspace: Workspace | None = None) -> DatasetVersion:
    """Store ``data`` as the next version of dataset ``name``; identical content returns the
    version that already holds it."""
    from tidal.tracking.environment import user_name

    ws = _workspace(workspace)
    name = check_name(name)
    source = open_source(data)
    scratch = Path(ws.settings.home) / "tmp"
    scratch.mkdir(parents=True, exist_ok=True)
    fd, path = tempfile.mkstemp(dir=scratch, suffix=".parquet")
    os.close(fd)
    try:
        digest, rows = _write_and_hash(source.schema, source.batches, path)
        if rows == 0:
            raise InvalidValueError(f"{source.description} holds no rows; a dataset cannot be "
                                    "empty", field="data")
        existing = _by_digest(ws, name, digest)
        if existing is not None:
            return existing
        blob = ws.artifacts.put_file(path)
        profile = profile_parquet(path, source.schema)
    finally:
        Path(path).unlink(missing_ok=True)

    def record(conn: Connection) -> str:
        # concurrent first registrations of one name: one row wins, both use it
        conn.execute(upsert(conn, datasets).values(id=new_id(), name=name, created_at=now_ms())
                     .on_conflict_do_nothing())
        dataset_id = conn.execute(select(datasets.c.id).where(datasets.c.name == name)
                                  .with_for_update()).scalar_one()  # numbering, serialised
        same = conn.execute(select(dataset_versions.c.id).where(
            dataset_versions.c.dataset_id == dataset_id,
            dataset_versions.c.digest == digest)).scalar()
        if same is not None:  # another process registered the same content meanwhile
            return same
        number = (conn.execute(select(func.max(dataset_versions.c.version)).where(
            dataset_versions.c.dataset_id == dataset_id)).scalar() or 0) + 1
        version_id = new_id()
        conn.execute(insert(dataset_versions).values(
            id=version_id, dataset_id=dataset_id, version=number, digest=digest,
            blob=blob.digest, num_rows=rows, num_columns=len(source.schema),
            size_bytes=blob.size,
            arrow_schema=base64.b64encode(source.schema.serialize().to_pybytes()).decode(),
            profile=json.dumps(profile), source=source.description, description=description,
            created_at=now_ms(), created_by=user_name()))
        return version_id

    version_id = ws.db.write(record)
    return _load(ws, dataset_versions.c.id == version_id, f"version id {version_id}")


def _load(ws: Workspace, condition: Any, what: str) -> DatasetVersion:
    with ws.db.read() as conn:
        row = conn.execute(
            select(dataset_versions, datasets.c.name.label("dataset_name"))
            .join(datasets, datasets.c.id == dataset_versions.c.dataset_id)
            .where(condition).order_by(dataset_versions.c.version.desc()).limit(1)).first()
    if row is None:
        raise DatasetNotFoundError(f"no dataset version matches {what}", field="version")
    return DatasetVersion._from_row(ws, row, row.dataset_name)


def _by_digest(ws: Workspace, name: str, digest: str) -> DatasetVersion | None:
    try:
        return _load(ws, (datasets.c.name == name) & (dataset_versions.c.digest == digest), "")
    except DatasetNotFoundError:
        return None


def get(name: str, version: int | str | None = None, *, as_of: datetime | None = None,
        workspace: Workspace | None = None) -> DatasetVersion:
    """A version of dataset ``name``: a number, "latest" (the default), or the latest one
    registered at or before ``as_of``. ``name`` may also be a whole reference,
    ``datasets:/NAME/VERSION`` or ``NAME/VERSION``, as pipelines receive them."""
    ws = _workspace(workspace)
    if version is None and isinstance(name, str) and "/" in name:
        from tidal.data.uri import parse_ref

        name, version = parse_ref(name)
    name = check_name(name)
    with ws.db.read() as conn:
        if _find(conn, name) is None:
            known = conn.execute(select(datasets.c.name).order_by(datasets.c.name)
                                 .limit(20)).scalars().all()
            raise DatasetNotFoundError(f"no dataset named {name!r}; known datasets: "
                                       f"{known or 'none yet'}", field="name")
    condition = datasets.c.name == name
    what = f"{name!r}"
    if version not in (None, "latest"):
        if isinstance(version, bool) or not isinstance(version, int) or version < 1:
            raise InvalidValueError(f"version must be a positive integer or 'latest', got "
                                    f"{version!r}", field="version")
        condition = condition & (dataset_versions.c.version == version)
        what = f"{name!r} version {version}"
    if as_of is not None:
        if not isinstance(as_of, datetime):
            raise InvalidValueError(f"as_of must be a datetime, got {type(as_of).__name__}",
                                    field="as_of")
        moment = as_of if as_of.tzinfo else as_of.replace(tzinfo=UTC)
        condition = condition & (dataset_versions.c.created_at <= int(moment.timestamp() * 1000))
        what += f" registered at or before {moment.isoformat()}"
    return _load(ws, condition, what)


def _load_all(ws: Workspace, condition: Any) -> list[DatasetVersion]:
    query = (select(dataset_versions, datasets.c.name.label("dataset_name"))
             .join(datasets, datasets.c.id == dataset_versions.c.dataset_id).where(condition))
    with ws.db.read() as conn:
        rows = conn.execute(query).all()
    return [DatasetVersion._from_row(ws, row, row.dataset_name) for row in rows]


def versions_by_id(ids: list[str], *, workspace: Workspace | None = None
                   ) -> list[DatasetVersion]:
    """The dataset versions with these ids (lineage edges from other domains hold ids)."""
    if not ids:
        return []
    return _load_all(_workspace(workspace), dataset_versions.c.id.in_(ids))


def list_versions(name: str, *, workspace: Workspace | None = None) -> list[DatasetVersion]:
    """Every version of dataset ``name``, oldest first."""
    ws = _workspace(workspace)
    get(name, workspace=ws)  # a clear error for an unknown name
    versions = _load_all(ws, datasets.c.name == name)
    return sorted(versions, key=lambda v: v.version)


def list_datasets(*, workspace: Workspace | None = None) -> list[DatasetVersion]:
    """The latest version of every dataset, by name."""
    ws = _workspace(workspace)
    other = dataset_versions.alias("other")
    latest = (select(func.max(other.c.version))
              .where(other.c.dataset_id == dataset_versions.c.dataset_id).scalar_subquery())
    versions = _load_all(ws, dataset_versions.c.version == latest)
    return sorted(versions, key=lambda v: v.name)

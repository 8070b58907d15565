"""The blobs dataset versions point at (their Parquet files): what garbage collection keeps."""

from __future__ import annotations

from sqlalchemy import select

from tidal.data.schema import dataset_versions
from tidal.store.workspace import Workspace


def referenced_blobs(ws: Workspace) -> set[str]:
    """Digests of every dataset version's stored file."""
    with ws.db.read() as conn:
        return set(conn.execute(select(dataset_versions.c.blob)).scalars())

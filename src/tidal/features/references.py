"""The blobs feature definitions point at (the definition files on-demand views run from):
what garbage collection keeps."""

from __future__ import annotations

from sqlalchemy import select

from tidal.features.schema import feature_definitions
from tidal.store.workspace import Workspace


def referenced_blobs(ws: Workspace) -> set[str]:
    """Digests of the definitions files recorded with every version of every definition."""
    with ws.db.read() as conn:
        return set(conn.execute(select(feature_definitions.c.code)
                                .where(feature_definitions.c.code.is_not(None))).scalars())

"""The blobs that stored step outputs point at (JSON, NumPy, empty tables, model files):
what garbage collection keeps. Table outputs are dataset versions, kept by their domain."""

from __future__ import annotations

from sqlalchemy import select

from tidal.pipelines.schema import step_runs
from tidal.store.gc import digests_in_json
from tidal.store.workspace import Workspace


def referenced_blobs(ws: Workspace) -> set[str]:
    """Every digest inside every step run's output references, whatever the materializer."""
    found: set[str] = set()
    with ws.db.read() as conn:
        for outputs in conn.execute(select(step_runs.c.outputs)
                                    .where(step_runs.c.outputs.is_not(None))).scalars():
            found |= digests_in_json(outputs)
    return found

"""The blobs model versions point at (their files and input examples): what garbage
collection keeps."""

from __future__ import annotations

from sqlalchemy import select

from tidal.models.schema import model_versions
from tidal.store.gc import digests_in_json
from tidal.store.workspace import Workspace


def referenced_blobs(ws: Workspace) -> set[str]:
    """Digests of every version's files and of its input example."""
    found: set[str] = set()
    with ws.db.read() as conn:
        for files, example in conn.execute(select(model_versions.c.files,
                                                  model_versions.c.input_example)):
            found |= digests_in_json(files)
            if example:
                found.add(example)
    return found

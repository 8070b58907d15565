"""``tidal.workspace()``: open a workspace and make it the current one."""

from __future__ import annotations

import os
from typing import Any

from tidal.store.workspace import Workspace, open_workspace, set_current


def workspace(
    uri: str | os.PathLike[str] | None = None,
    artifacts: str | os.PathLike[str] | None = None,
    *,
    storage_options: dict[str, Any] | None = None,
) -> Workspace:
    """Open a workspace and make it current for every call that is not given one.

    ``uri``: a workspace folder, a SQLite file, or a ``postgresql://`` URL; default
    TIDAL_HOME / TIDAL_DB_URL, then tidal.toml, then ``./.tidal``. ``artifacts``: a local folder
    or an fsspec URL such as ``s3://bucket/prefix``; default TIDAL_ARTIFACTS, tidal.toml, then
    ``<home>/artifacts``. ``storage_options`` go to fsspec (endpoint, credentials...).
    """
    ws = open_workspace(uri, artifacts, storage_options=storage_options)
    set_current(ws)
    return ws

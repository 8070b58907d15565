"""The workspace: one metadata store and one artifact store, opened together.

``tidal.workspace()`` opens one and makes it current; everything else takes a workspace or
uses the current one, resolved on first use from TIDAL_* variables, tidal.toml or ``./.tidal``.
Opened workspaces are cached per (database, artifacts) pair so that asking twice is free.
"""

from __future__ import annotations

import os
import threading
from typing import Any

from tidal.config import Settings, resolve_settings
from tidal.store.artifacts import ArtifactStore
from tidal.store.db import Database
from tidal.store.migrate import ensure_schema


class Workspace:
    """A metadata database and an artifact store that belong together."""

    def __init__(self, settings: Settings, storage_options: dict[str, Any] | None = None) -> None:
        self.settings = settings
        self.db = Database(settings.db_url)
        ensure_schema(self.db)
        self.artifacts = ArtifactStore(settings.artifacts, storage_options)

    @property
    def location(self) -> str:
        """Where the workspace lives, for people: the metadata URL and the artifact root."""
        return f"{self.db.safe_url} (artifacts: {self.settings.artifacts})"

    def close(self) -> None:
        self.db.close()

    def __repr__(self) -> str:
        return f"Workspace({self.location})"


_lock = threading.Lock()
_open: dict[tuple[str, str], Workspace] = {}
_current: Workspace | None = None


def open_workspace(
    uri: str | os.PathLike[str] | None = None,
    artifacts: str | os.PathLike[str] | None = None,
    *,
    storage_options: dict[str, Any] | None = None,
) -> Workspace:
    """Open (or reuse) the workspace these arguments resolve to, without making it current."""
    if isinstance(uri, str) and isinstance(artifacts, str) and storage_options is None:
        ws = _open.get((uri, artifacts))  # a workspace named exactly: no settings to resolve
        if ws is not None:
            return ws
    settings = resolve_settings(uri, artifacts)
    key = (settings.db_url, settings.artifacts)
    with _lock:
        ws = _open.get(key)
        if ws is None:
            ws = _open[key] = Workspace(settings, storage_options)
        return ws


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


def set_current(ws: Workspace | None) -> None:
    global _current
    _current = ws


def current_workspace() -> Workspace:
    """The current workspace, opening the default one on first use."""
    global _current
    if _current is None:
        _current = open_workspace()
    return _current


def close_all() -> None:
    """Close every open workspace and forget the current one (tests and long-lived servers)."""
    global _current
    with _lock:
        for ws in _open.values():
            ws.close()
        _open.clear()
        _current = None

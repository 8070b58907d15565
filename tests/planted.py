"""Modules that an attacker with write access to the stores would make stored data name: each
writes a marker file the moment it is imported, so a test shows that a loader refused it
before importing anything."""

from __future__ import annotations

import importlib
import sys
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest


def plant(directory: Path, marker: Path, body: str = "", *, name: str | None = None) -> str:
    """Write ``<name>.py`` into ``directory``: it writes ``marker`` on import, then runs
    ``body``. Returns the module's name (a fresh one unless given)."""
    name = name or f"planted_{uuid.uuid4().hex[:12]}"
    directory.mkdir(parents=True, exist_ok=True)
    (directory / f"{name}.py").write_text(
        f"from pathlib import Path\nPath({str(marker)!r}).write_text('imported')\n{body}")
    importlib.invalidate_caches()
    return name


@contextmanager
def forgetting_planted() -> Iterator[None]:
    """Planted modules imported inside the block are dropped from ``sys.modules`` after it,
    so no later test finds one already imported."""
    before = set(sys.modules)
    try:
        yield
    finally:
        for name in set(sys.modules) - before:
            if name.startswith("planted_"):
                del sys.modules[name]


@contextmanager
def on_import_path(folder: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """``folder`` on the import path by its absolute path, as an installed package's folder
    is, for the block; the planted modules imported meanwhile are forgotten after it."""
    folder.mkdir(parents=True, exist_ok=True)
    monkeypatch.syspath_prepend(str(folder))
    with forgetting_planted():
        yield folder

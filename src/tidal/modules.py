"""Finding the Python module that stored data names, without running any of it.

Importing a module runs its top-level code, and ``importlib.util.find_spec("a.b")`` already
imports ``a`` to look inside it. Code named by the metadata or artifact store (a pipeline's
target, a PyTorch model's class) is therefore located here first: each package on the way is
found by the import system's own finders, none of it executed, on the import path without
its relative entries (``''`` is the current directory, whichever that happens to be), and
refused when a copy reached through such an entry would be imported in its place. What is
found can then be hashed and read as text before anything imports it.
"""

from __future__ import annotations

import ast
import os
import re
import sys
from importlib.machinery import ModuleSpec, PathFinder
from pathlib import Path

from tidal.errors import TidalError

_DOTTED = re.compile(r"[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*")


class ModuleSourceError(TidalError):
    """A module named by stored data cannot be located, without running code and outside the
    current directory, as a Python source file."""


def find_source(name: str) -> Path:
    """The source file that ``import name`` would run, found without importing anything that
    is not imported already. Raises ModuleSourceError when the module is only reachable
    through the current directory (or is shadowed by a copy there), or has no ``.py`` source."""
    if not isinstance(name, str) or not _DOTTED.fullmatch(name):
        raise ModuleSourceError(f"{name!r} is not a dotted module name such as "
                                "'package.module'", field="module")
    parts = name.split(".")
    spec: ModuleSpec | None = None
    locations: list[str] | None = None
    for depth in range(1, len(parts) + 1):
        prefix = ".".join(parts[:depth])
        loaded = sys.modules.get(prefix)
        if loaded is not None:
            spec = getattr(loaded, "__spec__", None)
            if spec is None:
                raise ModuleSourceError(f"module {prefix!r} was not imported from a file",
                                        field="module")
        else:
            spec = _located(prefix, locations)
        if depth < len(parts):
            search = getattr(loaded, "__path__", None) if loaded is not None \
                else spec.submodule_search_locations
            if search is None:
                raise ModuleSourceError(f"{prefix!r} is a module, not a package, so it holds "
                                        f"no module {parts[depth]!r}", field="module")
            locations = list(search)
    assert spec is not None
    if not spec.has_location or not spec.origin or not spec.origin.endswith(".py"):
        raise ModuleSourceError(f"module {name!r} has no Python source file to check "
                                f"({spec.origin or 'no file'})", field="module")
    return Path(spec.origin)


def _located(name: str, locations: list[str] | None) -> ModuleSpec:
    """The spec of ``name`` found without relative path entries, checked to be the one an
    import (which does search them) would load."""
    safe = _find_spec(name, locations, relative=False)
    if safe is None:
        raise ModuleSourceError(f"no module {name!r} on the import path (the current "
                                "directory is not searched for code that stored data names)",
                                field="module")
    actual = _find_spec(name, locations, relative=True)
    if actual is None or actual.origin != safe.origin or \
            list(actual.submodule_search_locations or []) != \
            list(safe.submodule_search_locations or []):
        where = actual.origin if actual is not None else "elsewhere"
        raise ModuleSourceError(f"module {name!r} would be imported from {where} in the "
                                f"current directory instead of {safe.origin}; refusing to "
                                "run it", field="module")
    return safe


def _find_spec(name: str, locations: list[str] | None, *, relative: bool) -> ModuleSpec | None:
    """Ask the meta path finders in import order, as ``import`` does; finders only locate,
    they run no module code."""
    for finder in sys.meta_path:
        find_spec = getattr(finder, "find_spec", None)
        if find_spec is None:
            continue
        if finder is PathFinder:
            path = sys.path if locations is None else locations
            if not relative:
                path = [p for p in path if isinstance(p, str) and os.path.isabs(p)]
            spec = PathFinder.find_spec(name, path)
        else:
            spec = find_spec(name, locations)
        if spec is not None:
            return spec
    return None


def top_level_definition(source: bytes, name: str) -> ast.stmt | None:
    """The statement that binds ``name`` at the top level of ``source`` (a ``def``, a
    ``class`` or an assignment), read as text; the last one wins, as when it runs."""
    try:
        tree = ast.parse(source)
    except (SyntaxError, ValueError):
        return None
    found = None
    for statement in tree.body:
        if isinstance(statement, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            if statement.name == name:
                found = statement
        elif isinstance(statement, (ast.Assign, ast.AnnAssign)):
            targets = statement.targets if isinstance(statement, ast.Assign) \
                else [statement.target]
            if any(isinstance(t, ast.Name) and t.id == name for t in targets):
                found = statement
    return found

"""DuckDB connections that can touch only the files they are opened for.

The feature store runs SQL that it did not write: a feature view's ``transform``, which comes
from a definitions file or, read back, from the metadata store, where anyone who can write
the database can change it. The transform is checked before it runs (``transform.py``); this
is the second wall, so that a check that missed something still reaches nothing. Every
connection the feature store runs SQL on comes from :func:`connect`, and is locked down
before any of that SQL runs:

- ``enable_external_access = false``, with ``allowed_paths`` / ``allowed_directories`` naming
  the files it is opened for (the views' sources, an entity-rows file, a result file) and
  nothing else: ``read_text('/etc/passwd')``, ``COPY ... TO``, ``ATTACH`` and ``glob`` of any
  other path fail with a permission error, and so do URLs (``http://``, ``s3://``) not named.
- no extension is installed or loaded, even one DuckDB knows (``autoinstall_known_extensions``
  and ``autoload_known_extensions`` off; ``LOAD`` is refused without external access), so
  ``httpfs`` never arrives to open the network;
- ``python_enable_replacements = false``: a table name is never looked up among the Python
  variables of the caller;
- ``lock_configuration = true``: none of this can be ``SET`` back, not even by SQL that runs
  on the connection.

A source at a URL (``s3://bucket/prefix/*.parquet``) is read through the fsspec filesystem of
its scheme, registered on the database and confined by the same lists; credentials come from
fsspec's usual places (for S3: the ``AWS_*`` variables), never from the SQL.

Folders are allowed for globs (their fixed leading part), exact files otherwise. DuckDB
compares paths as text after normalising them (``..`` cannot climb out), and a folder grants
writing as well as reading: a file inside a glob's folder stays reachable.

Opening a database costs about 20 ms, and a locked one cannot be widened, so one is kept per
set of allowed paths (a few of them) and every call gets a cursor of its own on it, whose
temporary views are its own. ``bounded`` connections cap their memory and spill to disk past
the cap, a database-wide setting, so they get a database of their own each time.
"""

from __future__ import annotations

import os
import tempfile
import threading
from collections import OrderedDict
from collections.abc import Iterable
from typing import Any

#: Characters that make a path a glob for DuckDB.
_GLOB = "*?["
#: Databases kept, by what they may touch; the oldest is dropped past this (cursors in use keep
#: theirs alive).
_KEPT = 4


def normalise(path: str) -> str:
    """The form of a source path that SQL uses and the allowed lists name: local paths
    absolute with ``~`` expanded; URLs as they are."""
    if "://" in path:
        return path
    return os.path.abspath(os.path.expanduser(path))


def _grant(path: str) -> tuple[str, bool]:
    """What reading ``path`` (normalised) needs: (a folder ending in '/', True) for a glob,
    whose files are listed, else (the file itself, False)."""
    parts = path.split("/")
    for index, part in enumerate(parts):
        if any(c in part for c in _GLOB):
            return "/".join(parts[:index]) + "/", True
    return path, False


def _literals(values: Iterable[str]) -> str:
    return "[" + ", ".join("'" + v.replace("'", "''") + "'" for v in sorted(values)) + "]"


def _temp_directory() -> str:
    return os.path.join(tempfile.gettempdir(), "tidal-duckdb")


def _open(folders: frozenset[str], files: frozenset[str], schemes: frozenset[str],
          bounded: bool) -> Any:
    import duckdb

    config = {"autoinstall_known_extensions": False, "autoload_known_extensions": False,
              "allow_community_extensions": False, "python_enable_replacements": False,
              # Spilled pages go to a folder of Tidal's: DuckDB's default (.tmp in the working
              # folder) would join the allowed folders.
              "temp_directory": _temp_directory()}
    if bounded:
        from tidal.data.profile import MEMORY_LIMIT

        config["memory_limit"] = MEMORY_LIMIT
    conn = duckdb.connect(config=config)
    try:
        for scheme in sorted(schemes):
            conn.register_filesystem(_filesystem(scheme))
        # Cursors start from the global settings, not from this connection's session.
        conn.execute("SET GLOBAL TimeZone = 'UTC'")
        if folders:
            conn.execute(f"SET allowed_directories = {_literals(folders)}")
        if files:
            conn.execute(f"SET allowed_paths = {_literals(files)}")
        conn.execute("SET enable_external_access = false")
        conn.execute("SET lock_configuration = true")
    except BaseException:
        conn.close()
        raise
    return conn


def _filesystem(scheme: str) -> Any:
    import fsspec

    from tidal.errors import InvalidValueError, missing_dependency

    try:
        return fsspec.filesystem(scheme)
    except ImportError as error:
        extra = "s3" if scheme in ("s3", "s3a") else "all"
        raise missing_dependency(f"an fsspec driver for {scheme}://", extra,
                                 f"a feature view source at {scheme}://") from error
    except ValueError as error:
        raise InvalidValueError(f"a feature view source at {scheme}:// cannot be read: "
                                f"{error}", field="source") from error


_databases: OrderedDict[tuple[frozenset[str], ...], Any] = OrderedDict()
_lock = threading.Lock()


def connect(reads: Iterable[str] = (), writes: Iterable[str] = (), *,
            bounded: bool = False) -> Any:
    """A DuckDB connection in UTC that may read the paths or globs ``reads`` and write the
    files ``writes`` (all normalised, see :func:`normalise`), and touch nothing else. Close it
    after use. ``bounded``: a database of its own under a memory cap, spilling to disk."""
    folders, files, schemes = set(), set(), set()
    for path in reads:
        grant, folder = _grant(path)
        (folders if folder else files).add(grant)
        if "://" in path and not path.startswith("file://"):
            schemes.add(path.split("://", 1)[0])
    files.update(writes)
    key = (frozenset(folders), frozenset(files), frozenset(schemes))
    if bounded:
        return _open(*key, bounded=True)
    with _lock:
        database = _databases.get(key)
        if database is None:
            database = _databases[key] = _open(*key, bounded=False)
            if len(_databases) > _KEPT:
                _databases.popitem(last=False)
        else:
            _databases.move_to_end(key)
        return database.cursor()


def _close_before_fork() -> None:
    # A child that inherits a DuckDB database with worker threads hangs or crashes when it
    # exits; the parent opens new ones when next needed.
    with _lock:
        for database in _databases.values():
            database.close()
        _databases.clear()


def _reset_in_child() -> None:
    global _lock
    _databases.clear()
    _lock = threading.Lock()


os.register_at_fork(before=_close_before_fork, after_in_child=_reset_in_child)

"""The metadata database: one SQLAlchemy engine with the discipline that makes it safe to share.

On SQLite several processes write one file, so every connection runs in WAL mode with a busy
timeout, and every write transaction starts with ``BEGIN IMMEDIATE``: a deferred ``BEGIN``
that reads and then writes can fail with SQLITE_BUSY_SNAPSHOT, which the busy handler never
retries. On top of that, a whole write transaction is retried a bounded number of times with
jittered backoff when the database stays locked (SQLite) or the server reports a serialization
failure or deadlock (PostgreSQL). Domain modules own their tables; this module knows nothing
of runs or models.
"""

from __future__ import annotations

import atexit
import os
import random
import time
import weakref
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

from sqlalchemy import Connection, create_engine, event, exc
from sqlalchemy.engine import Engine, make_url

from tidal.errors import ConfigError, StoreBusyError, StoreError, missing_dependency

T = TypeVar("T")

#: How long one SQLite statement waits for a lock before the whole transaction is retried.
SQLITE_BUSY_TIMEOUT_S = 30.0
#: Retries of a whole write transaction after the busy timeout ran out (or a PG conflict).
WRITE_ATTEMPTS = 8
_PG_RETRYABLE = {"40001", "40P01"}  # serialization_failure, deadlock_detected

_engines: weakref.WeakSet[Engine] = weakref.WeakSet()


def _dispose_after_fork() -> None:
    # A forked child must not reuse its parent's pooled connections (the same socket or file
    # handle would then be driven by two processes); close=False leaves the parent's intact.
    for engine in list(_engines):
        engine.dispose(close=False)


def _close_at_exit() -> None:
    # Closing the pooled connections lets SQLite checkpoint its write-ahead log and remove
    # the -wal and -shm files, so a workspace left behind is one tidy file. Registered before
    # the metric writer's exit hook, so it runs after the last points are written.
    for engine in list(_engines):
        engine.dispose()


os.register_at_fork(after_in_child=_dispose_after_fork)
atexit.register(_close_at_exit)


def _is_retryable(error: exc.DBAPIError) -> bool:
    orig = error.orig
    code = getattr(orig, "sqlstate", None) or getattr(orig, "pgcode", None)
    if code in _PG_RETRYABLE:
        return True
    message = str(orig).lower()
    return "database is locked" in message or "database table is locked" in message \
        or "busy" in message


class Database:
    """An engine plus the two ways Tidal uses it: read transactions and retried write ones."""

    def __init__(self, url: str, *, busy_timeout: float = SQLITE_BUSY_TIMEOUT_S) -> None:
        self.url = url
        parsed = make_url(url)
        self.dialect = parsed.get_backend_name()
        if self.dialect == "sqlite":
            self.engine = self._sqlite_engine(parsed.database, busy_timeout)
        elif self.dialect == "postgresql":
            self.engine = self._postgres_engine(url)
        else:
            raise ConfigError(f"metadata store '{self.dialect}' is not supported; "
                              "use SQLite or PostgreSQL", field="db_url")
        _engines.add(self.engine)

    @property
    def is_sqlite(self) -> bool:
        return self.dialect == "sqlite"

    @staticmethod
    def _sqlite_engine(database: str | None, busy_timeout: float) -> Engine:
        if not database or database == ":memory:":
            raise ConfigError("an in-memory SQLite database cannot be shared between "
                              "connections; give a file path", field="db_url")
        Path(database).parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(
            f"sqlite:///{database}",
            connect_args={"check_same_thread": False, "timeout": busy_timeout},
            pool_size=4,
            max_overflow=8,
        )

        @event.listens_for(engine, "connect")
        def _on_connect(dbapi_conn, _record) -> None:  # type: ignore[no-untyped-def]
            # The driver must not open transactions on its own: we emit BEGIN ourselves.
            dbapi_conn.isolation_level = None
            cursor = dbapi_conn.cursor()
            cursor.execute(f"PRAGMA busy_timeout = {int(busy_timeout * 1000)}")
            cursor.execute("PRAGMA journal_mode = WAL")
            # NORMAL in WAL mode survives any process crash; only an OS crash or power loss
            # can roll back the last transactions, never corrupt the file.
            cursor.execute("PRAGMA synchronous = NORMAL")
            cursor.execute("PRAGMA foreign_keys = ON")
            # Reads through a memory map skip a syscall per page; sorts for ORDER BY stay in
            # memory; the page cache grows to 64 MiB as needed (it is not allocated up front).
            cursor.execute("PRAGMA mmap_size = 268435456")
            cursor.execute("PRAGMA temp_store = MEMORY")
            cursor.execute("PRAGMA cache_size = -65536")
            cursor.close()

        @event.listens_for(engine, "begin")
        def _on_begin(conn: Connection) -> None:
            mode = conn.get_execution_options().get("tidal_begin", "DEFERRED")
            conn.exec_driver_sql(f"BEGIN {mode}")

        return engine

    @staticmethod
    def _postgres_engine(url: str) -> Engine:
        try:
            return create_engine(url, pool_pre_ping=True, pool_size=4, max_overflow=8)
        except ModuleNotFoundError as error:
            raise missing_dependency("psycopg", "postgres", "a PostgreSQL metadata store") \
                from error

    @contextmanager
    def read(self) -> Iterator[Connection]:
        """A connection inside a read transaction (a consistent snapshot on both backends)."""
        with self.engine.connect() as conn, conn.begin():
            yield conn

    @contextmanager
    def _write_once(self) -> Iterator[Connection]:
        with self.engine.connect() as conn:
            if self.is_sqlite:
                conn = conn.execution_options(tidal_begin="IMMEDIATE")
            with conn.begin():
                yield conn

    def write(self, work: Callable[[Connection], T]) -> T:
        """Run ``work(conn)`` in one write transaction, retried whole when the store is busy.

        ``work`` must be safe to run again: everything it did is rolled back before a retry.
        """
        delay = 0.02
        for attempt in range(1, WRITE_ATTEMPTS + 1):
            try:
                with self._write_once() as conn:
                    return work(conn)
            except exc.OperationalError as error:
                if not _is_retryable(error) or attempt == WRITE_ATTEMPTS:
                    if _is_retryable(error):
                        raise StoreBusyError(
                            f"the metadata store at {self.safe_url} stayed locked through "
                            f"{WRITE_ATTEMPTS} attempts; another process holds a long write "
                            "transaction") from error
                    raise StoreError(f"metadata store error: {error.orig}") from error
            except exc.DBAPIError as error:
                if not _is_retryable(error) or attempt == WRITE_ATTEMPTS:
                    raise
            time.sleep(delay * (0.5 + random.random()))
            delay = min(delay * 2, 1.0)
        raise AssertionError("unreachable")  # pragma: no cover

    @property
    def safe_url(self) -> str:
        """The URL with any password masked, for messages and logs."""
        return make_url(self.url).render_as_string(hide_password=True)

    def close(self) -> None:
        self.engine.dispose()


def upsert(conn: Connection, table: Any) -> Any:
    """An INSERT that takes ON CONFLICT clauses, for the connection's dialect (SQLite and
    PostgreSQL share the API): how a row that concurrent writers may both create is made."""
    if conn.dialect.name == "sqlite":
        from sqlalchemy.dialects.sqlite import insert as dialect_insert
    else:
        from sqlalchemy.dialects.postgresql import insert as dialect_insert
    return dialect_insert(table)

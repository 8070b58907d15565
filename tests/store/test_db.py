"""The metadata database: WAL, BEGIN IMMEDIATE for writes, retries, clear errors."""

from __future__ import annotations

import sqlite3
import threading
import time

import pytest
from sqlalchemy import text

from tidal.errors import ConfigError, StoreBusyError
from tidal.store.db import Database


@pytest.fixture
def sqlite_db(tmp_path):
    db = Database(f"sqlite:///{tmp_path / 'meta.db'}", busy_timeout=0.2)
    db.write(lambda conn: conn.execute(text("CREATE TABLE t (x INTEGER)")))
    yield db
    db.close()


def test_sqlite_runs_in_wal_mode_with_a_busy_timeout(sqlite_db):
    with sqlite_db.read() as conn:
        assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
        assert conn.exec_driver_sql("PRAGMA busy_timeout").scalar() == 200
        assert conn.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1


def test_write_transactions_take_the_write_lock_at_begin(sqlite_db, tmp_path):
    """BEGIN IMMEDIATE: while a write transaction is open, no other writer can start one."""
    observed = {}

    def work(conn):
        other = sqlite3.connect(tmp_path / "meta.db", timeout=0, isolation_level=None)
        try:
            other.execute("BEGIN IMMEDIATE")
            observed["other"] = "got the lock"
        except sqlite3.OperationalError as error:
            observed["other"] = str(error)
        finally:
            other.close()
        conn.execute(text("INSERT INTO t VALUES (1)"))

    sqlite_db.write(work)
    assert observed["other"] == "database is locked"


def test_a_writer_waits_for_a_lock_held_briefly_by_another_process(sqlite_db, tmp_path):
    holder = sqlite3.connect(tmp_path / "meta.db", isolation_level=None,
                             check_same_thread=False)
    holder.execute("BEGIN IMMEDIATE")
    holder.execute("INSERT INTO t VALUES (0)")
    releaser = threading.Timer(0.6, lambda: holder.execute("COMMIT"))
    releaser.start()
    started = time.monotonic()
    sqlite_db.write(lambda conn: conn.execute(text("INSERT INTO t VALUES (1)")))
    assert time.monotonic() - started >= 0.5  # it waited (busy timeout, then retries)
    releaser.join()
    holder.close()
    with sqlite_db.read() as conn:
        assert conn.execute(text("SELECT count(*) FROM t")).scalar() == 2


def test_a_lock_held_past_every_retry_gives_a_clear_error(sqlite_db, tmp_path):
    holder = sqlite3.connect(tmp_path / "meta.db", isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")
    try:
        with pytest.raises(StoreBusyError, match="stayed locked through 8 attempts"):
            sqlite_db.write(lambda conn: conn.execute(text("INSERT INTO t VALUES (1)")))
    finally:
        holder.execute("ROLLBACK")
        holder.close()


def test_a_failed_write_leaves_nothing_behind(sqlite_db):
    def work(conn):
        conn.execute(text("INSERT INTO t VALUES (1)"))
        raise ValueError("boom")

    with pytest.raises(ValueError):
        sqlite_db.write(work)
    with sqlite_db.read() as conn:
        assert conn.execute(text("SELECT count(*) FROM t")).scalar() == 0


@pytest.mark.parametrize("url, message", [
    ("sqlite://", "in-memory"),
    ("sqlite:///:memory:", "in-memory"),
    ("mysql://u@h/db", "not supported"),
])
def test_unsupported_databases_are_refused(url, message):
    with pytest.raises(ConfigError, match=message):
        Database(url)


def test_passwords_are_masked_in_messages():
    from tidal.store.db import Database as D

    db = object.__new__(D)
    db.url = "postgresql+psycopg://user:secret@db.example/tidal"
    assert "secret" not in db.safe_url and "***" in db.safe_url

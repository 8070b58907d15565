"""Bring a metadata store's schema to this Tidal's head revision, once, under a lock.

Opening a workspace that is already at head costs one small SELECT; Alembic itself is only
imported when there is something to do. A store stamped with a revision this Tidal does not
know was written by a newer release, and is refused rather than guessed at.
"""

from __future__ import annotations

from pathlib import Path

from sqlalchemy import Connection, text
from sqlalchemy.exc import DBAPIError

from tidal.errors import SchemaVersionError
from tidal.store.db import Database

#: The newest revision under migrations/versions; a test checks it against Alembic's head.
HEAD_REVISION = "0008"
MIGRATIONS_DIR = Path(__file__).with_name("migrations")
_PG_LOCK_KEY = 0x7469_6461_6C00  # "tidal" as a number: one advisory lock for migrations


def current_revision(conn: Connection) -> str | None:
    """The revision stamped in the store, or None for a store that has never been migrated."""
    try:
        with conn.begin_nested():
            row = conn.execute(text("SELECT version_num FROM alembic_version")).first()
    except DBAPIError:
        return None
    return row[0] if row else None


def _alembic_config(conn: Connection):  # type: ignore[no-untyped-def]
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    config.attributes["connection"] = conn
    return config


def _upgrade(conn: Connection, db: Database) -> None:
    from alembic import command
    from alembic.script import ScriptDirectory

    if not db.is_sqlite:
        conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _PG_LOCK_KEY})
    revision = current_revision(conn)  # again, now that we hold the lock
    if revision == HEAD_REVISION:
        return
    config = _alembic_config(conn)
    known = {script.revision for script in ScriptDirectory.from_config(config).walk_revisions()}
    if revision is not None and revision not in known:
        raise SchemaVersionError(
            f"the metadata store at {db.safe_url} has schema revision {revision!r}, written by "
            f"a newer Tidal than this one (which knows up to {HEAD_REVISION!r}); upgrade Tidal "
            "with: pip install -U tidal-mlops")
    command.upgrade(config, "head")


def ensure_schema(db: Database) -> None:
    """Migrate the store to head if needed; refuse a store from a newer Tidal."""
    with db.read() as conn:
        if current_revision(conn) == HEAD_REVISION:
            return
    db.write(lambda conn: _upgrade(conn, db))

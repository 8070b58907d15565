"""Conventions every domain module's tables follow, so that migrations stay portable.

Constraint names are generated from one convention (SQLite and PostgreSQL then agree on them,
and Alembic can drop them by name); ids are 32-hex strings; times are integer milliseconds.
"""

from __future__ import annotations

from sqlalchemy import BigInteger, Integer, MetaData, String

NAMING_CONVENTION = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

#: An integer primary key that is SQLite's fast rowid there and a BIGINT identity elsewhere.
RowId = BigInteger().with_variant(Integer(), "sqlite")
Id = String(32)
Millis = BigInteger
KEY_LENGTH = 250


def new_metadata() -> MetaData:
    """A MetaData carrying Tidal's naming convention; each domain module makes its own."""
    return MetaData(naming_convention=NAMING_CONVENTION)

"""The feature registry's table: every version of every feature definition, never rewritten."""

from __future__ import annotations

from sqlalchemy import Column, Integer, String, Table, Text, UniqueConstraint

from tidal.store.schema import KEY_LENGTH, Id, Millis, new_metadata

metadata = new_metadata()

# One row per version of a definition (kind + name): its canonical spec as JSON and the digest
# of that spec, so that applying unchanged definitions writes nothing. A removal is a version
# whose spec is NULL. ``code`` is the artifact digest of the definitions file it came from, kept
# because on-demand views are Python code that only that file holds.
feature_definitions = Table(
    "feature_definitions",
    metadata,
    Column("id", Id, primary_key=True),
    Column("kind", String(32), nullable=False),
    Column("name", String(KEY_LENGTH), nullable=False),
    Column("version", Integer, nullable=False),
    Column("digest", String(80), nullable=False),
    Column("spec", Text, nullable=True),
    Column("origin", Text, nullable=True),
    Column("code", String(80), nullable=True),
    Column("created_at", Millis, nullable=False),
    Column("created_by", String(KEY_LENGTH), nullable=True),
    UniqueConstraint("kind", "name", "version"),
)

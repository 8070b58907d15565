"""Tables of versioned datasets and of the lineage edges from runs to the versions they read."""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    ForeignKey,
    Index,
    Integer,
    String,
    Table,
    Text,
    UniqueConstraint,
)

from tidal.store.schema import KEY_LENGTH, Id, Millis, new_metadata

metadata = new_metadata()

datasets = Table(
    "datasets",
    metadata,
    Column("id", Id, primary_key=True),
    Column("name", String(KEY_LENGTH), nullable=False, unique=True),
    Column("created_at", Millis, nullable=False),
)

dataset_versions = Table(
    "dataset_versions",
    metadata,
    Column("id", Id, primary_key=True),
    Column("dataset_id", Id, ForeignKey("datasets.id"), nullable=False),
    Column("version", Integer, nullable=False),
    # digest of the content (canonical Arrow batches): equal data, equal digest, whatever the
    # input format; blob: digest of the stored Parquet file in the artifact store
    Column("digest", String(80), nullable=False),
    Column("blob", String(80), nullable=False),
    Column("num_rows", BigInteger, nullable=False),
    Column("num_columns", Integer, nullable=False),
    Column("size_bytes", BigInteger, nullable=False),
    Column("arrow_schema", Text, nullable=False),
    Column("profile", Text, nullable=False),
    Column("source", Text, nullable=True),
    Column("description", Text, nullable=True),
    Column("created_at", Millis, nullable=False),
    Column("created_by", String(KEY_LENGTH), nullable=True),
    UniqueConstraint("dataset_id", "version"),
    UniqueConstraint("dataset_id", "digest"),
)

# Which run read which dataset version: the first edges of the lineage graph. The run id is
# not a foreign key here: runs belong to tracking, and a domain owns only its own tables.
run_inputs = Table(
    "run_inputs",
    metadata,
    Column("run_id", Id, primary_key=True),
    Column("dataset_version_id", Id, ForeignKey("dataset_versions.id"), primary_key=True),
    Column("created_at", Millis, nullable=False),
    Index("ix_run_inputs_dataset_version_id", "dataset_version_id"),
)

# Every validation of a version, with its full report (JSON), so a version carries the proof
# of what was checked and what failed.
validation_reports = Table(
    "validation_reports",
    metadata,
    Column("id", Id, primary_key=True),
    Column("dataset_version_id", Id, ForeignKey("dataset_versions.id"), nullable=False,
           index=True),
    Column("passed", Boolean, nullable=False),
    Column("report", Text, nullable=False),
    Column("created_at", Millis, nullable=False),
)

"""The model registry's tables: models, their immutable versions, aliases, and every decision.

Versions are never rewritten: a version's files, signature and lineage are fixed when it is
registered; what moves afterwards (its stage, the aliases pointing at it, gate results) is
recorded as new rows with who, when and why, so the history of a model is a query. Run and
dataset version ids are not foreign keys: runs and datasets belong to other domains.
"""

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

registered_models = Table(
    "registered_models",
    metadata,
    Column("id", Id, primary_key=True),
    Column("name", String(KEY_LENGTH), nullable=False, unique=True),
    Column("description", Text, nullable=True),
    Column("owner", String(KEY_LENGTH), nullable=True),
    Column("purpose", Text, nullable=True),
    Column("created_at", Millis, nullable=False),
    Column("created_by", String(KEY_LENGTH), nullable=True),
)

# ``files``: JSON {name: {"digest", "size"}} of the blobs the flavor wrote; ``digest`` covers
# the flavor, its metadata and those files, so two versions with one digest hold one model.
model_versions = Table(
    "model_versions",
    metadata,
    Column("id", Id, primary_key=True),
    Column("model_id", Id, ForeignKey("registered_models.id"), nullable=False),
    Column("version", Integer, nullable=False),
    Column("flavor", String(64), nullable=False),
    Column("stage", String(16), nullable=False),
    Column("digest", String(80), nullable=False),
    Column("files", Text, nullable=False),
    Column("size_bytes", BigInteger, nullable=False),
    Column("flavor_metadata", Text, nullable=False),
    Column("libraries", Text, nullable=False),
    Column("signature", Text, nullable=True),
    Column("input_example", String(80), nullable=True),
    Column("run_id", Id, nullable=True, index=True),
    Column("source_version_id", Id, nullable=True),
    Column("description", Text, nullable=True),
    Column("tags", Text, nullable=False),
    Column("created_at", Millis, nullable=False),
    Column("created_by", String(KEY_LENGTH), nullable=True),
    UniqueConstraint("model_id", "version"),
)

# Which dataset versions a model version was trained on: the edge that lets a dataset version
# name the models built from it.
model_version_datasets = Table(
    "model_version_datasets",
    metadata,
    Column("model_version_id", Id, ForeignKey("model_versions.id"), primary_key=True),
    Column("dataset_version_id", Id, primary_key=True),
    Index("ix_model_version_datasets_dataset_version_id", "dataset_version_id"),
)

model_aliases = Table(
    "model_aliases",
    metadata,
    Column("model_id", Id, ForeignKey("registered_models.id"), primary_key=True),
    Column("alias", String(KEY_LENGTH), primary_key=True),
    Column("version", Integer, nullable=False),
    Column("updated_at", Millis, nullable=False),
)

# Every move of an alias; ``version`` NULL records its removal.
model_alias_events = Table(
    "model_alias_events",
    metadata,
    Column("id", Id, primary_key=True),
    Column("model_id", Id, ForeignKey("registered_models.id"), nullable=False),
    Column("alias", String(KEY_LENGTH), nullable=False),
    Column("version", Integer, nullable=True),
    Column("previous_version", Integer, nullable=True),
    Column("reason", Text, nullable=True),
    Column("created_at", Millis, nullable=False),
    Column("created_by", String(KEY_LENGTH), nullable=True),
    Index("ix_model_alias_events_model_id_alias", "model_id", "alias"),
)

model_transitions = Table(
    "model_transitions",
    metadata,
    Column("id", Id, primary_key=True),
    Column("model_version_id", Id, ForeignKey("model_versions.id"), nullable=False, index=True),
    Column("from_stage", String(16), nullable=True),
    Column("to_stage", String(16), nullable=False),
    Column("reason", Text, nullable=False),
    Column("created_at", Millis, nullable=False),
    Column("created_by", String(KEY_LENGTH), nullable=True),
)

gate_results = Table(
    "gate_results",
    metadata,
    Column("id", Id, primary_key=True),
    Column("model_version_id", Id, ForeignKey("model_versions.id"), nullable=False, index=True),
    # one id per call of validate(): the results of one gate run, read back together
    Column("gate_run_id", Id, nullable=False),
    Column("position", Integer, nullable=False),
    Column("gate", String(KEY_LENGTH), nullable=False),
    Column("passed", Boolean, nullable=False),
    Column("reasons", Text, nullable=False),
    Column("details", Text, nullable=False),
    Column("created_at", Millis, nullable=False),
    Column("created_by", String(KEY_LENGTH), nullable=True),
)

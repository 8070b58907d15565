"""The model registry: models, versions, lineage to datasets, aliases, transitions, gates.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-23
"""

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

_ID = sa.String(32)
_NAME = sa.String(250)


def upgrade() -> None:
    op.create_table(
        "registered_models",
        sa.Column("id", _ID, nullable=False),
        sa.Column("name", _NAME, nullable=False),
        sa.Column("description", sa.Text(), nullable=True),
        sa.Column("owner", _NAME, nullable=True),
        sa.Column("purpose", sa.Text(), nullable=True),
        sa.Column("created_at", sa.BigInteger(), nullable=False),
        sa.Column("created_by", _NAME, nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_registered_models"),
        sa.UniqueConstraint("name", name="uq_registered_models_name"),
    )
    op.create_table(
        "model_versions",
        sa.Column("id", _ID, nullable=False),
        sa.Column("model_id", _ID, nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("flavor", sa.String(64), nullable=False),
        sa.Column("stage", sa.String(16), nullable=False),
        sa.Column("digest", sa.String(80), nullable=False),
        sa.Column("files", sa.Text(), nullable=False),
        sa.Column("size_bytes", sa.BigInteger(), nullable=False),
        sa.Column("flavor_metadata", sa.Text(), nullable=False),
        sa.Column("libraries", sa.Text(), nullable=False),
        sa.Column("signature", sa.Text(), nullable=True),
        sa.Column("input_example", sa.String(80), nullable=True),
        sa.Column("run_id", _ID, nullable=True),
        sa.Column("source_version_id", _ID, nullable=True),
        sa.Column("description", sa.Text(), nullable=True),
        sa.Column("tags", sa.Text(), nullable=False),
        sa.Column("created_at", sa.BigInteger(), nullable=False),
        sa.Column("created_by", _NAME, nullable=True),
        sa.ForeignKeyConstraint(["model_id"], ["registered_models.id"],
                                name="fk_model_versions_model_id_registered_models"),
        sa.PrimaryKeyConstraint("id", name="pk_model_versions"),
        sa.UniqueConstraint("model_id", "version", name="uq_model_versions_model_id_version"),
    )
    op.create_index("ix_model_versions_run_id", "model_versions", ["run_id"])
    op.create_table(
        "model_version_datasets",
        sa.Column("model_version_id", _ID, nullable=False),
        sa.Column("dataset_version_id", _ID, nullable=False),
        sa.ForeignKeyConstraint(["model_version_id"], ["model_versions.id"],
                                name="fk_model_version_datasets_model_version_id_model_versions"),
        sa.PrimaryKeyConstraint("model_version_id", "dataset_version_id",
                                name="pk_model_version_datasets"),
    )
    op.create_index("ix_model_version_datasets_dataset_version_id", "model_version_datasets",
                    ["dataset_version_id"])
    op.create_table(
        "model_aliases",
        sa.Column("model_id", _ID, nullable=False),
        sa.Column("alias", _NAME, nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("updated_at", sa.BigInteger(), nullable=False),
        sa.ForeignKeyConstraint(["model_id"], ["registered_models.id"],
                                name="fk_model_aliases_model_id_registered_models"),
        sa.PrimaryKeyConstraint("model_id", "alias", name="pk_model_aliases"),
    )
    op.create_table(
        "model_alias_events",
        sa.Column("id", _ID, nullable=False),
        sa.Column("model_id", _ID, nullable=False),
        sa.Column("alias", _NAME, nullable=False),
        sa.Column("version", sa.Integer(), nullable=True),
        sa.Column("previous_version", sa.Integer(), nullable=True),
        sa.Column("reason", sa.Text(), nullable=True),
        sa.Column("created_at", sa.BigInteger(), nullable=False),
        sa.Column("created_by", _NAME, nullable=True),
        sa.ForeignKeyConstraint(["model_id"], ["registered_models.id"],
                                name="fk_model_alias_events_model_id_registered_models"),
        sa.PrimaryKeyConstraint("id", name="pk_model_alias_events"),
    )
    op.create_index("ix_model_alias_events_model_id_alias", "model_alias_events",
                    ["model_id", "alias"])
    op.create_table(
        "model_transitions",
        sa.Column("id", _ID, nullable=False),
        sa.Column("model_version_id", _ID, nullable=False),
        sa.Column("from_stage", sa.String(16), nullable=True),
        sa.Column("to_stage", sa.String(16), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("created_at", sa.BigInteger(), nullable=False),
        sa.Column("created_by", _NAME, nullable=True),
        sa.ForeignKeyConstraint(["model_version_id"], ["model_versions.id"],
                                name="fk_model_transitions_model_version_id_model_versions"),
        sa.PrimaryKeyConstraint("id", name="pk_model_transitions"),
    )
    op.create_index("ix_model_transitions_model_version_id", "model_transitions",
                    ["model_version_id"])
    op.create_table(
        "gate_results",
        sa.Column("id", _ID, nullable=False),
        sa.Column("model_version_id", _ID, nullable=False),
        sa.Column("gate_run_id", _ID, nullable=False),
        sa.Column("position", sa.Integer(), nullable=False),
        sa.Column("gate", _NAME, nullable=False),
        sa.Column("passed", sa.Boolean(), nullable=False),
        sa.Column("reasons", sa.Text(), nullable=False),
        sa.Column("details", sa.Text(), nullable=False),
        sa.Column("created_at", sa.BigInteger(), nullable=False),
        sa.Column("created_by", _NAME, nullable=True),
        sa.ForeignKeyConstraint(["model_version_id"], ["model_versions.id"],
                                name="fk_gate_results_model_version_id_model_versions"),
        sa.PrimaryKeyConstraint("id", name="pk_gate_results"),
    )
    op.create_index("ix_gate_results_model_version_id", "gate_results", ["model_version_id"])


def downgrade() -> None:
    for name in ("gate_results", "model_transitions", "model_alias_events", "model_aliases",
                 "model_version_datasets", "model_versions", "registered_models"):
        op.drop_table(name)

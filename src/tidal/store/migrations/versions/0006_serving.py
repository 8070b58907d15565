"""Serving: endpoints and the revisions of their routes.

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-23
"""

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "endpoints",
        sa.Column("name", sa.String(250), nullable=False),
        sa.Column("revision", sa.Integer(), nullable=False),
        sa.Column("created_at", sa.BigInteger(), nullable=False),
        sa.Column("updated_at", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("name", name="pk_endpoints"),
    )
    op.create_table(
        "endpoint_revisions",
        sa.Column("endpoint", sa.String(250), nullable=False),
        sa.Column("revision", sa.Integer(), nullable=False),
        sa.Column("config", sa.Text(), nullable=False),
        sa.Column("previous", sa.Integer(), nullable=True),
        sa.Column("action", sa.String(16), nullable=False),
        sa.Column("created_at", sa.BigInteger(), nullable=False),
        sa.Column("created_by", sa.String(250), nullable=True),
        sa.ForeignKeyConstraint(["endpoint"], ["endpoints.name"],
                                name="fk_endpoint_revisions_endpoint_endpoints"),
        sa.PrimaryKeyConstraint("endpoint", "revision", name="pk_endpoint_revisions"),
    )


def downgrade() -> None:
    op.drop_table("endpoint_revisions")
    op.drop_table("endpoints")

"""Monitoring and the closed loop: alert states and events, loop policies, controller state,
leases and decisions.

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-23
"""

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None

ROW_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "alert_states",
        sa.Column("rule", sa.String(250), nullable=False),
        sa.Column("subject", sa.String(250), nullable=False),
        sa.Column("firing", sa.Boolean(), nullable=False),
        sa.Column("pending_since", sa.BigInteger(), nullable=True),
        sa.Column("fired_at", sa.BigInteger(), nullable=True),
        sa.Column("resolved_at", sa.BigInteger(), nullable=True),
        sa.Column("last_notified_at", sa.BigInteger(), nullable=True),
        sa.Column("notifications", sa.Integer(), nullable=False),
        sa.Column("last_value", sa.Float(), nullable=True),
        sa.Column("updated_at", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("rule", "subject", name="pk_alert_states"),
    )
    op.create_table(
        "alert_events",
        sa.Column("id", ROW_ID, nullable=False, autoincrement=True),
        sa.Column("rule", sa.String(250), nullable=False),
        sa.Column("subject", sa.String(250), nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("value", sa.Float(), nullable=True),
        sa.Column("message", sa.Text(), nullable=False),
        sa.Column("actions", sa.Text(), nullable=False),
        sa.Column("at", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_alert_events"),
    )
    op.create_index("ix_alert_events_rule_id", "alert_events", ["rule", "id"])
    op.create_table(
        "loop_policies",
        sa.Column("name", sa.String(250), nullable=False),
        sa.Column("endpoint", sa.String(250), nullable=False),
        sa.Column("model", sa.String(250), nullable=False),
        sa.Column("config", sa.Text(), nullable=False),
        sa.Column("created_at", sa.BigInteger(), nullable=False),
        sa.Column("updated_at", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("name", name="pk_loop_policies"),
    )
    op.create_table(
        "loop_state",
        sa.Column("policy", sa.String(250), nullable=False),
        sa.Column("phase", sa.String(16), nullable=False),
        sa.Column("cycle", sa.String(32), nullable=True),
        sa.Column("challenger", sa.Integer(), nullable=True),
        sa.Column("step", sa.Integer(), nullable=True),
        sa.Column("step_started_at", sa.BigInteger(), nullable=True),
        sa.Column("last_retrain_at", sa.BigInteger(), nullable=True),
        sa.Column("data", sa.Text(), nullable=False),
        sa.Column("updated_at", sa.BigInteger(), nullable=False),
        sa.ForeignKeyConstraint(["policy"], ["loop_policies.name"],
                                name="fk_loop_state_policy_loop_policies"),
        sa.PrimaryKeyConstraint("policy", name="pk_loop_state"),
    )
    op.create_table(
        "loop_leases",
        sa.Column("policy", sa.String(250), nullable=False),
        sa.Column("holder", sa.String(250), nullable=False),
        sa.Column("acquired_at", sa.BigInteger(), nullable=False),
        sa.Column("expires_at", sa.BigInteger(), nullable=False),
        sa.ForeignKeyConstraint(["policy"], ["loop_policies.name"],
                                name="fk_loop_leases_policy_loop_policies"),
        sa.PrimaryKeyConstraint("policy", name="pk_loop_leases"),
    )
    op.create_table(
        "loop_decisions",
        sa.Column("id", ROW_ID, nullable=False, autoincrement=True),
        sa.Column("policy", sa.String(250), nullable=False),
        sa.Column("endpoint", sa.String(250), nullable=False),
        sa.Column("cycle", sa.String(32), nullable=True),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("outcome", sa.String(16), nullable=False),
        sa.Column("summary", sa.Text(), nullable=False),
        sa.Column("details", sa.Text(), nullable=False),
        sa.Column("model_uri", sa.String(250), nullable=True),
        sa.Column("at", sa.BigInteger(), nullable=False),
        sa.Column("by", sa.String(250), nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_loop_decisions"),
    )
    op.create_index("ix_loop_decisions_endpoint_id", "loop_decisions", ["endpoint", "id"])
    op.create_index("ix_loop_decisions_policy_id", "loop_decisions", ["policy", "id"])


def downgrade() -> None:
    op.drop_table("loop_decisions")
    op.drop_table("loop_leases")
    op.drop_table("loop_state")
    op.drop_table("loop_policies")
    op.drop_index("ix_alert_events_rule_id", table_name="alert_events")
    op.drop_table("alert_events")
    op.drop_table("alert_states")

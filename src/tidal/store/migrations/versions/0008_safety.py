"""Safety: run heartbeats; the serving secrets (the key of request-id MACs); what a pipeline
run ran (its code digest and graph).

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-08
"""

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


# -- serving: the workspace's shared secrets (request-id MAC key) -----------------------------

def _upgrade_serving_secrets() -> None:
    op.create_table(
        "serving_secrets",
        sa.Column("name", sa.String(250), nullable=False),
        sa.Column("value", sa.String(128), nullable=False),
        sa.Column("created_at", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("name", name="pk_serving_secrets"),
    )


def _downgrade_serving_secrets() -> None:
    op.drop_table("serving_secrets")

# -- end of serving secrets -------------------------------------------------------------------


# -- tracking: run heartbeats ------------------------------------------------------------------
# A live run stamps ``heartbeat`` periodically; a "running" run whose stamp is older than the
# run timeout is marked killed. Existing runs start from their start time (their end time once
# ended), so a run left "running" by a process killed before this revision is found too.

def _upgrade_run_heartbeats() -> None:
    op.add_column("runs", sa.Column("heartbeat", sa.BigInteger(), nullable=True))
    op.execute("UPDATE runs SET heartbeat = COALESCE(end_time, start_time)")
    op.create_index("ix_runs_status_heartbeat", "runs", ["status", "heartbeat"])


def _downgrade_run_heartbeats() -> None:
    op.drop_index("ix_runs_status_heartbeat", table_name="runs")
    # ALTER TABLE ... DROP COLUMN: native on PostgreSQL and on SQLite >= 3.35, without the
    # table copy that Alembic's batch mode would make of a table other tables point at
    op.execute("ALTER TABLE runs DROP COLUMN heartbeat")

# -- end of run heartbeats ---------------------------------------------------------------------


# -- pipelines: what a pipeline run ran ---------------------------------------------------------
# ``code_digest``: the digest of the source file that defines the run's pipeline, compared with
# the code on disk before resume imports it; ``graph``: the run's nodes and their upstream
# nodes, so that showing a run imports nothing. Older runs have neither.

def _upgrade_pipeline_run_code() -> None:
    op.add_column("pipeline_runs", sa.Column("code_digest", sa.String(80), nullable=True))
    op.add_column("pipeline_runs", sa.Column("graph", sa.Text(), nullable=True))


def _downgrade_pipeline_run_code() -> None:
    # step_runs points at pipeline_runs: dropped natively rather than by a batch table copy
    op.execute("ALTER TABLE pipeline_runs DROP COLUMN graph")
    op.execute("ALTER TABLE pipeline_runs DROP COLUMN code_digest")

# -- end of pipeline run code -----------------------------------------------------------------


def upgrade() -> None:
    _upgrade_serving_secrets()
    _upgrade_run_heartbeats()
    _upgrade_pipeline_run_code()


def downgrade() -> None:
    _downgrade_pipeline_run_code()
    _downgrade_run_heartbeats()
    _downgrade_serving_secrets()

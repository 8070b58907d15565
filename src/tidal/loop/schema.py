"""Tables of the closed loop: policies, each policy's controller state, the lease that keeps one
controller per policy, and the decisions it took.

The state row is what makes a controller restartable: every phase change is written in the
same transaction as the decision that caused it, so a controller killed at any moment is
followed by one that knows exactly which rollout step was live and reconciles the endpoint to
it. Decisions are append-only: they are the loop's audit trail (``tidal loop history``).
"""

from __future__ import annotations

from sqlalchemy import Column, ForeignKey, Index, Integer, String, Table, Text

from tidal.store.schema import KEY_LENGTH, Millis, RowId, new_metadata

metadata = new_metadata()

# ``config``: JSON of the whole policy (triggers, training window, gate, rollout).
loop_policies = Table(
    "loop_policies",
    metadata,
    Column("name", String(KEY_LENGTH), primary_key=True),
    Column("endpoint", String(KEY_LENGTH), nullable=False),
    Column("model", String(KEY_LENGTH), nullable=False),
    Column("config", Text, nullable=False),
    Column("created_at", Millis, nullable=False),
    Column("updated_at", Millis, nullable=False),
)

# ``phase``: idle, rollout; ``challenger``: the version being rolled out; ``step``: index of the
# live rollout step; ``data``: JSON of what triggers remember (last schedule time, labels seen).
loop_state = Table(
    "loop_state",
    metadata,
    Column("policy", String(KEY_LENGTH), ForeignKey("loop_policies.name"), primary_key=True),
    Column("phase", String(16), nullable=False),
    Column("cycle", String(32), nullable=True),
    Column("challenger", Integer, nullable=True),
    Column("step", Integer, nullable=True),
    Column("step_started_at", Millis, nullable=True),
    Column("last_retrain_at", Millis, nullable=True),
    Column("data", Text, nullable=False),
    Column("updated_at", Millis, nullable=False),
)

loop_leases = Table(
    "loop_leases",
    metadata,
    Column("policy", String(KEY_LENGTH), ForeignKey("loop_policies.name"), primary_key=True),
    Column("holder", String(KEY_LENGTH), nullable=False),
    Column("acquired_at", Millis, nullable=False),
    Column("expires_at", Millis, nullable=False),
)

# ``cycle``: the id shared by every decision from one trigger to its outcome; ``kind``: trigger,
# retrain, gate, rollout, promote, rollback, error; ``details``: JSON of the figures.
loop_decisions = Table(
    "loop_decisions",
    metadata,
    Column("id", RowId, primary_key=True, autoincrement=True),
    Column("policy", String(KEY_LENGTH), nullable=False),
    Column("endpoint", String(KEY_LENGTH), nullable=False),
    Column("cycle", String(32), nullable=True),
    Column("kind", String(16), nullable=False),
    Column("outcome", String(16), nullable=False),
    Column("summary", Text, nullable=False),
    Column("details", Text, nullable=False),
    Column("model_uri", String(KEY_LENGTH), nullable=True),
    Column("at", Millis, nullable=False),
    Column("by", String(KEY_LENGTH), nullable=True),
    Index(None, "endpoint", "id"),
    Index(None, "policy", "id"),
)

"""Tables of pipeline runs, of their steps' runs, and of the scheduler's triggers and leases.

A pipeline run is also a tracked run (same id) and each step run a child run, so params,
metrics and logs show in ``tidal runs``; these tables add what orchestration needs: the
graph's nodes, their cache keys, states, attempts, and references to their stored outputs, so
a run can be shown, resumed and reused by the cache.

A pipeline run also records the digest of the source file that defines its pipeline
(``code_digest``), which resume compares with the code on disk before importing it, and its
graph (``graph``: JSON list of ``[node, [upstream nodes]]`` in run order), which is how a run
is shown without importing anything.
"""

from __future__ import annotations

from sqlalchemy import Column, ForeignKey, Index, Integer, String, Table, Text, UniqueConstraint

from tidal.store.schema import KEY_LENGTH, Id, Millis, new_metadata

metadata = new_metadata()

pipeline_runs = Table(
    "pipeline_runs",
    metadata,
    Column("id", Id, primary_key=True),
    Column("pipeline", String(KEY_LENGTH), nullable=False, index=True),
    Column("target", Text, nullable=False),
    Column("params", Text, nullable=False),
    Column("executor", String(32), nullable=False),
    Column("status", String(16), nullable=False),
    Column("created_at", Millis, nullable=False),
    Column("ended_at", Millis, nullable=True),
    Column("created_by", String(KEY_LENGTH), nullable=True),
    Column("code_digest", String(80), nullable=True),
    Column("graph", Text, nullable=True),
)

# ``outputs``: JSON list of materializer references; ``cached_from``: the step run whose
# outputs a cache hit reused.
step_runs = Table(
    "step_runs",
    metadata,
    Column("id", Id, primary_key=True),
    Column("pipeline_run_id", Id, ForeignKey("pipeline_runs.id"), nullable=False),
    Column("node", String(KEY_LENGTH), nullable=False),
    Column("step", String(KEY_LENGTH), nullable=False),
    Column("cache_key", String(80), nullable=False),
    Column("status", String(16), nullable=False),
    Column("run_id", Id, nullable=True),
    Column("cached_from", Id, nullable=True),
    Column("outputs", Text, nullable=True),
    Column("attempts", Integer, nullable=False),
    Column("error", Text, nullable=True),
    Column("started_at", Millis, nullable=True),
    Column("ended_at", Millis, nullable=True),
    UniqueConstraint("pipeline_run_id", "node"),
    Index("ix_step_runs_cache_key", "cache_key"),
)

# One row per fire time of a scheduled pipeline, claimed by the scheduler that inserted it: the
# unique (pipeline, fire_time) pair is what keeps two schedulers from starting one fire time
# twice. ``status``: started, skipped, finished or failed.
schedule_triggers = Table(
    "schedule_triggers",
    metadata,
    Column("id", Id, primary_key=True),
    Column("pipeline", String(KEY_LENGTH), nullable=False),
    Column("schedule", String(KEY_LENGTH), nullable=False),
    Column("fire_time", Millis, nullable=False),
    Column("claimed_at", Millis, nullable=False),
    Column("owner", String(KEY_LENGTH), nullable=False),
    Column("status", String(16), nullable=False),
    Column("pipeline_run_id", Id, nullable=True),
    Column("ended_at", Millis, nullable=True),
    Column("error", Text, nullable=True),
    UniqueConstraint("pipeline", "fire_time"),
)

# Who schedules a set of pipelines now: the owner holds the lease until ``expires_at`` and
# renews it while alive; anyone may take it once it has expired.
scheduler_leases = Table(
    "scheduler_leases",
    metadata,
    Column("name", String(KEY_LENGTH), primary_key=True),
    Column("owner", String(KEY_LENGTH), nullable=False),
    Column("acquired_at", Millis, nullable=False),
    Column("expires_at", Millis, nullable=False),
)

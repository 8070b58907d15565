"""Tables of experiment tracking. Migrations in tidal/store/migrations create them.

The key-value tables (params, tags, latest metrics, artifacts) are clustered on their primary
key in SQLite (WITHOUT ROWID): a lookup by (run_id, key) is then one B-tree descent instead
of two, which halves the cost of every filter term in a run search.
"""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    Float,
    ForeignKey,
    Index,
    Integer,
    String,
    Table,
    Text,
)

from tidal.store.schema import KEY_LENGTH, Id, Millis, RowId, new_metadata

metadata = new_metadata()


def _value_indexes(table: str) -> list[Index]:
    """Indexes that let a search find the runs whose param or tag equals a value.

    SQLite indexes (key, value). A PostgreSQL B-tree entry cannot exceed about 2.7 kB and a
    value may be longer, so there a hash index on the value (equality only, any length) does
    the same job.
    """
    return [
        Index(f"ix_{table}_key_value", "key", "value").ddl_if(dialect="sqlite"),
        Index(f"ix_{table}_value", "value", postgresql_using="hash")
        .ddl_if(dialect="postgresql"),
    ]

experiments = Table(
    "experiments",
    metadata,
    Column("id", Id, primary_key=True),
    Column("name", String(KEY_LENGTH), nullable=False, unique=True),
    Column("created_at", Millis, nullable=False),
    sqlite_with_rowid=False,
)

runs = Table(
    "runs",
    metadata,
    Column("id", Id, primary_key=True),
    Column("experiment_id", Id, ForeignKey("experiments.id"), nullable=False),
    Column("parent_id", Id, ForeignKey("runs.id"), nullable=True, index=True),
    Column("name", String(KEY_LENGTH), nullable=False),
    Column("status", String(16), nullable=False),
    Column("start_time", Millis, nullable=False),
    Column("end_time", Millis, nullable=True),
    Column("error", Text, nullable=True),
    Column("user", String(KEY_LENGTH), nullable=True),
    Column("host", String(KEY_LENGTH), nullable=True),
    Column("pid", Integer, nullable=True),
    Column("source", Text, nullable=True),
    Column("git_commit", String(64), nullable=True),
    Column("git_dirty", Boolean, nullable=True),
    Column("python_version", String(32), nullable=True),
    Column("packages_digest", String(80), nullable=True),
    Column("cpu_seconds", Float, nullable=True),
    Column("peak_rss_bytes", BigInteger, nullable=True),
    Column("gpu_seconds", Float, nullable=True),
    Column("cost", Float, nullable=True),
    # When the run's process last said it was alive (tidal.tracking.liveness); a "running" run
    # silent for longer than the run timeout is marked killed. The index finds those.
    Column("heartbeat", Millis, nullable=True),
    Index("ix_runs_experiment_id_start_time", "experiment_id", "start_time"),
    Index("ix_runs_status_heartbeat", "status", "heartbeat"),
)

params = Table(
    "params",
    metadata,
    Column("run_id", Id, ForeignKey("runs.id"), primary_key=True),
    Column("key", String(KEY_LENGTH), primary_key=True),
    Column("value", Text, nullable=False),
    *_value_indexes("params"),
    sqlite_with_rowid=False,
)

tags = Table(
    "tags",
    metadata,
    Column("run_id", Id, ForeignKey("runs.id"), primary_key=True),
    Column("key", String(KEY_LENGTH), primary_key=True),
    Column("value", Text, nullable=False),
    *_value_indexes("tags"),
    sqlite_with_rowid=False,
)

# Every point of every series; append-only. NaN is stored as is_nan with value 0 because
# SQLite turns a NaN REAL into NULL; +/-inf are stored as they are on both backends.
metrics = Table(
    "metrics",
    metadata,
    Column("id", RowId, primary_key=True, autoincrement=True),
    Column("run_id", Id, ForeignKey("runs.id"), nullable=False),
    Column("key", String(KEY_LENGTH), nullable=False),
    Column("step", BigInteger, nullable=False),
    Column("timestamp", Millis, nullable=False),
    Column("value", Float, nullable=False),
    Column("is_nan", Boolean, nullable=False),
    Index("ix_metrics_run_id_key_step", "run_id", "key", "step"),
)

# The newest point per (run, key): highest step, then latest timestamp. Search filters and
# orders on this table, so a query over thousands of runs never scans whole series.
latest_metrics = Table(
    "latest_metrics",
    metadata,
    Column("run_id", Id, ForeignKey("runs.id"), primary_key=True),
    Column("key", String(KEY_LENGTH), primary_key=True),
    Column("step", BigInteger, nullable=False),
    Column("timestamp", Millis, nullable=False),
    Column("value", Float, nullable=False),
    Column("is_nan", Boolean, nullable=False),
    Index("ix_latest_metrics_key_value", "key", "value"),
    sqlite_with_rowid=False,
)

artifacts = Table(
    "artifacts",
    metadata,
    Column("run_id", Id, ForeignKey("runs.id"), primary_key=True),
    Column("path", String(1024), primary_key=True),
    Column("digest", String(80), nullable=False, index=True),
    Column("size", BigInteger, nullable=False),
    Column("created_at", Millis, nullable=False),
    sqlite_with_rowid=False,
)

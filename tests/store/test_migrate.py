"""Schema migrations: applied on open, matching the domain tables, refusing newer schemas."""

from __future__ import annotations

import pytest
from sqlalchemy import inspect, text

from tidal.data.schema import metadata as data_metadata
from tidal.errors import SchemaVersionError
from tidal.features.schema import metadata as features_metadata
from tidal.loop.schema import metadata as loop_metadata
from tidal.models.schema import metadata as models_metadata
from tidal.monitoring.schema import metadata as monitoring_metadata
from tidal.pipelines.schema import metadata as pipelines_metadata
from tidal.serving.schema import metadata as serving_metadata
from tidal.store.db import Database
from tidal.store.migrate import HEAD_REVISION, MIGRATIONS_DIR, current_revision, ensure_schema
from tidal.store.workspace import Workspace
from tidal.tracking.schema import metadata as tracking_metadata

DOMAIN_METADATA = [tracking_metadata, data_metadata, features_metadata, models_metadata,
                   pipelines_metadata, serving_metadata, monitoring_metadata, loop_metadata]


def test_head_revision_constant_matches_the_migration_scripts():
    from alembic.config import Config
    from alembic.script import ScriptDirectory

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    assert ScriptDirectory.from_config(config).get_heads() == [HEAD_REVISION]


def test_migrated_schema_matches_the_domain_tables(workspace):
    """The migrations create exactly the tables the code declares, on both backends."""
    from alembic.autogenerate import compare_metadata
    from alembic.migration import MigrationContext
    from sqlalchemy import MetaData

    combined = MetaData(naming_convention=tracking_metadata.naming_convention)
    dialect = workspace.db.dialect
    for metadata in DOMAIN_METADATA:
        for table in metadata.tables.values():
            copy = table.to_metadata(combined)
            other_dialect = {index.name for index in table.indexes
                             if getattr(index, "_ddl_if", None) is not None
                             and index._ddl_if.dialect not in (None, dialect)}
            for index in list(copy.indexes):  # declared for the other dialect only
                if index.name in other_dialect:
                    copy.indexes.discard(index)
    with workspace.db.engine.connect() as conn:
        context = MigrationContext.configure(conn, opts={"compare_type": True})
        diff = [d for d in compare_metadata(context, combined)
                if not (d[0] == "remove_table" and d[1].name == "alembic_version")]
    assert diff == []


def test_opening_twice_is_a_no_op(workspace):
    with workspace.db.read() as conn:
        assert current_revision(conn) == HEAD_REVISION
    ensure_schema(workspace.db)
    with workspace.db.read() as conn:
        assert current_revision(conn) == HEAD_REVISION


def test_a_schema_from_a_newer_tidal_is_refused(workspace, backend):
    workspace.db.write(lambda conn: conn.execute(
        text("UPDATE alembic_version SET version_num = '9999_future'")))
    with pytest.raises(SchemaVersionError,
                       match="revision '9999_future', written by a newer Tidal.*pip install -U"):
        Workspace(workspace.settings)


def test_concurrent_first_opens_migrate_once(tmp_path):
    """Several processes opening a brand-new workspace at once all succeed."""
    import subprocess
    import sys

    url = f"sqlite:///{tmp_path / 'fresh.db'}"
    code = ("import sys; from tidal.store.db import Database; from tidal.store.migrate import "
            "ensure_schema; ensure_schema(Database(sys.argv[1])); print('ok')")
    procs = [subprocess.Popen([sys.executable, "-c", code, url], stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True) for _ in range(4)]
    for proc in procs:
        out, err = proc.communicate(timeout=120)
        assert proc.returncode == 0 and out.strip() == "ok", err
    db = Database(url)
    with db.read() as conn:
        assert current_revision(conn) == HEAD_REVISION
    db.close()


def _alembic(conn):
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    config.attributes["connection"] = conn
    return config


def test_0008_gives_existing_runs_a_heartbeat_and_downgrades(workspace):
    """Runs stored before heartbeats existed get one (their end, else their start), so a run
    left running by a process killed before the upgrade is found as killed afterwards."""
    from alembic import command

    import tidal

    workspace.db.write(lambda conn: command.downgrade(_alembic(conn), "0007"))
    columns = {c["name"] for c in inspect(workspace.db.engine).get_columns("runs")}
    assert "heartbeat" not in columns

    def seed(conn):
        conn.execute(text("INSERT INTO experiments (id, name, created_at) VALUES ('e', 'old', 1)"))
        for run_id, status, end in (("lost", "running", None), ("done", "finished", 5000)):
            conn.execute(text(
                "INSERT INTO runs (id, experiment_id, name, status, start_time, end_time) "
                "VALUES (:id, 'e', :id, :status, 1000, :end)"),
                {"id": run_id, "status": status, "end": end})

    workspace.db.write(seed)
    workspace.db.write(lambda conn: command.upgrade(_alembic(conn), "head"))
    with workspace.db.read() as conn:
        beats = dict(conn.execute(text("SELECT id, heartbeat FROM runs")).all())
    assert beats == {"lost": 1000, "done": 5000}
    lost = tidal.get_run("lost", workspace=workspace)
    assert lost.status == "killed" and lost.end_time.timestamp() == 1.0
    assert tidal.get_run("done", workspace=workspace).status == "finished"

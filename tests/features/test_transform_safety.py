"""Feature-view transforms are data: one read-only SELECT over the view's source, checked where
the view is defined, applied, rebuilt from the registry and run, and run on a connection that
can reach nothing but the view's own sources."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import duckdb
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from sqlalchemy import select, update

from tidal.errors import InvalidValueError
from tidal.features import Entity, Feature, FeatureStore, FeatureView, apply, offline, transform
from tidal.features.sandbox import connect
from tidal.features.schema import feature_definitions
from tidal.features.transform import UnsafeTransformError

BASE = datetime(2026, 1, 1, tzinfo=UTC)
user = Entity("user", "user_id")
SECRET = "correct-horse-battery-staple"


@pytest.fixture
def files(tmp_path: Path) -> dict[str, str]:
    """A view's source in its own folder; beside it, what no transform may reach: a secret, a
    CSV, another Parquet file, and where a hostile one would drop a .pth file."""
    (tmp_path / "data").mkdir()
    source = tmp_path / "data" / "events.parquet"
    pq.write_table(pa.Table.from_pylist([
        {"user_id": 1, "event_timestamp": BASE, "clicks": 3.0},
        {"user_id": 2, "event_timestamp": BASE, "clicks": 5.0}]), source)
    (tmp_path / "secret.txt").write_text(SECRET)
    (tmp_path / "secret.csv").write_text(f"user_id,leak\n1,{SECRET}\n")
    pq.write_table(pa.table({"user_id": [1], "leak": [SECRET]}), tmp_path / "other.parquet")
    return {"source": str(source), "secret": str(tmp_path / "secret.txt"),
            "csv": str(tmp_path / "secret.csv"), "parquet": str(tmp_path / "other.parquet"),
            "pth": str(tmp_path / "site-packages" / "evil.pth"), "db": str(tmp_path / "x.db"),
            "dir": str(tmp_path / "export")}


#: (transform, what the refusal names). {secret}, {csv}, {parquet}, {pth}, {db}, {dir}: paths
#: outside the source. Each is one thing a transform may not do; most parse as SQL.
HOSTILE = [
    # other statements, stacked or alone
    ("SELECT * FROM source; COPY (SELECT 'import os') TO '{pth}' (FORMAT csv)", "2 statements"),
    (("SELECT * FROM source) AS t; COPY (SELECT 'import os') TO '{pth}' (FORMAT csv, HEADER "
      "false); SELECT * FROM (SELECT * FROM source"), "does not parse"),  # closes the parenthesis
    ("COPY (SELECT 'import os') TO '{pth}' (FORMAT csv)", "COPY statement"),
    ("ATTACH '{db}' AS x", "ATTACH statement"),
    ("SELECT * FROM source; ATTACH ':memory:' AS m", "2 statements"),
    ("INSTALL httpfs", "LOAD statement"),
    ("LOAD httpfs", "LOAD statement"),
    ("SET enable_external_access = true", "SET statement"),
    ("SELECT * FROM source; SET allowed_directories = ['/']", "2 statements"),
    ("PRAGMA version", "PRAGMA statement"),
    ("CALL pragma_version()", "CALL statement"),
    ("EXPORT DATABASE '{dir}'", "EXPORT statement"),
    ("CREATE MACRO leak() AS 1", "CREATE statement"),
    ("CREATE TABLE copy AS SELECT * FROM source", "CREATE statement"),
    # a ';' hidden from a naive reader by comments and quotes
    ("SELECT * FROM source /* ; */ ; COPY (SELECT 1) TO '{pth}' -- ;", "2 statements"),
    ("SELECT *, ';' AS a, $$;$$ AS b FROM source WHERE 'x;' <> ';'; ATTACH '{db}'",
     "2 statements"),
    ("SELECT * FROM source --\n; COPY (SELECT 1) TO '{pth}'", "2 statements"),
    # files and the network through table functions
    ("SELECT *, (SELECT content FROM read_text('{secret}')) AS leak FROM source",
     "table function read_text()"),
    ("SELECT s.*, t.leak FROM source s JOIN read_csv('{csv}') t USING (user_id)",
     "table function read_csv()"),
    ("SELECT * FROM source, read_blob('{secret}')", "table function read_blob()"),
    ("SELECT * FROM source WHERE EXISTS (SELECT * FROM glob('/*'))", "table function glob()"),
    ("SELECT *, (SELECT count(*) FROM read_parquet('{parquet}')) AS n FROM source",
     "table function read_parquet()"),
    (("SELECT * FROM source UNION ALL BY NAME SELECT * FROM "
      "read_json('http://127.0.0.1:9/x.json')"), "table function read_json()"),
    ("SELECT * FROM read_parquet('s3://bucket/x.parquet')", "table function read_parquet()"),
    ("SELECT * FROM source, sniff_csv('{csv}')", "table function sniff_csv()"),
    ("SELECT * FROM source, parquet_metadata('{parquet}')", "table function parquet_metadata()"),
    ("SELECT * FROM source WHERE user_id IN (SELECT 1 FROM query('SELECT 1'))",
     "table function query()"),
    ("SELECT * FROM source, duckdb_settings()", "table function duckdb_settings()"),
    ("SELECT * FROM source, duckdb_secrets()", "table function duckdb_secrets()"),
    # files by name (DuckDB's replacement scans), other relations, the catalog
    ("SELECT * FROM '{parquet}'", "not a table name"),
    ("SELECT * FROM 'https://127.0.0.1:9/x.parquet'", "not a table name"),
    ("SELECT * FROM entity_rows", "table 'entity_rows'"),
    ("SELECT * FROM information_schema.tables, source", "schema or catalog"),
    ("SELECT * FROM system.main.duckdb_tables", "schema or catalog"),
    ("SELECT * FROM (WITH t AS (SELECT 1) SELECT * FROM t) AS a, t", "table 't'"),  # out of scope
    # a CTE or a subquery that smuggles a function in
    ("WITH x AS (SELECT * FROM read_text('{secret}')) SELECT source.* FROM source, x",
     "table function read_text()"),
    ("WITH source AS (SELECT * FROM read_csv('{csv}')) SELECT * FROM source",
     "table function read_csv()"),
    ("SELECT * FROM (SELECT * FROM (SELECT * FROM source, read_text('{secret}')))",
     "table function read_text()"),
    # settings, the environment and state
    ("SELECT *, current_setting('memory_limit') AS limit FROM source", "current_setting()"),
    ("SELECT *, getenv('HOME') AS home FROM source", "getenv()"),
    ("SELECT *, getvariable('x') AS v FROM source", "getvariable()"),
    ("SELECT *, list_transform([1], x -> current_setting('threads')) AS l FROM source",
     "current_setting()"),
    ("SELECT *, system.main.current_setting('threads') AS t FROM source", "current_setting()"),
    ("SELECT *, clicks.current_setting() AS t FROM source", "current_setting()"),
    ("SELECT *, nextval('s') AS n FROM source", "nextval()"),
    ("SELECT *, current_database() AS d FROM source", "current_database()"),
    ("SELECT *, pg_sleep(60) AS z FROM source", "pg_sleep()"),
    ("SELECT *, ? AS p FROM source", "parameter"),
    ("SELECT * FROM source AT (VERSION => 1)", "AT a version"),
    ("DESCRIBE source", "DESCRIBE, SUMMARIZE or SHOW"),
    ("SELECT * FROM (SUMMARIZE source)", "DESCRIBE, SUMMARIZE or SHOW"),
]


def hostile(template: str, files: dict[str, str]) -> str:
    return template.format(**files)


@pytest.mark.parametrize("template, reason", HOSTILE, ids=[h[1] + f"-{i}" for i, h in
                                                           enumerate(HOSTILE)])
def test_a_hostile_transform_is_refused_when_the_view_is_defined(files, template, reason):
    text = hostile(template, files)
    with pytest.raises(InvalidValueError) as caught:
        FeatureView("clicks", user, [Feature("clicks")], files["source"], transform=text)
    assert caught.value.field == "transform"
    assert "transform of feature view 'clicks'" in str(caught.value)
    assert reason in str(caught.value)
    if reason != "does not parse":
        assert isinstance(caught.value, UnsafeTransformError)
    assert not Path(files["pth"]).exists()


def test_the_corpus_is_large_and_every_entry_is_refused_by_the_checker_itself(files):
    assert len(HOSTILE) >= 25
    for template, _ in HOSTILE:
        with pytest.raises(InvalidValueError):
            transform.checked_transform(hostile(template, files), "v")


ORDINARY = [
    "SELECT * FROM source",
    "SELECT user_id, event_timestamp, clicks * 2 AS clicks FROM source;",
    "FROM source SELECT *",
    "SELECT * FROM source -- a comment that holds ) and ;\n",
    "/* leading ; comment */ SELECT * FROM source WHERE clicks > 0 /* ) */",
    ("WITH doubled AS (SELECT * REPLACE (clicks * 2 AS clicks) FROM source), kept AS "
     "(SELECT * FROM doubled WHERE clicks IS NOT NULL) SELECT * FROM kept"),
    ("SELECT user_id, event_timestamp, sum(clicks) OVER (PARTITION BY user_id ORDER BY "
     "event_timestamp ROWS BETWEEN 3 PRECEDING AND CURRENT ROW) AS clicks FROM source"),
    ("SELECT s.user_id, s.event_timestamp, s.clicks FROM source s WHERE s.user_id IN "
     "(SELECT user_id FROM source GROUP BY user_id HAVING count(*) >= 1)"),
    "SELECT * FROM source UNION ALL SELECT * FROM source WHERE false",
    ("SELECT user_id, event_timestamp, CASE WHEN lower('A;B') = 'a;b' THEN clicks END AS clicks "
     "FROM source"),
    ("SELECT user_id, event_timestamp, clicks + list_sum(list_transform([1, 2], lambda x: x * 0)) "
     "AS clicks FROM source"),
    "SELECT s.* FROM source s, range(1) r(i)",
    "SELECT user_id, event_timestamp, clicks FROM source, unnest([1]) AS u(one)",
    "SELECT * FROM source QUALIFY row_number() OVER (PARTITION BY user_id) = 1",
]


@pytest.mark.parametrize("text", ORDINARY)
def test_ordinary_transforms_are_accepted_and_run(files, text):
    view = FeatureView("clicks", user, [Feature("clicks")], files["source"], transform=text)
    entity_df = pd.DataFrame({"user_id": [1, 2], "event_timestamp": [BASE, BASE]})
    got = FeatureStore([view]).get_historical_features(entity_df, ["clicks:clicks"])
    assert got["clicks"].tolist() in ([3.0, 5.0], [6.0, 10.0])


def test_what_runs_is_the_checked_statement_not_the_text():
    # Comments and the trailing ';' are gone; a ')' in a comment can no longer close the
    # parenthesis the transform is embedded in.
    assert transform.checked_transform("SELECT * FROM source -- ) AS x;\n;", "v") == \
        'SELECT * FROM "source"'


# -- checked again where it is read back and where it runs ----------------------------------

@pytest.fixture
def registered(workspace, files, tmp_path):
    """A view with an ordinary transform, applied to the workspace's registry."""
    view = FeatureView("clicks", user, [Feature("clicks")], files["source"],
                       transform="SELECT * FROM source WHERE clicks > 0")
    apply([user, view])
    return workspace


def tamper(workspace, text: str) -> None:
    """Change the stored transform as anyone who can write the metadata database could."""
    with workspace.db.read() as conn:
        row = conn.execute(select(feature_definitions).where(
            feature_definitions.c.name == "clicks")).one()
    spec = json.loads(row.spec)
    spec["transform"] = text

    def write(conn):
        conn.execute(update(feature_definitions).where(feature_definitions.c.id == row.id)
                     .values(spec=json.dumps(spec)))

    workspace.db.write(write)


@pytest.mark.parametrize("template", [
    ("SELECT * FROM source) AS t; COPY (SELECT 'import os') TO '{pth}' (FORMAT csv, HEADER "
     "false); SELECT * FROM (SELECT * FROM source"),
    ("SELECT user_id, event_timestamp, clicks, (SELECT content FROM read_text('{secret}')) "
     "AS leak FROM source"),
])
def test_a_tampered_stored_transform_is_refused_when_read_back(registered, files, template,
                                                              tmp_path):
    Path(files["pth"]).parent.mkdir()
    tamper(registered, template.format(**files))
    with pytest.raises(InvalidValueError) as caught:
        store = FeatureStore.from_registry(online=str(tmp_path / "online.db"))
        store.materialize(BASE + timedelta(days=1))  # what ran the COPY before the check
        entity_df = pd.DataFrame({"user_id": [1], "event_timestamp": [BASE]})
        assert SECRET not in str(store.get_historical_features(entity_df, ["clicks:clicks"]))
    assert caught.value.field == "transform"
    assert "registered feature view 'clicks' (version 1)" in str(caught.value)
    assert not Path(files["pth"]).exists()


def test_a_view_changed_after_its_check_is_checked_again_where_it_runs(files):
    view = FeatureView("clicks", user, [Feature("clicks")], files["source"],
                       transform="SELECT * FROM source")
    object.__setattr__(view, "transform", f"SELECT *, (SELECT content FROM read_text("
                                          f"'{files['secret']}')) AS leak FROM source")
    entity_df = pd.DataFrame({"user_id": [1], "event_timestamp": [BASE]})
    with pytest.raises(UnsafeTransformError, match="read_text") as caught:
        FeatureStore([view]).get_historical_features(entity_df, ["clicks:clicks"])
    assert caught.value.field == "transform"


# -- the second wall: the connection reaches only the sources -------------------------------

def test_the_connection_reaches_only_what_it_was_opened_for(files, tmp_path):
    conn = connect([files["source"]])
    try:
        assert conn.execute(f"SELECT count(*) FROM read_parquet('{files['source']}')"
                            ).fetchall() == [(2,)]
        refused = [
            f"SELECT * FROM read_text('{files['secret']}')",
            f"SELECT * FROM read_csv('{files['csv']}')",
            f"SELECT * FROM '{files['parquet']}'",
            f"SELECT * FROM read_parquet('{files['source']}/../../other.parquet')",
            "SELECT * FROM glob('/*')",
            f"COPY (SELECT 'import os') TO '{files['pth']}' (FORMAT csv)",
            f"COPY (SELECT 1) TO '{tmp_path / 'data' / 'beside.csv'}' (FORMAT csv)",
            f"ATTACH '{files['db']}' AS x",
            "SELECT * FROM read_parquet('http://127.0.0.1:9/x.parquet')",
            "SET enable_external_access = true",
            "SET allowed_directories = ['/']",
            "SET lock_configuration = false",
            "SET autoload_known_extensions = true",
            "INSTALL httpfs",
            "LOAD httpfs",
        ]
        for sql in refused:
            with pytest.raises(duckdb.Error):
                conn.execute(sql).fetchall()
        frame = pd.DataFrame({"leak": [SECRET]})  # noqa: F841 - what a replacement scan finds
        with pytest.raises(duckdb.CatalogException):
            conn.execute("SELECT * FROM frame").fetchall()
    finally:
        conn.close()
    assert not Path(files["pth"]).exists()
    assert not (tmp_path / "x.db").exists()


@pytest.fixture
def unchecked(monkeypatch):
    """As if the check let everything through."""
    monkeypatch.setattr(transform, "checked_transform", lambda text, view: text)
    monkeypatch.setattr(offline, "checked_transform", lambda text, view: text)


def test_a_transform_that_got_past_the_check_still_reads_nothing_else(files, unchecked,
                                                                      tmp_path):
    entity_df = pd.DataFrame({"user_id": [1], "event_timestamp": [BASE]})
    Path(files["pth"]).parent.mkdir()
    for text in [
        f"SELECT *, (SELECT content FROM read_text('{files['secret']}')) AS leak FROM source",
        f"SELECT s.*, t.leak FROM source s JOIN read_csv('{files['csv']}') t USING (user_id)",
        f"SELECT s.*, t.leak FROM source s JOIN '{files['parquet']}' t USING (user_id)",
        ("SELECT * FROM source) AS t; COPY (SELECT 'import os') TO "
         f"'{files['pth']}' (FORMAT csv); SELECT * FROM (SELECT * FROM source"),
        ("SELECT * FROM source) AS t; SET enable_external_access = true; SELECT * FROM "
         "(SELECT * FROM source"),
    ]:
        view = FeatureView("clicks", user, [Feature("clicks")], files["source"],
                           transform=text)
        store = FeatureStore([view], online=str(tmp_path / "online.db"))
        with pytest.raises(InvalidValueError) as caught:
            store.get_historical_features(entity_df, ["clicks:clicks"])
        assert caught.value.field == "transform"
        assert SECRET not in str(caught.value)
        with pytest.raises(InvalidValueError):
            store.materialize(BASE + timedelta(days=1))
    assert not Path(files["pth"]).exists()


def test_entity_files_and_results_are_reached_and_nothing_beside_them(files, unchecked,
                                                                       tmp_path):
    # The bounded connection of a file-to-file join may read the entity file and write the
    # result, and still nothing else.
    entities = tmp_path / "entities.parquet"
    pq.write_table(pa.table({"user_id": [1, 2], "event_timestamp": pa.array(
        [BASE, BASE], pa.timestamp("us", "UTC"))}), entities)
    view = FeatureView("clicks", user, [Feature("clicks")], files["source"],
                       transform="SELECT * FROM source")
    out = FeatureStore([view]).get_historical_features(str(entities), ["clicks:clicks"],
                                                       to=tmp_path / "out.parquet")
    assert pq.read_table(out).column("clicks").to_pylist() == [3.0, 5.0]
    leaky = FeatureView("clicks", user, [Feature("clicks")], files["source"],
                        transform=f"SELECT *, (SELECT content FROM read_text("
                                  f"'{files['secret']}')) AS leak FROM source")
    with pytest.raises(InvalidValueError, match="Permission Error"):
        FeatureStore([leaky]).get_historical_features(str(entities), ["clicks:clicks"],
                                                      to=tmp_path / "out2.parquet")
    assert not (tmp_path / "out2.parquet").exists()


# -- sources on S3 ------------------------------------------------------------------------

def test_a_source_on_s3_is_read_through_the_locked_connection(s3_server, unchecked):
    import uuid

    import fsspec

    from tests.conftest import S3_BUCKET

    prefix = f"s3://{S3_BUCKET}/{uuid.uuid4().hex}"
    fs = fsspec.filesystem("s3")
    with fs.open(f"{prefix}/features/part-0.parquet", "wb") as out:
        pq.write_table(pa.Table.from_pylist([{"user_id": 1, "event_timestamp": BASE,
                                              "clicks": 3.0}]), out)
    with fs.open(f"{prefix}/private/secret.parquet", "wb") as out:
        pq.write_table(pa.table({"user_id": [1], "leak": [SECRET]}), out)
    entity_df = pd.DataFrame({"user_id": [1], "event_timestamp": [BASE + timedelta(hours=1)]})
    for source in (f"{prefix}/features/part-0.parquet", f"{prefix}/features/*.parquet"):
        view = FeatureView("clicks", user, [Feature("clicks")], source,
                           transform="SELECT * FROM source WHERE clicks > 0")
        got = FeatureStore([view]).get_historical_features(entity_df, ["clicks:clicks"])
        assert got["clicks"].tolist() == [3.0]
        leaky = FeatureView("clicks", user, [Feature("clicks")], source, transform=(
            f"SELECT s.*, t.leak FROM source s JOIN read_parquet('{prefix}/private/"
            "secret.parquet') t USING (user_id)"))
        with pytest.raises(InvalidValueError, match="Permission Error"):
            FeatureStore([leaky]).get_historical_features(entity_df, ["clicks:clicks"])


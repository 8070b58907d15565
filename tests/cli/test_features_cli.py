"""``tidal features`` against a real SQLite workspace: apply, list, show, materialize, errors."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pandas as pd
import pytest

import tidal
from tests.cli.conftest import Invoke, assert_clean_error, strict_json
from tidal.store.workspace import close_all

NOW = datetime.now(UTC).replace(microsecond=0)

FILE = """
from datetime import timedelta
from tidal.features import Entity, Feature, FeatureService, FeatureView

user = Entity("user", "user_id")
spend = FeatureView("spend", user, [Feature("total"){more}], "spend", ttl=timedelta(days=7))
checkout = FeatureService("checkout", [spend])
"""


@pytest.fixture
def project(ws_dir: Path, tmp_path: Path) -> tuple[Path, Path]:
    """A workspace holding dataset "spend", and a definitions file over it."""
    tidal.datasets.register("spend", pd.DataFrame({
        "user_id": [1, 1, 2], "event_timestamp": [NOW - timedelta(hours=h) for h in (3, 1, 2)],
        "total": [10.0, 30.0, 5.0], "orders": [1, 2, 1]}), workspace=tidal.workspace(ws_dir))
    close_all()
    path = tmp_path / "features.py"
    path.write_text(FILE.format(more=""))
    return ws_dir, path


def test_apply_shows_what_changed(cli: Invoke, project):
    ws, path = project
    first = cli("features", "apply", str(path), "-w", str(ws))
    assert first.exit_code == 0, first.output
    assert re.search(r"feature view\s+spend\s+added\s+1", first.stdout)
    assert "3 added" in first.stdout
    same = cli("features", "apply", str(path), "-w", str(ws))
    assert "3 unchanged" in same.stdout

    path.write_text(FILE.format(more=', Feature("orders", "int64")'))
    preview = strict_json(cli("features", "apply", str(path), "--dry-run", "--json",
                              "-w", str(ws)).stdout)
    assert preview["dry_run"] is True
    spend = next(c for c in preview["changes"] if c["name"] == "spend")
    assert spend == {"kind": "feature_view", "name": "spend", "action": "changed",
                     "version": 2, "details": ["+ feature orders (int64)"]}
    changed = cli("features", "apply", str(path), "-w", str(ws))
    assert "+ feature orders (int64)" in changed.stdout

    listed = strict_json(cli("features", "list", "--json", "-w", str(ws)).stdout)
    assert [(d["kind"], d["name"], d["version"]) for d in listed] == [
        ("entity", "user", 1), ("feature_view", "spend", 2), ("feature_service", "checkout", 2)]
    table = cli("features", "list", "-w", str(ws)).stdout
    assert "2 features of user from spend, ttl" in table
    shown = cli("features", "show", "spend", "-w", str(ws)).stdout
    assert "added: 1 features of user from spend" in shown
    assert "+ feature orders (int64)" in shown


def test_materialize_fills_the_online_store(cli: Invoke, project, tmp_path):
    ws, path = project
    cli("features", "apply", str(path), "-w", str(ws))
    online = str(tmp_path / "online.db")
    done = cli("features", "materialize", "--online", online, "-w", str(ws))
    assert done.exit_code == 0, done.output
    assert "spend: 2 entities written" in done.stdout
    again = strict_json(cli("features", "materialize", "--online", online, "--json",
                            "-w", str(ws)).stdout)
    assert again["rows"] == {"spend": 0}  # nothing new since the last run

    store = tidal.features.FeatureStore.from_registry(workspace=tidal.workspace(ws),
                                                      online=online)
    assert store.get_online_features([{"user_id": 1}, {"user_id": 2}],
                                     "checkout")["total"] == [30.0, 5.0]


def test_bad_input_is_one_clear_line(cli: Invoke, project, tmp_path):
    ws, path = project
    assert_clean_error(cli("features", "apply", str(tmp_path / "nope.py"), "-w", str(ws)), 2,
                       "does not exist")
    assert_clean_error(cli("features", "materialize", "-w", str(ws)), 2,
                       "no feature views are registered")
    cli("features", "apply", str(path), "-w", str(ws))
    assert_clean_error(cli("features", "materialize", "--end", "yesterday", "-w", str(ws)), 2,
                       "--end 'yesterday' is not an ISO 8601 time")
    assert_clean_error(cli("features", "materialize", "--view", "other", "-w", str(ws)), 2,
                       "unknown feature view(s) ['other']")
    assert_clean_error(cli("features", "show", "ghost", "-w", str(ws)), 1,
                       "no feature definition is named 'ghost'")
    assert_clean_error(cli("features", "list", "--kind", "table", "-w", str(ws)), 2,
                       "kind 'table' is not one of")


HOSTILE_FILE = """
from tidal.features import Entity, Feature, FeatureView

spend = FeatureView("spend", Entity("user", "user_id"), [Feature("total")], "spend",
                    transform={transform!r})
"""


def test_a_hostile_transform_is_refused_by_apply(cli: Invoke, project, tmp_path):
    ws, _ = project
    pth = tmp_path / "evil.pth"
    for transform, fragment in [
        (f"SELECT * FROM source; COPY (SELECT 'import os') TO '{pth}' (FORMAT csv)",
         "holds 2 statements"),
        (f"SELECT *, (SELECT content FROM read_text('{tmp_path}/secret')) AS s FROM source",
         "table function read_text()"),
    ]:
        path = tmp_path / "hostile.py"
        path.write_text(HOSTILE_FILE.format(transform=transform))
        assert_clean_error(cli("features", "apply", str(path), "-w", str(ws)), 2,
                           "transform of feature view 'spend' is refused", fragment)
    assert strict_json(cli("features", "list", "--json", "-w", str(ws)).stdout) == []
    assert not pth.exists()


def test_a_tampered_stored_transform_is_refused_by_materialize(cli: Invoke, project, tmp_path):
    import json

    from sqlalchemy import update

    from tidal.features.schema import feature_definitions

    ws, _ = project
    path = tmp_path / "features.py"
    path.write_text(HOSTILE_FILE.format(transform="SELECT * FROM source WHERE total > 0"))
    assert cli("features", "apply", str(path), "-w", str(ws)).exit_code == 0
    online = str(tmp_path / "online.db")
    assert "spend: 2 entities written" in cli("features", "materialize", "--online", online,
                                              "-w", str(ws)).stdout
    # Someone with write access to the metadata database rewrites the stored transform to
    # close the parenthesis it is embedded in and drop a .pth file on the next materialize.
    pth = tmp_path / "site-packages" / "evil.pth"
    pth.parent.mkdir()
    workspace = tidal.workspace(ws)
    with workspace.db.read() as conn:
        row = conn.execute(feature_definitions.select().where(
            feature_definitions.c.name == "spend")).one()
    spec = json.loads(row.spec)
    spec["transform"] = (f"SELECT * FROM source) AS t; COPY (SELECT 'import os') TO '{pth}' "
                         "(FORMAT csv); SELECT * FROM (SELECT * FROM source")
    workspace.db.write(lambda conn: conn.execute(update(feature_definitions).where(
        feature_definitions.c.id == row.id).values(spec=json.dumps(spec))))
    close_all()
    assert_clean_error(cli("features", "materialize", "--online", online, "--start",
                           "2000-01-01T00:00:00+00:00", "-w", str(ws)), 2,
                       "registered feature view 'spend' (version 1) cannot be used",
                       "transform of feature view 'spend' does not parse")
    assert not pth.exists()

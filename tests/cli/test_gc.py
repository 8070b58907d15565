"""``tidal gc`` on a workspace holding a blob of every kind: every referenced one survives,
an unreferenced one goes, a dry run removes nothing and lists the same, bad options exit 2."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from sklearn.linear_model import LogisticRegression

import tidal
from tests.cli.conftest import Invoke
from tests.pipelines import flows
from tidal.errors import InvalidValueError
from tidal.features import Entity, Feature, FeatureView
from tidal.pipelines import run_pipeline


def _every_kind_of_reference(tmp_path: Path) -> dict[str, object]:
    """Runs, datasets, models, pipeline outputs and feature definitions, each with blobs."""
    with tidal.start_run("gc") as run:
        run.log_text("kept", "notes.txt")
    frame = pd.DataFrame({"user_id": [1, 2], "event_timestamp": pd.to_datetime(
        ["2026-01-01", "2026-01-02"], utc=True), "total": [1.0, 2.0]})
    tidal.datasets.register("spend", frame)
    model = LogisticRegression().fit(np.array([[0.0], [1.0], [2.0], [3.0]]), [0, 0, 1, 1])
    tidal.models.register("clf", model, input_example=pd.DataFrame({"x": [0.5]}), run=False)
    pipeline = run_pipeline(flows.training, {"rows": 60})
    definitions = tmp_path / "features.py"
    definitions.write_text("# the definitions file, stored with the versions it produced\n")
    user = Entity("user", "user_id")
    tidal.features.apply([user, FeatureView("spend", user, [Feature("total")], "spend")],
                         origin=definitions)
    return {"run": run.id, "pipeline": pipeline}


def _check_every_kind_reads_back(refs: dict[str, object]) -> None:
    assert tidal.get_run(refs["run"]).read_artifact("notes.txt") == b"kept"
    assert tidal.datasets.get("spend").to_pandas()["total"].tolist() == [1.0, 2.0]
    assert tidal.models.load("models:/clf/1").predict(pd.DataFrame({"x": [3.0]})).tolist() == [1]
    pipeline = refs["pipeline"]
    assert set(pipeline.output("evaluate")) == {"accuracy", "rows"}  # JSON blob
    assert pipeline.output("describe").shape == (3,)  # NumPy blob
    assert pipeline.output("train").predict(np.zeros((1, 3))).shape == (1,)  # model files


def _gc(cli: Invoke, *options: str) -> dict:
    result = cli("gc", "--json", *options)
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def test_gc_keeps_every_referenced_blob_and_removes_the_rest(cli: Invoke, workspace,
                                                             tmp_path: Path):
    refs = _every_kind_of_reference(tmp_path)
    orphan = workspace.artifacts.put_bytes(b"logged by a writer killed before recording it")
    temporary = []
    if workspace.artifacts.is_local:
        root = Path(workspace.settings.artifacts)
        for blob in (root / "blobs").rglob("*"):  # every blob two hours old
            os.utime(blob, (time.time() - 7200, time.time() - 7200))
        (root / "tmp").mkdir(exist_ok=True)
        old, fresh = root / "tmp" / "killed-writer.part", root / "tmp" / "writing-now.part"
        old.write_bytes(b"half a blob")
        os.utime(old, (time.time() - 7200, time.time() - 7200))
        fresh.write_bytes(b"a blob being written")
        temporary = [("temporary", "killed-writer.part")]
        grace = "1h"
    else:  # object stores set their own times (to the second) and have no temporary files
        time.sleep(2.5)
        grace = "1s"

    dry = _gc(cli, "--dry-run", "--grace", grace)
    assert dry["dry_run"] is True
    expected = sorted([("blob", orphan.digest), *temporary])
    assert sorted((i["kind"], i["name"]) for i in dry["removed"]) == expected
    assert workspace.artifacts.exists(orphan.digest)  # nothing removed

    done = _gc(cli, "--grace", grace)
    assert done["removed"] == dry["removed"] and done["bytes_freed"] == dry["bytes_freed"] > 0
    assert done["kept_referenced"] > 5
    assert not workspace.artifacts.exists(orphan.digest)
    if temporary:
        assert not old.exists() and fresh.read_bytes() == b"a blob being written"
    _check_every_kind_reads_back(refs)
    assert _gc(cli, "--grace", grace)["removed"] == []  # every blob left is referenced


def test_gc_table_says_what_it_removed(cli: Invoke, workspace):
    workspace.artifacts.put_bytes(b"orphan")
    time.sleep(2.5)
    result = cli("gc", "--dry-run", "--grace", "1s")
    assert result.exit_code == 0, result.output
    assert "dry run: nothing removed" in result.stdout
    assert "would remove 1 unreferenced blob and 0 temporary files, 6 B" in result.stdout
    assert cli("gc", "--grace", "1h").stdout.count("removed 0 unreferenced blobs") == 1


@pytest.mark.parametrize("grace, problem", [("soon", "is not a duration"),
                                            ("0s", "must be longer than zero"),
                                            ("-5m", "is not a duration")])
def test_a_bad_grace_is_a_usage_error_naming_the_option(cli: Invoke, ws_dir: Path, grace,
                                                        problem):
    result = cli("-w", str(ws_dir), "gc", "--grace", grace)
    assert result.exit_code == 2
    assert "--grace" in result.stderr and problem in result.stderr
    assert not ws_dir.exists()  # refused before anything was opened


def test_the_python_function_refuses_bad_arguments(ws_dir: Path):
    ws = tidal.workspace(ws_dir)
    with pytest.raises(InvalidValueError, match="grace 'later' is not a duration") as caught:
        tidal.gc(grace="later", workspace=ws)
    assert caught.value.field == "grace"
    with pytest.raises(InvalidValueError, match="dry_run must be True or False"):
        tidal.gc(dry_run="yes", workspace=ws)

"""``tidal pipeline``: run with parameters, list, show the graph with states and cache hits,
resume, and bad input answered with an error line and exit code 2."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import update

from tests.cli.conftest import Invoke
from tests.planted import on_import_path, plant
from tidal.pipelines.schema import pipeline_runs
from tidal.store.workspace import open_workspace

TARGET = "tests.pipelines.flows:training"

#: What a module planted for a rewritten target holds: a real pipeline.
PLANTED_FLOW = """
import tidal


@tidal.step
def anything() -> int:
    return 1


@tidal.pipeline
def flow():
    anything()
"""


@pytest.fixture
def w(tmp_path: Path) -> list[str]:
    return ["-w", str(tmp_path / "ws")]


@pytest.fixture
def lib(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A folder on the import path, where a planted module can be found."""
    with on_import_path(tmp_path / "lib", monkeypatch) as folder:
        yield folder


def rewrite(tmp_path: Path, run_id: str, **values: Any) -> None:
    """Change a run's row as someone with write access to the metadata store could."""
    ws = open_workspace(tmp_path / "ws")
    ws.db.write(lambda conn: conn.execute(update(pipeline_runs).where(
        pipeline_runs.c.id == run_id).values(**values)))


def test_run_twice_hits_the_cache_then_list_and_show(cli: Invoke, w: list[str]):
    first = cli(*w, "pipeline", "run", TARGET, "-p", "rows=80", "-x", "inline")
    assert first.exit_code == 0, first.output
    assert "finished, 5 steps, 0 from cache" in first.stdout
    second = cli(*w, "pipeline", "run", TARGET, "-p", "rows=80", "-x", "inline", "--json")
    data = json.loads(second.stdout)
    assert {s["status"] for s in data["steps"].values()} == {"cached"}
    runs = json.loads(cli(*w, "pipeline", "list", "--json").stdout)
    assert [r["id"] for r in runs] == [data["id"], runs[1]["id"]]
    assert runs[0]["params"] == {"rows": 80, "c": 1.0}
    shown = cli(*w, "pipeline", "show", data["id"])
    assert shown.exit_code == 0, shown.output
    assert "cached (cache hit)" in shown.stdout and "load" in shown.stdout
    assert "split" in shown.stdout.split("train", 1)[1]  # train runs after split


def test_resume_of_a_failed_run(cli: Invoke, w: list[str]):
    failed = cli(*w, "pipeline", "run", "tests.pipelines.flows:partly_failing", "-x", "inline",
                 "--json")
    assert failed.exit_code == 1 and "fail_always" in failed.stderr
    run_id = json.loads(cli(*w, "pipeline", "list", "--json").stdout)[0]["id"]
    again = cli(*w, "pipeline", "resume", run_id, "--json")
    assert again.exit_code == 1 and "boom" in again.stderr  # the step still fails


@pytest.mark.parametrize("as_file", [False, True])
def test_show_never_imports_the_stored_target(cli: Invoke, w: list[str], tmp_path: Path,
                                              lib: Path, as_file: bool):
    ran = json.loads(cli(*w, "pipeline", "run", TARGET, "-p", "rows=80", "-x", "inline",
                         "--json").stdout)
    marker = tmp_path / "pwned"
    name = plant(lib, marker, PLANTED_FLOW)
    rewrite(tmp_path, ran["id"], target=f"{lib / name}.py:flow" if as_file else f"{name}:flow")
    shown = cli(*w, "pipeline", "show", ran["id"])
    assert shown.exit_code == 0, shown.output
    assert "load" in shown.stdout and "split" in shown.stdout.split("train", 1)[1]
    data = json.loads(cli(*w, "pipeline", "show", ran["id"], "--json").stdout)
    assert [node for node, _ in data["graph"]] == list(data["steps"])
    assert not marker.exists()


def test_show_of_a_run_recorded_without_its_graph_lists_its_steps(cli: Invoke, w: list[str],
                                                                  tmp_path: Path):
    ran = json.loads(cli(*w, "pipeline", "run", TARGET, "-p", "rows=80", "-x", "inline",
                         "--json").stdout)
    rewrite(tmp_path, ran["id"], graph=None)
    shown = cli(*w, "pipeline", "show", ran["id"])
    assert shown.exit_code == 0, shown.output
    assert all(node in shown.stdout for node in ran["steps"])


def test_resume_refuses_a_rewritten_target_and_says_how_to_trust(cli: Invoke, w: list[str],
                                                                 tmp_path: Path, lib: Path):
    cli(*w, "pipeline", "run", "tests.pipelines.flows:partly_failing", "-x", "inline")
    run_id = json.loads(cli(*w, "pipeline", "list", "--json").stdout)[0]["id"]
    marker = tmp_path / "pwned"
    name = plant(lib, marker, PLANTED_FLOW)
    rewrite(tmp_path, run_id, target=f"{name}:flow")
    refused = cli(*w, "pipeline", "resume", run_id)
    assert refused.exit_code == 1
    assert refused.stderr.startswith("error: ") and "--trust-code" in refused.stderr
    assert "is not the code recorded" in refused.stderr
    assert not marker.exists()


def test_resume_trust_code_runs_code_that_changed(cli: Invoke, w: list[str], tmp_path: Path):
    cli(*w, "pipeline", "run", "tests.pipelines.flows:partly_failing", "-x", "inline")
    run_id = json.loads(cli(*w, "pipeline", "list", "--json").stdout)[0]["id"]
    rewrite(tmp_path, run_id, code_digest="blake2b:" + "0" * 64)  # as if the code had changed
    refused = cli(*w, "pipeline", "resume", run_id, "--json")
    assert refused.exit_code == 1 and "changed since" in refused.stderr
    trusted = cli(*w, "pipeline", "resume", run_id, "--trust-code", "--json")
    assert trusted.exit_code == 1 and "boom" in trusted.stderr  # it ran: the step still fails


@pytest.mark.parametrize(("args", "fragment"), [
    (("run", TARGET, "-p", "row=3"), "no parameter 'row'"),
    (("run", TARGET, "-p", "rows"), "is not KEY=VALUE"),
    (("run", "tests.pipelines.flows:nothing"), "is not a @tidal.pipeline"),
    (("run", "no_such_module:flow"), "cannot import"),
    (("run", TARGET, "-x", "cluster"), "executor 'cluster'"),
    (("run", "tests.pipelines.flows:cyclic"), "has a cycle"),
])
def test_bad_input_exits_2_with_the_problem(cli: Invoke, w: list[str], args, fragment):
    result = cli(*w, "pipeline", *args)
    assert result.exit_code == 2, result.output
    assert result.stderr.startswith("error: ") and fragment in result.stderr


def test_unknown_run(cli: Invoke, w: list[str]):
    result = cli(*w, "pipeline", "show", "0" * 32)
    assert result.exit_code == 1 and "no pipeline run" in result.stderr

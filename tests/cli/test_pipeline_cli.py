"""``tidal pipeline``: run with parameters, list, show the graph with states and cache hits,
resume, and bad input answered with an error line and exit code 2."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.cli.conftest import Invoke

TARGET = "tests.pipelines.flows:training"


@pytest.fixture
def w(tmp_path: Path) -> list[str]:
    return ["-w", str(tmp_path / "ws")]


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

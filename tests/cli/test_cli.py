"""The tidal command line against a real SQLite workspace: listings, show, compare, errors."""

from __future__ import annotations

import math
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

import tidal
from tests.cli.conftest import Invoke, Populated, assert_clean_error, strict_json
from tidal.cli.render import to_jsonable

# -- the root and help ------------------------------------------------------------------------

def test_help_lists_the_command_groups_and_opens_no_workspace(cli: Invoke, tmp_path: Path):
    result = cli("--help")
    assert result.exit_code == 0
    for command in ("experiments", "runs", "demo", "--workspace"):
        assert command in result.stdout
    result = cli("runs", "--help")
    assert result.exit_code == 0
    for command in ("list", "show", "compare"):
        assert command in result.stdout
    assert not (tmp_path / ".tidal").exists()


def test_help_starts_without_pandas_sqlalchemy_or_sklearn(tmp_path: Path):
    code = (
        "import sys\n"
        "from tidal.cli.main import run\n"
        "for argv in (['tidal', '--help'], ['tidal', 'runs', 'list', '--help']):\n"
        "    sys.argv = argv\n"
        "    try:\n"
        "        run()\n"
        "    except SystemExit as exit:\n"
        "        assert exit.code in (0, None), exit.code\n"
        "heavy = ('pandas', 'numpy', 'sqlalchemy', 'sklearn', 'tidal.tracking', 'tidal.store')\n"
        "sys.stderr.write(repr(sorted(m for m in heavy if m in sys.modules)))\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          check=False, cwd=tmp_path, timeout=60)
    assert done.returncode == 0, done.stderr
    assert "Usage: tidal" in done.stdout
    assert done.stderr.strip() == "[]"
    assert not (tmp_path / ".tidal").exists()


def test_version(cli: Invoke):
    result = cli("--version")
    assert result.exit_code == 0
    assert result.stdout.strip() == f"tidal {tidal.__version__}"


def test_default_workspace_comes_from_tidal_home(cli: Invoke, populated: Populated,
                                                  monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("TIDAL_HOME", str(populated.path))
    result = cli("experiments", "list", "--json")
    assert result.exit_code == 0, result.output
    assert {e["name"] for e in strict_json(result.stdout)} == {"alpha", "beta", "gamma"}


def test_workspace_option_works_before_and_after_the_command(cli: Invoke, populated: Populated):
    before = cli("-w", str(populated.path), "runs", "list", "--json")
    after = cli("runs", "list", "--json", "-w", str(populated.path))
    assert before.exit_code == after.exit_code == 0
    assert [r["id"] for r in strict_json(before.stdout)] == \
        [r["id"] for r in strict_json(after.stdout)]
    assert len(strict_json(before.stdout)) == len(populated.all_ids)


# -- experiments ------------------------------------------------------------------------------

def test_experiments_list_json(cli: Invoke, populated: Populated):
    result = cli("-w", str(populated.path), "experiments", "list", "--json")
    assert result.exit_code == 0, result.output
    found = {e["name"]: e for e in strict_json(result.stdout)}
    assert set(found) == {"alpha", "beta", "gamma"}
    assert [found[n]["run_count"] for n in ("alpha", "beta", "gamma")] == [3, 1, 4]
    for experiment in found.values():
        assert len(experiment["id"]) == 32
        assert experiment["created_at"].endswith("+00:00")
        assert experiment["last_run_at"] >= experiment["created_at"]  # ISO 8601 sorts


def test_experiments_list_table(cli: Invoke, populated: Populated):
    result = cli("-w", str(populated.path), "experiments", "list")
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    for name, count in (("alpha", "3"), ("beta", "1"), ("gamma", "4")):
        row = next(line for line in lines if line.split() and line.split()[0] == name)
        assert row.split()[1] == count
    assert "3 experiments" in result.stdout


def test_experiments_list_on_an_empty_workspace(cli: Invoke, ws_dir: Path):
    result = cli("-w", str(ws_dir), "experiments", "list")
    assert result.exit_code == 0
    assert "No experiments yet" in result.stdout
    assert cli("-w", str(ws_dir), "experiments", "list", "--json").stdout.strip() == "[]"


# -- runs list --------------------------------------------------------------------------------

def _list(cli: Invoke, populated: Populated, *args: str) -> list[dict]:
    result = cli("-w", str(populated.path), "runs", "list", "--json", *args)
    assert result.exit_code == 0, result.output
    return strict_json(result.stdout)


def test_runs_list_json_fields(cli: Invoke, populated: Populated):
    runs = _list(cli, populated, "-e", "alpha")
    assert [r["id"] for r in runs] == populated.alpha[::-1]  # newest first
    newest = runs[0]
    assert newest["name"] == "alpha-2"
    assert newest["experiment"] == "alpha"
    assert newest["status"] == "finished"
    assert newest["parent_id"] is None
    assert newest["params"] == {"model": "lgbm", "lr": "0.01"}
    assert newest["tags"] == {"team": "recs"}
    assert newest["metrics"] == {"acc": 0.85, "loss": pytest.approx(0.40)}
    assert newest["start_time"].endswith("+00:00") and newest["end_time"] >= newest["start_time"]
    assert newest["duration_seconds"] >= 0
    assert newest["cost"] is not None


def test_runs_list_filter_order_and_limit(cli: Invoke, populated: Populated):
    runs = _list(cli, populated, "-f", "params.model = 'lgbm' and metrics.acc > 0.8",
                 "-o", "metrics.acc DESC")
    assert [r["name"] for r in runs] == ["alpha-1", "alpha-2"]
    runs = _list(cli, populated, "-e", "alpha", "-o", "metrics.loss", "-n", "2")
    assert [r["name"] for r in runs] == ["alpha-1", "alpha-2"]
    runs = _list(cli, populated, "--order-by", "metrics.acc ASC", "--limit", "1")
    assert [r["name"] for r in runs] == ["depth-3"]  # 0.63; runs without acc sort last
    runs = _list(cli, populated, "-f", "status = 'failed'")
    assert [r["id"] for r in runs] == [populated.failed]


def test_runs_list_several_experiments(cli: Invoke, populated: Populated):
    runs = _list(cli, populated, "-e", "alpha", "-e", "beta")
    assert {r["experiment"] for r in runs} == {"alpha", "beta"}
    assert len(runs) == 4


def test_runs_list_json_keeps_nan_out_of_the_output(cli: Invoke, populated: Populated):
    [beta] = _list(cli, populated, "-e", "beta")  # rmse was logged as NaN
    assert beta["metrics"] == {"acc": 0.7}


def test_runs_list_shows_children_with_their_parent(cli: Invoke, populated: Populated):
    runs = {r["id"]: r for r in _list(cli, populated, "-e", "gamma")}
    assert {runs[c]["parent_id"] for c in populated.children} == {populated.parent}


def test_runs_list_table(cli: Invoke, populated: Populated):
    result = cli("-w", str(populated.path), "runs", "list", "-e", "alpha", "-o", "metrics.acc")
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    header = lines[0].split()
    assert header[:4] == ["Name", "Run", "ID", "Status"]
    assert header.index("acc") < header.index("loss")  # the order-by metric comes first
    rows = [line.split() for line in lines if line.split() and line.split()[0].startswith("alpha")]
    assert [row[0] for row in rows] == ["alpha-0", "alpha-2", "alpha-1"]
    assert [row[1] for row in rows] == [populated.alpha[0], populated.alpha[2], populated.alpha[1]]
    assert all(row[2] == "finished" for row in rows)
    assert "3 runs" in result.stdout


def test_runs_list_table_keeps_to_a_narrow_terminal(cli: Invoke, populated: Populated):
    result = cli("-w", str(populated.path), "runs", "list", env={"COLUMNS": "80"})
    assert result.exit_code == 0
    assert max(len(line.rstrip()) for line in result.stdout.splitlines()) <= 80
    for run_id in populated.all_ids:  # ids are never cut, so they can be copied
        assert run_id in result.stdout


def test_runs_list_says_when_nothing_matches(cli: Invoke, populated: Populated):
    result = cli("-w", str(populated.path), "runs", "list", "-f", "metrics.acc > 5")
    assert result.exit_code == 0
    assert "No runs match" in result.stdout
    assert _list(cli, populated, "-f", "metrics.acc > 5") == []


# -- runs show --------------------------------------------------------------------------------

def test_runs_show_table(cli: Invoke, populated: Populated):
    run_id = populated.alpha[1]
    result = cli("-w", str(populated.path), "runs", "show", run_id)
    assert result.exit_code == 0, result.output
    out = result.stdout
    for fragment in (run_id, "alpha-1", "alpha", "finished", "Params (2)", "lgbm", "0.05",
                     "Metrics (2", "acc", "0.9", "loss", "Tags (1)", "recs", "Artifacts (1)",
                     "config.json", "Environment", "python", "Usage and cost", "cost",
                     "Children (0)"):
        assert fragment in out, fragment
    stored = tidal.get_run(run_id, workspace=tidal.workspace(populated.path))
    assert stored.python_version in out
    assert stored.host in out


def test_runs_show_json_round_trips(cli: Invoke, populated: Populated):
    run_id = populated.alpha[0]
    result = cli("-w", str(populated.path), "runs", "show", run_id, "--json")
    assert result.exit_code == 0, result.output
    shown = strict_json(result.stdout)
    stored = tidal.get_run(run_id, workspace=tidal.workspace(populated.path))
    expected = to_jsonable(stored.to_dict())
    for key, value in expected.items():
        assert shown[key] == value, key
    assert shown["params"] == {"model": "rf", "lr": "0.1"}
    assert shown["metrics"]["acc"] == 0.8
    assert shown["duration_seconds"] == pytest.approx(stored.duration_seconds)
    [artifact] = shown["artifacts"]
    assert artifact["path"] == "config.json"
    assert artifact["digest"].startswith("blake2b:") and artifact["size"] > 0


def test_runs_show_nan_metric_is_null_in_json(cli: Invoke, populated: Populated):
    result = cli("-w", str(populated.path), "runs", "show", populated.beta, "--json")
    shown = strict_json(result.stdout)
    assert shown["metrics"] == {"acc": 0.7, "rmse": None}
    table = cli("-w", str(populated.path), "runs", "show", populated.beta).stdout
    assert "nan" in table


def test_runs_show_parent_lists_children(cli: Invoke, populated: Populated):
    result = cli("-w", str(populated.path), "runs", "show", populated.parent)
    assert result.exit_code == 0
    assert "Children (2)" in result.stdout
    for child, name in zip(populated.children, ("depth-3", "depth-6"), strict=True):
        row = next(line for line in result.stdout.splitlines() if child in line)
        assert name in row and "finished" in row
    shown = strict_json(cli("-w", str(populated.path), "runs", "show", populated.parent,
                             "--json").stdout)
    assert shown["children"] == populated.children


def test_runs_show_failed_run_shows_its_error(cli: Invoke, populated: Populated):
    result = cli("-w", str(populated.path), "runs", "show", populated.failed)
    assert result.exit_code == 0
    assert "failed" in result.stdout
    assert "RuntimeError: the data was bad" in result.stdout


# -- runs compare -----------------------------------------------------------------------------

def test_runs_compare_json(cli: Invoke, populated: Populated):
    ids = populated.alpha
    result = cli("-w", str(populated.path), "runs", "compare", *ids, "--json")
    assert result.exit_code == 0, result.output
    data = strict_json(result.stdout)
    assert [r["id"] for r in data["runs"]] == ids
    assert [r["name"] for r in data["runs"]] == ["alpha-0", "alpha-1", "alpha-2"]
    params = {p["key"]: p for p in data["params"]}
    assert params["model"]["values"] == dict(zip(ids, ["rf", "lgbm", "lgbm"], strict=True))
    assert params["model"]["differs"] and params["lr"]["differs"]
    metrics = {m["key"]: m for m in data["metrics"]}
    assert metrics["acc"]["goal"] == "max" and metrics["acc"]["best"] == [ids[1]]
    assert metrics["loss"]["goal"] == "min" and metrics["loss"]["best"] == [ids[1]]
    assert metrics["acc"]["values"] == dict(zip(ids, [0.8, 0.9, 0.85], strict=True))


def test_runs_compare_marks_missing_values_and_equal_params(cli: Invoke, populated: Populated):
    data = strict_json(cli("-w", str(populated.path), "runs", "compare", populated.alpha[0],
                            populated.beta, "--json").stdout)
    params = {p["key"]: p for p in data["params"]}
    assert params["lr"]["values"] == {populated.alpha[0]: "0.1", populated.beta: None}
    assert params["lr"]["differs"]
    metrics = {m["key"]: m for m in data["metrics"]}
    assert metrics["rmse"]["values"][populated.beta] is None  # NaN
    assert metrics["rmse"]["best"] == []  # nothing to choose between
    same = strict_json(cli("-w", str(populated.path), "runs", "compare",
                            *populated.children, "--json").stdout)
    assert {p["key"]: p["differs"] for p in same["params"]} == {"depth": True}


def test_runs_compare_table_highlights_differences_and_best_values(cli: Invoke,
                                                                  populated: Populated):
    ids = populated.alpha
    plain = cli("-w", str(populated.path), "runs", "compare", *ids)
    assert plain.exit_code == 0, plain.output
    for fragment in ("alpha-0", "alpha-1", "alpha-2", ids[0][:8], "model", "lgbm", "acc ↑",
                     "loss ↓", "2 of 2 params differ"):
        assert fragment in plain.stdout, fragment
    colour = cli("-w", str(populated.path), "runs", "compare", *ids,
                 env={"NO_COLOR": None, "FORCE_COLOR": "1", "TERM": "xterm-256color"})
    assert colour.exit_code == 0
    acc_row = next(line for line in colour.stdout.splitlines() if "acc" in line)
    # the best accuracy in bold green, and only it
    assert re.findall(r"\x1b\[1;32m\s*([0-9.]+)\x1b\[0m", acc_row) == ["0.9"]
    model_row = next(line for line in colour.stdout.splitlines() if "model" in line)
    assert re.findall(r"\x1b\[1;33m\s*(\w+)\x1b\[0m", model_row) == ["rf", "lgbm", "lgbm"]


def test_runs_compare_needs_two_distinct_runs(cli: Invoke, populated: Populated):
    one = cli("-w", str(populated.path), "runs", "compare", populated.alpha[0])
    assert one.exit_code == 2
    assert "at least two run ids" in one.stderr
    twice = cli("-w", str(populated.path), "runs", "compare", populated.alpha[0],
                populated.alpha[0])
    assert twice.exit_code == 2
    assert "more than once" in twice.stderr


def test_runs_compare_unknown_run(cli: Invoke, populated: Populated):
    result = cli("-w", str(populated.path), "runs", "compare", populated.alpha[0], "f" * 32)
    assert_clean_error(result, 1, f"no run with id '{'f' * 32}'")


# -- bad input --------------------------------------------------------------------------------

def test_unknown_run_id(cli: Invoke, populated: Populated):
    result = cli("-w", str(populated.path), "runs", "show", "0123456789abcdef")
    assert_clean_error(result, 1, "no run with id '0123456789abcdef'")
    assert result.stderr.count("\n") == 1  # one line
    result = cli("-w", str(populated.path), "runs", "show", "0123456789abcdef", "--json")
    assert_clean_error(result, 1, "no run with id")


@pytest.mark.parametrize("expression, bad_token", [
    ("metrics.acc >> 0.5", "> 0.5"),
    ("params.model = 'rf' and", ""),
    ("metrics.acc > 0.5 params.model = 'rf'", "params.model"),
    ("bogus.acc > 1", "bogus.acc"),
])
def test_malformed_filter_points_at_the_bad_token(cli: Invoke, populated: Populated,
                                                  expression: str, bad_token: str):
    result = cli("-w", str(populated.path), "runs", "list", "-f", expression)
    assert_clean_error(result, 2)
    lines = result.stderr.splitlines()
    assert len(lines) == 3
    assert lines[1].strip() == expression
    caret = lines[2].index("^")
    indent = lines[1].index(expression)
    assert expression[caret - indent:].startswith(bad_token)


def test_malformed_order_by(cli: Invoke, populated: Populated):
    result = cli("-w", str(populated.path), "runs", "list", "-o", "metrics.acc sideways")
    assert_clean_error(result, 2, "expected ASC, DESC")


def test_unknown_experiment(cli: Invoke, populated: Populated):
    result = cli("-w", str(populated.path), "runs", "list", "-e", "nope")
    assert_clean_error(result, 1, "no experiment named 'nope'", "alpha")


@pytest.mark.parametrize("limit", ["-1", "0", "ten"])
def test_bad_limit_is_a_usage_error(cli: Invoke, populated: Populated, limit: str):
    result = cli("-w", str(populated.path), "runs", "list", "--limit", limit)
    assert result.exit_code == 2
    assert "--limit" in result.stderr
    assert "Traceback" not in result.stderr


def test_limit_beyond_what_the_store_allows(cli: Invoke, populated: Populated):
    result = cli("-w", str(populated.path), "runs", "list", "-n", str(10**9))
    assert_clean_error(result, 2, "limit must be an integer")


def test_bad_setting_in_tidal_toml(cli: Invoke, tmp_path: Path):
    (tmp_path / "tidal.toml").write_text("colour = 'blue'\n")
    result = cli("experiments", "list")
    assert_clean_error(result, 2, "unknown setting", "colour")


def test_unknown_command_is_a_usage_error(cli: Invoke):
    result = cli("rusn", "list")
    assert result.exit_code == 2
    assert "No such command" in result.stderr


def test_entry_point_runs_as_a_script(populated: Populated):
    """The installed ``tidal`` script (or ``python -m tidal.cli.main``) in a real process."""
    env = {**os.environ, "COLUMNS": "200"}
    env.pop("TIDAL_HOME", None)
    done = subprocess.run([sys.executable, "-m", "tidal.cli.main", "-w", str(populated.path),
                           "runs", "show", "nope"], capture_output=True, text=True, env=env,
                          check=False, timeout=60)
    assert done.returncode == 1
    assert done.stderr.startswith("error: no run with id 'nope'")
    assert "Traceback" not in done.stderr
    done = subprocess.run([sys.executable, "-m", "tidal.cli.main", "-w", str(populated.path),
                           "runs", "list", "-e", "alpha", "--json"], capture_output=True,
                          text=True, env=env, check=False, timeout=60)
    assert done.returncode == 0, done.stderr
    assert sorted(r["id"] for r in strict_json(done.stdout)) == sorted(populated.alpha)
    assert not math.isnan(strict_json(done.stdout)[0]["metrics"]["acc"])

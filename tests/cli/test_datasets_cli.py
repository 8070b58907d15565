"""``tidal datasets`` against a real SQLite workspace: list, show, diff, validate and errors."""

from __future__ import annotations

import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import pytest

import tidal
from tests.cli.conftest import Invoke, assert_clean_error, strict_json
from tidal.cli.datasets import parse_ref
from tidal.errors import InvalidValueError
from tidal.store.workspace import close_all


@dataclass(frozen=True)
class Registered:
    """What the ``sales`` workspace holds."""

    path: Path
    run_id: str  # a run that read sales version 2

    @property
    def w(self) -> tuple[str, str]:
        return ("-w", str(self.path))


@pytest.fixture
def sales(ws_dir: Path) -> Registered:
    """Dataset "sales" in two versions (the second adds a column, a row and a large amount),
    dataset "copy" holding the same data as sales version 2, and a run that read version 2;
    then closed so that the command opens the workspace itself."""
    ws = tidal.workspace(ws_dir)
    first = pd.DataFrame({"id": [1, 2, 3, 4], "amount": [10.0, 20.5, None, 40.0],
                          "city": ["paris", "lyon", "paris", "nice"]})
    tidal.datasets.register("sales", first, description="march sales", workspace=ws)
    second = pd.DataFrame({"id": [1, 2, 3, 4, 5], "amount": [10.0, 25.0, 30.0, 400.0, 12.0],
                           "city": ["paris", "lyon", "paris", "nice", "paris"],
                           "channel": ["web", "shop", "web", "web", "shop"]})
    latest = tidal.datasets.register("sales", second, workspace=ws)
    tidal.datasets.register("copy", second, workspace=ws)
    with tidal.start_run("train", name="fit", workspace=ws, system_metrics=False) as run:
        run.log_input(latest)
    tidal.flush()
    close_all()
    return Registered(ws_dir, run.id)


def _version(reg: Registered, number: int):
    ws = tidal.workspace(reg.path)
    return tidal.datasets.get("sales", number, workspace=ws)


@pytest.fixture
def passing_file(tmp_path: Path) -> Path:
    path = tmp_path / "passing.py"
    path.write_text(
        "import tidal\n"
        "expect = tidal.datasets.expect\n"
        "expectations = [expect.not_null('id'), expect.unique('id'),\n"
        "                expect.in_set('city', ['paris', 'lyon', 'nice']),\n"
        "                expect.row_count(1, 100)]\n")
    return path


@pytest.fixture
def failing_file(tmp_path: Path) -> Path:
    path = tmp_path / "failing.py"
    path.write_text(
        "import tidal\n"
        "expect = tidal.datasets.expect\n"
        "expectations = [expect.not_null('amount'), expect.between('amount', 0, 100),\n"
        "                expect.in_set('channel', ['web'])]\n")
    return path


# -- parsing references -----------------------------------------------------------------------

@pytest.mark.parametrize(("ref", "expected"), [
    ("sales", ("sales", None)),
    ("sales/2", ("sales", 2)),
    ("sales/latest", ("sales", None)),
    ("datasets:/sales/3", ("sales", 3)),
    ("datasets:/sales", ("sales", None)),
    ("my.data-set_1/10", ("my.data-set_1", 10)),
])
def test_parse_ref(ref: str, expected: tuple[str, int | None]):
    assert parse_ref(ref) == expected


@pytest.mark.parametrize("ref", ["a/b/c", "sales/x", "sales/0", "sales/-1", "sales/", "/1", "",
                                 "datasets:/", "datasets:/sales/2/3"])
def test_parse_ref_refuses_malformed_references(ref: str):
    with pytest.raises(InvalidValueError):
        parse_ref(ref)


# -- help -------------------------------------------------------------------------------------

def test_help_lists_the_commands_and_opens_no_workspace(cli: Invoke, tmp_path: Path):
    result = cli("--help")
    assert result.exit_code == 0
    assert "datasets" in result.stdout
    result = cli("datasets", "--help")
    assert result.exit_code == 0
    for command in ("list", "show", "diff", "validate"):
        assert command in result.stdout
    result = cli("datasets", "validate", "--help")
    assert result.exit_code == 0
    assert "expectations = [expect.not_null" in result.stdout
    assert "--fail" in result.stdout
    assert not (tmp_path / ".tidal").exists()


def test_help_starts_without_pandas_sqlalchemy_or_pyarrow(tmp_path: Path):
    code = (
        "import sys\n"
        "from tidal.cli.main import run\n"
        "for argv in (['tidal', 'datasets', '--help'], ['tidal', 'datasets', 'show', '--help'],\n"
        "             ['tidal', 'datasets', 'validate', '--help']):\n"
        "    sys.argv = argv\n"
        "    try:\n"
        "        run()\n"
        "    except SystemExit as exit:\n"
        "        assert exit.code in (0, None), exit.code\n"
        "heavy = ('pandas', 'numpy', 'pyarrow', 'duckdb', 'sqlalchemy', 'tidal.data.versions',\n"
        "         'tidal.store')\n"
        "sys.stderr.write(repr(sorted(m for m in heavy if m in sys.modules)))\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          check=False, cwd=tmp_path, timeout=60)
    assert done.returncode == 0, done.stderr
    assert "Usage: tidal datasets" in done.stdout
    assert done.stderr.strip() == "[]"


# -- list -------------------------------------------------------------------------------------

def test_list_json(cli: Invoke, sales: Registered):
    result = cli("datasets", "list", "--json", *sales.w)
    assert result.exit_code == 0, result.output
    data = strict_json(result.stdout)
    assert [d["name"] for d in data] == ["copy", "sales"]
    latest = data[1]
    assert latest["version"] == 2
    assert latest["uri"] == "datasets:/sales/2"
    assert latest["num_rows"] == 5
    assert latest["num_columns"] == 4
    assert latest["size_bytes"] > 0
    assert latest["digest"].startswith("blake2b:")
    assert latest["created_at"].endswith("+00:00")
    assert data[0]["digest"] == latest["digest"]  # the same content under another name


def test_list_table(cli: Invoke, sales: Registered):
    result = cli("datasets", "list", *sales.w)
    assert result.exit_code == 0, result.output
    out = result.stdout
    for heading in ("Name", "Latest", "Rows", "Columns", "Size", "Created", "Created by"):
        assert heading in out
    line = next(row for row in out.splitlines() if row.strip().startswith("sales"))
    assert line.split()[:4] == ["sales", "2", "5", "4"]
    assert "2 datasets" in out


def test_list_on_an_empty_workspace(cli: Invoke, ws_dir: Path):
    result = cli("-w", str(ws_dir), "datasets", "list")
    assert result.exit_code == 0
    assert "No datasets yet" in result.stdout
    result = cli("-w", str(ws_dir), "datasets", "list", "--json")
    assert strict_json(result.stdout) == []


# -- show -------------------------------------------------------------------------------------

def test_show_latest_table(cli: Invoke, sales: Registered):
    result = cli("datasets", "show", "sales", *sales.w)
    assert result.exit_code == 0, result.output
    out = result.stdout
    assert "version 2 of 2" in out
    assert "datasets:/sales/2" in out
    assert "a pandas DataFrame" in out
    for heading in ("Column", "Type", "Nullable", "Nulls", "Distinct", "Min", "Max", "Mean",
                    "Std", "Top values"):
        assert heading in out
    amount = next(row for row in out.splitlines() if row.strip().startswith("amount"))
    assert amount.split()[:5] == ["amount", "double", "yes", "0", "5"]
    assert "400" in amount and "95.4" in amount  # max and mean
    assert "paris (3)" in out  # top values of a categorical column
    assert "Versions (2)" in out
    assert "Runs that read it (1)" in out
    assert sales.run_id in out
    assert "fit" in out


def test_show_a_given_version(cli: Invoke, sales: Registered):
    for ref in ("sales/1", "datasets:/sales/1"):
        result = cli("datasets", "show", ref, *sales.w)
        assert result.exit_code == 0, result.output
        assert "version 1 of 2" in result.stdout
        assert "march sales" in result.stdout
        assert "channel" not in result.stdout
        assert "Runs that read it (0)  none" in result.stdout


def test_show_json(cli: Invoke, sales: Registered):
    result = cli("datasets", "show", "sales", "--json", *sales.w)
    assert result.exit_code == 0, result.output
    data = strict_json(result.stdout)
    assert data["uri"] == "datasets:/sales/2"
    assert data["version"] == 2
    assert data["num_rows"] == 5
    assert [c["name"] for c in data["schema"]] == ["id", "amount", "city", "channel"]
    assert data["schema"][1] == {"name": "amount", "type": "double", "nullable": True}
    profile = data["profile"]["columns"]
    assert profile["amount"]["max"] == 400.0
    assert profile["amount"]["mean"] == pytest.approx(95.4)
    assert "quantiles" in profile["amount"] and "histogram" in profile["amount"]
    assert profile["city"]["top"][0] == ["paris", 3]
    assert [v["version"] for v in data["versions"]] == [1, 2]
    assert data["versions"][0]["description"] == "march sales"
    assert data["runs"] == [sales.run_id]
    assert data["validation"] == {"reports": 0, "last_passed": None}

    first = strict_json(cli("datasets", "show", "sales/1", "--json", *sales.w).stdout)
    assert first["version"] == 1
    assert first["num_rows"] == 4
    assert first["profile"]["columns"]["amount"]["nulls"] == 1
    assert first["runs"] == []


# -- diff -------------------------------------------------------------------------------------

def test_diff_json(cli: Invoke, sales: Registered):
    result = cli("datasets", "diff", "sales/1", "datasets:/sales/2", "--json", *sales.w)
    assert result.exit_code == 0, result.output
    data = strict_json(result.stdout)
    assert data["a"] == "datasets:/sales/1"
    assert data["b"] == "datasets:/sales/2"
    assert data["added_columns"] == {"channel": "string"}
    assert data["removed_columns"] == {}
    assert data["rows"] == [4, 5]
    assert data["statistics"]["amount"]["max"] == [40.0, 400.0]
    assert data["statistics"]["amount"]["nulls"] == [1, 0]
    assert data["same_content"] is False


def test_diff_table(cli: Invoke, sales: Registered):
    result = cli("datasets", "diff", "sales/1", "sales/2", *sales.w)
    assert result.exit_code == 0, result.output
    out = result.stdout
    assert "datasets:/sales/1 → datasets:/sales/2" in out
    assert "+ channel" in out
    assert "4 → 5" in out
    max_row = next(row for row in out.splitlines() if "+900.0%" in row)  # amount's max
    assert max_row.split()[:3] == ["max", "40", "400"]
    assert "no differences" not in out


def test_diff_highlights_shifts(cli: Invoke, sales: Registered):
    result = cli("datasets", "diff", "sales/1", "sales/2", *sales.w,
                 env={"NO_COLOR": None, "FORCE_COLOR": "1", "TERM": "xterm-256color"})
    assert result.exit_code == 0
    assert "\x1b[" in result.stdout  # the new values and large shifts are coloured


def test_diff_without_differences(cli: Invoke, sales: Registered):
    for refs in (("sales/2", "sales"), ("sales/latest", "copy/1")):
        result = cli("datasets", "diff", *refs, *sales.w)
        assert result.exit_code == 0, result.output
        assert "no differences" in result.stdout
        data = strict_json(cli("datasets", "diff", *refs, "--json", *sales.w).stdout)
        assert data["same_content"] is True
        assert data["statistics"] == {} and data["added_columns"] == {}


# -- validate ---------------------------------------------------------------------------------

def test_validate_passing(cli: Invoke, sales: Registered, passing_file: Path):
    result = cli("datasets", "validate", "sales", "--expectations", str(passing_file), *sales.w)
    assert result.exit_code == 0, result.output
    out = result.stdout
    for heading in ("Expectation", "Column", "Passed", "Failing", "Sample", "Detail"):
        assert heading in out
    assert "unique(id)" in out
    assert "✓" in out and "✗" not in out
    assert "passed: all 4 expectations hold" in out
    assert len(_version(sales, 2).validation_reports()) == 1


def test_validate_failing(cli: Invoke, sales: Registered, failing_file: Path):
    result = cli("datasets", "validate", "sales/2", "-e", str(failing_file), *sales.w)
    assert result.exit_code == 0, result.output  # failures only change the code with --fail
    out = result.stdout
    row = next(line for line in out.splitlines() if "between" in line)
    assert "✗" in row and "400" in row and "1 of 5 rows fail" in row
    assert "failed: 2 of 3 expectations failed" in out
    assert "--fail" in out
    reports = _version(sales, 2).validation_reports()
    assert len(reports) == 1 and not reports[0].passed


def test_validate_fail_option_and_json(cli: Invoke, sales: Registered, failing_file: Path,
                                       passing_file: Path):
    result = cli("datasets", "validate", "sales", "-e", str(failing_file), "--fail", "--json",
                 *sales.w)
    assert result.exit_code == 1
    data = strict_json(result.stdout)
    assert data["dataset"] == "datasets:/sales/2"
    assert data["passed"] is False
    by_name = {r["expectation"]: r for r in data["results"]}
    assert by_name["between[0, 100](amount)"]["failing_count"] == 1
    assert by_name["between[0, 100](amount)"]["sample"] == [400.0]
    assert by_name["in_set['web'](channel)"]["sample"] == ["shop", "shop"]
    assert by_name["not_null(amount)"]["passed"] is True

    passing = cli("datasets", "validate", "sales", "-e", str(passing_file), "--fail", "--json",
                  *sales.w)
    assert passing.exit_code == 0
    assert strict_json(passing.stdout)["passed"] is True
    reports = _version(sales, 2).validation_reports()
    assert [r.passed for r in reports] == [False, True]
    shown = strict_json(cli("datasets", "show", "sales", "--json", *sales.w).stdout)
    assert shown["validation"] == {"reports": 2, "last_passed": True}


def test_validate_an_older_version(cli: Invoke, sales: Registered, tmp_path: Path):
    path = tmp_path / "older.py"
    path.write_text("import tidal\n"
                    "expectations = [tidal.datasets.expect.not_null('amount')]\n")
    result = cli("datasets", "validate", "datasets:/sales/1", "-e", str(path), "--json",
                 *sales.w)
    assert result.exit_code == 0
    data = strict_json(result.stdout)
    assert data["dataset"] == "datasets:/sales/1"
    assert data["results"][0]["failing_count"] == 1
    assert len(_version(sales, 1).validation_reports()) == 1
    assert _version(sales, 2).validation_reports() == []


# -- errors -----------------------------------------------------------------------------------

def test_unknown_dataset(cli: Invoke, sales: Registered, passing_file: Path):
    for args in (("show", "nosuch"), ("show", "nosuch/2"), ("diff", "sales/1", "nosuch/1"),
                 ("validate", "nosuch", "-e", str(passing_file))):
        result = cli("datasets", *args, *sales.w)
        assert_clean_error(result, 1, "'nosuch'")
        assert result.stderr.count("\n") == 1  # one line


def test_unknown_version(cli: Invoke, sales: Registered):
    assert_clean_error(cli("datasets", "show", "sales/9", *sales.w), 1, "'sales' version 9")


@pytest.mark.parametrize("ref", ["a/b/c", "sales/x", "sales/0", "/2"])
def test_malformed_references(cli: Invoke, sales: Registered, ref: str, passing_file: Path):
    assert_clean_error(cli("datasets", "show", ref, *sales.w), 2, repr(ref))
    assert_clean_error(cli("datasets", "diff", "sales/1", ref, *sales.w), 2, repr(ref))
    assert_clean_error(cli("datasets", "validate", ref, "-e", str(passing_file), *sales.w),
                        2, repr(ref))


def test_invalid_dataset_name(cli: Invoke, sales: Registered):
    assert_clean_error(cli("datasets", "show", "bad name", *sales.w), 2, "'bad name'")


def test_missing_expectations_file(cli: Invoke, sales: Registered, tmp_path: Path):
    missing = tmp_path / "nope.py"
    assert_clean_error(cli("datasets", "validate", "sales", "-e", str(missing), *sales.w),
                        2, "nope.py", "does not exist")
    assert_clean_error(cli("datasets", "validate", "sales", "-e", str(tmp_path), *sales.w),
                        2, "not a file")


def test_expectations_file_without_the_list(cli: Invoke, sales: Registered, tmp_path: Path):
    path = tmp_path / "empty.py"
    path.write_text("rules = []\n")
    assert_clean_error(cli("datasets", "validate", "sales", "-e", str(path), *sales.w),
                        2, "empty.py", "no module-level list named 'expectations'")
    path.write_text("import tidal\nexpectations = tidal.datasets.expect.not_null('id')\n")
    assert_clean_error(cli("datasets", "validate", "sales", "-e", str(path), *sales.w),
                        2, "must be a list", "Expectation")
    path.write_text("expectations = ['not_null(id)']\n")
    assert_clean_error(cli("datasets", "validate", "sales", "-e", str(path), *sales.w),
                        2, "tidal.datasets.expect")
    path.write_text("expectations = []\n")
    assert_clean_error(cli("datasets", "validate", "sales", "-e", str(path), *sales.w),
                        2, "at least one expectation")
    assert _version(sales, 2).validation_reports() == []


def test_expectations_file_that_fails_to_run(cli: Invoke, sales: Registered, tmp_path: Path):
    path = tmp_path / "broken.py"
    path.write_text("import tidal\n\nexpectations = [1 / 0]\n")
    assert_clean_error(cli("datasets", "validate", "sales", "-e", str(path), *sales.w),
                        2, "ZeroDivisionError (line 3)")
    path.write_text("expectations = [\n")
    assert_clean_error(cli("datasets", "validate", "sales", "-e", str(path), *sales.w),
                        2, "does not parse")
    path.write_text("import tidal\nexpectations = [tidal.datasets.expect.between('amount')]\n")
    assert_clean_error(cli("datasets", "validate", "sales", "-e", str(path), *sales.w),
                        2, "between needs min, max or both")


def test_expectation_on_a_missing_column(cli: Invoke, sales: Registered, tmp_path: Path):
    path = tmp_path / "column.py"
    path.write_text("import tidal\nexpectations = [tidal.datasets.expect.not_null('zzz')]\n")
    assert_clean_error(cli("datasets", "validate", "sales", "-e", str(path), *sales.w),
                        2, "'zzz'")


def test_expectations_file_can_import_its_neighbours(cli: Invoke, sales: Registered,
                                                    tmp_path: Path):
    (tmp_path / "shared_rules.py").write_text(
        "import tidal\nRULES = [tidal.datasets.expect.not_null('id')]\n")
    path = tmp_path / "uses_shared.py"
    path.write_text("from shared_rules import RULES\nexpectations = RULES\n")
    result = cli("datasets", "validate", "sales", "-e", str(path), "--json", *sales.w)
    assert result.exit_code == 0, result.output
    assert strict_json(result.stdout)["passed"] is True

"""``tidal models`` against a real SQLite workspace: list, show, versions, alias, transition,
card, and the errors each misuse gets."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

import tidal
from tests.cli.conftest import Invoke, assert_clean_error, strict_json
from tests.models.test_cards import Churn, GateResult, register_churn
from tidal.models.stages import record_gate_results
from tidal.store.workspace import close_all


@pytest.fixture
def churn(ws_dir: Path) -> Churn:
    """The workspace of ``register_churn``, closed so that each command opens it itself."""
    registered = register_churn(tidal.workspace(ws_dir))
    close_all()
    return registered


@pytest.fixture
def w(ws_dir: Path, churn: Churn) -> tuple[str, str]:
    return ("-w", str(ws_dir))


# -- help -------------------------------------------------------------------------------------

def test_help_lists_the_commands_and_opens_no_workspace(cli: Invoke, tmp_path: Path):
    result = cli("models", "--help")
    assert result.exit_code == 0
    for command in ("list", "show", "versions", "alias", "transition", "card"):
        assert command in result.stdout
    result = cli("models", "transition", "--help")
    assert result.exit_code == 0
    assert "registered -> validated | archived" in result.stdout
    assert not (tmp_path / ".tidal").exists()


def test_help_starts_without_pandas_sqlalchemy_or_pyarrow(tmp_path: Path):
    code = (
        "import sys\n"
        "from tidal.cli.main import run\n"
        "for argv in (['tidal', 'models', '--help'], ['tidal', 'models', 'show', '--help']):\n"
        "    sys.argv = argv\n"
        "    try:\n"
        "        run()\n"
        "    except SystemExit as exit:\n"
        "        assert exit.code in (0, None), exit.code\n"
        "heavy = ('pandas', 'numpy', 'pyarrow', 'sqlalchemy', 'tidal.models.registry',\n"
        "         'tidal.store')\n"
        "sys.stderr.write(repr(sorted(m for m in heavy if m in sys.modules)))\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          check=False, cwd=tmp_path, timeout=60)
    assert done.returncode == 0, done.stderr
    assert "Usage: tidal models" in done.stdout
    assert done.stderr.strip() == "[]"


# -- list, show, versions ---------------------------------------------------------------------

def test_list(cli: Invoke, w):
    listed = strict_json(cli("models", "list", "--json", *w).stdout)
    assert [(m["name"], m["latest_version"], m["aliases"], m["owner"]) for m in listed] == [
        ("churn", 2, {"challenger": 2, "champion": 2}, "growth-ml")]
    table = cli("models", "list", *w)
    assert table.exit_code == 0, table.output
    assert "churn" in table.stdout and "champion → 2" in table.stdout
    assert "growth-ml" in table.stdout and "1 model" in table.stdout


def test_list_of_an_empty_workspace_says_how_to_register(cli: Invoke, ws_dir: Path):
    assert strict_json(cli("models", "list", "--json", "-w", str(ws_dir)).stdout) == []
    result = cli("models", "list", "-w", str(ws_dir))
    assert result.exit_code == 0
    assert "tidal.models.register(name, model)" in result.stdout


def test_show_a_model(cli: Invoke, w):
    data = strict_json(cli("models", "show", "churn", "--json", *w).stdout)
    assert data["name"] == "churn" and data["purpose"] == "rank accounts for retention calls"
    assert [(v["version"], v["stage"]) for v in data["versions"]] == [
        (1, "approved"), (2, "registered")]
    table = cli("models", "show", "models:/churn", *w)
    assert table.exit_code == 0, table.output
    assert "rank accounts for retention calls" in table.stdout
    assert "approved" in table.stdout and "2 versions" in table.stdout


def test_show_a_version_has_its_lineage_gates_and_history(cli: Invoke, w, churn: Churn):
    data = strict_json(cli("models", "show", "churn/1", "--json", *w).stdout)
    assert data["uri"] == "models:/churn/1" and data["stage"] == "approved"
    assert data["run"]["id"] == churn.run_id and data["run"]["metrics"]["accuracy"] == 0.875
    assert [d["uri"] for d in data["datasets"]] == [churn.dataset_uri]
    assert [g["gate"] for g in data["gates"]] == ["min_accuracy", "fairness"]
    assert [t["to_stage"] for t in data["transitions"]] == ["registered", "validated",
                                                           "approved"]
    assert [c["name"] for c in data["signature"]["inputs"]["columns"]] == ["age", "income"]

    table = cli("models", "show", "churn/1", *w)
    assert table.exit_code == 0, table.output
    for text in ("Lineage", churn.run_id, churn.dataset_uri, "min_accuracy", "passed",
                 "signed off in review", "moved from version 1 to 2", "scikit-learn"):
        assert text in table.stdout
    # markup in user text is shown as written
    assert "<script>alert('owned')</script>" in table.stdout


def test_show_by_alias_and_latest(cli: Invoke, w):
    by_alias = strict_json(cli("models", "show", "churn@champion", "--json", *w).stdout)
    latest = strict_json(cli("models", "show", "models:/churn/latest", "--json", *w).stdout)
    assert by_alias["version"] == latest["version"] == 2


def test_versions(cli: Invoke, w, churn: Churn):
    data = strict_json(cli("models", "versions", "churn", "--json", *w).stdout)
    assert [(v["version"], v["aliases"], v["run_id"]) for v in data] == [
        (1, [], churn.run_id), (2, ["challenger", "champion"], None)]
    table = cli("models", "versions", "churn", *w)
    assert table.exit_code == 0, table.output
    assert table.stdout.index("challenger") < table.stdout.index(churn.run_id)  # newest first
    assert "sklearn" in table.stdout and "2 versions" in table.stdout


# -- alias ------------------------------------------------------------------------------------

def test_alias_set_delete_and_history(cli: Invoke, w):
    moved = strict_json(cli("models", "alias", "churn", "champion", "1", "--reason",
                            "rollback", "--json", *w).stdout)
    assert moved["version"] == 1 and moved["aliases"] == ["champion"]
    shown = cli("models", "alias", "churn", "staging", "1", *w)
    assert shown.exit_code == 0 and "churn@staging → models:/churn/1" in shown.stdout

    deleted = cli("models", "alias", "churn", "challenger", "--delete", "--reason", "done", *w)
    assert deleted.exit_code == 0 and "Removed alias challenger of churn." in deleted.stdout

    history = strict_json(cli("models", "alias", "churn", "--history", "--json", *w).stdout)
    assert [(e["alias"], e["previous_version"], e["version"], e["reason"])
            for e in history][-3:] == [("champion", 2, 1, "rollback"),
                                       ("staging", None, 1, None),
                                       ("challenger", 2, None, "done")]
    one = strict_json(cli("models", "alias", "churn", "champion", "--history", "--json",
                          *w).stdout)
    assert [e["version"] for e in one] == [1, 2, 1]
    table = cli("models", "alias", "churn", "champion", "--history", *w)
    assert table.exit_code == 0, table.output
    assert "moved from version 2 to 1" in table.stdout and "rollback" in table.stdout


@pytest.mark.parametrize(("args", "fragment"), [
    (("churn", "champion"), "give the version to point 'champion' at"),
    (("churn",), "name the alias"),
    (("churn", "champion", "1", "--delete"), "--delete takes no VERSION"),
    (("churn", "champion", "--delete", "--history"), "cannot be combined"),
    (("churn", "latest", "1"), "alias 'latest' is not valid"),
    (("churn", "champion", "9"), "has no version 9"),
])
def test_alias_misuse(cli: Invoke, w, args: tuple[str, ...], fragment: str):
    code = 1 if "no version" in fragment else 2
    assert_clean_error(cli("models", "alias", *args, *w), code, fragment)


def test_unknown_alias(cli: Invoke, w):
    assert_clean_error(cli("models", "alias", "churn", "ghost", "--delete", *w), 1,
                       "model 'churn' has no alias 'ghost'; its aliases: challenger, champion")
    assert_clean_error(cli("models", "show", "churn@ghost", *w), 1, "no alias 'ghost'")
    assert_clean_error(cli("models", "alias", "churn", "ghost", "--history", *w), 1,
                       "has never had an alias 'ghost'")


# -- transition -------------------------------------------------------------------------------

def test_transition(cli: Invoke, w, churn: Churn, ws_dir: Path):
    record_gate_results(tidal.models.get_version("churn/2", workspace=tidal.workspace(ws_dir)),
                        [GateResult("min_accuracy", True)])
    close_all()
    moved = strict_json(cli("models", "transition", "churn@challenger", "validated",
                            "--reason", "gates passed", "--by", "ana", "--json", *w).stdout)
    assert moved["version"] == 2 and moved["stage"] == "validated"
    assert moved["transition"]["from_stage"] == "registered"
    assert (moved["transition"]["by"], moved["transition"]["reason"]) == ("ana",
                                                                          "gates passed")
    shown = cli("models", "transition", "churn/2", "approved", "--reason", "reviewed", *w)
    assert shown.exit_code == 0, shown.output
    assert "models:/churn/2: validated → approved (reviewed)" in shown.stdout


def test_illegal_transition_names_the_stages_accepted(cli: Invoke, w):
    assert_clean_error(cli("models", "transition", "churn/2", "approved", "--reason", "x", *w),
                       2, "cannot move from registered to approved",
                       "it can move to validated, archived")
    assert_clean_error(cli("models", "transition", "churn/2", "validated", "--reason", "x", *w),
                       2, "has no gate results")
    assert_clean_error(cli("models", "transition", "churn/2", "shipped", "--reason", "x", *w),
                       2, "stage 'shipped' is not one of registered, validated, approved, "
                          "deployed, archived")


def test_transition_needs_a_reason(cli: Invoke, w):
    missing = cli("models", "transition", "churn/2", "validated", *w)
    assert missing.exit_code == 2
    assert "Missing option" in missing.stderr and "--reason" in missing.stderr
    assert_clean_error(cli("models", "transition", "churn/2", "archived", "--reason", "  ", *w),
                       2, "a transition needs a reason")


def test_transition_needs_an_explicit_version(cli: Invoke, w):
    assert_clean_error(cli("models", "transition", "churn", "archived", "--reason", "x", *w),
                       2, "name the version to move, e.g. churn/3")


# -- card -------------------------------------------------------------------------------------

def test_card_writes_into_the_current_folder_by_default(cli: Invoke, w, tmp_path: Path):
    result = cli("models", "card", "churn/1", *w)
    assert result.exit_code == 0, result.output
    assert result.stdout.splitlines() == ["churn-v1.md", "churn-v1.html"]
    assert (tmp_path / "churn-v1.md").read_text().startswith("# Model card: churn version 1")
    assert "&lt;script&gt;" in (tmp_path / "churn-v1.html").read_text()


def test_card_output_folder(cli: Invoke, w, tmp_path: Path):
    result = cli("models", "card", "models:/churn@champion", "--output", str(tmp_path / "out"),
                 *w)
    assert result.exit_code == 0, result.output
    paths = [Path(line) for line in result.stdout.splitlines()]
    assert paths == [tmp_path / "out" / "churn-v2.md", tmp_path / "out" / "churn-v2.html"]
    assert all(p.is_file() for p in paths)


# -- bad references ---------------------------------------------------------------------------

@pytest.mark.parametrize(("command", "code", "fragment"), [
    (("show", "nope"), 1, "no model named 'nope'; registered models: churn"),
    (("versions", "nope"), 1, "no model named 'nope'"),
    (("card", "nope/1"), 1, "no model named 'nope'"),
    (("show", "churn/3"), 1, "has no version 3; its versions run from 1 to 2"),
    (("show", "churn/abc"), 2, "version 'abc' is not a positive whole number"),
    (("show", "churn/1/2"), 2, "model URI 'churn/1/2' is not valid"),
    (("card", "bad name/1"), 2, "model name 'bad name' is not valid"),
    (("transition", "churn@", "archived", "--reason", "x"), 2, "is not valid"),
])
def test_bad_references(cli: Invoke, w, command: tuple[str, ...], code: int, fragment: str):
    assert_clean_error(cli("models", *command, *w), code, fragment)

"""``tidal demo``: a real tracked comparison, then the listings that explore it."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

import tidal
from tests.cli.conftest import Invoke

pytest.importorskip("sklearn")

MODELS = ["logistic-regression", "random-forest", "hist-gradient-boosting"]
SUMMARY_METRICS = {"accuracy", "f1", "roc_auc", "log_loss", "fit_seconds", "predict_ms_per_row"}


@pytest.fixture(scope="module")
def demo_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    """Run the demo once for the module: its workspace and what it printed."""
    from typer.testing import CliRunner

    from tidal.cli.main import app
    from tidal.store.workspace import close_all

    home = tmp_path_factory.mktemp("demo") / "ws"
    with pytest.MonkeyPatch.context() as patch:
        patch.chdir(home.parent)
        patch.setenv("TIDAL_SYSTEM_METRICS_INTERVAL", "0")
        result = CliRunner().invoke(app, ["demo", "-w", str(home), "--seed", "7"],
                                    env={"COLUMNS": "120", "NO_COLOR": "1"},
                                    catch_exceptions=False)
    close_all()
    assert result.exit_code == 0, result.output
    return home, result.stdout


def _list(cli: Invoke, home: Path, *args: str) -> list[dict]:
    result = cli("-w", str(home), "runs", "list", "--json", *args)
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def test_demo_creates_a_parent_and_three_children(cli: Invoke, demo_run):
    home, _ = demo_run
    runs = _list(cli, home, "-e", "demo")
    assert len(runs) == 4
    [parent] = [r for r in runs if r["parent_id"] is None]
    children = [r for r in runs if r["parent_id"] is not None]
    assert parent["name"] == "demo-comparison"
    assert sorted(r["name"] for r in children) == sorted(MODELS)
    assert {r["parent_id"] for r in children} == {parent["id"]}
    assert all(r["status"] == "finished" for r in runs)
    assert parent["params"]["dataset"] == "breast_cancer"
    assert parent["params"]["seed"] == "7"
    assert int(parent["params"]["n_train"]) + int(parent["params"]["n_test"]) == 569


def test_demo_children_hold_metrics_params_and_artifacts(cli: Invoke, demo_run):
    home, _ = demo_run
    children = _list(cli, home, "-e", "demo", "-f", "parent_id IS NOT NULL")
    for run in children:
        assert SUMMARY_METRICS <= set(run["metrics"]), run["name"]
        for key in ("accuracy", "f1", "roc_auc"):
            assert 0.85 < run["metrics"][key] <= 1.0, (run["name"], key)
        assert 0 < run["metrics"]["log_loss"] < 1
        assert run["metrics"]["fit_seconds"] > 0 and run["metrics"]["predict_ms_per_row"] > 0
        assert run["params"]["dataset"] == "breast_cancer"
        assert run["params"]["n_features"] == "30"
    by_name = {r["name"]: r for r in children}
    assert by_name["logistic-regression"]["params"]["C"] == "1.0"
    assert by_name["logistic-regression"]["params"]["preprocessing"] == "StandardScaler"
    assert by_name["random-forest"]["params"]["n_estimators"] == "200"
    assert by_name["hist-gradient-boosting"]["params"]["learning_rate"] == "0.1"

    ws = tidal.workspace(home)
    for name, run in by_name.items():
        stored = tidal.get_run(run["id"], workspace=ws)
        paths = {a.path for a in stored.artifacts()}
        assert {"classification_report.json", "confusion_matrix.csv"} <= paths, name
        report = json.loads(stored.read_artifact("classification_report.json"))
        assert report["accuracy"] == pytest.approx(run["metrics"]["accuracy"])
        matrix = stored.read_artifact("confusion_matrix.csv").decode().splitlines()
        cells = [int(v) for line in matrix[1:] for v in line.split(",")[1:]]
        assert len(cells) == 4 and sum(cells) == int(run["params"]["n_test"])
    forest = tidal.get_run(by_name["random-forest"]["id"], workspace=ws)
    importances = forest.read_artifact("feature_importances.csv").decode().splitlines()
    assert importances[0] == "feature,importance" and len(importances) == 31
    linear = tidal.get_run(by_name["logistic-regression"]["id"], workspace=ws)
    assert "coefficients.csv" in {a.path for a in linear.artifacts()}


def test_demo_logs_learning_curves(demo_run):
    home, _ = demo_run
    ws = tidal.workspace(home)
    frame = tidal.search_runs("demo", filter="name = 'hist-gradient-boosting'", workspace=ws)
    boosting = tidal.get_run(frame["run_id"][0], workspace=ws)
    validation = boosting.metric_history("curve/validation_loss")
    assert len(validation) > 10
    assert validation["step"].tolist() == list(range(1, len(validation) + 1))
    assert validation["value"].iloc[-1] < validation["value"].iloc[0]
    test_loss = boosting.metric_history("curve/test_log_loss")
    assert test_loss["value"].iloc[-1] == pytest.approx(boosting.metrics["log_loss"], rel=1e-6)
    frame = tidal.search_runs("demo", filter="name = 'random-forest'", workspace=ws)
    forest = tidal.get_run(frame["run_id"][0], workspace=ws)
    assert len(forest.metric_history("curve/test_accuracy")) == 200


def test_demo_output_names_the_winner_and_next_commands(cli: Invoke, demo_run):
    home, out = demo_run
    runs = _list(cli, home, "-e", "demo")
    [parent] = [r for r in runs if r["parent_id"] is None]
    children = [r for r in runs if r["parent_id"] is not None]
    best = max(children, key=lambda r: (r["metrics"]["roc_auc"], -r["metrics"]["log_loss"]))
    assert parent["tags"]["winner"] == best["name"]
    assert parent["tags"]["winner_run_id"] == best["id"]
    assert f"Winner: {best['name']}" in out
    for name in MODELS:
        assert name in out
    assert "Model comparison" in out
    assert f"roc_auc {best['metrics']['roc_auc']:.4f}" in out
    assert str(home) in out  # where the workspace is
    assert f"tidal -w {home} runs list -e demo -o 'metrics.roc_auc DESC'" in out
    assert f"tidal -w {home} runs show {best['id']}" in out
    compare = next(line for line in out.splitlines() if "runs compare" in line)
    assert sorted(compare.split()[-3:]) == sorted(r["id"] for r in children)


def test_demo_runs_can_be_compared(cli: Invoke, demo_run):
    home, _ = demo_run
    children = _list(cli, home, "-e", "demo", "-f", "parent_id IS NOT NULL")
    result = cli("-w", str(home), "runs", "compare", *[r["id"] for r in children], "--json")
    assert result.exit_code == 0, result.output
    metrics = {m["key"]: m for m in json.loads(result.stdout)["metrics"]}
    assert metrics["log_loss"]["goal"] == "min"
    assert metrics["roc_auc"]["goal"] == "max"
    assert metrics["fit_seconds"]["goal"] == "min"
    best_auc = max(children, key=lambda r: r["metrics"]["roc_auc"])
    assert metrics["roc_auc"]["best"] == [best_auc["id"]]


def test_demo_without_scikit_learn(cli: Invoke, ws_dir: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setitem(sys.modules, "sklearn", None)  # import sklearn now raises ImportError
    result = cli("demo", "-w", str(ws_dir))
    assert result.exit_code == 1
    assert result.stderr.startswith("error: ")
    assert "pip install 'tidal-mlops[demo]'" in result.stderr
    assert "Traceback" not in result.stderr
    assert not ws_dir.exists()  # nothing was started


def test_demo_registers_the_winner_as_a_validated_champion(cli: Invoke, demo_run):
    home, printed = demo_run
    assert "Registered: models:/breast-cancer/1 (validated, @champion)" in printed
    ws = tidal.workspace(home)
    champion = tidal.models.get_version("models:/breast-cancer@champion", workspace=ws)
    winner = tidal.get_run(champion.run_id, workspace=ws)
    assert winner.tags["model_family"] in MODELS and champion.stage == "validated"
    assert [d.uri for d in champion.datasets()] == ["datasets:/breast_cancer_train/1"]
    assert all(g["passed"] for g in champion.gate_results())
    assert champion.signature.inputs.shape == (-1, 30)
    result = cli("-w", str(home), "models", "list", "--json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)[0]["aliases"] == {"champion": 1}

"""``tidal demo --quick``: the closed loop end to end on the generated retail stream, then the
commands that explore what it left in the workspace, as a user would run them."""

from __future__ import annotations

import json
import sys
import threading
from dataclasses import replace
from pathlib import Path

import pytest

import tidal
from tests.cli.conftest import Invoke

pytest.importorskip("sklearn")
pytest.importorskip("uvicorn")
pytest.importorskip("scipy")

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def demo_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    """Run the quick demo once for the module: its workspace and what it printed."""
    from typer.testing import CliRunner

    from tidal.cli.main import app
    from tidal.store.workspace import close_all

    home = tmp_path_factory.mktemp("demo") / "ws"
    with pytest.MonkeyPatch.context() as patch:
        patch.chdir(home.parent)
        patch.setenv("TIDAL_SYSTEM_METRICS_INTERVAL", "0")
        result = CliRunner().invoke(app, ["demo", "--quick", "-w", str(home)],
                                    env={"COLUMNS": "160", "NO_COLOR": "1"},
                                    catch_exceptions=False)
    close_all()
    assert result.exit_code == 0, result.output
    return home, result.stdout


def _json(cli: Invoke, home: Path, *args: str) -> object:
    result = cli("-w", str(home), *args, "--json")
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def test_the_output_shows_every_stage_and_says_the_data_is_generated(demo_run):
    _, out = demo_run
    for number, heading in enumerate(["Data", "Features", "Candidates", "Serving",
                                      "Live traffic", "The change", "The loop", "Summary"],
                                     start=1):
        assert f"{number}/8  {heading}" in out
    assert "synthetic data, not real shoppers" in out
    assert "generated" in out
    assert "Model comparison" in out and "★" in out
    assert "hour 12 (Mon 12:00)" in out  # the first live hour
    assert "loop trigger fired" in out and "loop promote done" in out
    assert "Accuracy on the generated stream, before and after the change" in out
    assert "Done in" in out


def test_the_first_day_is_a_validated_dataset(demo_run):
    home, out = demo_run
    ws = tidal.workspace(home)
    dataset = tidal.datasets.get("retail-clicks", workspace=ws)
    assert dataset.version == 1 and dataset.num_rows > 4000
    assert {"user_id", "product_id"} <= set(dataset.schema.names)
    assert not {"user_ctr", "popularity"} & set(dataset.schema.names)  # in the feature store
    [report] = dataset.validation_reports()
    assert report.passed and len(report.results) == 19
    assert "19/19 expectations passed" in out


def test_the_training_set_joins_the_stored_features_as_of_each_impression(demo_run):
    from tidal.examples.retail.stream import generate

    home, out = demo_run
    ws = tidal.workspace(home)
    definitions = {(d.kind, d.name) for d in tidal.features.list_definitions(workspace=ws)}
    assert {("entity", "shopper"), ("entity", "product"), ("feature_view", "shopper_stats"),
            ("feature_view", "product_stats"), ("feature_service", "retail_ctr")} <= definitions
    training = tidal.datasets.get("retail-training", workspace=ws).to_pandas()
    impressions = tidal.datasets.get("retail-clicks", workspace=ws).to_pandas()
    assert len(training) == len(impressions)
    # the joined values are the ones the stream was generated with, row by row
    stream = generate(hours=26, rows_per_hour=1000, drift_hour=14, seed=7)
    stream = stream[stream["timestamp"].isin(training["timestamp"])]
    merged = training.merge(stream, on=["timestamp", "user_id", "product_id"],
                            suffixes=("", "_generated"))
    assert len(merged) == len(training)
    assert (merged["user_ctr"] == merged["user_ctr_generated"]).all()
    assert (merged["popularity"] == merged["popularity_generated"]).all()
    # and the endpoint reads them online by key
    endpoint = tidal.serving.get_endpoint("retail", workspace=ws)
    assert endpoint.config.feature_service == "retail_ctr"
    online = tidal.features.FeatureStore.from_registry(workspace=ws).get_online_features(
        [{"user_id": "u00042", "product_id": "p0042"}], "retail_ctr")
    assert online["user_ctr"][0] is not None and online["popularity"][0] is not None
    assert "Materialized 2,000 shoppers and 500 products" in out


def test_two_candidates_are_tracked_and_the_better_one_became_the_first_champion(
        cli: Invoke, demo_run):
    home, _ = demo_run
    runs = _json(cli, home, "runs", "list", "-e", "retail-demo")
    [parent] = [r for r in runs if r["parent_id"] is None]
    children = [r for r in runs if r["parent_id"] is not None]
    assert parent["name"] == "retail-candidates"
    assert sorted(r["name"] for r in children) == ["boosting", "logistic"]
    assert all(r["status"] == "finished" and r["parent_id"] == parent["id"] for r in children)
    for run in children:
        assert {"accuracy", "roc_auc", "f1", "log_loss", "fit_seconds"} <= set(run["metrics"])
        assert run["metrics"]["accuracy"] > 0.8 and run["params"]["data"] == "generated"
    best = max(children, key=lambda r: (r["metrics"]["accuracy"], r["metrics"]["roc_auc"]))
    assert parent["tags"]["winner_run_id"] == best["id"]

    ws = tidal.workspace(home)
    first = tidal.models.get_version("models:/retail-ctr/1", workspace=ws)
    assert first.run_id == best["id"]
    assert [d.uri for d in first.datasets()] == ["datasets:/retail-training/1"]
    assert first.signature is not None and "device" in first.signature.columns
    assert all(g["passed"] for g in first.gate_results())
    # it served until the loop replaced it, and went back to approved
    assert first.stage == "approved"


def test_the_loop_history_holds_every_stage_of_the_cycle(cli: Invoke, demo_run):
    home, _ = demo_run
    decisions = _json(cli, home, "loop", "history", "retail")
    seen = [(d["kind"], d["outcome"]) for d in decisions]
    expected = [("trigger", "fired"), ("retrain", "trained"), ("gate", "passed"),
                ("rollout", "started"), ("rollout", "passed"), ("rollout", "started"),
                ("rollout", "passed"), ("rollout", "started"), ("rollout", "passed"),
                ("promote", "done")]
    assert seen[:len(expected)] == expected, seen
    assert not any(kind == "rollback" for kind, _ in seen)
    trigger, retrain, gate = decisions[:3]
    assert trigger["details"]["drift"]["drifted_share"] >= 0.4
    assert {"category", "device"} <= set(trigger["details"]["drift"]["drifted_columns"])
    assert retrain["model_uri"] == "models:/retail-ctr/2"
    primary = gate["details"]["better_than_champion(accuracy, by >= 0.02)"]
    assert primary["value"] - primary["champion_value"] >= 0.02
    shares = [d["details"]["share"] for d in decisions if d["kind"] == "rollout"
              and d["outcome"] == "started"]
    assert shares == [10.0, 50.0, 100.0]
    assert decisions[len(expected) - 1]["model_uri"] == "models:/retail-ctr/2"
    assert len({d["cycle"] for d in decisions[:len(expected)]}) == 1


def test_the_champion_moved_and_the_endpoint_serves_it(cli: Invoke, demo_run):
    home, _ = demo_run
    ws = tidal.workspace(home)
    champion = tidal.models.get_version("models:/retail-ctr@champion", workspace=ws)
    assert champion.version == 2 and champion.stage == "deployed"
    assert [d.name for d in champion.datasets()] == ["retail-loop-train"]
    moves = [(e.alias, e.version) for e in tidal.models.alias_history("retail-ctr",
                                                                       workspace=ws)]
    assert ("champion", 1) in moves and moves.index(("champion", 1)) < \
        moves.index(("champion", 2))
    endpoint = tidal.serving.get_endpoint("retail", workspace=ws)
    assert {r.uri: r.weight for r in endpoint.config.routes} == {
        "models:/retail-ctr@champion": 100.0}
    revisions = _json(cli, home, "endpoints", "history", "retail")
    assert len(revisions) >= 4  # champion, then each canary step
    # the endpoint's traffic, its answers and labels, is in the prediction log
    log = tidal.serving.join_feedback("retail", workspace=ws)
    assert set(log["model_version"]) == {1, 2}
    assert log["label"].notna().all()


def test_the_html_drift_report_is_written(demo_run):
    home, out = demo_run
    report = home / "reports" / "retail-drift.html"
    assert str(report) in out
    page = report.read_text()
    assert page.startswith("<!DOCTYPE html>")
    assert "generated data" in page and "device" in page


def test_the_workspace_is_explorable_with_every_command(cli: Invoke, demo_run):
    home, out = demo_run
    for command in (["runs", "list"], ["runs", "list", "-e", "retail-demo"],
                    ["experiments", "list"], ["datasets", "list"],
                    ["datasets", "show", "retail-clicks"], ["features", "list"],
                    ["models", "list"], ["models", "versions", "retail-ctr"],
                    ["models", "show", "retail-ctr@champion"],
                    ["endpoints", "list"], ["endpoints", "history", "retail"],
                    ["loop", "list"], ["loop", "show", "retail-loop"],
                    ["loop", "history", "retail"]):
        result = cli("-w", str(home), *command)
        assert result.exit_code == 0, (command, result.output)
    # the summary prints the commands to try, with the workspace it ran in
    assert f"tidal -w {home} loop history retail" in out
    assert f"tidal -w {home} models show retail-ctr@champion" in out


def test_the_server_is_stopped(demo_run):
    assert not [t for t in threading.enumerate() if t.name == "tidal-demo-server"]


def test_a_second_demo_in_the_same_workspace_is_refused(cli: Invoke, demo_run):
    home, _ = demo_run
    result = cli("demo", "--quick", "-w", str(home))
    assert result.exit_code == 2
    assert "already holds a run of the demo" in result.stderr
    assert "tidal demo -w NEW_FOLDER" in result.stderr


def test_demo_without_scikit_learn(cli: Invoke, ws_dir: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setitem(sys.modules, "sklearn", None)  # import sklearn now raises ImportError
    result = cli("demo", "-w", str(ws_dir))
    assert result.exit_code == 1
    assert result.stderr.startswith("error: ")
    assert "pip install 'tidal-mlops[demo]'" in result.stderr
    assert "Traceback" not in result.stderr
    assert not ws_dir.exists()  # nothing was started


def test_the_example_policy_applies_and_matches_the_demo(ws_dir: Path):
    from tidal.cli.demo import FULL, policy_dict
    from tidal.loop import apply_policy, get_policy, read_policy_file

    ws = tidal.workspace(ws_dir)
    path = ROOT / "examples" / "retail" / "policy.toml"
    policy = apply_policy(path, workspace=ws)
    assert get_policy("retail-loop", workspace=ws) == policy
    # Applying records the digest of the training pipeline's code; the rest is the file's.
    assert policy.training.code_digest is not None
    assert policy == replace(read_policy_file(path), training=replace(
        read_policy_file(path).training, code_digest=policy.training.code_digest))
    ours = policy_dict(FULL)
    assert (policy.name, policy.endpoint, policy.model) == (
        ours["name"], ours["endpoint"], ours["model"])
    assert policy.training.pipeline == ours["training"]["pipeline"]
    assert [t.kind for t in policy.triggers] == [t["kind"] for t in ours["triggers"]]
    assert list(policy.rollout.steps) == ours["rollout"]["steps"]
    assert policy.gate.guards == ours["gate"]["guards"]


def test_the_replay_sends_traffic_and_feedback_to_a_server(ws_dir: Path, capsys):
    """``python -m tidal.examples.retail.replay``, as the example's README runs it by hand."""
    from tidal.cli.demo_traffic import LocalServer
    from tidal.examples.retail import features
    from tidal.examples.retail.pipeline import fit_model
    from tidal.examples.retail.replay import main
    from tidal.examples.retail.stream import FEATURES, LABEL, generate

    ws = tidal.workspace(ws_dir)
    features.set_up(ws)
    day = generate(hours=2, rows_per_hour=200, drift_hour=None, seed=3)
    version = tidal.models.register("retail-ctr", fit_model(day, LABEL, "logistic"),
                                    run=False, input_example=day[FEATURES].head(5),
                                    workspace=ws)
    tidal.models.set_alias("retail-ctr", "champion", version.version, workspace=ws)
    tidal.serving.deploy("retail", {"models:/retail-ctr@champion": 100},
                         feature_service=features.SERVICE, workspace=ws)
    with LocalServer(ws, "retail") as server:
        code = main(["--url", server.url, "--hours", "2", "--rows-per-hour", "40",
                     "--rows-per-request", "4", "--drift-hour", "1", "--pause", "0"])
    assert code == 0
    printed = capsys.readouterr().out
    assert "synthetic data" in printed and "hour 1 (changed behaviour)" in printed
    log = tidal.serving.join_feedback("retail", workspace=ws)
    assert 15 <= log["request_id"].nunique() <= 25  # about 80 rows, 4 a request
    assert log["label"].notna().all()
    # the requests carried keys; the logged inputs hold the features the server looked up
    inputs = json.loads(log["inputs"].iloc[0])
    assert {"user_id", "product_id", "user_ctr", "popularity"} <= set(inputs)

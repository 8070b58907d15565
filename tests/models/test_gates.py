"""Gates: each built-in gate passes and fails for the right reasons, results are stored with the
version, and only a version whose gates all passed becomes "validated"."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from sklearn.dummy import DummyClassifier
from sklearn.linear_model import LogisticRegression

import tidal
from tidal.errors import InvalidValueError
from tidal.models import (
    GateResult,
    better_than_champion,
    latency_budget,
    metric_threshold,
    signature_compatible,
    size_limit,
    validate,
)


def data(n: int = 400, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    frame = pd.DataFrame(rng.normal(size=(n, 3)), columns=["a", "b", "c"])
    frame["y"] = (frame["a"] + 0.2 * rng.normal(size=n) > 0).astype("int64")
    return frame


@pytest.fixture
def champion_and_challenger(workspace):
    frame = data()
    features = frame.drop(columns="y")
    weak = DummyClassifier(strategy="most_frequent").fit(features, frame["y"])
    strong = LogisticRegression().fit(features, frame["y"])
    with tidal.start_run("ctr") as run:
        run.log_metric("accuracy", 0.93)
        run.log_metric("auc", 0.97)
        champion = tidal.models.register("ctr", weak, input_example=features.head(3))
        challenger = tidal.models.register("ctr", strong, input_example=features.head(3))
    tidal.models.set_alias("ctr", "champion", champion.version)
    holdout = tidal.datasets.register("holdout", data(300, seed=1))
    return champion, challenger, holdout


def test_a_challenger_that_passes_every_gate_is_validated(champion_and_challenger):
    _, challenger, holdout = champion_and_challenger
    report = validate(challenger.uri, [
        metric_threshold("accuracy", minimum=0.9),
        better_than_champion("accuracy", holdout.uri, label="y", min_delta=0.1),
        signature_compatible(),
        latency_budget(1000, repeats=20),
        size_limit(5_000_000),
    ])
    assert report.passed, [r.reasons for r in report.failed]
    assert report.version.stage == "validated"
    better = report.results[1]
    assert better.details["champion"] == "models:/ctr/1"
    assert better.details["gain"] >= 0.1
    stored = tidal.models.get_version(challenger.uri).gate_results()
    assert [g["gate"] for g in stored] == [r.name for r in report.results]
    assert all(g["passed"] and g["reasons"] for g in stored)


def test_failed_gates_keep_the_version_registered_and_say_why(champion_and_challenger):
    champion, _, holdout = champion_and_challenger
    report = validate(champion.uri, [
        metric_threshold("accuracy", minimum=0.95),
        metric_threshold("recall", minimum=0.5),
        better_than_champion("log_loss", holdout, label="y", alias="champion"),
        latency_budget(0.000001, repeats=5),
        size_limit(10),
    ])
    assert not report.passed and report.version.stage == "registered"
    reasons = {r.name: r.reasons[0] for r in report.results}
    assert reasons["metric_threshold(accuracy >= 0.95)"] == "accuracy = 0.93, required >= 0.95"
    assert "logged no 'recall' metric (logged: accuracy, auc)" in \
        reasons["metric_threshold(recall >= 0.5)"]
    assert [r.passed for r in report.results] == [False, False, True, False, False]
    with pytest.raises(tidal.models.IllegalTransitionError, match="failed its latest gates"):
        tidal.models.transition(champion.uri, "validated", reason="anyway")
    assert len(tidal.models.get_version(champion.uri).gate_results()) == 5


def test_signature_incompatibility_fails_the_gate(champion_and_challenger):
    frame = data()
    wider = LogisticRegression().fit(frame.assign(d=1.0).drop(columns="y"), frame["y"])
    version = tidal.models.register("ctr", wider, input_example=frame.assign(d=1.0)
                                    .drop(columns="y").head(2))
    result = signature_compatible()(version)
    assert not result.passed
    assert result.reasons == ["column 'd' is required but was not before"]


def test_first_model_has_nothing_to_beat(workspace):
    frame = data()
    version = tidal.models.register("new", LogisticRegression().fit(frame[["a"]], frame["y"]))
    assert better_than_champion("accuracy", frame, label="y")(version).passed
    assert signature_compatible()(version).passed
    no_example = latency_budget(10)(version)
    assert not no_example.passed and "no input example" in no_example.reasons[0]


def test_broken_and_custom_gates(champion_and_challenger):
    _, challenger, _ = champion_and_challenger

    def owner_signed_off(version):
        return GateResult("owner_signed_off", version.tags.get("ok") == "yes", ["no sign-off"])

    def broken(version):
        raise RuntimeError("lost connection")

    report = validate(challenger.uri, [owner_signed_off, broken], promote=False)
    assert [r.passed for r in report.results] == [False, False]
    assert report.results[1].reasons == ["the gate raised RuntimeError: lost connection"]
    with pytest.raises(InvalidValueError):
        validate(challenger.uri, [])
    with pytest.raises(InvalidValueError, match="metric 'auc' is not one gates compute"):
        better_than_champion("auc", "datasets:/holdout/1", label="y")
    with pytest.raises(InvalidValueError):
        metric_threshold("accuracy")
    with pytest.raises(InvalidValueError):
        size_limit(0)
    missing_label = better_than_champion("accuracy", "datasets:/holdout/1", label="clicked")
    result = validate(challenger.uri, [missing_label], promote=False).results[0]
    assert not result.passed and "no label column 'clicked'" in result.reasons[0]

"""The registry: versions, lineage both ways, aliases and their history, stage transitions, and
the errors each misuse gets."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler

import tidal
from tidal.errors import (
    ArtifactCorruptedError,
    InvalidValueError,
    MissingDependencyError,
    RunNotFoundError,
)
from tidal.models import (
    AliasNotFoundError,
    IllegalTransitionError,
    ModelNotFoundError,
    SignatureMismatchError,
)
from tidal.models.loaded import clear_cache


def training_frame(n: int = 300, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    frame = pd.DataFrame(rng.normal(size=(n, 4)), columns=["age", "income", "clicks", "tenure"])
    frame["label"] = (frame["age"] + 0.5 * frame["clicks"] > 0).astype("int64")
    return frame


def fit(frame: pd.DataFrame, c: float = 1.0) -> Pipeline:
    model = Pipeline([("scale", StandardScaler()), ("clf", LogisticRegression(C=c))])
    return model.fit(frame.drop(columns="label"), frame["label"])


@pytest.fixture
def trained(workspace):
    """A run that read a dataset version and registered a model from it."""
    frame = training_frame()
    dataset = tidal.datasets.register("clicks", frame)
    model = fit(frame)
    with tidal.start_run("ctr", params={"C": 1.0}) as run:
        run.log_input(dataset)
        run.log_metric("accuracy", 0.91)
        version = tidal.models.register("ctr", model, input_example=frame.drop(columns="label")
                                        .head(5), description="first", tags={"team": "ads"})
    return frame, dataset, model, run, version


def test_versions_are_numbered_and_immutable_records(trained):
    frame, _, _, _, first = trained
    second = tidal.models.register("ctr", fit(frame, c=0.1), input_example=frame.head(3)
                                   .drop(columns="label"))
    assert (first.version, second.version) == (1, 2)
    assert first.uri == "models:/ctr/1" and first.flavor == "sklearn"
    assert first.stage == "registered" and first.tags == {"team": "ads"}
    assert first.libraries["scikit-learn"] and first.libraries["skops"]
    assert first.size_bytes == sum(f["size"] for f in first.files.values()) > 0
    assert [v.version for v in tidal.models.list_versions("ctr")] == [1, 2]
    assert tidal.models.get_version("models:/ctr/latest").version == 2
    assert tidal.models.get_version("ctr", 1).description == "first"
    listed = tidal.models.list_models()
    assert [(m.name, m.latest_version) for m in listed] == [("ctr", 2)]
    pd.testing.assert_frame_equal(first.input_example(), frame.drop(columns="label").head(5))


def test_lineage_walks_from_model_to_run_and_data_and_back(trained):
    _, dataset, _, run, version = trained
    # model version -> run -> params, metrics; model version -> dataset versions
    assert version.run_id == run.id
    assert version.run().params == {"C": "1.0"}
    assert version.run().metrics["accuracy"] == 0.91
    assert [d.uri for d in version.datasets()] == [dataset.uri]
    # dataset version -> runs that read it -> model versions trained on it
    assert dataset.runs() == [run.id]
    assert [v.uri for v in tidal.models.trained_on(dataset)] == [version.uri]
    assert [v.uri for v in tidal.models.trained_on(dataset.uri)] == [version.uri]
    other = tidal.datasets.register("clicks", training_frame(seed=1))
    assert tidal.models.trained_on(other) == []


def test_datasets_can_be_given_explicitly_without_a_run(workspace):
    frame = training_frame()
    first = tidal.datasets.register("a", frame)
    second = tidal.datasets.register("b", frame.head(100))
    version = tidal.models.register("m", fit(frame), datasets=[first, second.uri])
    assert version.run_id is None
    with tidal.start_run("other"):  # run=False keeps an unrelated active run out of lineage
        assert tidal.models.register("m", fit(frame), run=False).run_id is None
    assert sorted(d.uri for d in version.datasets()) == [first.uri, second.uri]
    with pytest.raises(InvalidValueError, match="not a dataset version URI"):
        tidal.models.register("m", fit(frame), datasets=["clicks/1"])


def test_aliases_move_with_history_and_uris_follow_them(trained):
    frame, _, _, _, first = trained
    second = tidal.models.register("ctr", fit(frame, c=0.1))
    tidal.models.set_alias("ctr", "champion", 1, reason="first model")
    assert tidal.models.get_version("models:/ctr@champion").version == 1
    tidal.models.set_alias("ctr", "champion", 2, reason="better AUC")
    tidal.models.set_alias("ctr", "challenger", 1)
    assert tidal.models.get_version("models:/ctr@champion").id == second.id
    assert tidal.models.get_version("ctr", "challenger").version == 1
    assert tidal.models.get_version("ctr", 2).aliases == ["champion"]
    assert tidal.models.load("models:/ctr@champion").version.version == 2
    tidal.models.delete_alias("ctr", "challenger", reason="done")
    history = tidal.models.alias_history("ctr", "champion")
    assert [(e.previous_version, e.version, e.reason) for e in history] == [
        (None, 1, "first model"), (1, 2, "better AUC")]
    removed = tidal.models.alias_history("ctr", "challenger")[-1]
    assert (removed.previous_version, removed.version) == (1, None)
    assert tidal.models.list_models()[0].aliases == {"champion": 2}
    assert first.uri == "models:/ctr/1"


def test_unknown_models_versions_and_aliases_are_named(trained):
    with pytest.raises(AliasNotFoundError, match="no alias 'nope'; its aliases: none"):
        tidal.models.load("models:/ctr@nope")
    tidal.models.set_alias("ctr", "champion", 1)
    with pytest.raises(AliasNotFoundError, match="its aliases: champion"):
        tidal.models.get_version("models:/ctr@nope")
    with pytest.raises(AliasNotFoundError):
        tidal.models.delete_alias("ctr", "nope")
    with pytest.raises(ModelNotFoundError, match="no version 7; its versions run from 1 to 1"):
        tidal.models.get_version("models:/ctr/7")
    with pytest.raises(ModelNotFoundError, match="no model named 'other'; registered models: "
                                                 "ctr"):
        tidal.models.load("models:/other/1")
    with pytest.raises(ModelNotFoundError):
        tidal.models.set_alias("ctr", "champion", 9)
    for bad in ("models:/ctr/zero", "models:/ctr/0", "models:/../x/1", "models:/ctr@1bad",
                "models:/ctr@latest", "", 3):
        with pytest.raises(InvalidValueError):
            tidal.models.get_version(bad)


def test_transitions_follow_the_workflow_and_record_who_when_why(trained):
    *_, version = trained
    with pytest.raises(IllegalTransitionError, match="from registered it can move to "
                                                     "validated, archived"):
        tidal.models.transition(version.uri, "approved", reason="skip the gates")
    with pytest.raises(IllegalTransitionError, match="no gate results"):
        tidal.models.transition(version.uri, "validated", reason="trust me")
    report = tidal.models.validate(version.uri, [tidal.models.size_limit(10_000_000)])
    assert report.passed and report.version.stage == "validated"
    tidal.models.transition(version.uri, "approved", reason="reviewed", by="alice")
    tidal.models.transition(version.uri, "deployed", reason="rollout")
    tidal.models.transition(version.uri, "archived", reason="replaced")
    with pytest.raises(IllegalTransitionError, match="archived is final"):
        tidal.models.transition(version.uri, "registered", reason="undo")
    with pytest.raises(IllegalTransitionError, match="archived"):
        tidal.models.set_alias("ctr", "champion", 1)
    with pytest.raises(InvalidValueError, match="needs a reason"):
        tidal.models.transition(version.uri, "approved", reason=" ")
    with pytest.raises(InvalidValueError, match="is not one of"):
        tidal.models.transition(version.uri, "production", reason="x")
    moves = tidal.models.get_version(version.uri).transitions()
    assert [(t.from_stage, t.to_stage) for t in moves] == [
        (None, "registered"), ("registered", "validated"), ("validated", "approved"),
        ("approved", "deployed"), ("deployed", "archived")]
    assert moves[2].by == "alice" and moves[2].reason == "reviewed"
    assert moves[1].reason.startswith("passed gates: size_limit")
    assert all(t.at is not None for t in moves)


def test_loaded_models_predict_like_the_original_on_every_input_kind(trained):
    frame, _, model, _, version = trained
    loaded = tidal.models.load(version.uri)
    features = frame.drop(columns="label")
    expected = model.predict(features)
    import pyarrow as pa

    for data in (features, pa.Table.from_pandas(features), features.to_numpy(),
                 features.to_dict("list"), features.to_dict("records")):
        np.testing.assert_array_equal(loaded.predict(data), expected)
    np.testing.assert_array_equal(loaded.predict_proba(features), model.predict_proba(features))
    assert tidal.models.load(version.uri) is loaded  # cached per process


def test_a_signature_mismatch_names_every_bad_column(trained):
    frame, *_, version = trained
    loaded = tidal.models.load(version.uri)
    bad = frame.drop(columns=["label", "income"]).assign(age=lambda f: f["age"].astype(str),
                                                         extra=1)
    with pytest.raises(SignatureMismatchError) as caught:
        loaded.predict(bad)
    message = str(caught.value)
    assert "missing column 'income'" in message
    assert "unexpected column 'extra'" in message
    assert "column 'age': expected float64, got string" in message
    assert caught.value.status_code == 422
    # safe casts are made: ints become the float64 the model was trained on
    ints = frame.drop(columns="label").round().astype("int64")
    np.testing.assert_array_equal(loaded.predict(ints), tidal.models.load(version.uri).raw
                                  .predict(ints.astype("float64")))


def test_a_corrupted_artifact_is_refused_before_it_is_deserialized(trained):
    *_, version = trained
    clear_cache()
    digest = version.files["model.skops"]["digest"]
    path = version.workspace.artifacts._blob_path(digest)
    if version.workspace.artifacts.is_local:
        with open(path, "r+b") as blob:
            blob.seek(100)
            blob.write(b"tampered")
    else:
        version.workspace.artifacts._fs.pipe_file(path, b"tampered")
    with pytest.raises(ArtifactCorruptedError, match="fails verification"):
        tidal.models.load(version.uri)


def test_a_missing_flavor_dependency_names_the_extra(trained, monkeypatch):
    *_, version = trained
    clear_cache()
    import sys

    monkeypatch.setitem(sys.modules, "skops.io", None)  # as if skops were not installed
    with pytest.raises(MissingDependencyError, match=r"pip install 'tidal-mlops\[sklearn\]'"):
        tidal.models.load(version.uri)


def test_bad_registration_arguments_are_refused(workspace):
    frame = training_frame()
    model = fit(frame)
    with pytest.raises(InvalidValueError, match="model name"):
        tidal.models.register("../evil", model)
    with pytest.raises(RunNotFoundError):
        tidal.models.register("m", model, run="0" * 32)
    with pytest.raises(tidal.models.FlavorNotFoundError, match="known flavors"):
        tidal.models.register("m", model, flavor="tensorflow")
    with pytest.raises(tidal.models.FlavorNotFoundError, match="no model flavor handles"):
        tidal.models.register("m", object())
    with pytest.raises(InvalidValueError, match="failed to predict on input_example"):
        tidal.models.register("m", model, input_example=frame[["age"]])
    with pytest.raises(InvalidValueError, match="does not take the flavor_options"):
        tidal.models.register("m", model, flavor_options={"compress": True})
    with pytest.raises(InvalidValueError):
        tidal.models.register("m", model, tags={"": "x"})
    with pytest.raises(ModelNotFoundError):
        tidal.models.list_versions("m")  # nothing was registered by the refusals


def test_signature_given_as_a_dict_is_stored(workspace):
    frame = training_frame()
    signature = {"inputs": {"columns": [{"name": c, "type": "float64"} for c in
                                        ["age", "income", "clicks", "tenure"]]},
                 "outputs": {"tensor": {"dtype": "int64", "shape": [-1]}}}
    version = tidal.models.register("m", fit(frame), signature=signature)
    assert version.signature.to_dict()["inputs"] == json.loads(json.dumps(
        {"columns": [{"name": c, "type": "float64", "nullable": False} for c in
                     ["age", "income", "clicks", "tenure"]]}))
    with pytest.raises(InvalidValueError, match="signature"):
        tidal.models.register("m", fit(frame), signature={"inputs": {"columns": []}})


def test_model_info_is_updated(trained):
    info = tidal.models.update_model("ctr", owner="ads-team", purpose="rank ads")
    assert (info.owner, info.purpose) == ("ads-team", "rank ads")
    with pytest.raises(ModelNotFoundError):
        tidal.models.update_model("nope", owner="x")

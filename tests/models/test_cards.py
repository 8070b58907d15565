"""Model cards built from real registrations: what they gather, how Markdown and HTML render
it, that user text is escaped, and the files ``write_card`` leaves."""

from __future__ import annotations

import json
import re
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import sklearn
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler

import tidal
from tidal.errors import InvalidValueError
from tidal.models import ModelNotFoundError, ModelVersion
from tidal.models.cards import Fields, ModelCard, Section, Table, build_card, write_card
from tidal.models.stages import record_gate_results
from tidal.store.workspace import Workspace

DESCRIPTION = "Predicts churn <script>alert('owned')</script> & more"


@dataclass(frozen=True)
class GateResult:
    """What ``record_gate_results`` reads from a gate's result."""

    name: str
    passed: bool
    reasons: list[str] = field(default_factory=list)
    details: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Churn:
    """What ``register_churn`` leaves in a workspace."""

    ws: Workspace
    run_id: str
    dataset_uri: str
    first: ModelVersion  # validated then approved; champion moved from it to the second
    second: ModelVersion  # challenger


def training_frame() -> pd.DataFrame:
    rng = np.random.default_rng(7)
    frame = pd.DataFrame({"age": rng.integers(18, 80, 60).astype("int64"),
                          "income": rng.normal(50.0, 10.0, 60)})
    frame["region"] = ["north", "south"] * 29 + ["north", None]
    frame["churned"] = (frame["age"] > 45).astype("int64")
    return frame


def fit(frame: pd.DataFrame, c: float = 0.5) -> Pipeline:
    model = Pipeline([("scale", StandardScaler()), ("clf", LogisticRegression(C=c))])
    return model.fit(frame[["age", "income"]], frame["churned"])


def register_churn(ws: Workspace) -> Churn:
    """Model "churn": version 1 trained in a run that read dataset "customers", gated (a failed
    run, then a passing one), validated and approved, aliased champion; version 2 took the
    champion alias over and is the challenger."""
    frame = training_frame()
    dataset = tidal.datasets.register("customers", frame, workspace=ws)
    with tidal.start_run("churn", name="logreg", params={"C": 0.5, "penalty": "l2"},
                         workspace=ws, system_metrics=False) as run:
        run.log_input(dataset)
        run.log_metric("accuracy", 0.875)
        run.log_metric("auc", 0.93)
        first = tidal.models.register("churn", fit(frame), run=run,
                                      input_example=frame[["age", "income"]].head(5),
                                      description="baseline | C=0.5", workspace=ws)
    tidal.models.update_model("churn", description=DESCRIPTION, owner="growth-ml",
                              purpose="rank accounts for retention calls", workspace=ws)
    record_gate_results(first, [GateResult("min_accuracy", False, ["accuracy 0.70 < 0.80"])])
    time.sleep(0.01)  # one gate run is the results sharing one timestamp
    record_gate_results(first, [
        GateResult("min_accuracy", True, [], {"accuracy": 0.875}),
        GateResult("fairness", True, ["gap 0.01 within 0.05"])])
    tidal.models.transition("churn/1", "validated", reason="gates passed", by="ana",
                            workspace=ws)
    tidal.models.transition("churn/1", "approved", reason="signed off in review", by="bo",
                            workspace=ws)
    tidal.models.set_alias("churn", "champion", 1, reason="first good model", workspace=ws)
    second = tidal.models.register("churn", fit(frame, c=0.1), run=None, datasets=[dataset],
                                   input_example=frame[["age", "income"]].head(5),
                                   workspace=ws)
    tidal.models.set_alias("churn", "champion", 2, reason="better recall", workspace=ws)
    tidal.models.set_alias("churn", "challenger", 2, workspace=ws)
    first = tidal.models.get_version("churn", 1, workspace=ws)
    second = tidal.models.get_version("churn", 2, workspace=ws)
    return Churn(ws, run.id, dataset.uri, first, second)


def _section(card: ModelCard, title: str) -> Section:
    return next(s for s in card.sections() if s.title == title)


@pytest.fixture
def churn(tmp_path: Path) -> Churn:
    return register_churn(tidal.workspace(tmp_path / "ws"))


@pytest.fixture
def card(churn: Churn) -> ModelCard:
    return build_card("models:/churn/1", workspace=churn.ws)


# -- gathering --------------------------------------------------------------------------------

def test_card_names_the_version_and_the_model_fields(card: ModelCard, churn: Churn):
    assert (card.name, card.version, card.uri) == ("churn", 1, "models:/churn/1")
    assert card.stage == "approved" and card.flavor == "sklearn"
    assert card.aliases == []  # champion moved on to version 2
    assert card.description == DESCRIPTION
    assert card.version_description == "baseline | C=0.5"
    assert (card.owner, card.purpose) == ("growth-ml", "rank accounts for retention calls")
    assert card.digest == churn.first.digest and card.size_bytes == churn.first.size_bytes
    assert card.source is None


def test_card_lineage_reaches_the_run_and_the_profiled_dataset(card: ModelCard, churn: Churn):
    assert card.run is not None
    assert (card.run.id, card.run.experiment, card.run.name, card.run.status) == (
        churn.run_id, "churn", "logreg", "finished")
    assert card.run.params == {"C": "0.5", "penalty": "l2"}
    assert card.run.metrics == {"accuracy": 0.875, "auc": 0.93}
    (dataset,) = card.datasets
    assert (dataset.uri, dataset.rows, dataset.columns) == (churn.dataset_uri, 60, 4)
    assert dataset.digest.startswith("blake2b:")
    assert list(dataset.profile) == ["age", "income", "region", "churned"]
    age = dataset.profile["age"]
    assert set(age) == {"type", "nulls", "min", "max", "mean"}  # no quantiles, no histogram
    assert age["type"] == "int64" and age["nulls"] == 0 and 18 <= age["min"] <= age["max"] < 80
    assert dataset.profile["region"]["nulls"] == 1
    assert "mean" not in dataset.profile["region"]


def test_card_keeps_the_latest_gate_run_and_the_histories(card: ModelCard):
    assert [(g["gate"], g["passed"], g["reasons"]) for g in card.gates] == [
        ("min_accuracy", True, []), ("fairness", True, ["gap 0.01 within 0.05"])]
    assert [(t.from_stage, t.to_stage, t.by, t.reason) for t in card.transitions] == [
        (None, "registered", None, "registered"),
        ("registered", "validated", "ana", "gates passed"),
        ("validated", "approved", "bo", "signed off in review")]
    # champion's two moves concern version 1; challenger only ever pointed at version 2
    assert [(e.alias, e.previous_version, e.version, e.reason) for e in card.alias_events] == [
        ("champion", None, 1, "first good model"), ("champion", 1, 2, "better recall")]


def test_card_has_the_signature_and_library_versions(card: ModelCard):
    assert card.signature is not None and card.signature.columns == ["age", "income"]
    assert card.libraries["scikit-learn"] == sklearn.__version__
    assert {"python", "skops", "numpy"} <= set(card.libraries)


def test_card_by_alias_or_version_object_is_the_same(churn: Churn):
    by_alias = build_card("churn@champion", workspace=churn.ws)
    by_object = build_card(churn.second)
    assert by_alias == by_object
    assert by_alias.version == 2 and by_alias.aliases == ["challenger", "champion"]
    assert by_alias.run is None  # registered outside any run, with its dataset named
    assert [d.uri for d in by_alias.datasets] == [churn.dataset_uri]
    assert by_alias.gates == []


def test_to_dict_is_json(card: ModelCard):
    data = json.loads(json.dumps(card.to_dict()))
    assert data["run"]["params"] == {"C": "0.5", "penalty": "l2"}
    assert data["signature"]["inputs"]["columns"][0] == {"name": "age", "type": "int64",
                                                         "nullable": False}
    assert data["transitions"][1]["reason"] == "gates passed"
    assert data["alias_events"][1]["previous_version"] == 1
    assert data["gates"][0]["details"] == {"accuracy": 0.875}


def test_missing_fields_read_not_set(tmp_path: Path):
    ws = tidal.workspace(tmp_path / "ws")
    frame = training_frame()
    tidal.models.register("bare", fit(frame), workspace=ws)
    card = build_card("bare", workspace=ws)
    (fields,) = _section(card, "Overview").blocks
    assert isinstance(fields, Fields)
    overview = dict(fields.items)
    assert overview["Description"] == overview["Purpose"] == overview["Owner"] == "not set"
    text = card.to_markdown()
    assert "No run is recorded for this version." in text
    assert "No training dataset version is recorded." in text
    assert "No gates have been run on this version." in text
    assert "No signature was recorded" in text


def test_tensor_signature_shows_dtype_and_shape(tmp_path: Path):
    ws = tidal.workspace(tmp_path / "ws")
    frame = training_frame()
    features = frame[["age", "income"]].to_numpy(dtype="float64")
    model = LogisticRegression().fit(features, frame["churned"])
    tidal.models.register("arrays", model, input_example=features[:4], workspace=ws)
    signature = _section(build_card("arrays/1", workspace=ws), "Signature")
    inputs = signature.blocks[1]  # after the "Inputs" subheading
    assert isinstance(inputs, Fields)
    assert inputs.items == [("Tensor dtype", "float64"), ("Shape", "[any, 2]")]


def test_bad_references_fail_with_the_registry_errors(churn: Churn):
    with pytest.raises(ModelNotFoundError, match="no model named 'nope'"):
        build_card("nope/1", workspace=churn.ws)
    with pytest.raises(InvalidValueError, match="model version or its URI"):
        build_card(3, workspace=churn.ws)  # type: ignore[arg-type]


# -- rendering --------------------------------------------------------------------------------

def test_markdown_has_every_section(card: ModelCard, churn: Churn):
    text = card.to_markdown()
    assert text.startswith("# Model card: churn version 1\n")
    for title in ("Overview", "Lineage", "Gate results", "Signature", "Stage history",
                  "Alias history", "Library versions"):
        assert f"\n## {title}\n" in text
    assert f"- **Run id:** {churn.run_id}" in text
    assert "| C | 0.5 |" in text and "| accuracy | 0.875 |" in text
    assert f"- **Dataset:** {churn.dataset_uri}" in text
    assert re.search(r"\| region \| string \| 1 \| ", text)
    assert "| age | int64 | no |" in text
    assert "| validated | approved | bo | " in text and "signed off in review" in text
    assert "| champion | moved from version 1 to 2 |" in text
    assert f"| scikit-learn | {sklearn.__version__} |" in text
    assert "- **Version description:** baseline \\| C=0.5" in text  # a pipe is escaped


def test_user_text_is_escaped_in_html_and_markdown(card: ModelCard):
    page = card.to_html()
    assert "<script" not in page
    assert "&lt;script&gt;alert(&#x27;owned&#x27;)&lt;/script&gt; &amp; more" in page
    assert "<script" not in card.to_markdown()
    assert "&lt;script&gt;" in card.to_markdown()


def test_html_is_a_self_contained_page(card: ModelCard, churn: Churn):
    page = card.to_html()
    assert page.startswith("<!DOCTYPE html>") and page.rstrip().endswith("</html>")
    assert "<style>" in page and "Content-Security-Policy" in page
    for external in ("http://", "https://", "<link", "src=", "@import", "url("):
        assert external not in page
    assert f"<td>{churn.run_id}</td>" in page
    assert "<h2>Stage history</h2>" in page
    assert "<td>gap 0.01 within 0.05</td>" in page


def test_write_card_writes_both_files(churn: Churn, tmp_path: Path):
    markdown, page = write_card("churn/1", tmp_path / "cards" / "new", workspace=churn.ws)
    assert (markdown.name, page.name) == ("churn-v1.md", "churn-v1.html")
    assert markdown.parent == page.parent == tmp_path / "cards" / "new"
    card = build_card("churn/1", workspace=churn.ws)
    assert markdown.read_text(encoding="utf-8") == card.to_markdown()
    assert page.read_text(encoding="utf-8") == card.to_html()


def test_write_card_refuses_a_file_as_folder(churn: Churn, tmp_path: Path):
    target = tmp_path / "taken"
    target.write_text("x")
    with pytest.raises(InvalidValueError, match="is a file"):
        write_card("churn/1", target, workspace=churn.ws)


def test_tables_hold_only_text(card: ModelCard):
    """Renderers escape strings; anything else in a block would slip past them."""
    for section in card.sections():
        for block in section.blocks:
            cells = [c for row in block.rows for c in row] if isinstance(block, Table) else \
                [c for item in block.items for c in item] if isinstance(block, Fields) else []
            assert all(isinstance(c, str) for c in cells), section.title

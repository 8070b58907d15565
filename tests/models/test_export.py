"""ONNX export: real conversions of scikit-learn pipelines, LightGBM and a PyTorch MLP, each
registered with an input example in a temporary workspace, exported, and compared with its
source on rows the export never saw; and the refusals (no example, no converter, too tight a
tolerance, an unknown format).

Fresh rows are compared within the export's own tolerances: rtol=1e-4, atol=1e-5 and equal
labels for plain exports; for quantized ones atol=0.05 plus rtol=0.05 of each output's
largest magnitude.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.compose import ColumnTransformer
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler
from typer.testing import CliRunner

import tidal
from tidal.cli.main import app
from tidal.errors import InvalidValueError
from tidal.models.export import (
    DEFAULT_TOLERANCE,
    QUANTIZED_TOLERANCE,
    ExportError,
    ExportMismatchError,
    Tolerance,
    export_onnx,
)
from tidal.models.flavors.pickled import UntrustedModelError
from tidal.models.loaded import clear_cache, load
from tidal.models.registry import list_versions, register
from tidal.store.workspace import Workspace

NUMERIC = [f"x{i}" for i in range(5)]


@pytest.fixture
def ws(tmp_path: Path) -> Workspace:
    clear_cache()
    return tidal.workspace(tmp_path / "ws")


def frame(n: int, seed: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    data = pd.DataFrame(rng.normal(size=(n, len(NUMERIC))), columns=NUMERIC)
    data["count"] = rng.integers(0, 20, n)  # an int64 column among the floats
    data["city"] = rng.choice(["paris", "lyon", "nice"], n)
    return data


def target(data: pd.DataFrame) -> np.ndarray:
    return (data["x0"] - data["x1"] + 0.1 * data["count"] > 1.0).to_numpy().astype(int)


def assert_close(actual: Any, expected: Any, tolerance: Tolerance) -> None:
    actual = np.asarray(actual, dtype=float).reshape(len(actual), -1)
    expected = np.asarray(expected, dtype=float).reshape(len(expected), -1)
    if tolerance.relative_to == "value":
        np.testing.assert_allclose(actual, expected, rtol=tolerance.rtol, atol=tolerance.atol)
    else:
        allowed = tolerance.atol + tolerance.rtol * np.abs(expected).max(axis=0)
        assert (np.abs(actual - expected) <= allowed).all()


def assert_lineage(report: Any, source: Any, quantize: str | None = None) -> None:
    exported = report.exported
    assert exported.flavor == "onnx"
    assert exported.name == source.name
    assert exported.version > source.version
    assert exported.source_version_id == source.id
    assert exported.source().uri == source.uri
    assert exported.run_id == source.run_id
    assert [d.id for d in exported.datasets()] == [d.id for d in source.datasets()]
    assert exported.signature == source.signature
    assert exported.tags == {"exported_from": source.uri, "format": "onnx",
                             "quantize": quantize or "none"}
    example, original = exported.input_example(), source.input_example()
    if isinstance(original, pd.DataFrame):
        pd.testing.assert_frame_equal(example, original)
    else:
        np.testing.assert_array_equal(example, original)
    assert report.size_before == source.size_bytes > 0
    assert report.size_after == exported.size_bytes > 0
    assert report.latency_before_s > 0 and report.latency_after_s > 0
    assert report.speedup == pytest.approx(report.latency_before_s / report.latency_after_s)
    data = json.loads(json.dumps(report.to_dict()))
    assert data["source"] == source.uri and data["exported"] == exported.uri
    assert data["tolerance"] == report.tolerance.to_dict()
    assert 0 <= report.max_abs_diff


# -- scikit-learn -----------------------------------------------------------------------------

def test_sklearn_pipeline_on_a_dataframe(ws: Workspace) -> None:
    train = frame(400, 0)[[*NUMERIC, "count"]]
    pipeline = Pipeline([("scale", StandardScaler()),
                         ("model", LogisticRegression())]).fit(train, target(frame(400, 0)))
    dataset = tidal.datasets.register("churn-train", train, workspace=ws)
    with tidal.start_run("export", workspace=ws, system_metrics=False):
        source = register("churn", pipeline, input_example=train.head(10),
                          datasets=[dataset], workspace=ws)

    report = export_onnx(source.uri, workspace=ws)

    assert_lineage(report, source)
    assert report.exported.version == source.version + 1 == 2
    assert report.tolerance == DEFAULT_TOLERANCE
    assert report.max_abs_diff <= 1e-5
    assert report.rows_compared == 10
    # All columns are numeric: one 2-D float input, the fastest form.
    assert [name for name, _ in load(report.exported.uri, workspace=ws).raw.inputs] == ["X"]
    fresh = frame(300, 1)[[*NUMERIC, "count"]]
    converted, original = load(report.exported.uri, workspace=ws), load(source.uri,
                                                                        workspace=ws)
    np.testing.assert_array_equal(converted.predict(fresh), original.predict(fresh))
    assert_close(converted.predict_proba(fresh), original.predict_proba(fresh),
                 DEFAULT_TOLERANCE)


def test_column_transformer_with_a_string_column_takes_one_input_per_column(
        ws: Workspace) -> None:
    train = frame(400, 2)
    columns = ColumnTransformer([("num", StandardScaler(), [*NUMERIC, "count"]),
                                 ("cat", OneHotEncoder(handle_unknown="ignore"), ["city"])])
    pipeline = Pipeline([("prep", columns), ("model", LogisticRegression())])
    pipeline.fit(train, np.where(target(train) == 1, "churned", "stayed"))
    source = register("churn-cities", pipeline, input_example=train.head(8), workspace=ws)

    report = export_onnx(source.uri, workspace=ws)

    assert_lineage(report, source)
    converted = load(report.exported.uri, workspace=ws)
    assert [name for name, _ in converted.raw.inputs] == [*NUMERIC, "count", "city"]
    fresh = frame(200, 3)
    original = load(source.uri, workspace=ws)
    labels = converted.predict(fresh)
    assert list(labels) == list(original.predict(fresh))
    assert set(labels) <= {"churned", "stayed"}
    assert_close(converted.predict_proba(fresh), original.predict_proba(fresh),
                 DEFAULT_TOLERANCE)


# -- LightGBM ---------------------------------------------------------------------------------

@pytest.mark.parametrize("labels", ["ints", "strings", "three classes"])
def test_lightgbm_classifier(ws: Workspace, labels: str) -> None:
    lightgbm = pytest.importorskip("lightgbm")
    train = frame(600, 4)[[*NUMERIC, "count"]]
    y = target(train)
    if labels == "strings":
        y = np.where(y == 1, "yes", "no")
    elif labels == "three classes":
        y = np.digitize(train["x2"].to_numpy(), [-0.5, 0.5])
    model = lightgbm.LGBMClassifier(n_estimators=30, num_leaves=15, verbose=-1).fit(train, y)
    with tidal.start_run("export", workspace=ws, system_metrics=False):
        source = register("lgbm", model, input_example=train.head(12), workspace=ws)

    report = export_onnx(source, workspace=ws)

    assert_lineage(report, source)
    fresh = frame(300, 5)[[*NUMERIC, "count"]]
    converted, original = load(report.exported.uri, workspace=ws), load(source.uri,
                                                                        workspace=ws)
    assert list(converted.predict(fresh)) == list(original.predict(fresh))
    assert list(converted.predict(fresh)) == list(model.predict(fresh))
    assert_close(converted.predict_proba(fresh), model.predict_proba(fresh), DEFAULT_TOLERANCE)


def test_pipeline_holding_lightgbm_converts_with_trust(ws: Workspace) -> None:
    lightgbm = pytest.importorskip("lightgbm")
    train = frame(400, 6)[[*NUMERIC, "count"]]
    pipeline = Pipeline([("scale", StandardScaler()),
                         ("model", lightgbm.LGBMClassifier(n_estimators=20, verbose=-1))])
    pipeline.fit(train, target(train))
    source = register("lgbm-pipeline", pipeline, input_example=train.head(10), workspace=ws)

    with pytest.raises(UntrustedModelError):  # skops does not trust LightGBM's classes
        export_onnx(source.uri, workspace=ws)
    report = export_onnx(source.uri, trust=True, workspace=ws)

    assert_lineage(report, source)
    fresh = frame(200, 7)[[*NUMERIC, "count"]]
    converted = load(report.exported.uri, workspace=ws)
    assert list(converted.predict(fresh)) == list(pipeline.predict(fresh))
    assert_close(converted.predict_proba(fresh), pipeline.predict_proba(fresh),
                 DEFAULT_TOLERANCE)


# -- PyTorch ----------------------------------------------------------------------------------

@pytest.fixture
def mlp_version(ws: Workspace) -> Any:
    torch = pytest.importorskip("torch")
    from tests.models.export_nets import ExportMLP

    torch.manual_seed(0)
    rng = np.random.default_rng(8)
    x = rng.normal(size=(512, 6)).astype(np.float32)
    y = ((x @ np.arange(1, 7, dtype=np.float32))[:, None] / 3
         + np.sin(x[:, :1] * 2)).astype(np.float32)
    net = ExportMLP(in_features=6, hidden=32)
    optimizer = torch.optim.Adam(net.parameters(), lr=0.01)
    for _ in range(60):
        optimizer.zero_grad()
        loss = torch.nn.functional.mse_loss(net(torch.from_numpy(x)), torch.from_numpy(y))
        loss.backward()
        optimizer.step()
    net.eval()
    with tidal.start_run("export", workspace=ws, system_metrics=False):
        return register("mlp", net, input_example=x[:16],
                        flavor_options={"init_kwargs": {"in_features": 6, "hidden": 32}},
                        workspace=ws)


def fresh_tensor_rows(n: int = 256) -> np.ndarray:
    return np.random.default_rng(9).normal(size=(n, 6)).astype(np.float32)


def test_pytorch_mlp(ws: Workspace, mlp_version: Any) -> None:
    report = export_onnx(mlp_version.uri, workspace=ws)

    assert_lineage(report, mlp_version)
    converted = load(report.exported.uri, workspace=ws)
    assert converted.raw.session.get_inputs()[0].shape[0] == "batch"  # dynamic batch axis
    fresh = fresh_tensor_rows()
    assert_close(converted.predict(fresh), load(mlp_version.uri, workspace=ws).predict(fresh),
                 DEFAULT_TOLERANCE)


def test_pytorch_mlp_quantized(ws: Workspace, mlp_version: Any) -> None:
    plain = export_onnx(mlp_version.uri, workspace=ws)
    report = export_onnx(mlp_version.uri, quantize="dynamic", workspace=ws)

    assert_lineage(report, mlp_version, quantize="dynamic")
    assert report.exported.version == mlp_version.version + 2
    assert report.tolerance == QUANTIZED_TOLERANCE
    assert report.quantize == "dynamic"
    assert report.size_after < plain.size_after  # int8 weights
    converted = load(report.exported.uri, workspace=ws)
    ops = {node.op_type for node in __import__("onnx").load_from_string(
        converted.version.stored_files().read_bytes("model.onnx")).graph.node}
    assert "Gemm" not in ops and ops & {"DynamicQuantizeMatMul", "MatMulInteger"}
    fresh = fresh_tensor_rows()
    expected = load(mlp_version.uri, workspace=ws).predict(fresh)
    assert_close(converted.predict(fresh), expected, QUANTIZED_TOLERANCE)
    # Quantized, not broken: far closer to the source than the outputs' own spread.
    error = np.abs(converted.predict(fresh).reshape(-1) - expected.reshape(-1))
    assert error.mean() < 0.05 * expected.std()


# -- refusals ---------------------------------------------------------------------------------

def simple_pipeline() -> tuple[Pipeline, pd.DataFrame]:
    train = frame(200, 10)[NUMERIC]
    return Pipeline([("scale", StandardScaler()), ("model", LogisticRegression())]).fit(
        train, target(frame(200, 10))), train


def test_no_input_example_is_refused(ws: Workspace) -> None:
    pipeline, _ = simple_pipeline()
    source = register("plain", pipeline, workspace=ws)

    with pytest.raises(InvalidValueError) as raised:
        export_onnx(source.uri, workspace=ws)

    assert raised.value.field == "input_example"
    assert "input_example=" in raised.value.message
    assert len(list_versions("plain", workspace=ws)) == 1


class Pyfunc:
    def predict(self, data: Any) -> Any:
        return np.zeros(len(data))


class Threshold(ClassifierMixin, BaseEstimator):
    """A custom scikit-learn estimator, which skl2onnx has no converter for."""

    def fit(self, x: Any, y: Any) -> Threshold:
        self.classes_ = np.unique(y)
        return self

    def predict(self, x: Any) -> Any:
        return (np.asarray(x)[:, 0] > 0).astype(int)


def test_flavor_without_converter_is_refused(ws: Workspace) -> None:
    data = frame(5, 11)[NUMERIC]
    source = register("rules", Pyfunc(), input_example=data, workspace=ws)

    with pytest.raises(ExportError) as raised:
        export_onnx(source.uri, workspace=ws)

    assert raised.value.status_code == 422
    assert "pyfunc" in raised.value.message
    assert "sklearn, lightgbm, pytorch" in raised.value.message


def test_estimator_without_converter_is_refused(ws: Workspace) -> None:
    data = frame(50, 12)[NUMERIC]
    model = Pipeline([("scale", StandardScaler()), ("rule", Threshold())]).fit(data,
                                                                              target(frame(50,
                                                                                           12)))
    source = register("custom", model, input_example=data.head(5), workspace=ws)

    with pytest.raises(UntrustedModelError):
        export_onnx(source.uri, workspace=ws)
    with pytest.raises(ExportError) as raised:
        export_onnx(source.uri, trust=True, workspace=ws)

    assert "Threshold" in raised.value.message
    assert len(list_versions("custom", workspace=ws)) == 1


def test_mismatch_beyond_tolerance_registers_nothing(ws: Workspace) -> None:
    pipeline, train = simple_pipeline()
    source = register("tight", pipeline, input_example=train.head(10), workspace=ws)

    # float32 against float64 cannot be exact.
    with pytest.raises(ExportMismatchError) as raised:
        export_onnx(source.uri, tolerance={"rtol": 0.0, "atol": 0.0}, workspace=ws)

    assert raised.value.status_code == 422
    assert 0 < raised.value.max_abs_diff < 1e-5
    assert "nothing was registered" in raised.value.message
    assert len(list_versions("tight", workspace=ws)) == 1


def test_quantizing_a_graph_without_weights_to_quantize_is_refused(ws: Workspace) -> None:
    pipeline, train = simple_pipeline()
    source = register("linear", pipeline, input_example=train.head(5), workspace=ws)

    with pytest.raises(ExportError, match="nothing to quantize: it quantizes"):
        export_onnx(source.uri, quantize="dynamic", workspace=ws)
    with pytest.raises(InvalidValueError) as raised:
        export_onnx(source.uri, quantize="static", workspace=ws)
    assert raised.value.field == "quantize"
    with pytest.raises(InvalidValueError) as raised:
        export_onnx(source.uri, tolerance={"rtol": -1}, workspace=ws)
    assert raised.value.field == "tolerance"
    assert len(list_versions("linear", workspace=ws)) == 1


# -- the command ------------------------------------------------------------------------------

def invoke(*args: str) -> Any:
    """``tidal models ...`` through the real command line."""
    return CliRunner().invoke(app, ["models", *args],
                              env={"COLUMNS": "200", "NO_COLOR": "1"}, catch_exceptions=False)


def test_cli_export(tmp_path: Path) -> None:
    ws = tidal.workspace(tmp_path / "cli-ws")
    pipeline, train = simple_pipeline()
    register("cli-model", pipeline, input_example=train.head(5), workspace=ws)
    location = str(tmp_path / "cli-ws")

    shown = invoke("export", "cli-model/1", "--format", "onnx", "-w", location)
    assert shown.exit_code == 0, shown.output
    for fragment in ("models:/cli-model/1", "models:/cli-model/2", "single-row latency",
                     "max |difference|", "rtol=0.0001, atol=1e-05, labels exact", "size"):
        assert fragment in shown.stdout

    data = json.loads(invoke("export", "models:/cli-model/1", "--format", "onnx", "--json",
                             "-w", location).stdout)
    assert data["source"] == "models:/cli-model/1"
    assert data["exported"] == "models:/cli-model/3"
    assert data["max_abs_diff"] <= 1e-5 and data["speedup"] > 0


def test_cli_refuses_other_formats_and_bad_references(tmp_path: Path) -> None:
    refused = invoke("export", "cli-model/1", "--format", "tflite", "-w", str(tmp_path / "x"))
    assert refused.exit_code == 2
    assert refused.stderr.startswith("error: ")
    assert "tflite" in refused.stderr and "--format onnx" in refused.stderr
    assert "Traceback" not in refused.stderr
    assert not (tmp_path / "x").exists()  # refused before any workspace was opened

    missing = invoke("export", "cli-model/1", "-w", str(tmp_path / "x"))
    assert missing.exit_code == 2 and "--format" in missing.output

    bad = invoke("export", "cli-model/zero", "--format", "onnx", "-w", str(tmp_path / "x"))
    assert bad.exit_code == 2 and "version" in bad.stderr

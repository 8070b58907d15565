"""The ONNX flavor: graphs converted from scikit-learn, run with ONNX Runtime on one thread.

ONNX Runtime computes in float32 where scikit-learn computes in float64, so converted models
are compared with their originals within rtol=1e-5, atol=1e-6 on probabilities and values,
and labels exactly; the loaded model is compared exactly with a session on the original graph.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import onnxruntime as ort
import pandas as pd
import pytest
from skl2onnx import to_onnx
from sklearn.compose import ColumnTransformer
from sklearn.datasets import load_iris, make_regression
from sklearn.linear_model import LinearRegression, LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler

from tidal.errors import InvalidValueError
from tidal.models.flavors.base import FolderFiles
from tidal.models.flavors.onnx import ONNXFlavor, session_options
from tidal.models.flavors.registry import get_flavor

FLAVOR = ONNXFlavor()
RTOL, ATOL = 1e-5, 1e-6


def roundtrip(model: Any, tmp_path: Path) -> Any:
    """Save, pass the metadata through JSON as the registry stores it, and load."""
    directory = tmp_path / "model"
    directory.mkdir(parents=True)
    metadata = json.loads(json.dumps(FLAVOR.save(model, directory, {})))
    assert FolderFiles(directory).names() == ["model.onnx"]
    return FLAVOR.load(FolderFiles(directory), metadata, trust=False)


def test_builtin_table_names_the_flavor() -> None:
    flavor = get_flavor("onnx")
    assert isinstance(flavor, ONNXFlavor)
    assert (flavor.packages, flavor.extra, flavor.safe) == (("onnxruntime", "onnx"), "onnx",
                                                            True)


def test_classifier_labels_and_probabilities(tmp_path: Path) -> None:
    iris = load_iris()
    x, y = iris.data, iris.target
    model = LogisticRegression(max_iter=1000).fit(x, y)
    proto = to_onnx(model, x[:1].astype(np.float32), options={"zipmap": False})
    loaded = roundtrip(proto, tmp_path)

    assert FLAVOR.has_predict_proba(loaded)
    direct = ort.InferenceSession(proto.SerializeToString(), providers=["CPUExecutionProvider"])
    labels, probabilities = direct.run(None, {"X": x.astype(np.float32)})
    frame = pd.DataFrame(x, columns=iris.feature_names)
    for data in (frame, x):
        predicted = FLAVOR.predict(loaded, data)
        np.testing.assert_array_equal(predicted, labels)
        np.testing.assert_array_equal(predicted, model.predict(x))
        proba = FLAVOR.predict_proba(loaded, data)
        np.testing.assert_array_equal(proba, probabilities)
        np.testing.assert_allclose(proba, model.predict_proba(x), rtol=RTOL, atol=ATOL)


def test_the_unsaved_graph_predicts_too() -> None:
    """The registry predicts on the input example with the model it was given, before saving
    it, to infer a signature: the flavor runs a ModelProto as it runs a loaded model."""
    x, y = load_iris(return_X_y=True)
    proto = to_onnx(LogisticRegression(max_iter=1000).fit(x, y), x[:1].astype(np.float32),
                    options={"zipmap": False})
    direct = ort.InferenceSession(proto.SerializeToString(), providers=["CPUExecutionProvider"])
    labels, probabilities = direct.run(None, {"X": x.astype(np.float32)})
    assert FLAVOR.has_predict_proba(proto)
    np.testing.assert_array_equal(FLAVOR.predict(proto, x), labels)
    np.testing.assert_array_equal(FLAVOR.predict_proba(proto, x), probabilities)


def test_regressor_gives_one_value_per_row(tmp_path: Path) -> None:
    x, y = make_regression(n_samples=300, n_features=5, noise=1.0, random_state=0)
    model = LinearRegression().fit(x, y)
    loaded = roundtrip(to_onnx(model, x[:1].astype(np.float32)), tmp_path)

    assert not FLAVOR.has_predict_proba(loaded)
    with pytest.raises(NotImplementedError):
        FLAVOR.predict_proba(loaded, x)
    predicted = FLAVOR.predict(loaded, pd.DataFrame(x))
    assert predicted.shape == (300,)
    # Targets are in the hundreds: float32 keeps about 7 significant digits.
    np.testing.assert_allclose(predicted, model.predict(x), rtol=RTOL, atol=1e-3)
    np.testing.assert_array_equal(FLAVOR.predict(loaded, x), predicted)


def test_columns_feed_per_column_inputs(tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    frame = pd.DataFrame({"size": rng.normal(size=300),
                          "colour": rng.choice(["red", "green", "blue"], size=300)})
    y = (frame["size"] + (frame["colour"] == "red") > 0.5).astype(np.int64)
    model = make_pipeline(
        ColumnTransformer([("num", StandardScaler(), ["size"]),
                           ("cat", OneHotEncoder(), ["colour"])]),
        LogisticRegression()).fit(frame, y)
    proto = to_onnx(model, frame[:1], options={"zipmap": False})
    loaded = roundtrip(proto, tmp_path)

    assert [name for name, _ in loaded.inputs] == ["size", "colour"]
    # The columns' order and extra columns do not matter: inputs are fed by name.
    shuffled = frame[["colour", "size"]].assign(extra=1)
    np.testing.assert_array_equal(FLAVOR.predict(loaded, shuffled), model.predict(frame))
    np.testing.assert_allclose(FLAVOR.predict_proba(loaded, frame), model.predict_proba(frame),
                               rtol=RTOL, atol=ATOL)
    with pytest.raises(InvalidValueError, match="DataFrame") as not_a_frame:
        FLAVOR.predict(loaded, frame.to_numpy())
    assert not_a_frame.value.field == "data"
    with pytest.raises(InvalidValueError, match="colour"):
        FLAVOR.predict(loaded, frame[["size"]])


def test_sessions_run_on_one_thread() -> None:
    assert session_options().intra_op_num_threads == 1


def test_refusals(tmp_path: Path) -> None:
    x = np.zeros((2, 2), dtype=np.float32)
    proto = to_onnx(LinearRegression().fit(x, [0.0, 1.0]), x)
    assert FLAVOR.handles(proto) and not FLAVOR.handles(x)

    with pytest.raises(InvalidValueError) as options:
        FLAVOR.save(proto, tmp_path, {"providers": ["CUDAExecutionProvider"]})
    assert options.value.field == "flavor_options"
    with pytest.raises(InvalidValueError, match="onnx.ModelProto"):
        FLAVOR.save(proto.graph, tmp_path, {})
    broken = onnx.ModelProto()
    broken.CopyFrom(proto)
    broken.graph.node[0].input[0] = "no_such_tensor"
    with pytest.raises(InvalidValueError, match="not valid") as invalid:
        FLAVOR.save(broken, tmp_path, {})
    assert invalid.value.field == "model"
    assert list(tmp_path.iterdir()) == []

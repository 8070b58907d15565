"""The river flavor: pickled online models, loaded only with trust, that keep learning."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from river import linear_model, preprocessing, tree

from tidal.errors import InvalidValueError
from tidal.models.flavors.base import FolderFiles, ModelFiles
from tidal.models.flavors.pickled import UntrustedModelError
from tidal.models.flavors.registry import get_flavor
from tidal.models.flavors.river import RiverFlavor

FLAVOR = RiverFlavor()


def dataset(rows: int = 300) -> tuple[pd.DataFrame, pd.Series]:
    rng = np.random.default_rng(0)
    frame = pd.DataFrame(rng.normal(size=(rows, 3)), columns=["a", "b", "c"])
    y = pd.Series(frame["a"] + 0.5 * frame["b"] > 0)
    return frame, y


def learnt(model: Any, frame: pd.DataFrame, y: pd.Series) -> Any:
    for x, target in zip(frame.to_dict("records"), y, strict=True):
        model.learn_one(x, target)
    return model


def save(model: Any, tmp_path: Path) -> tuple[FolderFiles, dict[str, Any]]:
    directory = tmp_path / "model"
    directory.mkdir(parents=True)
    metadata = json.loads(json.dumps(FLAVOR.save(model, directory, {})))
    assert FolderFiles(directory).names() == ["model.pkl"]
    return FolderFiles(directory), metadata


def test_builtin_table_names_the_flavor() -> None:
    flavor = get_flavor("river")
    assert isinstance(flavor, RiverFlavor)
    assert (flavor.packages, flavor.extra, flavor.safe) == (("river",), "river", False)


def test_loading_without_trust_reads_nothing(tmp_path: Path) -> None:
    frame, y = dataset()
    _, metadata = save(learnt(tree.HoeffdingTreeClassifier(), frame, y), tmp_path)

    class Untouchable(ModelFiles):
        def names(self) -> list[str]:
            raise AssertionError("listed the files of an untrusted model")

        def read_bytes(self, name: str) -> bytes:
            raise AssertionError("read an untrusted model")

        def path(self, name: str) -> Path:
            raise AssertionError("opened an untrusted model")

    with pytest.raises(UntrustedModelError, match="trust=True") as refused:
        FLAVOR.load(Untouchable(), metadata, trust=False)
    assert refused.value.status_code == 403
    assert "pickle" in refused.value.message and "river" in refused.value.message


@pytest.mark.parametrize(("make", "batched"), [
    (tree.HoeffdingTreeClassifier, False),
    (lambda: preprocessing.StandardScaler() | linear_model.LogisticRegression(), True),
    (lambda: preprocessing.StandardScaler() | tree.HoeffdingTreeClassifier(), False),
], ids=["tree", "mini-batch-pipeline", "row-pipeline"])
def test_trusted_classifier_predicts_exactly(tmp_path: Path, make: Any, batched: bool) -> None:
    frame, y = dataset()
    model = learnt(make(), frame, y)
    files, metadata = save(model, tmp_path)
    loaded = FLAVOR.load(files, metadata, trust=True)

    rows = frame.to_dict("records")
    labels = np.asarray([model.predict_one(x) for x in rows])
    probabilities = pd.DataFrame([model.predict_proba_one(x) for x in rows])
    assert FLAVOR.has_predict_proba(loaded)
    predicted = FLAVOR.predict(loaded, frame)
    proba = FLAVOR.predict_proba(loaded, frame)
    assert list(proba.columns) == [False, True]
    if batched:
        # The mini-batch path computes with matrices; it is compared with itself on the original.
        labels = model.predict_many(frame).to_numpy()
        probabilities = model.predict_proba_many(frame)
    np.testing.assert_array_equal(predicted, labels)
    np.testing.assert_array_equal(proba.to_numpy(),
                                  probabilities.reindex(columns=[False, True]).to_numpy())

    # The loaded object is the river model: it goes on learning.
    loaded.learn_one(rows[0], True)


def test_regressor_from_an_array(tmp_path: Path) -> None:
    rng = np.random.default_rng(2)
    x = rng.normal(size=(200, 2))
    y = x @ np.array([1.5, -2.0]) + 0.1 * rng.normal(size=200)
    model = tree.HoeffdingTreeRegressor()
    for row, target in zip(pd.DataFrame(x).to_dict("records"), y, strict=True):
        model.learn_one(row, target)
    files, metadata = save(model, tmp_path)
    loaded = FLAVOR.load(files, metadata, trust=True)

    assert not FLAVOR.has_predict_proba(loaded)
    with pytest.raises(NotImplementedError):
        FLAVOR.predict_proba(loaded, x)
    want = np.asarray([model.predict_one(row) for row in pd.DataFrame(x).to_dict("records")])
    np.testing.assert_array_equal(FLAVOR.predict(loaded, x), want)
    np.testing.assert_array_equal(FLAVOR.predict(loaded, pd.DataFrame(x)), want)


def test_detection_and_options(tmp_path: Path) -> None:
    assert FLAVOR.handles(tree.HoeffdingTreeClassifier())
    assert FLAVOR.handles(preprocessing.StandardScaler() | linear_model.LinearRegression())
    assert not FLAVOR.handles(pd.DataFrame())
    with pytest.raises(InvalidValueError) as refused:
        FLAVOR.save(tree.HoeffdingTreeClassifier(), tmp_path, {"protocol": 4})
    assert refused.value.field == "flavor_options"

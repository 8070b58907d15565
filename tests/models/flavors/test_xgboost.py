"""The XGBoost flavor: UBJSON round trips that predict exactly as the original objects."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import xgboost as xgb
from sklearn.datasets import load_iris, make_classification, make_regression

from tidal.errors import InvalidValueError
from tidal.models.flavors.base import FolderFiles
from tidal.models.flavors.registry import get_flavor
from tidal.models.flavors.xgboost import XGBoostFlavor

FLAVOR = XGBoostFlavor()


def roundtrip(model: Any, tmp_path: Path) -> tuple[Any, dict[str, Any]]:
    """Save, pass the metadata through JSON as the registry stores it, and load."""
    directory = tmp_path / "model"
    directory.mkdir(parents=True)
    metadata = json.loads(json.dumps(FLAVOR.save(model, directory, {})))
    assert FolderFiles(directory).names() == ["model.ubj"]
    return FLAVOR.load(FolderFiles(directory), metadata, trust=False), metadata


def frame(x: np.ndarray) -> pd.DataFrame:
    return pd.DataFrame(x, columns=[f"f{i}" for i in range(x.shape[1])])


def test_builtin_table_names_the_flavor() -> None:
    flavor = get_flavor("xgboost")
    assert isinstance(flavor, XGBoostFlavor)
    assert (flavor.packages, flavor.extra, flavor.safe) == (("xgboost",), "xgboost", True)


def test_classifiers_predict_exactly(tmp_path: Path) -> None:
    binary_x, binary_y = make_classification(n_samples=400, n_features=6, random_state=0)
    iris = load_iris()
    cases = [
        (xgb.XGBClassifier(n_estimators=20, max_depth=3, random_state=0), binary_x, binary_y),
        (xgb.XGBClassifier(n_estimators=10, random_state=0), iris.data, iris.target),
        (xgb.XGBRFClassifier(n_estimators=8, random_state=0), binary_x, binary_y),
    ]
    for number, (model, x, y) in enumerate(cases):
        model.fit(frame(x), y)
        loaded, metadata = roundtrip(model, tmp_path / str(number))
        assert metadata == {"wrapper": type(model).__name__, "missing": None}
        assert type(loaded) is type(model)
        assert FLAVOR.has_predict_proba(loaded)
        for data in (frame(x), x):
            np.testing.assert_array_equal(FLAVOR.predict(loaded, data), model.predict(data))
            np.testing.assert_array_equal(FLAVOR.predict_proba(loaded, data),
                                          model.predict_proba(data))


def test_early_stopping_keeps_the_best_iteration(tmp_path: Path) -> None:
    x, y = make_classification(n_samples=500, n_features=8, flip_y=0.2, random_state=1)
    model = xgb.XGBClassifier(n_estimators=300, learning_rate=0.5, early_stopping_rounds=3,
                              random_state=0)
    model.fit(x[:350], y[:350], eval_set=[(x[350:], y[350:])], verbose=False)
    assert model.best_iteration < 299
    loaded, _ = roundtrip(model, tmp_path)
    assert loaded.best_iteration == model.best_iteration
    np.testing.assert_array_equal(FLAVOR.predict_proba(loaded, x), model.predict_proba(x))


def test_regressor_ranker_and_missing_value(tmp_path: Path) -> None:
    x, y = make_regression(n_samples=300, n_features=5, noise=0.5, random_state=2)
    x_missing = np.where(np.abs(x) < 0.3, -999.0, x)
    regressor = xgb.XGBRegressor(n_estimators=20, missing=-999.0, random_state=0)
    regressor.fit(x_missing, y)
    ranker = xgb.XGBRanker(n_estimators=10, random_state=0)
    ranker.fit(x, np.digitize(y, np.percentile(y, [25, 50, 75])), qid=np.repeat(np.arange(10), 30))

    for name, model, data in (("regressor", regressor, x_missing), ("ranker", ranker, x)):
        loaded, metadata = roundtrip(model, tmp_path / name)
        assert type(loaded) is type(model)
        assert not FLAVOR.has_predict_proba(loaded)
        with pytest.raises(NotImplementedError):
            FLAVOR.predict_proba(loaded, data)
        np.testing.assert_array_equal(FLAVOR.predict(loaded, data), model.predict(data))
    assert metadata["missing"] is None
    loaded, metadata = roundtrip(regressor, tmp_path / "again")
    assert metadata["missing"] == -999.0 and loaded.missing == -999.0


def test_booster_predicts_through_a_dmatrix(tmp_path: Path) -> None:
    x, y = make_regression(n_samples=300, n_features=4, random_state=3)
    data = frame(x).assign(colour=pd.Categorical(np.array(["red", "green", "blue"])[
        np.arange(300) % 3]))
    booster = xgb.train({"max_depth": 3, "seed": 0},
                        xgb.DMatrix(data, y, enable_categorical=True), num_boost_round=15)
    loaded, metadata = roundtrip(booster, tmp_path)
    assert metadata == {"wrapper": "Booster"}
    assert loaded.feature_names == booster.feature_names
    expected = booster.predict(xgb.DMatrix(data, enable_categorical=True))
    np.testing.assert_array_equal(FLAVOR.predict(loaded, data), expected)
    assert not FLAVOR.has_predict_proba(loaded)

    numeric = xgb.train({"max_depth": 3, "seed": 0}, xgb.DMatrix(frame(x), y),
                        num_boost_round=10)
    loaded, _ = roundtrip(numeric, tmp_path / "numeric")
    expected = numeric.predict(xgb.DMatrix(frame(x)))
    np.testing.assert_array_equal(FLAVOR.predict(loaded, x), expected)
    np.testing.assert_array_equal(FLAVOR.predict(loaded, frame(x)), expected)


def test_wrapper_names_come_from_the_allow_list(tmp_path: Path) -> None:
    """The metadata names a wrapper; anything but XGBoost's own is refused, never imported."""
    x, y = make_classification(n_samples=100, n_features=4, random_state=4)
    model = xgb.XGBClassifier(n_estimators=3).fit(x, y)
    metadata = FLAVOR.save(model, tmp_path, {})
    for wrapper in ("os.system", "XGBModel", "DMatrix", None):
        with pytest.raises(InvalidValueError, match="expected one of") as refused:
            FLAVOR.load(FolderFiles(tmp_path), {**metadata, "wrapper": wrapper}, trust=True)
        assert refused.value.field == "metadata"


def test_subclass_is_stored_as_its_xgboost_wrapper(tmp_path: Path) -> None:
    x, y = make_classification(n_samples=100, n_features=4, random_state=5)
    model = MyClassifier(n_estimators=3).fit(x, y)
    loaded, metadata = roundtrip(model, tmp_path)
    assert metadata["wrapper"] == "XGBClassifier"
    np.testing.assert_array_equal(FLAVOR.predict_proba(loaded, x), model.predict_proba(x))


class MyClassifier(xgb.XGBClassifier):
    pass


def test_detection_refusals_and_options(tmp_path: Path) -> None:
    x, y = make_classification(n_samples=100, n_features=4, random_state=6)
    model = xgb.XGBClassifier(n_estimators=3).fit(x, y)
    assert FLAVOR.handles(model) and FLAVOR.handles(model.get_booster())
    assert not FLAVOR.handles(x)

    with pytest.raises(InvalidValueError) as refused:
        FLAVOR.save(model, tmp_path, {"format": "json"})
    assert refused.value.field == "flavor_options"
    with pytest.raises(InvalidValueError, match="not fitted"):
        FLAVOR.save(xgb.XGBRegressor(), tmp_path, {})
    with pytest.raises(InvalidValueError, match="Booster or one of"):
        FLAVOR.save(xgb.DMatrix(x, y), tmp_path, {})
    assert list(tmp_path.iterdir()) == []

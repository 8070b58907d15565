"""The LightGBM flavor: native text round trips that predict exactly as the original objects."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import lightgbm as lgb
import numpy as np
import pandas as pd
import pytest
from sklearn.datasets import load_iris, make_classification, make_regression

from tidal.errors import InvalidValueError
from tidal.models.flavors.base import FolderFiles
from tidal.models.flavors.lightgbm import LightGBMFlavor
from tidal.models.flavors.registry import get_flavor

FLAVOR = LightGBMFlavor()

# The original wrappers warn when given an array after fitting on a DataFrame; the comparison
# with an array input is the point here.
pytestmark = pytest.mark.filterwarnings("ignore:X does not have valid feature names")


def roundtrip(model: Any, tmp_path: Path) -> tuple[Any, dict[str, Any]]:
    """Save, pass the metadata through JSON as the registry stores it, and load."""
    directory = tmp_path / "model"
    directory.mkdir(parents=True)
    metadata = json.loads(json.dumps(FLAVOR.save(model, directory, {})))
    assert FolderFiles(directory).names() == ["model.txt"]
    return FLAVOR.load(FolderFiles(directory), metadata, trust=False), metadata


def frame(x: np.ndarray) -> pd.DataFrame:
    return pd.DataFrame(x, columns=[f"f{i}" for i in range(x.shape[1])])


def test_builtin_table_names_the_flavor() -> None:
    flavor = get_flavor("lightgbm")
    assert isinstance(flavor, LightGBMFlavor)
    assert (flavor.packages, flavor.extra, flavor.safe) == (("lightgbm",), "lightgbm", True)


def test_binary_classifier_predicts_exactly(tmp_path: Path) -> None:
    x, y = make_classification(n_samples=400, n_features=6, random_state=0)
    model = lgb.LGBMClassifier(n_estimators=30, random_state=0, verbose=-1).fit(frame(x), y)
    loaded, metadata = roundtrip(model, tmp_path)

    assert metadata == {"kind": "classifier", "classes": [0, 1], "classes_dtype": "<i8",
                        "objective": "binary"}
    assert FLAVOR.has_predict_proba(loaded)
    for data in (frame(x), x):
        np.testing.assert_array_equal(FLAVOR.predict(loaded, data), model.predict(data))
        np.testing.assert_array_equal(FLAVOR.predict_proba(loaded, data),
                                      model.predict_proba(data))
    assert FLAVOR.predict(loaded, x).dtype == model.predict(x).dtype


def test_multiclass_string_labels_stay_strings(tmp_path: Path) -> None:
    iris = load_iris()
    x = frame(iris.data)
    y = pd.Series(iris.target_names[iris.target], dtype=object)
    model = lgb.LGBMClassifier(n_estimators=20, random_state=0, verbose=-1).fit(x, y)
    loaded, metadata = roundtrip(model, tmp_path)

    assert metadata["classes"] == ["setosa", "versicolor", "virginica"]
    assert metadata["objective"] == "multiclass"
    predicted = FLAVOR.predict(loaded, x)
    np.testing.assert_array_equal(predicted, model.predict(x))
    assert isinstance(predicted[0], str)
    np.testing.assert_array_equal(FLAVOR.predict_proba(loaded, iris.data),
                                  model.predict_proba(iris.data))


def test_early_stopping_keeps_the_best_iteration(tmp_path: Path) -> None:
    x, y = make_classification(n_samples=500, n_features=8, flip_y=0.2, random_state=1)
    model = lgb.LGBMClassifier(n_estimators=500, learning_rate=0.3, random_state=0, verbose=-1)
    model.fit(x[:350], y[:350], eval_X=x[350:], eval_y=y[350:],
              callbacks=[lgb.early_stopping(3, verbose=False)])
    assert 0 < model.best_iteration_ < 500
    loaded, _ = roundtrip(model, tmp_path)
    np.testing.assert_array_equal(FLAVOR.predict_proba(loaded, x), model.predict_proba(x))


def test_regressor_ranker_and_booster(tmp_path: Path) -> None:
    x, y = make_regression(n_samples=300, n_features=5, noise=0.5, random_state=2)
    regressor = lgb.LGBMRegressor(n_estimators=25, random_state=0, verbose=-1).fit(x, y)
    ranker = lgb.LGBMRanker(n_estimators=10, min_child_samples=5, verbose=-1)
    ranker.fit(x, np.digitize(y, np.percentile(y, [25, 50, 75])), group=[30] * 10)
    booster = lgb.train({"objective": "regression", "verbose": -1},
                        lgb.Dataset(frame(x), y), num_boost_round=15)

    for name, model in (("regressor", regressor), ("ranker", ranker), ("booster", booster)):
        loaded, metadata = roundtrip(model, tmp_path / name)
        assert metadata == {"kind": name}
        assert not FLAVOR.has_predict_proba(loaded)
        with pytest.raises(NotImplementedError):
            FLAVOR.predict_proba(loaded, x)
        for data in (frame(x), x):
            np.testing.assert_array_equal(FLAVOR.predict(loaded, data), model.predict(data))


def test_detection_refusals_and_options(tmp_path: Path) -> None:
    x, y = make_classification(n_samples=100, n_features=4, random_state=3)
    model = lgb.LGBMClassifier(n_estimators=5, verbose=-1).fit(x, y)
    assert FLAVOR.handles(model) and FLAVOR.handles(model.booster_)
    assert not FLAVOR.handles(x) and not FLAVOR.handles(pd.DataFrame(x))

    with pytest.raises(InvalidValueError) as refused:
        FLAVOR.save(model, tmp_path, {"format": "pickle"})
    assert refused.value.field == "flavor_options"
    with pytest.raises(InvalidValueError, match="not fitted") as unfitted:
        FLAVOR.save(lgb.LGBMRegressor(), tmp_path, {})
    assert unfitted.value.field == "model"
    with pytest.raises(InvalidValueError, match="Booster, LGBMClassifier"):
        FLAVOR.save(lgb.Dataset(x, y), tmp_path, {})
    assert list(tmp_path.iterdir()) == []


@pytest.mark.filterwarnings("ignore:Cannot compute class probabilities")
def test_custom_objective_classifier_gives_raw_scores(tmp_path: Path) -> None:
    """With a Python objective LGBMClassifier.predict returns raw scores, not labels; the
    loaded model does the same and has no probabilities."""

    def logloss(y_true: np.ndarray, raw: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        p = 1.0 / (1.0 + np.exp(-raw))
        return p - y_true, p * (1.0 - p)

    x, y = make_classification(n_samples=200, n_features=4, random_state=4)
    model = lgb.LGBMClassifier(objective=logloss, n_estimators=10, verbose=-1).fit(x, y)
    loaded, metadata = roundtrip(model, tmp_path)
    assert metadata["objective"] == "custom"
    assert not FLAVOR.has_predict_proba(loaded)
    np.testing.assert_array_equal(FLAVOR.predict(loaded, x), model.predict(x))

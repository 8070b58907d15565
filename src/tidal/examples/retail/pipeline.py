"""The retail model and its retraining pipeline: one-hot categories, scaled numbers and a
histogram gradient-boosting classifier, the kind of model a click-through team ships first."""

from __future__ import annotations

from typing import Any

import tidal
from tidal.examples.retail.stream import FEATURES

CATEGORICAL = ["segment", "category", "device"]
#: The hour of the day is one-hot encoded too: a model fitted on a few hours of traffic (as the
#: loop's retraining window is) must not extrapolate a trend to hours it never saw.
HOURLY = ["hour"]
NUMERIC = [c for c in FEATURES if c not in CATEGORICAL and c not in HOURLY]


def make_model(kind: str = "boosting", seed: int = 0) -> Any:
    """An unfitted scikit-learn pipeline: "boosting" or "logistic"."""
    from sklearn.compose import ColumnTransformer
    from sklearn.ensemble import HistGradientBoostingClassifier
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import OneHotEncoder, StandardScaler

    encode = ColumnTransformer([
        ("categories", OneHotEncoder(handle_unknown="ignore", sparse_output=False),
         CATEGORICAL + HOURLY),
        ("numbers", StandardScaler(), NUMERIC)])
    if kind == "logistic":
        classifier: Any = LogisticRegression(max_iter=500)
    elif kind == "boosting":
        classifier = HistGradientBoostingClassifier(max_iter=100, learning_rate=0.1,
                                                    random_state=seed)
    else:
        raise ValueError(f"model kind must be boosting or logistic, got {kind!r}")
    return Pipeline([("encode", encode), ("classify", classifier)])


def fit_model(frame: Any, label: str, kind: str = "boosting",
              weight: str | None = None) -> Any:
    """``make_model(kind)`` fitted on ``frame``, with per-row weights from column ``weight``."""
    model = make_model(kind)
    options = {} if weight is None else {"classify__sample_weight": frame[weight].to_numpy()}
    return model.fit(frame[FEATURES], frame[label], **options)


@tidal.step
def train(dataset: str, label: str, kind: str = "boosting", weight: str | None = None) -> Any:
    return fit_model(tidal.datasets.get(dataset).to_pandas(), label, kind, weight)


@tidal.pipeline
def retrain(dataset: str, label: str, kind: str = "boosting", weight: str | None = None):
    """What the loop runs: fit the retail model on the training window it registered."""
    train(dataset, label, kind=kind, weight=weight)

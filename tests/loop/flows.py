"""The retraining pipeline and the data of the loop tests: a click stream whose relation between
inputs and label changes at a known point, so a model trained before it is measurably worse
after it, and one retrained on fresh traffic measurably better."""

from __future__ import annotations

import numpy as np
import pandas as pd
from sklearn.compose import ColumnTransformer
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import OneHotEncoder

import tidal

FEATURES = ["x1", "x2", "device"]


def stream(rows: int, *, drifted: bool, seed: int, devices: tuple[str, ...] = ("ios",
                                                                             "android")
           ) -> pd.DataFrame:
    """Rows before the drift follow y = x1 + x2 > 0; after it x1 and x2 are shifted and
    y = x1 - x2 > 2.5."""
    rng = np.random.default_rng(seed)
    x1 = rng.normal(1.5 if drifted else 0.0, 1.0, rows)
    x2 = rng.normal(-1.0 if drifted else 0.0, 1.0, rows)
    frame = pd.DataFrame({"x1": x1, "x2": x2,
                          "device": rng.choice(list(devices), rows)})
    frame["label"] = ((x1 - x2 > 2.5) if drifted else (x1 + x2 > 0)).astype("int64")
    return frame


def model(handle_unknown: str = "ignore") -> Pipeline:
    encode = ColumnTransformer([("device", OneHotEncoder(handle_unknown=handle_unknown),
                                 ["device"])], remainder="passthrough")
    return Pipeline([("encode", encode), ("classify", LogisticRegression())])


@tidal.step
def fit(dataset: str, label: str, handle_unknown: str = "ignore",
        shuffle_labels: bool = False) -> Pipeline:
    frame = tidal.datasets.get(dataset).to_pandas()
    target = frame[label].to_numpy()
    if shuffle_labels:  # a challenger that learned nothing, for the gate to reject
        target = np.random.default_rng(0).permutation(target)
    return model(handle_unknown).fit(frame[FEATURES], target)


@tidal.pipeline
def retrain(dataset: str, label: str, handle_unknown: str = "ignore",
            shuffle_labels: bool = False):
    fit(dataset, label, handle_unknown=handle_unknown, shuffle_labels=shuffle_labels)

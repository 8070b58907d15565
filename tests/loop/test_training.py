"""What a retrained challenger is registered with: the inputs its model reads, not every
column of the logged traffic it was trained on."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from tidal.loop.training import _model_inputs

pytest.importorskip("sklearn")


def test_a_challenger_signature_leaves_out_the_columns_its_model_never_read():
    from sklearn.compose import ColumnTransformer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import OneHotEncoder

    rng = np.random.default_rng(0)
    # logged traffic of an endpoint with a feature service: the keys it looked up are logged
    traffic = pd.DataFrame({"user_id": [f"u{i}" for i in range(40)],
                            "x": rng.normal(size=40), "device": rng.choice(["a", "b"], 40)})
    model = make_pipeline(
        ColumnTransformer([("device", OneHotEncoder(), ["device"]), ("x", "passthrough", ["x"])]),
        LogisticRegression()).fit(traffic[["x", "device"]], rng.integers(0, 2, 40))
    assert list(_model_inputs(model, traffic).columns) == ["x", "device"]

    class Opaque:  # a model that does not name its inputs keeps every column
        pass

    assert list(_model_inputs(Opaque(), traffic).columns) == ["user_id", "x", "device"]

"""Every flavor round-trips: register here, load in a fresh process, and the predictions there
equal the original object's here, exactly.

The ONNX flavor is compared with onnxruntime running the original graph in this process, so it
too must match exactly; how far ONNX drifts from the model it was converted from is a question
of conversion, covered (with its tolerance) by the export tests.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import tidal
from tidal.models.loaded import clear_cache

REPO = Path(__file__).resolve().parents[2]


class Doubler:
    """A plain Python model: the pyfunc flavor's case."""

    def __init__(self, factor: float) -> None:
        self.factor = factor

    def predict(self, frame: pd.DataFrame) -> np.ndarray:
        return frame.sum(axis=1).to_numpy() * self.factor


def tabular(n: int = 400, seed: int = 0) -> tuple[pd.DataFrame, np.ndarray]:
    rng = np.random.default_rng(seed)
    frame = pd.DataFrame(rng.normal(size=(n, 4)), columns=["a", "b", "c", "d"])
    label = ((frame["a"] - frame["c"] + 0.3 * rng.normal(size=n)) > 0).astype("int64")
    return frame, label.to_numpy()


def sklearn_model(frame: pd.DataFrame, label: np.ndarray):
    from sklearn.compose import ColumnTransformer
    from sklearn.ensemble import RandomForestClassifier
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import OneHotEncoder, StandardScaler

    data = frame.assign(city=np.where(frame["b"] > 0, "paris", "rome"))
    model = Pipeline([
        ("prep", ColumnTransformer([("num", StandardScaler(), ["a", "b", "c", "d"]),
                                    ("cat", OneHotEncoder(), ["city"])])),
        ("forest", RandomForestClassifier(n_estimators=20, random_state=0)),
    ]).fit(data, label)
    return model, data


def build_models(frame: pd.DataFrame, label: np.ndarray) -> dict[str, tuple]:
    """flavor -> (model, input, register kwargs, trust, original predictions)."""
    import lightgbm as lgb
    import torch
    import xgboost as xgb
    from river import linear_model, preprocessing
    from skl2onnx import to_onnx
    from sklearn.linear_model import LogisticRegression

    from tests.models.flavors.torch_nets import TinyNet

    built: dict[str, tuple] = {}
    model, data = sklearn_model(frame, label)
    built["sklearn"] = (model, data, {}, False, model.predict_proba(data))

    booster = lgb.LGBMClassifier(n_estimators=30, verbose=-1, random_state=0).fit(frame, label)
    built["lightgbm"] = (booster, frame, {}, False, booster.predict_proba(frame))

    regressor = xgb.XGBRegressor(n_estimators=30, max_depth=3).fit(frame, label)
    built["xgboost"] = (regressor, frame, {}, False, regressor.predict(frame))

    torch.manual_seed(0)
    net = TinyNet(in_features=4, hidden=8, out_features=1)
    net(torch.randn(16, 4))  # move the batch-norm statistics off their defaults
    net.eval()
    array = frame.to_numpy(dtype=np.float32)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # the loading process runs with one thread too: see LOADER
    try:
        with torch.inference_mode():
            expected = net(torch.from_numpy(array.copy())).numpy()
    finally:
        torch.set_num_threads(threads)
    built["pytorch"] = (net, array, {"flavor_options": {"init_kwargs": {
        "in_features": 4, "hidden": 8, "out_features": 1}}}, False, expected)

    logistic = LogisticRegression().fit(frame, label)
    proto = to_onnx(logistic, array[:1], options={"zipmap": False})
    import onnxruntime as ort

    session = ort.InferenceSession(proto.SerializeToString(),
                                   providers=["CPUExecutionProvider"])
    probabilities = session.run(["probabilities"], {session.get_inputs()[0].name: array})[0]
    built["onnx"] = (proto, array, {}, False, probabilities)

    learner = preprocessing.StandardScaler() | linear_model.LogisticRegression()
    for row, target in zip(frame.to_dict("records"), label, strict=True):
        learner.learn_one(row, bool(target))
    built["river"] = (learner, frame, {}, True,
                      np.array([learner.predict_one(r) for r in frame.to_dict("records")]))

    doubler = Doubler(2.5)
    built["pyfunc"] = (doubler, frame, {}, True, doubler.predict(frame))
    return built


#: Loads every model in a new interpreter and saves its predictions (probabilities where the
#: originals above are probabilities) next to the workspace. It runs with OMP_NUM_THREADS=1:
#: PyTorch's CPU kernels split sums by thread count, which moves the last bit of a float32
#: result, so both sides compute with one thread to compare exactly.
LOADER = """
import sys, numpy as np, pandas as pd, tidal
out = sys.argv[1]
for flavor, trust, method in (tuple(a.split(":")) for a in sys.argv[2:]):
    model = tidal.models.load(f"models:/rt-{flavor}/1", trust=trust == "1")
    data = pd.read_parquet(f"{out}/{flavor}.parquet") if flavor not in ("pytorch", "onnx") \\
        else np.load(f"{out}/{flavor}.npy")
    result = getattr(model, method)(data)
    np.save(f"{out}/{flavor}-loaded.npy", np.asarray(result), allow_pickle=False)
"""

PROBABILITY_FLAVORS = {"sklearn", "lightgbm", "onnx"}


def test_every_flavor_round_trips_through_a_fresh_process(workspace, backend, tmp_path):
    frame, label = tabular()
    built = build_models(frame, label)
    specs = []
    for flavor, (model, data, kwargs, trust, _) in built.items():
        version = tidal.models.register(f"rt-{flavor}", model, input_example=data[:5], **kwargs)
        assert version.flavor == flavor
        if isinstance(data, np.ndarray):
            np.save(tmp_path / f"{flavor}.npy", data, allow_pickle=False)
        else:
            data.to_parquet(tmp_path / f"{flavor}.parquet")
        method = "predict_proba" if flavor in PROBABILITY_FLAVORS else "predict"
        specs.append(f"{flavor}:{int(trust)}:{method}")
    env = {**os.environ, **backend.env(), "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    done = subprocess.run([sys.executable, "-c", LOADER, str(tmp_path), *specs], env=env,
                          capture_output=True, text=True, timeout=240, check=False)
    assert done.returncode == 0, done.stderr
    for flavor, (*_, expected) in built.items():
        loaded = np.load(tmp_path / f"{flavor}-loaded.npy", allow_pickle=False)
        np.testing.assert_array_equal(loaded.reshape(np.shape(expected)), expected,
                                      err_msg=flavor)


@pytest.mark.parametrize("flavor", ["river", "pyfunc"])
def test_pickle_only_flavors_are_refused_without_trust(workspace, flavor):
    frame, label = tabular(100)
    model, data, kwargs, *_ = build_models(frame, label)[flavor]
    tidal.models.register(f"rt-{flavor}", model, **kwargs)
    clear_cache()
    with pytest.raises(tidal.models.UntrustedModelError, match="trust=True") as caught:
        tidal.models.load(f"models:/rt-{flavor}/1")
    assert caught.value.status_code == 403
    assert tidal.models.load(f"models:/rt-{flavor}/1", trust=True).predict(data) is not None

"""Loading never runs code an artifact smuggles in.

An attacker who can write blobs and the metadata store could swap a version's file for a
crafted pickle that runs code when unpickled. Every safe flavor's loader must refuse such a
file without unpickling it, and the pickle-only flavors must refuse to read it at all without
the trust switch. Each crafted payload would create a marker file if it ever ran.
"""

from __future__ import annotations

import json
import os
import pickle
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from sqlalchemy import update

import tidal
from tidal.models import ModelLoadError, UntrustedModelError
from tidal.models.loaded import clear_cache
from tidal.models.schema import model_versions


class Exploit:
    """Unpickling this writes the marker file: what a malicious model file would do."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (exec, (f"open({str(self.marker)!r}, 'w').write('pwned')",))


class Doubler:
    def predict(self, data: pd.DataFrame) -> np.ndarray:
        return data.to_numpy() * 2


def crafted_pickle(marker: Path) -> bytes:
    return pickle.dumps(Exploit(marker))


def swap_file(version, name: str, data: bytes) -> None:
    """Point ``version``'s file at new bytes, as someone with write access to both stores
    could (the blob then verifies against the recorded digest)."""
    blob = version.workspace.artifacts.put_bytes(data)
    files = dict(version.files)
    files[name] = {"digest": blob.digest, "size": blob.size}

    def work(conn) -> None:
        conn.execute(update(model_versions).where(model_versions.c.id == version.id)
                     .values(files=json.dumps(files)))

    version.workspace.db.write(work)
    clear_cache()


def frame() -> tuple[pd.DataFrame, np.ndarray]:
    rng = np.random.default_rng(0)
    data = pd.DataFrame(rng.normal(size=(200, 3)), columns=["a", "b", "c"])
    return data, (data["a"] > 0).astype("int64").to_numpy()


def safe_models() -> dict[str, object]:
    import lightgbm as lgb
    import xgboost as xgb
    from skl2onnx import to_onnx
    from sklearn.linear_model import LogisticRegression

    from tests.models.flavors.torch_nets import TinyNet

    data, label = frame()
    logistic = LogisticRegression().fit(data, label)
    return {
        "sklearn": logistic,
        "lightgbm": lgb.LGBMClassifier(n_estimators=5, verbose=-1).fit(data, label),
        "xgboost": xgb.XGBClassifier(n_estimators=5).fit(data, label),
        "onnx": to_onnx(logistic, data.to_numpy(np.float32)[:1], options={"zipmap": False}),
        "pytorch": TinyNet(in_features=3, hidden=4, out_features=1),
    }


@pytest.mark.parametrize("flavor", ["sklearn", "lightgbm", "xgboost", "onnx", "pytorch"])
def test_a_crafted_pickle_in_a_safe_flavor_is_never_unpickled(workspace, tmp_path, flavor):
    model = safe_models()[flavor]
    options = {"flavor_options": {"init_kwargs": {"in_features": 3, "hidden": 4,
                                                  "out_features": 1}}} \
        if flavor == "pytorch" else {}
    version = tidal.models.register("victim", model, **options)
    marker = tmp_path / "pwned"
    for name in version.files:
        swap_file(tidal.models.get_version(version.uri), name, crafted_pickle(marker))
    with pytest.raises((ModelLoadError, UntrustedModelError)):
        tidal.models.load(version.uri)
    with pytest.raises((ModelLoadError, UntrustedModelError)):
        tidal.models.load(version.uri, trust=True)  # trust never turns a safe format to pickle
    assert not marker.exists()


def test_a_skops_file_naming_untrusted_code_is_refused_with_the_types(workspace, tmp_path):
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import FunctionTransformer

    data, _ = frame()
    model = Pipeline([("run", FunctionTransformer(os.system))]).fit(data)
    version = tidal.models.register("shell", model, flavor="sklearn")
    with pytest.raises(UntrustedModelError, match=r"system.*trust=True"):
        tidal.models.load(version.uri)


@pytest.mark.parametrize("flavor", ["pyfunc", "river"])
def test_pickle_flavors_do_not_read_the_file_without_trust(workspace, tmp_path, flavor):
    from river import linear_model

    model = linear_model.LinearRegression() if flavor == "river" else Doubler()
    version = tidal.models.register("unsafe", model, flavor=flavor)
    marker = tmp_path / "pwned"
    (name,) = version.files
    swap_file(version, name, crafted_pickle(marker))
    with pytest.raises(UntrustedModelError, match="trust=True"):
        tidal.models.load(version.uri)
    assert not marker.exists()
    # with the switch the caller takes responsibility, and the payload runs: the switch is real
    tidal.models.load(version.uri, trust=True)
    assert marker.exists()

"""Finding flavors: built-ins by name, third-party flavors through the ``tidal.flavors`` entry
point group (a real installed distribution, read in a fresh interpreter), detection order, and
a warning when a model is loaded under another major version of its library."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import numpy as np
import pandas as pd
import pytest
from sqlalchemy import update

import tidal
from tidal.models.errors import LibraryVersionWarning
from tidal.models.flavors.registry import BUILTIN_FLAVORS, detect_flavor, flavor_names, get_flavor
from tidal.models.loaded import clear_cache
from tidal.models.schema import model_versions

PLUGIN = '''
import json
from pathlib import Path

from tidal.models.flavors.base import Flavor


class Threshold:
    def __init__(self, cut):
        self.cut = cut


class ThresholdFlavor(Flavor):
    """A third party's flavor: a model that is one number, stored as JSON."""

    name = "threshold"
    packages = ()
    priority = 5

    def handles(self, model):
        return type(model).__name__ == "Threshold"

    def save(self, model, directory, options):
        self.check_options(options)
        (Path(directory) / "cut.json").write_text(json.dumps(model.cut))
        return {}

    def load(self, files, metadata, *, trust):
        return Threshold(json.loads(files.read_bytes("cut.json")))

    def predict(self, model, data):
        return (data.to_numpy()[:, 0] > model.cut).astype("int64")
'''

USE_PLUGIN = '''
import sys, numpy as np, pandas as pd, tidal
from tidal.models.flavors.registry import flavor_names
from tidal_threshold import Threshold
assert "threshold" in flavor_names(), flavor_names()
version = tidal.models.register("cut", Threshold(0.5))
assert version.flavor == "threshold", version.flavor
model = tidal.models.load(version.uri)
print(model.predict(pd.DataFrame({"x": [0.2, 0.7]})).tolist())
'''


def test_a_third_party_flavor_is_found_through_its_entry_point(tmp_path):
    site = tmp_path / "site"
    (site / "tidal_threshold-1.0.dist-info").mkdir(parents=True)
    (site / "tidal_threshold.py").write_text(textwrap.dedent(PLUGIN))
    info = site / "tidal_threshold-1.0.dist-info"
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: tidal-threshold\n"
                                   "Version: 1.0\n")
    (info / "entry_points.txt").write_text(
        "[tidal.flavors]\nthreshold = tidal_threshold:ThresholdFlavor\n")
    env = {**os.environ, "PYTHONPATH": str(site), "TIDAL_HOME": str(tmp_path / "ws")}
    done = subprocess.run([sys.executable, "-c", USE_PLUGIN], env=env, capture_output=True,
                          text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[0, 1]"


def test_builtin_flavors_are_known_by_name_and_detected_in_priority_order():
    from sklearn.ensemble import GradientBoostingClassifier
    from sklearn.linear_model import LinearRegression

    assert set(BUILTIN_FLAVORS) <= set(flavor_names())
    assert get_flavor("sklearn").name == "sklearn"
    assert detect_flavor(LinearRegression()).name == "sklearn"
    assert detect_flavor(GradientBoostingClassifier()).name == "sklearn"
    import lightgbm as lgb

    # LightGBM's wrappers are scikit-learn estimators too: the specific flavor wins
    assert detect_flavor(lgb.LGBMRegressor()).name == "lightgbm"

    class Anything:
        def predict(self, data):
            return data

    assert detect_flavor(Anything()).name == "pyfunc"


def test_loading_under_another_major_library_version_warns(workspace):
    from sklearn.linear_model import LinearRegression

    frame = pd.DataFrame({"x": np.arange(10.0)})
    version = tidal.models.register("lin", LinearRegression().fit(frame, frame["x"] * 2))
    libraries = {**version.libraries, "scikit-learn": "0.24.2"}
    workspace.db.write(lambda conn: conn.execute(
        update(model_versions).where(model_versions.c.id == version.id)
        .values(libraries=json.dumps(libraries))))
    clear_cache()
    with pytest.warns(LibraryVersionWarning, match="saved with scikit-learn 0.24.2"):
        model = tidal.models.load(version.uri)
    np.testing.assert_allclose(model.predict(frame), frame["x"] * 2, atol=1e-9)


def test_register_flavor_refuses_what_is_not_a_flavor():
    from tidal.errors import InvalidValueError
    from tidal.models.flavors.registry import register_flavor

    with pytest.raises(InvalidValueError, match="Flavor instance"):
        register_flavor(object())  # type: ignore[arg-type]

"""A crafted tree never takes a process down.

Tidal trusts scikit-learn's ``Tree`` and ``TreePredictor`` when it reads a skops file, and
scikit-learn walks their nodes in compiled code without bounds checks. An attacker who can
rewrite a stored file (and its recorded digest) plants a tree whose child index or split
feature lies outside its arrays; ``predict`` then reads wild memory and the process dies by
signal. Loading must refuse such a model, naming the tree and the node, and still load every
tree model scikit-learn fits.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

import tidal
from tests.models.test_safety import swap_file
from tidal.models import ModelLoadError

REPO = Path(__file__).resolve().parents[2]


def frame(n: int = 300) -> tuple[pd.DataFrame, np.ndarray]:
    rng = np.random.default_rng(0)
    data = pd.DataFrame(rng.normal(size=(n, 3)), columns=["a", "b", "c"])
    return data, ((data["a"] + data["b"]) > 0).astype("int64").to_numpy()


def copy_of(model: Any) -> Any:
    """A separate copy of a fitted model, whose arrays an attacker may rewrite."""
    import skops.io

    data = skops.io.dumps(model)
    return skops.io.loads(data, trusted=skops.io.get_untrusted_types(data=data))


def craft(model: Any, damage: Callable[[Any], None]) -> bytes:
    """The skops file of a copy of ``model`` after ``damage`` rewrote its arrays."""
    import skops.io

    crafted = copy_of(model)
    damage(crafted)
    return skops.io.dumps(crafted)


def plant(model: Any, data: bytes) -> str:
    """Register ``model``, then replace its stored file by ``data`` as someone with write
    access to both stores could; the version's URI."""
    version = tidal.models.register("victim", model)
    swap_file(version, "model.skops", data)
    return version.uri


def run_python(code: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-c", code], env={**os.environ, **env}, cwd=REPO,
                          capture_output=True, text=True, timeout=120, check=False)


def test_a_tree_whose_child_lies_outside_it_is_refused_and_kills_no_process(
        workspace, backend, tmp_path):
    data, label = frame()
    from sklearn.tree import DecisionTreeClassifier

    model = DecisionTreeClassifier(max_depth=4, random_state=0).fit(data, label)

    def far_child(m: Any) -> None:
        m.tree_.children_left[0] = 10**9

    crafted = craft(model, far_child)
    uri = plant(model, crafted)
    rows = data.head(5).to_dict("list")

    # The file is a real weapon: with skops and Tidal's trusted list alone, predict dies.
    (tmp_path / "crafted.skops").write_bytes(crafted)
    bare = run_python(
        "import pandas as pd, skops.io\n"
        "from tidal.models.flavors.sklearn import TRUSTED_TYPES\n"
        f"m = skops.io.load({str(tmp_path / 'crafted.skops')!r}, trusted=sorted(TRUSTED_TYPES))\n"
        f"m.predict(pd.DataFrame({rows!r}))\n", {})
    assert bare.returncode < 0, (bare.returncode, bare.stderr)

    # Through Tidal the load is refused: a clean error, in a process that lives to report it.
    served = run_python(
        "import pandas as pd, tidal\n"
        "from tidal.models import ModelLoadError\n"
        "try:\n"
        f"    tidal.models.load({uri!r}).predict(pd.DataFrame({rows!r}))\n"
        "except ModelLoadError as error:\n"
        "    print('refused:', error)\n", backend.env())
    assert served.returncode == 0, (served.returncode, served.stderr)
    assert "refused:" in served.stdout and "model.tree_" in served.stdout, served.stdout

    with pytest.raises(ModelLoadError, match=r"model\.tree_: node 0 .*child index"):
        tidal.models.load(uri)


def _tree(model: Any) -> Any:
    return model.tree_


def _set(array_of: Callable[[Any], np.ndarray], index: int, value: Any) -> Callable[[Any], None]:
    def damage(model: Any) -> None:
        array_of(model)[index] = value
    return damage


def _forget_width(model: Any) -> None:
    del model.n_features_in_


def _empty(model: Any) -> None:
    state = model.tree_.__getstate__()
    model.tree_.__setstate__({**state, "node_count": 0, "nodes": state["nodes"][:0],
                              "values": state["values"][:0]})


def _widen(model: Any) -> None:
    model.n_features_in_ = 50
    model.tree_.feature[0] = 40


TREE_DAMAGE = {
    "child beyond the nodes": (_set(lambda m: _tree(m).children_right, 0, 10**6),
                               r"node 0 .*child index"),
    "child pointing back at the root": (_set(lambda m: _tree(m).children_left, 1, 0),
                                        r"node 1 .*child index"),
    "child pointing at itself": (_set(lambda m: _tree(m).children_left, 0, 0),
                                 r"node 0 .*child index"),
    "negative child": (_set(lambda m: _tree(m).children_right, 0, -7), r"node 0 .*child index"),
    "one child": (_set(lambda m: _tree(m).children_right, 0, -1), r"node 0 .*one child"),
    "feature past the input": (_set(lambda m: _tree(m).feature, 0, 3),
                               r"node 0 .*feature outside 0\.\.2"),
    "negative feature": (_set(lambda m: _tree(m).feature, 0, -1), r"feature outside 0\.\.2"),
    "NaN threshold": (_set(lambda m: _tree(m).threshold, 0, np.nan), r"NaN threshold"),
    "no input width": (_forget_width, r"n_features_in_ is None"),
    "no nodes": (_empty, r"it has 0 nodes"),
    "input width past the tree's": (_widen, r"feature outside 0\.\.2"),
}


@pytest.mark.parametrize("case", sorted(TREE_DAMAGE))
def test_every_malformed_decision_tree_is_refused_naming_the_node(workspace, case):
    from sklearn.tree import DecisionTreeRegressor

    data, label = frame()
    model = DecisionTreeRegressor(max_depth=4, random_state=0).fit(data, label)
    damage, message = TREE_DAMAGE[case]
    uri = plant(model, craft(model, damage))
    with pytest.raises(ModelLoadError, match=message) as refused:
        tidal.models.load(uri)
    assert refused.value.status_code == 422 and "register it again" in str(refused.value)


def _forest_tree(m: Any) -> Any:
    return m.estimators_[2].tree_


def _stage_tree(m: Any) -> Any:
    return m.estimators_[3, 0].tree_


def _pipeline_tree(m: Any) -> Any:
    return m.steps[-1][1].estimators_[1].tree_


def _nodes(m: Any) -> np.ndarray:
    return m._predictors[1][0].nodes


def _hist_child(m: Any) -> None:
    nodes = _nodes(m)
    nodes["left"][np.flatnonzero(nodes["is_leaf"] == 0)[0]] = 10**6


def _hist_feature(m: Any) -> None:
    nodes = _nodes(m)
    nodes["feature_idx"][np.flatnonzero(nodes["is_leaf"] == 0)[0]] = 3


def _hist_category(m: Any) -> None:
    nodes = _nodes(m)
    internal = np.flatnonzero(nodes["is_leaf"] == 0)[0]
    nodes["is_categorical"][internal] = 1
    nodes["bitset_idx"][internal] = 10**6


def _stages_reshaped(m: Any) -> None:
    m.estimators_ = np.concatenate([m.estimators_, m.estimators_], axis=1)


def ensembles() -> tuple[dict[str, tuple[Any, Callable[[Any], None], str]], pd.DataFrame,
                       np.ndarray]:
    """model -> (fitted model, damage, the refusal's expected words)."""
    from sklearn.compose import ColumnTransformer
    from sklearn.ensemble import (
        ExtraTreesClassifier,
        GradientBoostingClassifier,
        HistGradientBoostingClassifier,
        IsolationForest,
        RandomForestRegressor,
    )
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    data, label = frame()
    pipeline = make_pipeline(ColumnTransformer([("num", StandardScaler(), ["a", "b", "c"])]),
                             ExtraTreesClassifier(n_estimators=3, random_state=0))
    return {
        "random forest": (RandomForestRegressor(n_estimators=4, random_state=0),
                          _set(lambda m: _forest_tree(m).children_left, 0, 10**6),
                          r"model\.estimators_\[2\]\.tree_: node 0"),
        "gradient boosting stage": (GradientBoostingClassifier(n_estimators=5, random_state=0),
                                    _set(lambda m: _stage_tree(m).feature, 0, 9),
                                    r"model\.estimators_\[3\]\.tree_: node 0 .*feature"),
        "gradient boosting columns": (GradientBoostingClassifier(n_estimators=5, random_state=0),
                                      _stages_reshaped, r"estimators_: it is \(5, 2\)"),
        "isolation forest": (IsolationForest(n_estimators=3, random_state=0),
                             _set(lambda m: m.estimators_[0].tree_.children_right, 0, 0),
                             r"estimators_\[0\]\.tree_: node 0 .*child index"),
        "pipeline step": (pipeline, _set(lambda m: _pipeline_tree(m).children_left, 0, 10**6),
                          r"model\.steps\[1\]\[1\]\.estimators_\[1\]\.tree_: node 0"),
        "histogram child": (HistGradientBoostingClassifier(max_iter=3), _hist_child,
                            r"_predictors\[1\]\[0\]: node 0 .*child index"),
        "histogram feature": (HistGradientBoostingClassifier(max_iter=3), _hist_feature,
                              r"_predictors\[1\]\[0\]: node 0 .*feature outside 0\.\.2"),
        "histogram category": (HistGradientBoostingClassifier(max_iter=3), _hist_category,
                               r"_predictors\[1\]\[0\]: node 0 is a categorical split"),
    }, data, label


@pytest.mark.parametrize("case", ["random forest", "gradient boosting stage",
                                  "gradient boosting columns", "isolation forest",
                                  "pipeline step", "histogram child", "histogram feature",
                                  "histogram category"])
def test_a_malformed_tree_anywhere_in_an_ensemble_is_refused(workspace, case):
    models, data, label = ensembles()
    model, damage, message = models[case]
    model.fit(data, label)
    uri = plant(model, craft(model, damage))
    with pytest.raises(ModelLoadError, match=message):
        tidal.models.load(uri)


def test_every_fitted_tree_model_still_loads_and_predicts_the_same(workspace):
    models, data, label = ensembles()
    gaps = data.mask(np.random.default_rng(1).random(data.shape) < 0.1)  # +inf thresholds
    from sklearn.ensemble import HistGradientBoostingRegressor
    from sklearn.tree import DecisionTreeClassifier

    categorical = gaps.fillna(0).assign(
        city=pd.Categorical(np.where(data["a"] > 0, "paris", "rome")))
    cases = [(m.fit(data, label), data, False) for m, _, _ in models.values()]
    cases += [(DecisionTreeClassifier(random_state=0).fit(gaps, label), gaps, False),
              # its category encoder calls check_array, which only trust lets skops rebuild
              (HistGradientBoostingRegressor(max_iter=5, categorical_features="from_dtype")
               .fit(categorical, label), categorical, True)]
    for model, rows, trust in cases:
        version = tidal.models.register("fine", model)
        loaded = tidal.models.load(version.uri, trust=trust)
        np.testing.assert_array_equal(loaded.predict(rows), model.predict(rows))

"""Checks on the node arrays of every tree in a loaded scikit-learn model.

Tidal trusts ``sklearn.tree._tree.Tree`` and the histogram gradient boosting
``TreePredictor`` when it loads a skops file, but scikit-learn walks their nodes in compiled
code without bounds checks: a child index out of range, a cycle, or a split on a feature past
the input's width reads (or writes) outside the arrays and kills the process on ``predict``.
A tree scikit-learn itself built has children after their parent, both children or neither,
split features below the width its owner checks every input against, and a threshold that is
a number, so any other tree was crafted: the model is refused at load, naming the estimator,
the tree and the first bad node.

The checks are vectorised over a tree's nodes; Python only loops over estimators and trees.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np

from tidal.models.errors import ModelLoadError

_SKIPPED_MODULES = ("numpy", "pandas", "scipy", "builtins")


def check_trees(model: Any) -> None:
    """Refuse ``model`` (ModelLoadError) if any tree reachable from it is malformed."""
    from sklearn.ensemble._hist_gradient_boosting.predictor import TreePredictor
    from sklearn.tree._tree import Tree

    checked: set[int] = set()
    for obj, where in _walk(model):
        if isinstance(obj, Tree):
            if id(obj) not in checked:  # a tree outside an estimator: nothing narrows its input
                _check_tree(obj, int(obj.n_features), where)
        elif isinstance(obj, TreePredictor):
            if id(obj) not in checked:
                _check_predictor(obj, None, None, where)
        else:
            checked.update(_check_owner(obj, where))


def _walk(root: Any) -> Iterator[tuple[Any, str]]:
    """Every object reachable from ``root`` through attributes, containers and object arrays,
    once each, with the path that reached it (``model.steps[1][1].estimators_[3]``)."""
    seen: set[int] = set()
    stack: list[tuple[Any, str]] = [(root, "model")]
    while stack:
        obj, where = stack.pop()
        if id(obj) in seen:
            continue
        seen.add(id(obj))
        yield obj, where
        if isinstance(obj, dict):
            stack.extend((v, f"{where}[{k!r}]") for k, v in obj.items())
        elif isinstance(obj, (list, tuple)):
            stack.extend((v, f"{where}[{i}]") for i, v in enumerate(obj))
        elif isinstance(obj, np.ndarray):
            if obj.dtype == object:
                stack.extend((v, f"{where}[{i}]") for i, v in enumerate(obj.ravel()))
        elif (not isinstance(obj, type)
              and type(obj).__module__.split(".", 1)[0] not in _SKIPPED_MODULES):
            attributes = getattr(obj, "__dict__", None)
            if isinstance(attributes, dict):
                stack.extend((v, f"{where}.{k}") for k, v in attributes.items())


def _check_owner(obj: Any, where: str) -> list[int]:
    """Check the trees an estimator holds with the input width it guarantees them; return the
    ids of the trees checked."""
    from sklearn.ensemble import (
        GradientBoostingClassifier,
        GradientBoostingRegressor,
        HistGradientBoostingClassifier,
        HistGradientBoostingRegressor,
    )
    from sklearn.tree._tree import Tree

    attributes = getattr(obj, "__dict__", None)
    if not isinstance(attributes, dict):
        return []
    done = []
    tree = attributes.get("tree_")
    if isinstance(tree, Tree):
        # The owner checks every input's width against n_features_in_ before the tree runs.
        width = _width(obj, f"{where}.tree_")
        _check_tree(tree, min(width, int(tree.n_features)), f"{where}.tree_")
        done.append(id(tree))
    if isinstance(obj, (GradientBoostingClassifier, GradientBoostingRegressor)) \
            and "estimators_" in attributes:
        _check_gradient_boosting(obj, where)
    if isinstance(obj, (HistGradientBoostingClassifier,
                                  HistGradientBoostingRegressor)) and "_predictors" in attributes:
        done.extend(_check_hist_gradient_boosting(obj, where))
    return done


def _width(obj: Any, where: str) -> int:
    width = getattr(obj, "n_features_in_", None)
    if isinstance(width, (int, np.integer)) and not isinstance(width, bool) and width >= 0:
        return int(width)
    raise _refuse(where, f"its estimator's n_features_in_ is {width!r}, not a count of "
                  "features; scikit-learn sets it when it fits, and it bounds the tree's splits")


def _check_tree(tree: Any, width: int, where: str) -> None:
    """Refuse a ``sklearn.tree._tree.Tree`` whose nodes scikit-learn could not have built."""
    count = int(tree.node_count)  # never more than it holds: scikit-learn clamps it on load
    if count < 1:
        raise _refuse(where, f"it has {count} nodes; predict starts at node 0, so a fitted "
                      "tree has at least one")
    classes = np.asarray(tree.n_classes)
    outputs = int(tree.n_outputs)
    if outputs < 1 or classes.shape != (outputs,) or classes.min() < 1 \
            or int(tree.max_n_classes) != int(classes.max()):
        raise _refuse(where, f"its outputs ({outputs}) and classes ({classes.tolist()}) "
                      "disagree; each of its outputs has one or more classes")
    if tree.value.shape != (count, outputs, int(tree.max_n_classes)):
        raise _refuse(where, f"its value array has shape {tree.value.shape}, not "
                      f"({count}, {outputs}, {int(tree.max_n_classes)}) (nodes, outputs, "
                      "classes)")
    _check_nodes(tree.children_left, tree.children_right, tree.children_left == -1,
                 tree.children_right == -1, tree.feature, tree.threshold, width, where)


def _check_nodes(left: np.ndarray, right: np.ndarray, left_leaf: np.ndarray,
                 right_leaf: np.ndarray, feature: np.ndarray, threshold: np.ndarray,
                 width: int, where: str) -> None:
    """The rules every tree layout shares, one vectorised pass per rule.

    Children come after their parent (so every walk down ends) and inside the node array; a
    node has two children or none; an internal node splits on a feature below ``width`` and
    at a threshold that is not NaN (+inf is legitimate: scikit-learn uses it to send only
    missing values right)."""
    count = len(left)
    index = np.arange(count)
    internal = ~left_leaf
    rules = (
        (left_leaf != right_leaf, "has one child; a node has two children or none"),
        (internal & ((left <= index) | (left >= count) | (right <= index) | (right >= count)),
         (f"has a child index not between its own and {count} (the node count); "
          "scikit-learn numbers children after their parent")),
        (internal & ((feature < 0) | (feature >= width)),
         f"splits on a feature outside 0..{width - 1}, the input's width"),
        (internal & np.isnan(threshold), "splits at a NaN threshold"),
    )
    for bad, problem in rules:
        found = np.flatnonzero(bad)
        if found.size:
            node = int(found[0])
            raise _refuse(where, f"node {node} (left {int(left[node])}, right "
                          f"{int(right[node])}, feature {int(feature[node])}) {problem}")


def _check_gradient_boosting(model: Any, where: str) -> None:
    """GradientBoosting* walks its stages' nodes itself, writing stage ``k`` of each row into
    column ``k`` of its raw predictions, after checking the input against its own width."""
    from sklearn.tree import DecisionTreeRegressor

    stages = model.estimators_
    width = _width(model, where)
    per_iteration = getattr(model, "n_trees_per_iteration_", None)
    if not isinstance(stages, np.ndarray) or stages.ndim != 2 \
            or stages.shape[1] != per_iteration:
        shape = getattr(stages, "shape", type(stages).__name__)
        raise _refuse(f"{where}.estimators_", f"it is {shape}; a fitted model holds an array "
                      f"of (stages, {per_iteration!r}) regression trees")
    init = getattr(model, "init_", None)
    if per_iteration > 1 and not (isinstance(init, str) and init == "zero") \
            and len(getattr(init, "classes_", ())) < per_iteration:
        raise _refuse(f"{where}.init_", f"it predicts fewer than the {per_iteration} classes "
                      "the stages write")
    for position, stage in enumerate(stages.ravel()):
        if not isinstance(stage, DecisionTreeRegressor) or _width(stage, where) != width:
            raise _refuse(f"{where}.estimators_[{position}]", "it is not a regression tree fitted "
                          f"on the model's {width} features")


def _check_hist_gradient_boosting(model: Any, where: str) -> list[int]:
    """HistGradientBoosting* predictors index the (preprocessed) input, their bitsets and the
    bin mapper's map of categorical features without bounds checks."""
    from sklearn.ensemble._hist_gradient_boosting.predictor import TreePredictor

    width = _width(model, where)
    preprocessor = getattr(model, "_preprocessor", None)
    if preprocessor is not None:
        width = min(width, _preprocessed_width(preprocessor, f"{where}._preprocessor"))
    categorical = getattr(getattr(model, "_bin_mapper", None), "is_categorical_", None)
    if not isinstance(categorical, np.ndarray) or categorical.shape != (width,):
        raise _refuse(f"{where}._bin_mapper", f"its is_categorical_ is not one flag for each "
                      f"of the model's {width} features")
    done = []
    for i, iteration in enumerate(_as_list(model._predictors, f"{where}._predictors")):
        for k, predictor in enumerate(_as_list(iteration, f"{where}._predictors[{i}]")):
            place = f"{where}._predictors[{i}][{k}]"
            if not isinstance(predictor, TreePredictor):
                raise _refuse(place, f"it is a {type(predictor).__name__}, not a TreePredictor")
            _check_predictor(predictor, width, categorical.astype(bool), place)
            done.append(id(predictor))
    return done


def _as_list(value: Any, where: str) -> list[Any]:
    if not isinstance(value, list):
        raise _refuse(where, f"it is a {type(value).__name__}, not a list")
    return value


def _preprocessed_width(preprocessor: Any, where: str) -> int:
    """Columns out of the ColumnTransformer HistGradientBoosting builds for categorical
    features: its OrdinalEncoder, and the FunctionTransformer that checks the numeric columns
    (``check_array``), give one column out for each column they select."""
    from functools import partial

    from sklearn.compose import ColumnTransformer
    from sklearn.preprocessing import FunctionTransformer, OrdinalEncoder
    from sklearn.utils import check_array

    if not isinstance(preprocessor, ColumnTransformer):
        raise _refuse(where, f"it is a {type(preprocessor).__name__}, not the ColumnTransformer "
                      "the model builds")
    total = 0
    for _, transformer, columns in preprocessor.transformers_:
        if isinstance(transformer, str) and transformer == "drop":
            continue
        one_to_one = isinstance(transformer, OrdinalEncoder) \
            or (isinstance(transformer, str) and transformer == "passthrough") \
            or (isinstance(transformer, FunctionTransformer)
                and isinstance(transformer.func, partial) and transformer.func.func is check_array)
        if not one_to_one:
            raise _refuse(where, f"it holds a {type(transformer).__name__}; the model builds "
                          "one from an OrdinalEncoder and passthrough columns")
        selected = np.asarray(columns)
        total += int(selected.sum()) if selected.dtype == bool else selected.size
    return total


def _check_predictor(predictor: Any, width: int | None, categorical: np.ndarray | None,
                     where: str) -> None:
    """Refuse a histogram gradient boosting ``TreePredictor`` whose nodes were crafted."""
    from sklearn.ensemble._hist_gradient_boosting.common import PREDICTOR_RECORD_DTYPE

    nodes = predictor.nodes
    if not isinstance(nodes, np.ndarray) or nodes.dtype != PREDICTOR_RECORD_DTYPE \
            or nodes.ndim != 1 or len(nodes) == 0:
        raise _refuse(where, "its nodes are not a non-empty array of predictor records")
    leaf = nodes["is_leaf"] != 0
    feature = nodes["feature_idx"]
    _check_nodes(nodes["left"].astype(np.int64), nodes["right"].astype(np.int64), leaf, leaf,
                 feature, nodes["num_threshold"],
                 np.iinfo(np.intp).max if width is None else width, where)
    split = (~leaf) & (nodes["is_categorical"] != 0)
    if not split.any():
        return
    bitsets = [predictor.raw_left_cat_bitsets, predictor.binned_left_cat_bitsets]
    rows = min(b.shape[0] if isinstance(b, np.ndarray) and b.ndim == 2 and b.shape[1] >= 8
               else 0 for b in bitsets)
    bad = split & (nodes["bitset_idx"] >= rows)
    if categorical is not None:
        bad |= split & ~categorical[np.where(split, feature, 0)]
    found = np.flatnonzero(bad)
    if found.size:
        raise _refuse(where, f"node {int(found[0])} is a categorical split on a feature the "
                      "model does not treat as categorical, or past its bitsets")


def _refuse(where: str, problem: str) -> ModelLoadError:
    return ModelLoadError(
        f"the stored scikit-learn model holds a malformed tree at {where}: {problem}. "
        "scikit-learn would read outside its arrays when predicting, so the model is "
        "refused; it was crafted or damaged after it was fitted, so register it again from "
        "its source", field="model")

"""The LightGBM flavor: Boosters and the scikit-learn wrappers, stored as LightGBM's own text.

The text model format holds every tree exactly (LightGBM writes doubles with round-trip
precision) and runs no code when read, so a stored model is safe to load from anywhere. A
wrapper (LGBMClassifier...) is not rebuilt as itself, since that would need pickle: the loaded
model is a :class:`LightGBMModel` holding the Booster, and it computes ``predict`` and
``predict_proba`` the way the wrapper does, so that the results are bit for bit the same.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from tidal.errors import InvalidValueError
from tidal.models.flavors.base import Flavor, ModelFiles, from_module

MODEL_FILE = "model.txt"

#: Kinds of object the flavor stores, as recorded in the metadata.
KINDS = ("booster", "classifier", "regressor", "ranker")

#: The objective recorded for a classifier trained with a Python function as objective: the
#: wrapper then returns raw scores from predict, so the loaded model must too.
CUSTOM_OBJECTIVE = "custom"


@dataclass(frozen=True)
class LightGBMModel:
    """A loaded LightGBM model: the Booster, and what the wrapper it came from knew besides."""

    booster: Any
    kind: str
    classes: np.ndarray | None = None
    objective: str | None = None

    @property
    def has_predict_proba(self) -> bool:
        return self.classes is not None and self.objective != CUSTOM_OBJECTIVE

    def predict(self, data: Any) -> np.ndarray:
        """What the original object's ``predict`` gives: the class labels for a classifier
        (the most probable class, as LGBMClassifier picks it), the booster's output otherwise."""
        if not self.has_predict_proba:
            return self.booster.predict(data)
        return self.classes[np.argmax(self.predict_proba(data), axis=1)]

    def predict_proba(self, data: Any) -> np.ndarray:
        """Class probabilities as LGBMClassifier computes them: the booster's output for
        several classes, and ``[1 - p, p]`` stacked for a binary model, which outputs ``p``
        alone (a 1-D result)."""
        if not self.has_predict_proba:
            raise NotImplementedError(f"a LightGBM {self.kind} has no class probabilities")
        result = self.booster.predict(data)
        if result.ndim > 1:
            return result
        return np.vstack((1.0 - result, result)).transpose()


class LightGBMFlavor(Flavor):
    name: ClassVar[str] = "lightgbm"
    packages: ClassVar[tuple[str, ...]] = ("lightgbm",)
    extra: ClassVar[str] = "lightgbm"
    priority: ClassVar[int] = 30

    def handles(self, model: Any) -> bool:
        return from_module(model, "lightgbm")

    def save(self, model: Any, directory: Path, options: Mapping[str, Any]) -> dict[str, Any]:
        self.check_options(options)
        lgb = self.import_library("lightgbm")
        kind = _kind(lgb, model)
        booster = model if kind == "booster" else _fitted_booster(lgb, model)
        # The default num_iteration keeps the best iteration found by early stopping, which is
        # also the one the wrapper and Booster.predict use by default.
        (directory / MODEL_FILE).write_text(booster.model_to_string(), encoding="utf-8")
        metadata: dict[str, Any] = {"kind": kind}
        if kind == "classifier":
            metadata.update(_classes_metadata(model.classes_))
            objective = model.objective_
            metadata["objective"] = objective if isinstance(objective, str) else CUSTOM_OBJECTIVE
        return metadata

    def load(self, files: ModelFiles, metadata: Mapping[str, Any], *, trust: bool) -> Any:
        lgb = self.import_library("lightgbm")
        kind = metadata.get("kind")
        if kind not in KINDS:
            raise InvalidValueError(f"the lightgbm model's metadata has kind {kind!r}; "
                                    f"expected one of {', '.join(KINDS)}", field="metadata")
        booster = lgb.Booster(model_str=files.read_bytes(MODEL_FILE).decode("utf-8"))
        if kind != "classifier":
            return LightGBMModel(booster=booster, kind=kind)
        classes = np.asarray(metadata["classes"], dtype=metadata["classes_dtype"])
        return LightGBMModel(booster=booster, kind=kind, classes=classes,
                             objective=metadata["objective"])

    def predict(self, model: Any, data: Any) -> Any:
        return model.predict(data)

    def predict_proba(self, model: Any, data: Any) -> Any:
        return model.predict_proba(data)

    def has_predict_proba(self, model: Any) -> bool:
        return bool(model.has_predict_proba)


def _kind(lgb: Any, model: Any) -> str:
    """Which kind of LightGBM object ``model`` is; anything else is refused."""
    if isinstance(model, lgb.Booster):
        return "booster"
    for kind, cls in (("classifier", lgb.LGBMClassifier), ("ranker", lgb.LGBMRanker),
                      ("regressor", lgb.LGBMRegressor)):
        if isinstance(model, cls):
            return kind
    raise InvalidValueError(
        f"the lightgbm flavor stores a lightgbm.Booster, LGBMClassifier, LGBMRegressor or "
        f"LGBMRanker, got a {type(model).__module__}.{type(model).__qualname__}", field="model")


def _fitted_booster(lgb: Any, model: Any) -> Any:
    try:
        return model.booster_
    except lgb.compat.LGBMNotFittedError as error:
        raise InvalidValueError(f"the {type(model).__name__} is not fitted; call fit before "
                                "registering it", field="model") from error


def _classes_metadata(classes: np.ndarray) -> dict[str, Any]:
    """The classes as JSON, with the dtype that gives back the same labels on load: ints stay
    ints and strings stay strings. Labels JSON cannot hold exactly are refused."""
    values = classes.tolist()
    if classes.dtype.kind == "O":
        if not all(isinstance(value, str) for value in values):
            raise InvalidValueError(
                "the classifier's classes_ must be numbers or strings to be stored as JSON, got "
                f"{sorted({type(value).__name__ for value in values})}", field="model")
        dtype = "object"
    elif classes.dtype.kind in "biufU":
        dtype = classes.dtype.str
    else:
        raise InvalidValueError(f"the classifier's classes_ have dtype {classes.dtype}, which "
                                "cannot be stored as JSON; use numbers or strings as labels",
                                field="model")
    return {"classes": values, "classes_dtype": dtype}

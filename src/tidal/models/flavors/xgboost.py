"""The XGBoost flavor: Boosters and the scikit-learn wrappers, stored as XGBoost's UBJSON.

UBJSON is XGBoost's own binary JSON: it keeps every float exactly, holds the feature names and
types and the best iteration, and runs no code when read. A wrapper is rebuilt as the same
wrapper class and filled with ``load_model``; the class is taken from a fixed list of
XGBoost's own wrappers, never imported from a name found in the metadata.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any, ClassVar

from tidal.errors import InvalidValueError
from tidal.models.flavors.base import Flavor, ModelFiles, from_module

MODEL_FILE = "model.ubj"

#: The wrapper classes a stored model may be rebuilt as, by name in the ``xgboost`` package.
WRAPPERS = ("XGBClassifier", "XGBRegressor", "XGBRanker", "XGBRFClassifier", "XGBRFRegressor")

#: The metadata ``wrapper`` of a bare Booster.
BOOSTER = "Booster"


class XGBoostFlavor(Flavor):
    name: ClassVar[str] = "xgboost"
    packages: ClassVar[tuple[str, ...]] = ("xgboost",)
    extra: ClassVar[str] = "xgboost"
    priority: ClassVar[int] = 30

    def handles(self, model: Any) -> bool:
        return from_module(model, "xgboost")

    def save(self, model: Any, directory: Path, options: Mapping[str, Any]) -> dict[str, Any]:
        self.check_options(options)
        xgb = self.import_library("xgboost")
        wrapper = _wrapper_name(xgb, model)
        if wrapper != BOOSTER and not model.__sklearn_is_fitted__():
            raise InvalidValueError(f"the {type(model).__name__} is not fitted; call fit before "
                                    "registering it", field="model")
        model.save_model(directory / MODEL_FILE)
        metadata: dict[str, Any] = {"wrapper": wrapper}
        if wrapper != BOOSTER:
            # ``missing`` is a constructor parameter the model file does not keep, and it
            # changes which inputs count as missing at predict time; NaN (the default, which
            # None also means) is not JSON, so it is recorded as null.
            missing = model.missing
            metadata["missing"] = None if missing is None or math.isnan(missing) \
                else float(missing)
        return metadata

    def load(self, files: ModelFiles, metadata: Mapping[str, Any], *, trust: bool) -> Any:
        xgb = self.import_library("xgboost")
        wrapper = metadata.get("wrapper")
        if wrapper != BOOSTER and wrapper not in WRAPPERS:
            raise InvalidValueError(
                f"the xgboost model's metadata names wrapper {wrapper!r}; expected one of "
                f"{', '.join((BOOSTER, *WRAPPERS))}", field="metadata")
        raw = bytearray(files.read_bytes(MODEL_FILE))
        if wrapper == BOOSTER:
            return xgb.Booster(model_file=raw)
        missing = metadata.get("missing")
        model = getattr(xgb, wrapper)(missing=math.nan if missing is None else missing)
        model.load_model(raw)
        return model

    def predict(self, model: Any, data: Any) -> Any:
        xgb = self.import_library("xgboost")
        if not isinstance(model, xgb.Booster):
            return model.predict(data)
        return model.predict(_dmatrix(xgb, model, data))

    def predict_proba(self, model: Any, data: Any) -> Any:
        if not self.has_predict_proba(model):
            raise NotImplementedError(f"a {type(model).__name__} has no class probabilities")
        return model.predict_proba(data)

    def has_predict_proba(self, model: Any) -> bool:
        return hasattr(model, "predict_proba")


def _wrapper_name(xgb: Any, model: Any) -> str:
    """The allowed name ``model`` is recorded under: the nearest of XGBoost's wrappers in its
    class hierarchy (a subclass of one is rebuilt as that wrapper, whose predictions are the
    same unless the subclass overrides them)."""
    if isinstance(model, xgb.Booster):
        return BOOSTER
    for cls in type(model).__mro__:
        if cls.__name__ in WRAPPERS and getattr(xgb, cls.__name__) is cls:
            return cls.__name__
    raise InvalidValueError(
        f"the xgboost flavor stores an xgboost.Booster or one of {', '.join(WRAPPERS)}, got a "
        f"{type(model).__module__}.{type(model).__qualname__}", field="model")


def _dmatrix(xgb: Any, booster: Any, data: Any) -> Any:
    """A DMatrix for a Booster: a DataFrame brings its column names (and categorical columns,
    which XGBoost reads only when asked to); an array takes the booster's feature names, so
    that a model trained on a DataFrame also accepts the same columns as an array."""
    if hasattr(data, "columns"):
        return xgb.DMatrix(data, enable_categorical=True)
    return xgb.DMatrix(data, feature_names=booster.feature_names,
                       feature_types=booster.feature_types)

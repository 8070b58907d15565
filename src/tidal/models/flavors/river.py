"""The river flavor: online models, which persist only with pickle.

river has no format of its own besides pickle, so the flavor declares ``safe = False`` and
``load`` refuses to read a byte without ``trust=True``. The loaded object is the river model
itself, so that it can go on learning (``learn_one``) after it is loaded.

river predicts one dict at a time; a batch goes through ``predict_many`` where the model
computes batches itself (mini-batch linear models), else row by row through ``predict_one``.
"""

from __future__ import annotations

import pickle
from collections.abc import Mapping
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import pandas as pd

from tidal.models.flavors.base import Flavor, ModelFiles, from_module
from tidal.models.flavors.pickled import refuse_untrusted

MODEL_FILE = "model.pkl"

PICKLE_PROTOCOL = 5


class RiverFlavor(Flavor):
    name: ClassVar[str] = "river"
    packages: ClassVar[tuple[str, ...]] = ("river",)
    extra: ClassVar[str] = "river"
    safe: ClassVar[bool] = False
    priority: ClassVar[int] = 40

    def handles(self, model: Any) -> bool:
        return from_module(model, "river")

    def save(self, model: Any, directory: Path, options: Mapping[str, Any]) -> dict[str, Any]:
        self.check_options(options)
        (directory / MODEL_FILE).write_bytes(pickle.dumps(model, protocol=PICKLE_PROTOCOL))
        return {}

    def load(self, files: ModelFiles, metadata: Mapping[str, Any], *, trust: bool) -> Any:
        if not trust:
            raise refuse_untrusted(self.name, "pickle")
        # Unpickling imports river's classes; importing it first turns its absence into the
        # error that names the extra to install.
        self.import_library("river")
        return pickle.loads(files.read_bytes(MODEL_FILE))

    def predict(self, model: Any, data: Any) -> Any:
        frame = _frame(data)
        if _batches(model, "predict_many"):
            return model.predict_many(frame).to_numpy()
        return np.asarray([model.predict_one(row) for row in frame.to_dict("records")])

    def predict_proba(self, model: Any, data: Any) -> Any:
        """Class probabilities, one column per class in sorted order. A class the model gives
        no probability for in a row (river returns only the classes it has seen where the
        prediction is made) has probability 0."""
        if not self.has_predict_proba(model):
            raise NotImplementedError(f"a river {type(model).__name__} has no class "
                                      "probabilities")
        frame = _frame(data)
        if _batches(model, "predict_proba_many"):
            result = model.predict_proba_many(frame)
        else:
            result = pd.DataFrame([model.predict_proba_one(row)
                                   for row in frame.to_dict("records")], index=frame.index)
        # reindex, not result[columns]: pandas reads a list of bool labels as a row mask.
        return result.reindex(columns=sorted(result.columns)).fillna(0.0)

    def has_predict_proba(self, model: Any) -> bool:
        """Whether the model is a classifier. A Pipeline has ``predict_proba_one`` whatever
        its last step is, so the last step is asked."""
        steps = _steps(model)
        if steps:
            return self.has_predict_proba(steps[-1])
        return callable(getattr(model, "predict_proba_one", None))


def _frame(data: Any) -> pd.DataFrame:
    """The batch as a DataFrame; an array's columns are numbered 0, 1..., the keys a model
    learnt from dicts with integer keys has seen."""
    return data if isinstance(data, pd.DataFrame) else pd.DataFrame(data)


def _steps(model: Any) -> list[Any]:
    """The steps of a river Pipeline (an ordered mapping in ``steps``); [] for other models."""
    steps = getattr(model, "steps", None)
    return list(steps.values()) if isinstance(steps, Mapping) else []


def _batches(model: Any, method: str) -> bool:
    """Whether ``model.method`` works on a batch. A river Pipeline always has the batch
    methods, which fail unless every step has its batch counterpart, so its steps are checked:
    ``transform_many`` for each transformer and ``method`` for the last step."""
    steps = _steps(model)
    if steps:
        *transformers, last = steps
        return all(_batches(step, "transform_many") for step in transformers) \
            and _batches(last, method)
    return callable(getattr(model, method, None))

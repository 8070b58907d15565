"""Any Python object with a ``predict`` method, stored with cloudpickle.

This is the flavor of last resort: a plain class has no format but its own code, so it is
pickled by value and, like every pickle, loaded only with ``trust=True``.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from tidal.models.flavors.base import Flavor, ModelFiles
from tidal.models.flavors.pickled import refuse_untrusted

FILE = "model.cloudpickle"


class PyFuncFlavor(Flavor):
    name = "pyfunc"
    packages = ("cloudpickle",)
    extra = "pyfunc"
    safe = False
    priority = 1000

    def handles(self, model: Any) -> bool:
        return callable(getattr(model, "predict", None)) and not isinstance(model, type)

    def save(self, model: Any, directory: Path, options: Mapping[str, Any]) -> dict[str, Any]:
        self.check_options(options)
        cloudpickle = self.import_library("cloudpickle")
        (directory / FILE).write_bytes(cloudpickle.dumps(model, protocol=5))
        return {"class": f"{type(model).__module__}.{type(model).__qualname__}"}

    def load(self, files: ModelFiles, metadata: Mapping[str, Any], *, trust: bool) -> Any:
        if not trust:
            raise refuse_untrusted(self.name, "cloudpickle")
        import pickle

        self.import_library("cloudpickle")  # what the pickle refers to, or a clear error

        return pickle.loads(files.read_bytes(FILE))  # the caller passed trust

    def predict(self, model: Any, data: Any) -> Any:
        return model.predict(data)

    def predict_proba(self, model: Any, data: Any) -> Any:
        if not hasattr(model, "predict_proba"):
            raise NotImplementedError
        return model.predict_proba(data)

    def has_predict_proba(self, model: Any) -> bool:
        return callable(getattr(model, "predict_proba", None))

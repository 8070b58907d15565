"""scikit-learn models and pipelines, stored with skops instead of pickle.

skops writes an estimator as a schema plus arrays and rebuilds it only from types it is told
to trust. The trusted list comes from Tidal (skops' own defaults plus the few scikit-learn
types below), never from the artifact: a file naming any other type is refused unless the
caller passes ``trust=True``, and the error lists the types so they can be reviewed.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from tidal.models.flavors.base import Flavor, ModelFiles, from_module
from tidal.models.flavors.pickled import UntrustedModelError
from tidal.models.flavors.sklearn_trees import check_trees

FILE = "model.skops"

#: Types skops leaves out of its defaults that Tidal trusts. ``Tree`` (every tree and forest)
#: and ``TreePredictor`` (histogram gradient boosting) hold tree nodes; skops distrusts them
#: because a crafted file can make predict read out of bounds (a crash, not code execution),
#: so every loaded model's trees are checked (:mod:`.sklearn_trees`) before it is returned.
#: ``numpy.dtype`` is data, as estimators keep their input dtype.
TRUSTED_TYPES = frozenset({
    "sklearn.tree._tree.Tree",
    "sklearn.ensemble._hist_gradient_boosting.predictor.TreePredictor",
    "numpy.dtype",
})


class SklearnFlavor(Flavor):
    name = "sklearn"
    packages = ("scikit-learn", "skops", "numpy")
    extra = "sklearn"
    priority = 50

    def handles(self, model: Any) -> bool:
        return from_module(model, "sklearn")

    def save(self, model: Any, directory: Path, options: Mapping[str, Any]) -> dict[str, Any]:
        self.check_options(options)
        skops_io = self.import_library("skops.io")
        skops_io.dump(model, directory / FILE)
        return {"estimator": f"{type(model).__module__}.{type(model).__qualname__}",
                "predict_proba": hasattr(model, "predict_proba")}

    def load(self, files: ModelFiles, metadata: Mapping[str, Any], *, trust: bool) -> Any:
        skops_io = self.import_library("skops.io")
        data = files.read_bytes(FILE)
        if trust:
            model = skops_io.loads(data, trusted=skops_io.get_untrusted_types(data=data))
        else:
            model = _load_trusted(skops_io, data)
        check_trees(model)  # trusting Tree and TreePredictor is safe only once they are checked
        return model

    def predict(self, model: Any, data: Any) -> Any:
        return model.predict(data)

    def predict_proba(self, model: Any, data: Any) -> Any:
        if not hasattr(model, "predict_proba"):
            raise NotImplementedError
        return model.predict_proba(data)

    def has_predict_proba(self, model: Any) -> bool:
        return hasattr(model, "predict_proba")


def _load_trusted(skops_io: Any, data: bytes) -> Any:
    """Rebuild the model if it uses only Tidal's trusted types; refuse it, naming the others."""
    from skops.io.exceptions import UntrustedTypesFoundException

    try:  # one pass over the file: skops audits every type before it builds anything
        return skops_io.loads(data, trusted=sorted(TRUSTED_TYPES))
    except UntrustedTypesFoundException:
        unknown = sorted(t for t in skops_io.get_untrusted_types(data=data)
                         if t not in TRUSTED_TYPES)
    raise UntrustedModelError(
        f"the stored scikit-learn model uses types outside Tidal's trusted list: "
        f"{', '.join(unknown)}; rebuilding them can run their code. Load it with "
        "trust=True (Python) / --trust (CLI) only if you trust where it came from",
        field="trust")

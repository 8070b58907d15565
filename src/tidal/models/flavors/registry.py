"""Finding flavors: the built-in ones, those other packages declare, those registered at run time.

A package adds a flavor by declaring an entry point in the ``tidal.flavors`` group::

    [project.entry-points."tidal.flavors"]
    catboost = "tidal_catboost:CatBoostFlavor"

Entry points are read once per process, and a flavor's module is imported only when the
flavor is first asked for, so an installed flavor costs nothing until it is used.
"""

from __future__ import annotations

import importlib
import threading
from importlib.metadata import entry_points
from typing import Any

from tidal.errors import InvalidValueError, NotFoundError
from tidal.models.flavors.base import Flavor

ENTRY_POINT_GROUP = "tidal.flavors"

#: Flavors shipped with Tidal, as "module:class", so none is imported before it is needed.
BUILTIN_FLAVORS: dict[str, str] = {
    "sklearn": "tidal.models.flavors.sklearn:SklearnFlavor",
    "lightgbm": "tidal.models.flavors.lightgbm:LightGBMFlavor",
    "xgboost": "tidal.models.flavors.xgboost:XGBoostFlavor",
    "pytorch": "tidal.models.flavors.pytorch:PyTorchFlavor",
    "onnx": "tidal.models.flavors.onnx:ONNXFlavor",
    "river": "tidal.models.flavors.river:RiverFlavor",
    "pyfunc": "tidal.models.flavors.pyfunc:PyFuncFlavor",
}


class FlavorNotFoundError(NotFoundError):
    """No flavor of that name is installed, or none can handle the model given."""


_lock = threading.Lock()
_targets: dict[str, str | Flavor] | None = None
_loaded: dict[str, Flavor] = {}


def _all_targets() -> dict[str, str | Flavor]:
    global _targets
    with _lock:
        if _targets is None:
            targets: dict[str, str | Flavor] = dict(BUILTIN_FLAVORS)
            for point in entry_points(group=ENTRY_POINT_GROUP):
                targets.setdefault(point.name, point.value)
            _targets = targets
        return _targets


def register_flavor(flavor: Flavor) -> None:
    """Make a flavor instance available under its ``name`` in this process (it replaces a
    flavor of the same name)."""
    if not isinstance(flavor, Flavor):
        raise InvalidValueError(f"register_flavor takes a Flavor instance, got "
                                f"{type(flavor).__name__}", field="flavor")
    targets = _all_targets()
    with _lock:
        targets[flavor.name] = flavor
        _loaded[flavor.name] = flavor


def flavor_names() -> list[str]:
    return sorted(_all_targets())


def get_flavor(name: str) -> Flavor:
    """The flavor called ``name``, importing its module on first use."""
    flavor = _loaded.get(name)
    if flavor is not None:
        return flavor
    # A built-in name needs no scan of the installed distributions' entry points (tens of
    # milliseconds): entry points never replace a built-in flavor.
    target = BUILTIN_FLAVORS.get(name) or _all_targets().get(name)
    if target is None:
        raise FlavorNotFoundError(
            f"no model flavor named {name!r} is installed; known flavors: "
            f"{', '.join(flavor_names())}", field="flavor")
    if isinstance(target, Flavor):
        flavor = target
    else:
        module_name, _, attribute = target.partition(":")
        factory: Any = getattr(importlib.import_module(module_name), attribute)
        flavor = factory()
        if not isinstance(flavor, Flavor):
            raise FlavorNotFoundError(f"entry point {name!r} ({target}) does not give a Flavor",
                                      field="flavor")
    with _lock:
        _loaded[name] = flavor
    return flavor


def detect_flavor(model: Any) -> Flavor:
    """The first flavor, by priority, that says it handles ``model``."""
    flavors = sorted((get_flavor(name) for name in flavor_names()),
                     key=lambda f: (f.priority, f.name))
    for flavor in flavors:
        if flavor.handles(model):
            return flavor
    raise FlavorNotFoundError(
        f"no model flavor handles a {type(model).__module__}.{type(model).__qualname__}; "
        f"pass flavor= with one of {', '.join(flavor_names())}, or give the object a predict "
        "method", field="model")

"""``tidal.models``: register, version, alias, gate, load and export models.

Heavy parts (flavors, gates, export, cards) are imported when first used.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

_EXPORTS: dict[str, str] = {
    "AliasNotFoundError": "tidal.models.errors",
    "IllegalTransitionError": "tidal.models.errors",
    "LibraryVersionWarning": "tidal.models.errors",
    "ModelLoadError": "tidal.models.errors",
    "ModelNotFoundError": "tidal.models.errors",
    "Flavor": "tidal.models.flavors.base",
    "ModelFiles": "tidal.models.flavors.base",
    "FlavorNotFoundError": "tidal.models.flavors.registry",
    "register_flavor": "tidal.models.flavors.registry",
    "flavor_names": "tidal.models.flavors.registry",
    "UntrustedModelError": "tidal.models.flavors.pickled",
    "ColumnSpec": "tidal.models.signature",
    "Signature": "tidal.models.signature",
    "SignatureMismatchError": "tidal.models.signature",
    "TensorSpec": "tidal.models.signature",
    "infer_signature": "tidal.models.signature",
    "ModelVersion": "tidal.models.registry",
    "RegisteredModel": "tidal.models.registry",
    "alias_history": "tidal.models.aliases",
    "delete_alias": "tidal.models.aliases",
    "get_model": "tidal.models.registry",
    "get_version": "tidal.models.registry",
    "list_models": "tidal.models.registry",
    "list_versions": "tidal.models.registry",
    "register": "tidal.models.registry",
    "set_alias": "tidal.models.aliases",
    "trained_on": "tidal.models.registry",
    "transition": "tidal.models.stages",
    "update_model": "tidal.models.registry",
    "GateReport": "tidal.models.gates",
    "GateResult": "tidal.models.gates",
    "better_than_champion": "tidal.models.gates",
    "latency_budget": "tidal.models.gates",
    "metric_threshold": "tidal.models.gates",
    "signature_compatible": "tidal.models.gates",
    "size_limit": "tidal.models.gates",
    "validate": "tidal.models.gates",
    "ModelCard": "tidal.models.cards",
    "build_card": "tidal.models.cards",
    "write_card": "tidal.models.cards",
    "ExportError": "tidal.models.export",
    "ExportMismatchError": "tidal.models.export",
    "ExportReport": "tidal.models.export",
    "Tolerance": "tidal.models.export",
    "export_onnx": "tidal.models.export",
    "LoadedModel": "tidal.models.loaded",
    "load": "tidal.models.loaded",
}

__all__ = [
    "AliasNotFoundError",
    "ColumnSpec",
    "ExportError",
    "ExportMismatchError",
    "ExportReport",
    "Flavor",
    "FlavorNotFoundError",
    "GateReport",
    "GateResult",
    "IllegalTransitionError",
    "LibraryVersionWarning",
    "LoadedModel",
    "ModelCard",
    "ModelFiles",
    "ModelLoadError",
    "ModelNotFoundError",
    "ModelVersion",
    "RegisteredModel",
    "Signature",
    "SignatureMismatchError",
    "TensorSpec",
    "Tolerance",
    "UntrustedModelError",
    "alias_history",
    "better_than_champion",
    "build_card",
    "delete_alias",
    "export_onnx",
    "flavor_names",
    "get_model",
    "get_version",
    "infer_signature",
    "latency_budget",
    "list_models",
    "list_versions",
    "load",
    "metric_threshold",
    "register",
    "register_flavor",
    "set_alias",
    "signature_compatible",
    "size_limit",
    "trained_on",
    "transition",
    "update_model",
    "validate",
    "write_card",
]

if TYPE_CHECKING:
    from tidal.models.aliases import alias_history, delete_alias, set_alias
    from tidal.models.cards import ModelCard, build_card, write_card
    from tidal.models.errors import (
        AliasNotFoundError,
        IllegalTransitionError,
        LibraryVersionWarning,
        ModelLoadError,
        ModelNotFoundError,
    )
    from tidal.models.export import (
        ExportError,
        ExportMismatchError,
        ExportReport,
        Tolerance,
        export_onnx,
    )
    from tidal.models.flavors.base import Flavor, ModelFiles
    from tidal.models.flavors.pickled import UntrustedModelError
    from tidal.models.flavors.registry import FlavorNotFoundError, flavor_names, register_flavor
    from tidal.models.gates import (
        GateReport,
        GateResult,
        better_than_champion,
        latency_budget,
        metric_threshold,
        signature_compatible,
        size_limit,
        validate,
    )
    from tidal.models.loaded import LoadedModel, load
    from tidal.models.registry import (
        ModelVersion,
        RegisteredModel,
        get_model,
        get_version,
        list_models,
        list_versions,
        register,
        trained_on,
        update_model,
    )
    from tidal.models.signature import (
        ColumnSpec,
        Signature,
        SignatureMismatchError,
        TensorSpec,
        infer_signature,
    )
    from tidal.models.stages import transition


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'tidal.models' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return __all__

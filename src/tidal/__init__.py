"""Tidal: a closed-loop MLOps platform, from versioned data to drift-triggered retraining.

The public API is re-exported here and imported lazily on first use, so that ``import tidal``
costs milliseconds and a command-line tool built on it starts fast.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

_EXPORTS: dict[str, str] = {
    # workspace
    "Workspace": "tidal.store.workspace",
    "workspace": "tidal.store.workspace",
    # tracking
    "ActiveRun": "tidal.tracking.run",
    "Run": "tidal.tracking.run",
    "active_run": "tidal.tracking.fluent",
    "end_run": "tidal.tracking.fluent",
    "flush": "tidal.tracking.fluent",
    "get_run": "tidal.tracking.fluent",
    "list_experiments": "tidal.tracking.fluent",
    "log_artifact": "tidal.tracking.fluent",
    "log_artifacts": "tidal.tracking.fluent",
    "log_metric": "tidal.tracking.fluent",
    "log_metrics": "tidal.tracking.fluent",
    "log_param": "tidal.tracking.fluent",
    "log_params": "tidal.tracking.fluent",
    "search_runs": "tidal.tracking.fluent",
    "set_tag": "tidal.tracking.fluent",
    "set_tags": "tidal.tracking.fluent",
    "start_run": "tidal.tracking.fluent",
    # pipelines
    "pipeline": "tidal.pipelines.graph",
    "step": "tidal.pipelines.step",
    "tune": "tidal.pipelines.tune",
    # maintenance
    "gc": "tidal.loop.garbage",
    # errors
    "TidalError": "tidal.errors",
}

#: Public names that are whole modules, e.g. ``tidal.datasets.register(...)``.
_MODULES: dict[str, str] = {
    "datasets": "tidal.data.api",
    "features": "tidal.features",
    "loop": "tidal.loop",
    "models": "tidal.models",
    "monitoring": "tidal.monitoring",
    "serving": "tidal.serving",
}

__all__ = [
    "ActiveRun",
    "Run",
    "TidalError",
    "Workspace",
    "__version__",
    "active_run",
    "datasets",
    "end_run",
    "features",
    "flush",
    "gc",
    "get_run",
    "list_experiments",
    "log_artifact",
    "log_artifacts",
    "log_metric",
    "log_metrics",
    "log_param",
    "log_params",
    "loop",
    "models",
    "monitoring",
    "pipeline",
    "search_runs",
    "serving",
    "set_tag",
    "set_tags",
    "start_run",
    "step",
    "tune",
    "workspace",
]

if TYPE_CHECKING:
    import tidal.features as features
    import tidal.loop as loop
    import tidal.models as models
    import tidal.monitoring as monitoring
    import tidal.serving as serving
    from tidal.data import api as datasets
    from tidal.errors import TidalError
    from tidal.loop.garbage import gc
    from tidal.pipelines.graph import pipeline
    from tidal.pipelines.step import step
    from tidal.pipelines.tune import tune
    from tidal.store.workspace import Workspace, workspace
    from tidal.tracking.fluent import (
        active_run,
        end_run,
        flush,
        get_run,
        list_experiments,
        log_artifact,
        log_artifacts,
        log_metric,
        log_metrics,
        log_param,
        log_params,
        search_runs,
        set_tag,
        set_tags,
        start_run,
    )
    from tidal.tracking.run import ActiveRun, Run


def _register_lazy_modules() -> None:
    """Make ``import tidal.datasets`` and ``from tidal.datasets import expect`` work without
    loading anything yet: the module object is registered now and executed on first use."""
    import importlib.util
    import sys

    for alias, target in _MODULES.items():
        if target == f"{__name__}.{alias}":  # a real subpackage imports as itself
            continue
        if alias in globals() or f"{__name__}.{alias}" in sys.modules:
            continue
        spec = importlib.util.find_spec(target)
        if spec is None or spec.loader is None:  # pragma: no cover - a broken installation
            continue
        spec.loader = importlib.util.LazyLoader(spec.loader)
        module = importlib.util.module_from_spec(spec)
        sys.modules[target] = module
        spec.loader.exec_module(module)
        sys.modules[f"{__name__}.{alias}"] = module
        globals()[alias] = module


_register_lazy_modules()


def __getattr__(name: str) -> Any:
    if name in _MODULES:
        value = importlib.import_module(_MODULES[name])
        globals()[name] = value
        return value
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'tidal' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return __all__

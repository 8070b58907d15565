"""The public face: __all__ is exactly what tidal exposes, and importing it stays light."""

from __future__ import annotations

import subprocess
import sys

import tidal

EXPECTED = [
    "ActiveRun", "Run", "TidalError", "Workspace", "__version__", "active_run", "datasets",
    "end_run",
    "features",
    "flush", "gc", "get_run", "list_experiments", "log_artifact", "log_artifacts", "log_metric",
    "log_metrics", "log_param", "log_params", "loop", "models", "monitoring", "pipeline",
    "search_runs", "serving",
    "set_tag", "set_tags", "start_run", "step", "tune", "workspace",
]


def test_all_is_pinned():
    assert tidal.__all__ == EXPECTED


def test_every_lazy_export_is_public_and_every_public_name_is_exported():
    from tidal import _EXPORTS, _MODULES

    assert sorted([*_EXPORTS, *_MODULES, "__version__"]) == tidal.__all__


def test_every_public_name_resolves():
    for name in tidal.__all__:
        assert getattr(tidal, name) is not None
    assert callable(tidal.start_run) and callable(tidal.workspace)


def test_unknown_attribute_is_an_attribute_error():
    import pytest

    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        tidal.nope  # noqa: B018


def test_import_tidal_loads_no_heavy_dependency():
    code = ("import sys, tidal; heavy = [m for m in ('sqlalchemy', 'pandas', 'pyarrow', "
            "'alembic', 'fsspec', 'psutil', 'numpy') if m in sys.modules]; print(heavy)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout
    assert out.strip() == "[]"


def test_datasets_is_importable_as_a_module_yet_loaded_lazily():
    code = ("import sys, tidal; assert 'pandas' not in sys.modules and 'duckdb' not in "
            "sys.modules; from tidal.datasets import expect, register; import tidal.datasets; "
            "print(callable(register), expect.not_null('x').name, "
            "tidal.datasets.register is register)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout
    assert out.split() == ["True", "not_null", "True"]

"""Loading a registered model into a callable with one interface whatever its flavor.

``load("models:/ctr@champion")`` resolves the URI now (so a moved alias is followed), then
returns the loaded model for that version from a per-process cache: a version is immutable,
so it is read, verified and deserialized once per process. The returned object checks every
input against the version's signature before the flavor's predict sees it.
"""

from __future__ import annotations

import threading
import warnings
from importlib.metadata import PackageNotFoundError, version
from typing import Any

from tidal.errors import TidalError
from tidal.models.errors import LibraryVersionWarning, ModelLoadError
from tidal.models.flavors.base import Flavor
from tidal.models.flavors.pickled import refuse_untrusted
from tidal.models.flavors.registry import get_flavor
from tidal.models.registry import ModelVersion, get_version
from tidal.models.signature import to_frame
from tidal.store.workspace import Workspace


class LoadedModel:
    """A model version ready to predict: ``predict`` (and ``predict_proba`` where the flavor
    has it) take a pandas DataFrame, an Arrow table, a NumPy array, a dict of columns or a list
    of records; ``raw`` is the library's own object."""

    def __init__(self, model_version: ModelVersion, flavor: Flavor, raw: Any) -> None:
        self.version = model_version
        self.flavor = flavor
        self.raw = raw
        self.signature = model_version.signature

    def __repr__(self) -> str:
        return f"LoadedModel({self.version.uri}, flavor={self.flavor.name})"

    @property
    def uri(self) -> str:
        return self.version.uri

    def prepare(self, data: Any, *, extra: str = "refuse") -> Any:
        """``data`` as the flavor takes it: checked and coerced by the signature when the
        version has one."""
        if self.signature is not None:
            return self.signature.validate_input(data, extra=extra)
        import numpy as np

        if isinstance(data, np.ndarray) or hasattr(data, "detach"):
            return data
        return to_frame(data, None)

    def predict(self, data: Any) -> Any:
        return self.flavor.predict(self.raw, self.prepare(data))

    @property
    def has_predict_proba(self) -> bool:
        return self.flavor.has_predict_proba(self.raw)

    def predict_proba(self, data: Any) -> Any:
        if not self.has_predict_proba:
            raise AttributeError(f"{self.version.uri} ({self.flavor.name}) has no predict_proba")
        return self.flavor.predict_proba(self.raw, self.prepare(data))


_cache: dict[tuple[str, str, str, bool], LoadedModel] = {}
_lock = threading.Lock()


def _major(text: str) -> str:
    return text.split(".", 1)[0]


def _warn_on_other_majors(model_version: ModelVersion) -> None:
    for package, saved in model_version.libraries.items():
        if package == "python":
            continue
        try:
            installed = version(package)
        except PackageNotFoundError:
            continue
        if _major(installed) != _major(saved):
            warnings.warn(f"{model_version.uri} was saved with {package} {saved} and is loaded "
                          f"with {installed}, another major version; check its predictions",
                          LibraryVersionWarning, stacklevel=3)


def load_version(model_version: ModelVersion, *, trust: bool = False) -> LoadedModel:
    """Load a version already looked up (cached per process)."""
    ws = model_version.workspace
    key = (ws.settings.db_url, ws.settings.artifacts, model_version.id, trust)
    cached = _cache.get(key)
    if cached is not None:
        return cached
    flavor = get_flavor(model_version.flavor)
    if not flavor.safe and not trust:
        raise refuse_untrusted(flavor.name, "pickle")
    _warn_on_other_majors(model_version)
    try:
        with model_version.stored_files() as files:
            raw = flavor.load(files, model_version.flavor_metadata, trust=trust)
    except TidalError:
        raise
    except Exception as error:  # a library's own refusal, reported as ours
        raise ModelLoadError(
            f"{model_version.uri} could not be loaded by the {flavor.name} flavor: "
            f"{type(error).__name__}: {error}") from error
    loaded = LoadedModel(model_version, flavor, raw)
    with _lock:
        return _cache.setdefault(key, loaded)


def load(uri: str, *, trust: bool = False, workspace: Workspace | None = None) -> LoadedModel:
    """Load the version ``uri`` points at now (``models:/ctr/3``, ``models:/ctr@champion``).

    ``trust=True`` allows flavors whose format can run code when loaded (pickle); without it
    they are refused before a byte is read.
    """
    return load_version(get_version(uri, workspace=workspace), trust=trust)


def clear_cache() -> None:
    """Forget every loaded model (tests, and servers that must release memory)."""
    with _lock:
        _cache.clear()

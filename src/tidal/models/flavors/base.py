"""What a flavor is: the code that saves, loads and calls one kind of model.

A flavor writes a model into a folder of files in the safest format its library offers, and
reads it back from those files. The registry stores the files as content-addressed blobs and
hands them back through :class:`ModelFiles`, verified against their digests, so a flavor never
sees a path a user chose. Flavors whose only format is pickle declare ``safe = False``; the
registry then refuses to load them unless the caller passes ``trust=True``, before a single
byte is read.
"""

from __future__ import annotations

import importlib
from abc import ABC, abstractmethod
from collections.abc import Mapping
from pathlib import Path
from typing import Any, ClassVar

from tidal.errors import InvalidValueError, missing_dependency


class ModelFiles(ABC):
    """The stored files of one model version, read back verified."""

    @abstractmethod
    def names(self) -> list[str]:
        """Names of the files the flavor wrote, relative to its folder."""

    @abstractmethod
    def read_bytes(self, name: str) -> bytes:
        """One file's bytes, checked against the digest recorded at registration."""

    @abstractmethod
    def path(self, name: str) -> Path:
        """A local path holding the verified file, for libraries that only read from disk."""


class Flavor(ABC):
    """Saves, loads and calls one kind of model.

    Subclasses set the class attributes and implement the four methods. ``predict`` and
    ``predict_proba`` receive what the signature let through: a pandas DataFrame for column
    signatures, a NumPy array for tensor signatures (or either one when the version has no
    signature), and return a NumPy array or a DataFrame.
    """

    #: The name stored with each version and used in ``register(..., flavor=...)``.
    name: ClassVar[str]
    #: Distributions whose versions are recorded with each version (the first is the library
    #: the flavor needs to load; its absence raises MissingDependencyError naming ``extra``).
    packages: ClassVar[tuple[str, ...]] = ()
    #: The tidal-mlops extra that installs those packages.
    extra: ClassVar[str] = "models"
    #: False when the stored format can run code on load (pickle): loading needs trust=True.
    safe: ClassVar[bool] = True
    #: Detection order: flavors with a lower number are asked first.
    priority: ClassVar[int] = 100

    @abstractmethod
    def handles(self, model: Any) -> bool:
        """Whether ``model`` is of this flavor. Must not import the flavor's library, so that
        detection costs nothing for flavors that are not installed."""

    @abstractmethod
    def save(self, model: Any, directory: Path, options: Mapping[str, Any]) -> dict[str, Any]:
        """Write ``model`` into ``directory``; return JSON-able metadata that ``load`` needs.

        ``options`` are the caller's ``flavor_options``; refuse unknown ones with
        InvalidValueError."""

    @abstractmethod
    def load(self, files: ModelFiles, metadata: Mapping[str, Any], *, trust: bool) -> Any:
        """Rebuild the model from its files. ``trust`` is the caller's explicit switch."""

    @abstractmethod
    def predict(self, model: Any, data: Any) -> Any:
        """Predictions for a batch of rows. Also called on the model object being registered
        (before it is saved), to infer its signature from the input example."""

    def predict_proba(self, model: Any, data: Any) -> Any:
        """Class probabilities, or raise NotImplementedError when the model has none."""
        raise NotImplementedError

    def has_predict_proba(self, model: Any) -> bool:
        return False

    def check_options(self, options: Mapping[str, Any], allowed: tuple[str, ...] = ()) -> None:
        """Refuse flavor_options this flavor does not know, naming those it does."""
        unknown = sorted(set(options) - set(allowed))
        if unknown:
            accepted = ", ".join(repr(a) for a in allowed) if allowed else "none"
            raise InvalidValueError(f"the {self.name} flavor does not take the flavor_options "
                                    f"{unknown}; it takes {accepted}", field="flavor_options")

    def import_library(self, module: str) -> Any:
        """Import the flavor's library, or raise the error that names the extra to install."""
        try:
            return importlib.import_module(module)
        except ImportError as error:
            package = self.packages[0] if self.packages else module
            raise missing_dependency(package, self.extra,
                                     f"the {self.name} model flavor") from error


def type_names(model: Any) -> list[str]:
    """Fully qualified names of every class in ``model``'s MRO, for detection by module."""
    return [f"{cls.__module__}.{cls.__qualname__}" for cls in type(model).__mro__]


def from_module(model: Any, *roots: str) -> bool:
    """Whether any class in ``model``'s MRO comes from one of the top-level packages."""
    return any(cls.__module__.split(".", 1)[0] in roots for cls in type(model).__mro__)



class FolderFiles(ModelFiles):
    """The files of a model held in a local folder: what a flavor just wrote, before it is
    stored, and what export and tests read back without a registry."""

    def __init__(self, directory: Path) -> None:
        self.directory = Path(directory)

    def names(self) -> list[str]:
        return sorted(p.relative_to(self.directory).as_posix()
                      for p in self.directory.rglob("*") if p.is_file())

    def read_bytes(self, name: str) -> bytes:
        return self.path(name).read_bytes()

    def path(self, name: str) -> Path:
        if name not in self.names():
            raise FileNotFoundError(f"the model has no file {name!r}")
        return self.directory / name

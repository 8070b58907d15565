"""Errors of the model registry, each naming what was asked for and what exists instead."""

from __future__ import annotations

from tidal.errors import InvalidValueError, NotFoundError, TidalError


class ModelNotFoundError(NotFoundError):
    """No registered model has that name, or it has no such version."""


class AliasNotFoundError(ModelNotFoundError):
    """The model has no alias of that name."""


class IllegalTransitionError(InvalidValueError):
    """A version cannot move from its stage to the one asked for (or an alias cannot point at
    it): the stage asked for is a wrong value, refused with the moves that are allowed."""

    status_code = 409


class ModelLoadError(TidalError):
    """The flavor's library refused the stored files (they verify against their digests, so
    they were stored that way, or the library cannot read what another version wrote)."""

    status_code = 422


class LibraryVersionWarning(UserWarning):
    """A model is loaded under another major version of a library than it was saved with."""

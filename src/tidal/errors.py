"""Tidal's exceptions.

Every error a user can cause is a :class:`TidalError` subclass whose message says what was
wrong, which field it concerns and what is accepted instead, so that the CLI and the HTTP
faces can show it as it is (HTTP answers ``status_code``, never 500).
"""

from __future__ import annotations


class TidalError(Exception):
    """Base of every error Tidal raises on purpose."""

    #: HTTP status a server face answers for this error.
    status_code: int = 400

    def __init__(self, message: str, *, field: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.field = field


class ConfigError(TidalError):
    """A setting (argument, TIDAL_* variable or tidal.toml entry) is invalid."""


class InvalidValueError(TidalError):
    """A value given to a public function is of the wrong type or out of range."""


class InvalidKeyError(InvalidValueError):
    """A metric, param or tag key is empty, too long or has characters that are not allowed."""


class ParamConflictError(InvalidValueError):
    """A param was set again with a different value; params are write-once per run."""

    status_code = 409


class InvalidArtifactNameError(InvalidValueError):
    """An artifact name would escape its run (``..``, absolute, NUL, backslash...)."""


class FilterSyntaxError(InvalidValueError):
    """A run filter or order-by expression does not parse; the message points at the token."""

    def __init__(self, message: str, *, expression: str, position: int) -> None:
        caret = " " * position + "^"
        super().__init__(f"{message}\n  {expression}\n  {caret}", field="filter")
        self.expression = expression
        self.position = position


class NotFoundError(TidalError):
    """Something looked up by id or name does not exist."""

    status_code = 404


class RunNotFoundError(NotFoundError):
    """No run has the given id."""


class ExperimentNotFoundError(NotFoundError):
    """No experiment has the given name or id."""


class ArtifactNotFoundError(NotFoundError):
    """The run has no artifact of that name, or the blob behind it is missing."""


class NoActiveRunError(TidalError):
    """A fluent call (``tidal.log_metric`` ...) was made with no run started."""

    status_code = 409


class RunStateError(TidalError):
    """The run is not in a state that allows the operation (e.g. logging to a finished run)."""

    status_code = 409


class StoreError(TidalError):
    """The metadata or artifact store failed in a way the caller can act on."""

    status_code = 503


class SchemaVersionError(StoreError):
    """The metadata store was written by a newer Tidal than this one."""


class StoreBusyError(StoreError):
    """The metadata store stayed locked by other writers past every retry."""


class ArtifactCorruptedError(StoreError):
    """A blob's content does not match its digest: the artifact store was tampered with."""


class MissingDependencyError(TidalError):
    """An optional dependency needed for this operation is not installed."""

    status_code = 501


def missing_dependency(package: str, extra: str, purpose: str) -> MissingDependencyError:
    """Build the error for an absent optional package, naming the extra that installs it."""
    return MissingDependencyError(
        f"{purpose} needs the '{package}' package, which is not installed; "
        f"install it with: pip install 'tidal-mlops[{extra}]'"
    )

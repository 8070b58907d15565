"""Dataset references: ``datasets:/NAME/VERSION``, ``NAME/VERSION``, ``NAME`` (the latest).

Kept apart from the dataset code so that the CLI parses references without importing Arrow.
"""

from __future__ import annotations

from tidal.errors import InvalidValueError
from tidal.ids import parse_count

URI_PREFIX = "datasets:/"


def parse_ref(ref: str) -> tuple[str, int | None]:
    """``(name, version)`` from a reference; version None means the latest. The name itself is
    checked by the API when the version is looked up."""
    if not isinstance(ref, str):
        raise InvalidValueError(f"a dataset reference must be a string, got "
                                f"{type(ref).__name__}", field="dataset")
    text = ref.strip()
    body = text.removeprefix(URI_PREFIX)
    parts = body.split("/")
    if len(parts) > 2 or not parts[0]:
        raise InvalidValueError(
            f"dataset reference {ref!r} is not valid; use NAME, NAME/VERSION or "
            f"{URI_PREFIX}NAME/VERSION", field="dataset")
    if len(parts) == 1 or parts[1] == "latest":
        return parts[0], None
    number = parse_count(parts[1])
    if number is None or number < 1:
        raise InvalidValueError(
            f"version {parts[1]!r} in dataset reference {ref!r} is not valid; use a positive "
            "number or 'latest'", field="version")
    return parts[0], number

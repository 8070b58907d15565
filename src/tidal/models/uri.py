"""Model URIs: ``models:/ctr/3`` names a version, ``models:/ctr@champion`` whatever an alias
points at, ``models:/ctr/latest`` the newest version. The ``models:/`` prefix may be left out
(``ctr/3``, ``ctr@champion``) where a model is obviously meant, as in the CLI."""

from __future__ import annotations

import re
from dataclasses import dataclass

from tidal.errors import InvalidValueError
from tidal.ids import check_name, parse_count

SCHEME = "models:/"
_ALIAS = re.compile(r"[A-Za-z][A-Za-z0-9_-]{0,249}")
_URI = re.compile(r"(?P<name>[^/@]+)(?:/(?P<version>[^/@]+)|@(?P<alias>[^/@]+))?")
RESERVED_ALIASES = frozenset({"latest"})


def check_alias(alias: object) -> str:
    if not isinstance(alias, str) or not _ALIAS.fullmatch(alias) or alias in RESERVED_ALIASES:
        raise InvalidValueError(
            f"alias {alias!r} is not valid; use a letter followed by up to 249 letters, "
            "digits, '_' or '-' (and not 'latest', which always means the newest version)",
            field="alias")
    return alias


@dataclass(frozen=True)
class ModelRef:
    """A parsed model reference: a name plus one of a version number, an alias or neither
    (the newest version)."""

    name: str
    version: int | None = None
    alias: str | None = None

    def __str__(self) -> str:
        if self.alias is not None:
            return f"{SCHEME}{self.name}@{self.alias}"
        if self.version is not None:
            return f"{SCHEME}{self.name}/{self.version}"
        return f"{SCHEME}{self.name}/latest"


def parse_model_uri(uri: object) -> ModelRef:
    """Parse ``models:/name/3``, ``models:/name@alias``, ``models:/name/latest``, or the same
    without the scheme; a bare name means its newest version."""
    if not isinstance(uri, str):
        raise InvalidValueError(f"a model URI must be a string, got {type(uri).__name__}",
                                field="uri")
    text = uri.removeprefix(SCHEME)
    match = _URI.fullmatch(text)
    if match is None:
        raise InvalidValueError(
            f"model URI {uri!r} is not valid; use models:/NAME/VERSION, models:/NAME@ALIAS or "
            "models:/NAME/latest", field="uri")
    name = check_name(match["name"], what="model", field="uri")
    if match["alias"] is not None:
        return ModelRef(name, alias=check_alias(match["alias"]))
    version = match["version"]
    if version is None or version == "latest":
        return ModelRef(name)
    number = parse_count(version)
    if number is None or number < 1:
        raise InvalidValueError(f"model URI {uri!r}: version {version!r} is not a positive "
                                "whole number (or 'latest')", field="uri")
    return ModelRef(name, version=number)

"""Feature definitions: entities (join keys), typed features and the views that hold them."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from tidal.errors import InvalidValueError

_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,127}")
#: Feature types by the names users write, mapped to DuckDB types for casting and checking.
TYPES = {"float64": "DOUBLE", "float32": "FLOAT", "int64": "BIGINT", "int32": "INTEGER",
         "bool": "BOOLEAN", "string": "VARCHAR", "timestamp": "TIMESTAMPTZ"}


def _identifier(value: Any, what: str) -> str:
    if not isinstance(value, str) or not _NAME.fullmatch(value):
        raise InvalidValueError(f"{what} {value!r} is not a valid name; use letters, digits and "
                                "'_', starting with a letter or '_' (at most 128)", field=what)
    return value


def find_feature(view: Any, name: str, kind: str) -> Feature:
    """The feature ``name`` of a view of any kind, or an error listing those it has."""
    for candidate in view.features:
        if candidate.name == name:
            return candidate
    raise InvalidValueError(f"{kind} {view.name!r} has no feature {name!r}; it has "
                            f"{[f.name for f in view.features]}", field="features")


@dataclass(frozen=True)
class Entity:
    """What features describe (a user, a product...), identified by its join keys."""

    name: str
    join_keys: tuple[str, ...]

    def __init__(self, name: str, join_keys: Any) -> None:
        keys = (join_keys,) if isinstance(join_keys, str) else tuple(join_keys or ())
        if not keys:
            raise InvalidValueError(f"entity {name!r} needs at least one join key",
                                    field="join_keys")
        object.__setattr__(self, "name", _identifier(name, "entity name"))
        object.__setattr__(self, "join_keys", tuple(_identifier(k, "join key") for k in keys))


@dataclass(frozen=True)
class Feature:
    name: str
    dtype: str = "float64"

    def __post_init__(self) -> None:
        _identifier(self.name, "feature name")
        if self.dtype not in TYPES:
            raise InvalidValueError(f"feature {self.name!r} has type {self.dtype!r}; accepted: "
                                    f"{sorted(TYPES)}", field="dtype")


@dataclass(frozen=True)
class FeatureView:
    """Features of some entities, read from a source with an event-timestamp column.

    ``source``: a dataset name (its latest version when queried), a DatasetVersion, or a
    Parquet path or glob. ``ttl``: how old a value may be at the entity row's time and still
    count; None keeps values forever. ``transform``: an optional DuckDB ``SELECT`` over the
    source, named ``source`` in the query, whose result holds the declared columns (derived
    features, filters, renames); it runs wherever the view is read, offline and when
    materializing. It must be that one read-only SELECT and nothing else: no other statement,
    file, table function, setting or catalog (see ``tidal.features.transform``).
    """

    name: str
    entities: tuple[Entity, ...]
    features: tuple[Feature, ...]
    source: Any
    timestamp: str = "event_timestamp"
    ttl: timedelta | None = None
    created_timestamp: str | None = None
    transform: str | None = None
    tags: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        _identifier(self.name, "feature view name")
        entities = (self.entities,) if isinstance(self.entities, Entity) else tuple(self.entities)
        if not entities or not all(isinstance(e, Entity) for e in entities):
            raise InvalidValueError(f"feature view {self.name!r} needs one or more Entity",
                                    field="entities")
        features = tuple(self.features)
        if not features or not all(isinstance(f, Feature) for f in features):
            raise InvalidValueError(f"feature view {self.name!r} needs one or more Feature",
                                    field="features")
        names = [f.name for f in features]
        if len(set(names)) != len(names):
            raise InvalidValueError(f"feature view {self.name!r} declares a feature twice",
                                    field="features")
        _identifier(self.timestamp, "timestamp column")
        if self.created_timestamp is not None:
            _identifier(self.created_timestamp, "created timestamp column")
        if self.ttl is not None and (not isinstance(self.ttl, timedelta)
                                     or self.ttl <= timedelta(0)):
            raise InvalidValueError(f"ttl of feature view {self.name!r} must be a positive "
                                    f"timedelta or None, got {self.ttl!r}", field="ttl")
        if self.transform is not None:  # refused here, before anything can run it
            from tidal.features.transform import checked_transform

            checked_transform(self.transform, self.name)
        object.__setattr__(self, "entities", entities)
        object.__setattr__(self, "features", features)

    @property
    def join_keys(self) -> tuple[str, ...]:
        return tuple(k for e in self.entities for k in e.join_keys)

    def feature(self, name: str) -> Feature:
        return find_feature(self, name, "feature view")


@dataclass(frozen=True)
class FeatureService:
    """A named group of features that one model uses, so that training and serving ask for
    the same thing by one name. ``features``: ``"view:feature"`` references, or whole views
    (feature views and on-demand views) for all of their features."""

    name: str
    features: tuple[str, ...]
    description: str = ""
    tags: dict[str, str] = field(default_factory=dict)

    def __init__(self, name: str, features: Any, description: str = "",
                 tags: dict[str, str] | None = None) -> None:
        object.__setattr__(self, "name", _identifier(name, "feature service name"))
        items = [features] if isinstance(features, str) else list(features or ())
        refs: list[str] = []
        for item in items:
            if isinstance(item, str):
                refs.append(item)
            elif hasattr(item, "features") and hasattr(item, "name"):  # a view of any kind
                refs.extend(f"{item.name}:{f.name}" for f in item.features)
            else:
                raise InvalidValueError(f"feature service {name!r}: {item!r} is neither a "
                                        "'view:feature' reference nor a view", field="features")
        if not refs:
            raise InvalidValueError(f"feature service {name!r} needs one or more features",
                                    field="features")
        object.__setattr__(self, "features", tuple(dict.fromkeys(refs)))
        object.__setattr__(self, "description", str(description or ""))
        object.__setattr__(self, "tags", dict(tags or {}))

"""Endpoints: named sets of routes over registry URIs, kept in the metadata store.

Every change is a new revision, so running servers notice it by polling one number, and a
rollback restores the configuration that was current before, as a revision of its own. Route
URIs are checked against the registry when deployed: a typo fails here, not in a server.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from sqlalchemy import Connection, insert, select, update

from tidal.errors import InvalidValueError, NotFoundError, TidalError
from tidal.ids import check_name, now_ms
from tidal.models.registry import get_version
from tidal.models.uri import parse_model_uri
from tidal.serving.schema import endpoint_revisions, endpoints
from tidal.store.workspace import Workspace, current_workspace
from tidal.tracking.environment import user_name

MODES = ("canary", "ab")
MAX_BATCH_SIZE = 4096
MAX_WAIT_MS = 1000.0


class EndpointNotFoundError(NotFoundError):
    """No endpoint of that name (or no earlier revision to roll back to)."""


class DeployConflictError(TidalError):
    """Another deploy changed the endpoint at the same moment; deploying again is safe."""

    status_code = 409


@dataclass(frozen=True)
class Route:
    """A live route: a registry URI (``models:/ctr@champion``) and its share of traffic."""

    uri: str
    weight: float


@dataclass(frozen=True)
class EndpointConfig:
    """What an endpoint serves and how.

    ``mode``: "canary" splits traffic at random by weight; "ab" picks by a hash of the
    request's key, so one key always reaches one route while the weights stay. ``shadows``
    receive a copy of every request off the request path; their answers are only logged.
    ``log_sample``: the share of requests whose inputs go into the prediction log (outputs
    always do).
    """

    routes: tuple[Route, ...]
    shadows: tuple[str, ...] = ()
    mode: str = "canary"
    max_batch_size: int = 64
    max_wait_ms: float = 0.0
    feature_service: str | None = None
    log_sample: float = 1.0

    def to_dict(self) -> dict[str, Any]:
        return {"routes": [{"uri": r.uri, "weight": r.weight} for r in self.routes],
                "shadows": list(self.shadows), "mode": self.mode,
                "max_batch_size": self.max_batch_size, "max_wait_ms": self.max_wait_ms,
                "feature_service": self.feature_service, "log_sample": self.log_sample}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> EndpointConfig:
        return cls(routes=tuple(Route(r["uri"], float(r["weight"])) for r in data["routes"]),
                   shadows=tuple(data.get("shadows", ())), mode=data.get("mode", "canary"),
                   max_batch_size=int(data.get("max_batch_size", 64)),
                   max_wait_ms=float(data.get("max_wait_ms", 0.0)),
                   feature_service=data.get("feature_service"),
                   log_sample=float(data.get("log_sample", 1.0)))


@dataclass(frozen=True)
class Endpoint:
    """One revision of an endpoint: the current one unless asked for history."""

    name: str
    revision: int
    config: EndpointConfig
    action: str
    previous: int | None
    created_at: int
    created_by: str | None = field(default=None)

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "revision": self.revision, "action": self.action,
                "previous": self.previous, "created_at": self.created_at,
                "created_by": self.created_by, **self.config.to_dict()}


def _canonical_uri(uri: Any, field_name: str) -> str:
    try:
        return str(parse_model_uri(uri))
    except InvalidValueError as error:
        raise InvalidValueError(str(error), field=field_name) from None


def _routes(routes: Any) -> tuple[Route, ...]:
    """Routes from a mapping {uri: weight}, Route objects, (uri, weight) pairs or "uri=weight"
    strings (the CLI's form)."""
    if isinstance(routes, Mapping):
        items: list[Any] = list(routes.items())
    elif isinstance(routes, (list, tuple)):
        items = list(routes)
    else:
        raise InvalidValueError(f"routes must be a mapping of model URI to weight or a list, "
                                f"got {type(routes).__name__}", field="routes")
    if not items:
        raise InvalidValueError("an endpoint needs at least one route", field="routes")
    parsed: list[Route] = []
    for item in items:
        if isinstance(item, Route):
            uri, weight = item.uri, item.weight
        elif isinstance(item, str):
            uri, sep, weight_text = item.rpartition("=")
            if not sep:
                uri, weight_text = item, "100" if len(items) == 1 else ""
            try:
                weight = float(weight_text)
            except ValueError:
                raise InvalidValueError(
                    f"route {item!r} is not valid; use URI=WEIGHT, e.g. "
                    "models:/ctr@champion=90", field="routes") from None
        elif isinstance(item, (list, tuple)) and len(item) == 2:
            uri, weight = item
        else:
            raise InvalidValueError(f"route {item!r} is not valid; give (uri, weight) or "
                                    "'URI=WEIGHT'", field="routes")
        if isinstance(weight, bool) or not isinstance(weight, (int, float)) \
                or not math.isfinite(weight) or weight <= 0:
            raise InvalidValueError(f"route {uri!r} has weight {weight!r}; weights are positive "
                                    "numbers (shares of traffic, e.g. 90 and 10)",
                                    field="routes")
        parsed.append(Route(_canonical_uri(uri, "routes"), float(weight)))
    uris = [r.uri for r in parsed]
    if len(set(uris)) != len(uris):
        raise InvalidValueError(f"a route is given twice: {uris}", field="routes")
    return tuple(parsed)


def _number(value: Any, name: str, low: float, high: float, integer: bool) -> Any:
    kinds = (int,) if integer else (int, float)
    if isinstance(value, bool) or not isinstance(value, kinds) or not low <= value <= high \
            or (isinstance(value, float) and not math.isfinite(value)):
        kind = "an integer" if integer else "a number"
        raise InvalidValueError(f"{name} must be {kind} from {low:g} to {high:g}, got "
                                f"{value!r}", field=name)
    return value


def _check_resolvable(config: EndpointConfig, ws: Workspace) -> None:
    """Every URI must point at a registered version now; a server could not load it later."""
    for uri in [r.uri for r in config.routes] + list(config.shadows):
        get_version(uri, workspace=ws)


def _check_feature_service(name: str, ws: Workspace) -> None:
    from tidal.features.registry import list_definitions

    services = [d.name for d in list_definitions(workspace=ws, kind="feature_service")]
    if name not in services:
        known = ", ".join(services) or "none are registered (tidal features apply)"
        raise InvalidValueError(f"feature service {name!r} is not registered; known: {known}",
                                field="feature_service")


def _row_to_endpoint(name: str, row: Any) -> Endpoint:
    return Endpoint(name, row.revision, EndpointConfig.from_dict(json.loads(row.config)),
                    row.action, row.previous, row.created_at, row.created_by)


def _current(conn: Connection, name: str, *, lock: bool = False) -> Endpoint | None:
    query = (select(endpoint_revisions)
             .join(endpoints, (endpoints.c.name == endpoint_revisions.c.endpoint)
                   & (endpoints.c.revision == endpoint_revisions.c.revision))
             .where(endpoints.c.name == name))
    if lock:
        query = query.with_for_update(of=endpoints)
    row = conn.execute(query).first()
    return None if row is None else _row_to_endpoint(name, row)


def _write_revision(ws: Workspace, name: str, make: Any, action: str) -> Endpoint:
    """Append a revision built by ``make(current)`` and point the endpoint at it, in one
    transaction that holds the endpoint's row."""
    from sqlalchemy.exc import IntegrityError

    def work(conn: Connection) -> Endpoint:
        current = _current(conn, name, lock=True)
        config, previous = make(conn, current)
        revision = 1 if current is None else current.revision + 1
        now = now_ms()
        if current is None:
            conn.execute(insert(endpoints).values(name=name, revision=revision, created_at=now,
                                                  updated_at=now))
        conn.execute(insert(endpoint_revisions).values(
            endpoint=name, revision=revision, config=json.dumps(config.to_dict()),
            previous=previous, action=action, created_at=now, created_by=user_name()))
        if current is not None:
            conn.execute(update(endpoints).where(endpoints.c.name == name)
                         .values(revision=revision, updated_at=now))
        return Endpoint(name, revision, config, action, previous, now, user_name())

    try:
        return ws.db.write(work)
    except IntegrityError:
        raise DeployConflictError(f"endpoint {name!r} was changed by another deploy at the same "
                                  "time; deploy again", field="endpoint") from None


_UNSET: Any = object()


def deploy(name: str, routes: Any = None, *, shadow: Sequence[str] | None = None,
           mode: str | None = None, max_batch_size: int | None = None,
           max_wait_ms: float | None = None, feature_service: str | None = _UNSET,
           log_sample: float | None = None, workspace: Workspace | None = None) -> Endpoint:
    """Create an endpoint or change its routes and settings; running servers pick it up.

    ``routes``: ``{"models:/ctr@champion": 90, "models:/ctr@challenger": 10}`` or
    ``["models:/ctr@champion=90", ...]``. Anything left as None keeps its current value (a new
    endpoint takes the defaults), so changing weights never resets batching; ``shadow=[]``
    removes shadows and ``feature_service=None`` removes the feature service.
    """
    ws = workspace or current_workspace()
    check_name(name, what="endpoint", field="endpoint")
    new_routes = None if routes is None else _routes(routes)
    shadows = None if shadow is None else tuple(_canonical_uri(u, "shadow") for u in (
        [shadow] if isinstance(shadow, str) else shadow))
    if mode is not None and mode not in MODES:
        raise InvalidValueError(f"mode must be one of {', '.join(MODES)}, got {mode!r}",
                                field="mode")
    changes: dict[str, Any] = {}
    if new_routes is not None:
        changes["routes"] = new_routes
    if shadows is not None:
        if len(set(shadows)) != len(shadows):
            raise InvalidValueError(f"a shadow is given twice: {list(shadows)}", field="shadow")
        changes["shadows"] = shadows
    if mode is not None:
        changes["mode"] = mode
    if max_batch_size is not None:
        changes["max_batch_size"] = _number(max_batch_size, "max_batch_size", 1,
                                            MAX_BATCH_SIZE, True)
    if max_wait_ms is not None:
        changes["max_wait_ms"] = float(_number(max_wait_ms, "max_wait_ms", 0, MAX_WAIT_MS,
                                               False))
    if log_sample is not None:
        changes["log_sample"] = float(_number(log_sample, "log_sample", 0, 1, False))
    if feature_service is not _UNSET:
        if feature_service is not None:
            check_name(feature_service, what="feature service", field="feature_service")
            _check_feature_service(feature_service, ws)
        changes["feature_service"] = feature_service

    def make(_conn: Connection, current: Endpoint | None) -> tuple[EndpointConfig, int | None]:
        if current is None:
            if "routes" not in changes:
                raise InvalidValueError(f"endpoint {name!r} does not exist yet; give its routes",
                                        field="routes")
            config = EndpointConfig(**changes)
        else:
            config = replace(current.config, **changes)
        live = {r.uri for r in config.routes}
        both = [s for s in config.shadows if s in live]
        if both:
            raise InvalidValueError(f"{both[0]} is both a live route and a shadow; a shadow "
                                    "must be another model version", field="shadow")
        _check_resolvable(config, ws)
        return config, None if current is None else current.revision

    return _write_revision(ws, name, make, "deploy")


def rollback(name: str, *, workspace: Workspace | None = None) -> Endpoint:
    """Restore the routes and settings that were current before the current revision.
    Rolling back again goes one step further back."""
    ws = workspace or current_workspace()
    check_name(name, what="endpoint", field="endpoint")

    def make(conn: Connection, current: Endpoint | None) -> tuple[EndpointConfig, int | None]:
        if current is None:
            raise EndpointNotFoundError(f"endpoint {name!r} does not exist", field="endpoint")
        if current.previous is None:
            raise EndpointNotFoundError(f"endpoint {name!r} has no earlier revision to roll "
                                        f"back to (it is at revision {current.revision}, its "
                                        "first)", field="endpoint")
        row = conn.execute(select(endpoint_revisions).where(
            (endpoint_revisions.c.endpoint == name)
            & (endpoint_revisions.c.revision == current.previous))).one()
        restored = _row_to_endpoint(name, row)
        return restored.config, restored.previous

    return _write_revision(ws, name, make, "rollback")


def get_endpoint(name: str, *, workspace: Workspace | None = None) -> Endpoint:
    """The endpoint's current revision."""
    ws = workspace or current_workspace()
    check_name(name, what="endpoint", field="endpoint")
    with ws.db.read() as conn:
        found = _current(conn, name)
    if found is None:
        known = ", ".join(e.name for e in list_endpoints(workspace=ws)) or "none"
        raise EndpointNotFoundError(f"endpoint {name!r} does not exist; endpoints: {known}",
                                    field="endpoint")
    return found


def current_revision(name: str, *, workspace: Workspace) -> int | None:
    """The endpoint's revision number: what servers poll to notice a change cheaply."""
    with workspace.db.read() as conn:
        return conn.execute(select(endpoints.c.revision)
                            .where(endpoints.c.name == name)).scalar_one_or_none()


def list_endpoints(*, workspace: Workspace | None = None) -> list[Endpoint]:
    """Every endpoint at its current revision, by name."""
    ws = workspace or current_workspace()
    query = (select(endpoints.c.name, endpoint_revisions)
             .join(endpoint_revisions,
                   (endpoints.c.name == endpoint_revisions.c.endpoint)
                   & (endpoints.c.revision == endpoint_revisions.c.revision))
             .order_by(endpoints.c.name))
    with ws.db.read() as conn:
        return [_row_to_endpoint(row.name, row) for row in conn.execute(query)]


def endpoint_history(name: str, *, workspace: Workspace | None = None) -> list[Endpoint]:
    """Every revision of the endpoint, newest first."""
    ws = workspace or current_workspace()
    get_endpoint(name, workspace=ws)
    with ws.db.read() as conn:
        rows = conn.execute(select(endpoint_revisions)
                            .where(endpoint_revisions.c.endpoint == name)
                            .order_by(endpoint_revisions.c.revision.desc())).all()
    return [_row_to_endpoint(name, row) for row in rows]

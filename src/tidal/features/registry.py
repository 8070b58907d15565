"""The feature registry: definitions versioned in the metadata store.

Applying a set of definitions turns each into a canonical spec (JSON); a spec whose digest
differs from the latest version of that definition becomes the next version, with a list of
what changed, in one transaction. Nothing is ever rewritten, so the registry can say which
definition of a feature was current at any time. The definitions file itself goes to the
artifact store with each applied version: on-demand views are Python code, and that file is
the only faithful copy of it.
"""

from __future__ import annotations

import json
import runpy
import sys
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import Connection, and_, func, insert, select, text

from tidal.errors import InvalidValueError, NotFoundError, TidalError
from tidal.features.definitions import Entity, Feature, FeatureService, FeatureView
from tidal.features.on_demand import OnDemandFeatureError, OnDemandFeatureView
from tidal.features.schema import feature_definitions as table
from tidal.ids import digest_bytes, new_id, now_ms
from tidal.store.workspace import Workspace, current_workspace

KINDS = {Entity: "entity", FeatureView: "feature_view", OnDemandFeatureView: "on_demand_view",
         FeatureService: "feature_service"}
_PG_LOCK_KEY = 0x7469_6461_6C01  # serialises applies on PostgreSQL


class FeatureDefinitionNotFoundError(NotFoundError):
    """No registered definition of that name."""


@dataclass(frozen=True)
class Change:
    """What applying did to one definition: ``action`` is added, changed, unchanged or
    removed; ``details`` says what differs from the previous version."""

    kind: str
    name: str
    action: str
    version: int
    details: tuple[str, ...] = ()


@dataclass(frozen=True)
class RegisteredDefinition:
    """One version of a definition as the registry holds it."""

    kind: str
    name: str
    version: int
    spec: dict[str, Any] | None
    origin: str | None
    created_at: datetime
    created_by: str | None

    @property
    def removed(self) -> bool:
        return self.spec is None


# -- specs ----------------------------------------------------------------------------------

def _features_spec(features: Iterable[Feature]) -> list[dict[str, str]]:
    return [{"name": f.name, "dtype": f.dtype} for f in features]


def _source_spec(source: Any) -> dict[str, Any]:
    from tidal.data.versions import DatasetVersion

    if isinstance(source, DatasetVersion):
        return {"dataset": source.name, "version": source.version}
    if isinstance(source, str) and not any(c in source for c in "/*.:"):
        return {"dataset": source}
    if isinstance(source, (str, Path)):
        return {"path": str(source)}
    raise InvalidValueError(f"a feature view source of type {type(source).__name__} cannot be "
                            "registered; give a dataset name, a DatasetVersion or a Parquet path",
                            field="source")


def to_spec(definition: Any) -> dict[str, Any]:
    """The canonical, JSON-able description of a definition: what the registry versions."""
    if isinstance(definition, Entity):
        return {"join_keys": list(definition.join_keys)}
    if isinstance(definition, FeatureView):
        return {"entities": [e.name for e in definition.entities],
                "features": _features_spec(definition.features),
                "source": _source_spec(definition.source), "timestamp": definition.timestamp,
                "ttl_seconds": None if definition.ttl is None else definition.ttl.total_seconds(),
                "created_timestamp": definition.created_timestamp,
                "transform": definition.transform, "tags": dict(sorted(definition.tags.items()))}
    if isinstance(definition, OnDemandFeatureView):
        function = definition.function
        return {"inputs": list(definition.inputs), "request": _features_spec(definition.request),
                "features": _features_spec(definition.features), "mode": definition.mode,
                "function": f"{getattr(function, '__module__', '?')}."
                            f"{getattr(function, '__qualname__', repr(function))}",
                "code": definition.source_code, "description": definition.description,
                "tags": dict(sorted(definition.tags.items()))}
    if isinstance(definition, FeatureService):
        return {"features": list(definition.features), "description": definition.description,
                "tags": dict(sorted(definition.tags.items()))}
    raise InvalidValueError(f"{type(definition).__name__} is not a feature definition",
                            field="definitions")


def _spec_digest(spec: dict[str, Any] | None) -> str:
    return digest_bytes(json.dumps(spec, sort_keys=True, separators=(",", ":")).encode())


def _features(items: list[dict[str, str]]) -> list[Feature]:
    return [Feature(item["name"], item["dtype"]) for item in items]


def from_spec(kind: str, name: str, spec: dict[str, Any], entities: dict[str, Entity],
              workspace: Workspace | None = None) -> Any:
    """The definition object a spec describes (not for on-demand views: see
    registered_definitions)."""
    if kind == "entity":
        return Entity(name, spec["join_keys"])
    if kind == "feature_view":
        source = spec["source"]
        if "path" in source:
            resolved: Any = source["path"]
        elif "version" in source:
            from tidal.data.versions import get

            resolved = get(source["dataset"], source["version"], workspace=workspace)
        else:
            resolved = source["dataset"]
        missing = [e for e in spec["entities"] if e not in entities]
        if missing:
            raise FeatureDefinitionNotFoundError(f"feature view {name!r} uses entities {missing} "
                                                 "that the registry does not hold",
                                                 field="entities")
        ttl = spec["ttl_seconds"]
        return FeatureView(name, [entities[e] for e in spec["entities"]],
                           _features(spec["features"]), resolved, timestamp=spec["timestamp"],
                           ttl=None if ttl is None else timedelta(seconds=ttl),
                           created_timestamp=spec["created_timestamp"],
                           transform=spec["transform"], tags=spec["tags"])
    if kind == "feature_service":
        return FeatureService(name, spec["features"], spec["description"], spec["tags"])
    raise InvalidValueError(f"unknown definition kind {kind!r}", field="kind")


def _describe(value: Any) -> str:
    if isinstance(value, dict) and set(value) <= {"dataset", "version", "path"}:
        if "path" in value:
            return value["path"]
        return value["dataset"] + (f"/{value['version']}" if "version" in value else "")
    return json.dumps(value) if not isinstance(value, str) else value


def spec_changes(old: dict[str, Any] | None, new: dict[str, Any] | None) -> tuple[str, ...]:
    """What differs between two specs of one definition, one line per difference."""
    if old is None or new is None:
        return ()
    lines: list[str] = []
    for key in sorted(set(old) | set(new)):
        before, after = old.get(key), new.get(key)
        if before == after:
            continue
        if key in ("features", "request") and all(
                isinstance(f, dict) for f in [*(before or []), *(after or [])]):
            was = {f["name"]: f["dtype"] for f in before or []}
            now = {f["name"]: f["dtype"] for f in after or []}
            noun = "feature" if key == "features" else "request field"
            lines += [f"+ {noun} {n} ({now[n]})" for n in now if n not in was]
            lines += [f"- {noun} {n} ({was[n]})" for n in was if n not in now]
            lines += [f"~ {noun} {n}: {was[n]} -> {now[n]}" for n in now
                      if n in was and was[n] != now[n]]
            if not lines and list(was) != list(now):
                lines.append(f"~ {noun}s reordered")
        elif key == "code":
            lines.append("~ function code changed")
        else:
            lines.append(f"~ {key}: {_describe(before)} -> {_describe(after)}")
    return tuple(lines)


# -- loading definitions files --------------------------------------------------------------

def load_definitions(path: str | Path) -> list[Any]:
    """Run a Python definitions file and collect the entities, feature views, on-demand views
    and feature services it defines at module level (and those the views use), in order."""
    file = Path(path)
    if not file.is_file():
        raise InvalidValueError(f"definitions file {str(file)!r} does not exist",
                                field="path")
    folder = str(file.resolve().parent)
    sys.path.insert(0, folder)  # the file may import modules beside it
    try:
        namespace = runpy.run_path(str(file), run_name="tidal_feature_definitions")
    except SyntaxError as error:
        raise InvalidValueError(f"definitions file {str(file)!r} does not parse: {error.msg} "
                                f"(line {error.lineno})", field="path") from error
    except TidalError:
        raise
    except Exception as error:
        raise InvalidValueError(f"definitions file {str(file)!r} failed: "
                                f"{type(error).__name__}: {error}", field="path") from error
    finally:
        if sys.path and sys.path[0] == folder:
            sys.path.pop(0)
    found: dict[tuple[str, str], Any] = {}
    for value in namespace.values():
        kind = KINDS.get(type(value))
        if kind is None:
            continue
        if isinstance(value, FeatureView):
            for entity in value.entities:
                found.setdefault(("entity", entity.name), entity)
        previous = found.setdefault((kind, value.name), value)
        if previous is not value and previous != value:
            raise InvalidValueError(f"definitions file {str(file)!r} defines two different "
                                    f"{kind.replace('_', ' ')}s named {value.name!r}",
                                    field="path")
    if not found:
        raise InvalidValueError(f"definitions file {str(file)!r} defines no entity, feature "
                                "view, on-demand view or feature service at module level",
                                field="path")
    return list(found.values())


# -- applying -------------------------------------------------------------------------------

def _check(definitions: Sequence[Any], ws: Workspace) -> None:
    """Refuse a set that could not serve: what FeatureStore refuses, plus feature views whose
    source cannot be read or lacks a declared column."""
    from tidal.features.store import FeatureStore

    store = FeatureStore(definitions, workspace=ws)
    for view in store.views.values():
        with store.offline.view_rows(view.name, [f.name for f in view.features]):
            pass


def _latest(conn: Connection) -> dict[tuple[str, str], Any]:
    newest = (select(table.c.kind, table.c.name, func.max(table.c.version).label("version"))
              .group_by(table.c.kind, table.c.name).subquery())
    rows = conn.execute(select(table).join(newest, and_(
        table.c.kind == newest.c.kind, table.c.name == newest.c.name,
        table.c.version == newest.c.version))).all()
    return {(row.kind, row.name): row for row in rows}


def apply(definitions: Sequence[Any], *, workspace: Workspace | None = None,
          prune: bool = False, dry_run: bool = False, origin: str | Path | None = None
          ) -> list[Change]:
    """Register ``definitions``: a new version of each one that changed. With ``prune``,
    registered definitions absent from ``definitions`` are marked removed (without it they
    are reported as ``absent`` and kept). ``origin``: the definitions file, stored with the
    versions it produced. ``dry_run`` reports without writing."""
    from tidal.tracking.environment import user_name

    ws = workspace or current_workspace()
    definitions = list(definitions)
    _check(definitions, ws)
    specs = {(KINDS[type(d)], d.name): to_spec(d) for d in definitions}
    code = None
    if origin is not None and not dry_run:
        code = ws.artifacts.put_bytes(Path(origin).read_bytes()).digest

    def record(conn: Connection) -> list[Change]:
        if conn.dialect.name == "postgresql":
            conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _PG_LOCK_KEY})
        latest = _latest(conn)
        changes: list[Change] = []
        rows: list[dict[str, Any]] = []

        def add(kind: str, name: str, spec: dict[str, Any] | None, version: int) -> None:
            rows.append({"id": new_id(), "kind": kind, "name": name, "version": version,
                         "digest": _spec_digest(spec),
                         "spec": None if spec is None else json.dumps(spec, sort_keys=True),
                         "origin": None if origin is None else str(origin), "code": code,
                         "created_at": now_ms(), "created_by": user_name()})

        for (kind, name), spec in specs.items():
            row = latest.get((kind, name))
            if row is None or row.spec is None:
                version = 1 if row is None else row.version + 1
                changes.append(Change(kind, name, "added", version))
                add(kind, name, spec, version)
            elif row.digest != _spec_digest(spec):
                changes.append(Change(kind, name, "changed", row.version + 1,
                                      spec_changes(json.loads(row.spec), spec)))
                add(kind, name, spec, row.version + 1)
            else:
                changes.append(Change(kind, name, "unchanged", row.version))
        for (kind, name), row in sorted(latest.items()):
            if (kind, name) in specs or row.spec is None:
                continue
            if prune:
                changes.append(Change(kind, name, "removed", row.version + 1))
                add(kind, name, None, row.version + 1)
            else:
                changes.append(Change(kind, name, "absent", row.version))
        if rows and not dry_run:
            conn.execute(insert(table), rows)
        return changes

    if dry_run:
        with ws.db.read() as conn:
            return record(conn)
    return ws.db.write(record)


# -- reading --------------------------------------------------------------------------------

def _registered(row: Any) -> RegisteredDefinition:
    return RegisteredDefinition(
        row.kind, row.name, row.version, None if row.spec is None else json.loads(row.spec),
        row.origin, datetime.fromtimestamp(row.created_at / 1000, tz=UTC), row.created_by)


def list_definitions(*, workspace: Workspace | None = None,
                     kind: str | None = None) -> list[RegisteredDefinition]:
    """The latest version of every registered definition that is not removed."""
    if kind is not None and kind not in KINDS.values():
        raise InvalidValueError(f"kind {kind!r} is not one of {sorted(KINDS.values())}",
                                field="kind")
    ws = workspace or current_workspace()
    with ws.db.read() as conn:
        rows = _latest(conn).values()
    found = [_registered(row) for row in rows
             if row.spec is not None and (kind is None or row.kind == kind)]
    return sorted(found, key=lambda d: (list(KINDS.values()).index(d.kind), d.name))


def definition_history(name: str, *, kind: str | None = None,
                       workspace: Workspace | None = None) -> list[RegisteredDefinition]:
    """Every version of the definition(s) called ``name``, oldest first."""
    ws = workspace or current_workspace()
    query = select(table).where(table.c.name == name)
    if kind is not None:
        query = query.where(table.c.kind == kind)
    with ws.db.read() as conn:
        rows = conn.execute(query.order_by(table.c.kind, table.c.version)).all()
    if not rows:
        raise FeatureDefinitionNotFoundError(f"no feature definition is named {name!r}",
                                             field="name")
    return [_registered(row) for row in rows]


def _untrusted(name: str, spec: dict[str, Any], origin: str | None) -> OnDemandFeatureView:
    """A stand-in for an on-demand view whose code was not loaded: it keeps services that use
    it valid, and says why when asked to compute."""

    def refuse(_: Any) -> Any:
        raise OnDemandFeatureError(
            f"on-demand view {name!r} is Python code from {origin or 'its definitions file'}; "
            "load the store with FeatureStore.from_registry(trust_code=True) to run it, or "
            "build it from the definitions file", field=name)

    return OnDemandFeatureView(name, tuple(spec["inputs"]), _features(spec["request"]),
                               _features(spec["features"]), refuse, spec["mode"])


def registered_definitions(ws: Workspace, *, trust_code: bool = False) -> list[Any]:
    """The registered definitions as objects. On-demand views run the definitions file stored
    with them only when ``trust_code`` is set. A stored spec is data: a feature view's
    transform is checked again as the view is rebuilt, and refused naming field "transform"."""
    latest = list_definitions(workspace=ws)
    entities = {d.name: Entity(d.name, d.spec["join_keys"])  # type: ignore[index]
                for d in latest if d.kind == "entity"}
    objects: list[Any] = list(entities.values())
    for item in latest:
        assert item.spec is not None
        if item.kind in ("feature_view", "feature_service"):
            try:
                objects.append(from_spec(item.kind, item.name, item.spec, entities, ws))
            except InvalidValueError as error:  # a stored transform that was changed
                if error.field != "transform":
                    raise
                raise type(error)(f"registered {item.kind.replace('_', ' ')} {item.name!r} "
                                  f"(version {item.version}) cannot be used: {error.message}",
                                  field=error.field) from error
        elif item.kind == "on_demand_view":
            objects.append(_trusted(ws, item) if trust_code
                           else _untrusted(item.name, item.spec, item.origin))
    return objects


def _trusted(ws: Workspace, item: RegisteredDefinition) -> OnDemandFeatureView:
    import tempfile

    with ws.db.read() as conn:
        code = conn.execute(select(table.c.code).where(
            table.c.kind == item.kind, table.c.name == item.name,
            table.c.version == item.version)).scalar()
    if code is None:
        raise FeatureDefinitionNotFoundError(
            f"on-demand view {item.name!r} was registered without its definitions file",
            field=item.name)
    with tempfile.TemporaryDirectory() as folder:
        copy = Path(folder) / Path(item.origin or "definitions.py").name
        copy.write_bytes(ws.artifacts.get_bytes(code))
        for definition in load_definitions(copy):
            if isinstance(definition, OnDemandFeatureView) and definition.name == item.name:
                return definition
    raise FeatureDefinitionNotFoundError(f"the stored definitions file of on-demand view "
                                         f"{item.name!r} no longer defines it", field=item.name)

"""Aliases: names (``champion``, ``challenger``, any) that point at versions of a model.

An alias moves in place so that ``models:/ctr@champion`` always names one version, and every
move, removal included, is also written as an event with who, when and why: "which version
was champion last Tuesday" is a query.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import Connection, insert, select, update

from tidal.errors import InvalidValueError
from tidal.ids import check_name, new_id, now_ms
from tidal.models.errors import AliasNotFoundError, IllegalTransitionError
from tidal.models.registry import (
    ModelVersion,
    _datetime,
    _load_one,
    _require_model,
    _resolve_id,
    _workspace,
)
from tidal.models.schema import model_alias_events, model_aliases, model_versions
from tidal.models.uri import ModelRef, check_alias
from tidal.store.workspace import Workspace


@dataclass(frozen=True)
class AliasEvent:
    alias: str
    version: int | None
    previous_version: int | None
    reason: str | None
    at: datetime
    by: str | None


# -- aliases --------------------------------------------------------------------------------

def set_alias(name: str, alias: str, version: int, *, reason: str | None = None,
              workspace: Workspace | None = None) -> ModelVersion:
    """Point ``alias`` of model ``name`` at ``version`` (moving it if it exists)."""
    from tidal.tracking.environment import user_name

    ws = _workspace(workspace)
    name = check_name(name, what="model")
    alias = check_alias(alias)
    if isinstance(version, bool) or not isinstance(version, int) or version < 1:
        raise InvalidValueError(f"version must be a whole number of 1 or more, got {version!r}",
                                field="version")

    def work(conn: Connection) -> str:
        version_id = _resolve_id(conn, ModelRef(name, version=version))
        stage = conn.execute(select(model_versions.c.stage)
                             .where(model_versions.c.id == version_id)).scalar()
        if stage == "archived":
            raise IllegalTransitionError(f"{name}/{version} is archived; an alias cannot point "
                                         "at an archived version", field="version")
        model_id = _require_model(conn, name)
        previous = conn.execute(select(model_aliases.c.version).where(
            model_aliases.c.model_id == model_id, model_aliases.c.alias == alias)
            .with_for_update()).scalar()
        now = now_ms()
        if previous is None:
            conn.execute(insert(model_aliases).values(model_id=model_id, alias=alias,
                                                      version=version, updated_at=now))
        elif previous != version:
            conn.execute(update(model_aliases).where(
                model_aliases.c.model_id == model_id, model_aliases.c.alias == alias)
                .values(version=version, updated_at=now))
        if previous != version:
            conn.execute(insert(model_alias_events).values(
                id=new_id(), model_id=model_id, alias=alias, version=version,
                previous_version=previous, reason=reason, created_at=now,
                created_by=user_name()))
        return version_id

    version_id = ws.db.write(work)
    return _load_one(ws, model_versions.c.id == version_id, f"id {version_id}")


def delete_alias(name: str, alias: str, *, reason: str | None = None,
                 workspace: Workspace | None = None) -> None:
    from tidal.tracking.environment import user_name

    ws = _workspace(workspace)
    name = check_name(name, what="model")
    alias = check_alias(alias)

    def work(conn: Connection) -> None:
        _resolve_id(conn, ModelRef(name, alias=alias))  # AliasNotFoundError names the known ones
        model_id = _require_model(conn, name)
        previous = conn.execute(select(model_aliases.c.version).where(
            model_aliases.c.model_id == model_id, model_aliases.c.alias == alias)).scalar()
        conn.execute(model_aliases.delete().where(model_aliases.c.model_id == model_id,
                                                  model_aliases.c.alias == alias))
        conn.execute(insert(model_alias_events).values(
            id=new_id(), model_id=model_id, alias=alias, version=None,
            previous_version=previous, reason=reason, created_at=now_ms(),
            created_by=user_name()))

    ws.db.write(work)


def alias_history(name: str, alias: str | None = None, *,
                  workspace: Workspace | None = None) -> list[AliasEvent]:
    """Every move of the model's aliases (or of one alias), oldest first."""
    ws = _workspace(workspace)
    name = check_name(name, what="model")
    with ws.db.read() as conn:
        model_id = _require_model(conn, name)
        query = select(model_alias_events).where(model_alias_events.c.model_id == model_id)
        if alias is not None:
            query = query.where(model_alias_events.c.alias == check_alias(alias))
        rows = conn.execute(query.order_by(model_alias_events.c.created_at)).all()
    if alias is not None and not rows:
        raise AliasNotFoundError(f"model {name!r} has never had an alias {alias!r}",
                                 field="alias")
    return [AliasEvent(r.alias, r.version, r.previous_version, r.reason,
                       _datetime(r.created_at), r.created_by) for r in rows]

"""Stages: the approval workflow a version moves through, every move recorded with its reason.

registered -> validated -> approved -> deployed -> archived. A move is checked against the
allowed ones and, for "validated", against the version's latest gate run, inside the write
transaction that records it, so two reviewers cannot race a version past a rule.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, insert, select, update

from tidal.errors import InvalidValueError
from tidal.ids import new_id, now_ms
from tidal.models.errors import IllegalTransitionError
from tidal.models.registry import (
    ModelVersion,
    _datetime,
    _load_one,
    _ref,
    _resolve_id,
    _workspace,
)
from tidal.models.schema import gate_results, model_transitions, model_versions
from tidal.store.workspace import Workspace

#: The stages a version moves through, in order, and the moves allowed from each.
STAGES = ("registered", "validated", "approved", "deployed", "archived")
TRANSITIONS: dict[str, tuple[str, ...]] = {
    "registered": ("validated", "archived"),
    "validated": ("approved", "registered", "archived"),
    "approved": ("deployed", "registered", "archived"),
    "deployed": ("approved", "archived"),
    "archived": (),
}


@dataclass(frozen=True)
class Transition:
    version: int
    from_stage: str | None
    to_stage: str
    reason: str
    at: datetime
    by: str | None


def _check_reason(reason: Any) -> str:
    if not isinstance(reason, str) or not reason.strip():
        raise InvalidValueError("a transition needs a reason: say why the version moves",
                                field="reason")
    return reason.strip()


def transition(name_or_uri: str, stage: str, *, reason: str, version: int | str | None = None,
               by: str | None = None, workspace: Workspace | None = None) -> ModelVersion:
    """Move a version to ``stage``, recording who, when and why.

    Allowed moves: registered -> validated | archived; validated -> approved | registered |
    archived; approved -> deployed | registered | archived; deployed -> approved | archived.
    Reaching "validated" also needs the version's latest gate run to have passed
    (``tidal.models.validate``).
    """
    from tidal.tracking.environment import user_name

    ws = _workspace(workspace)
    if stage not in STAGES:
        raise InvalidValueError(f"stage {stage!r} is not one of {', '.join(STAGES)}",
                                field="stage")
    reason = _check_reason(reason)
    who = by if by is not None else user_name()
    ref = _ref(name_or_uri, version)

    def work(conn: Connection) -> str:
        version_id = _resolve_id(conn, ref)
        current = conn.execute(select(model_versions.c.stage, model_versions.c.version)
                               .where(model_versions.c.id == version_id)
                               .with_for_update()).one()
        label = f"{ref.name}/{current.version}"
        allowed = TRANSITIONS[current.stage]
        if stage not in allowed:
            accepted = ", ".join(allowed) if allowed else "nothing: archived is final"
            raise IllegalTransitionError(
                f"{label} cannot move from {current.stage} to {stage}; from {current.stage} "
                f"it can move to {accepted}", field="stage")
        if stage == "validated":
            failing = _latest_gate_failures(conn, version_id)
            if failing is None:
                raise IllegalTransitionError(
                    f"{label} has no gate results; run tidal.models.validate() with its gates "
                    "before it can be validated", field="stage")
            if failing:
                raise IllegalTransitionError(
                    f"{label} failed its latest gates ({', '.join(failing)}); it cannot be "
                    "validated until they pass", field="stage")
        now = now_ms()
        conn.execute(update(model_versions).where(model_versions.c.id == version_id)
                     .values(stage=stage))
        conn.execute(insert(model_transitions).values(
            id=new_id(), model_version_id=version_id, from_stage=current.stage, to_stage=stage,
            reason=reason, created_at=now, created_by=who))
        return version_id

    version_id = ws.db.write(work)
    return _load_one(ws, model_versions.c.id == version_id, f"id {version_id}")


def _latest_gate_failures(conn: Connection, version_id: str) -> list[str] | None:
    """Names of the gates that failed in the latest gate run, or None when none ran."""
    latest = conn.execute(select(gate_results.c.gate_run_id).where(
        gate_results.c.model_version_id == version_id)
        .order_by(gate_results.c.created_at.desc()).limit(1)).scalar()
    if latest is None:
        return None
    rows = conn.execute(select(gate_results.c.gate, gate_results.c.passed).where(
        gate_results.c.gate_run_id == latest)).all()
    return [gate for gate, passed in rows if not passed]


def stage_history(version: ModelVersion) -> list[Transition]:
    with version.workspace.db.read() as conn:
        rows = conn.execute(select(model_transitions).where(
            model_transitions.c.model_version_id == version.id)
            .order_by(model_transitions.c.created_at)).all()
    return [Transition(version.version, r.from_stage, r.to_stage, r.reason,
                       _datetime(r.created_at), r.created_by) for r in rows]


def record_gate_results(version: ModelVersion, results: Sequence[Any]) -> None:
    """Store one gate run's results (GateResult objects) with one timestamp."""
    from tidal.tracking.environment import user_name

    now, user, gate_run_id = now_ms(), user_name(), new_id()

    def work(conn: Connection) -> None:
        conn.execute(insert(gate_results), [{
            "id": new_id(), "model_version_id": version.id, "gate_run_id": gate_run_id,
            "position": position, "gate": r.name,
            "passed": r.passed, "reasons": json.dumps(list(r.reasons)),
            "details": json.dumps(r.details, default=str), "created_at": now,
            "created_by": user} for position, r in enumerate(results)])

    version.workspace.db.write(work)

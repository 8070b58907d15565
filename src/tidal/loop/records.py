"""What the loop keeps in the metadata store: applied policies, each controller's state, the
lease that makes one controller per policy, and the decisions (``tidal loop history``).

State is written only inside a transaction that also checks the writer still holds the
lease: a controller that stalled past its lease and woke up after another took over cannot
overwrite the newer controller's state (fencing), it fails with ``LeaseLostError``.
"""

from __future__ import annotations

import json
import os
import socket
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import Connection, delete, insert, select, update

from tidal.errors import TidalError
from tidal.ids import check_name, new_id, now_ms
from tidal.loop.policy import LoopPolicy, PolicyError, PolicyNotFoundError, read_policy_file
from tidal.loop.schema import loop_decisions, loop_leases, loop_policies, loop_state
from tidal.store.db import upsert
from tidal.store.workspace import Workspace, current_workspace


class LeaseHeldError(TidalError):
    """Another controller holds this policy's lease."""

    status_code = 409


class LeaseLostError(TidalError):
    """This controller's lease expired and another controller took the policy over."""

    status_code = 409


def holder_name() -> str:
    """Who holds a lease: host, process and a random part, so two controllers on one host
    (or a restarted one with the same pid in a container) are told apart."""
    return f"{socket.gethostname()}:{os.getpid()}:{new_id()[:8]}"


# -- policies -----------------------------------------------------------------------------------

def apply_policy(policy: LoopPolicy | dict[str, Any] | str | Path, *,
                 workspace: Workspace | None = None) -> LoopPolicy:
    """Store ``policy`` (a LoopPolicy, its dict, or a TOML/JSON file), replacing one of the
    same name; its controller state is kept, so a policy changed mid-rollout goes on with the
    rollout under the new settings. The pipeline it names is imported now, so a typo fails
    here rather than at the first retraining, and the digest of its code is recorded: a
    retraining runs that code only."""
    from tidal.loop.training import pin_pipeline

    if isinstance(policy, (str, Path)):
        policy = read_policy_file(policy)
    elif isinstance(policy, dict):
        policy = LoopPolicy.from_dict(policy)
    elif not isinstance(policy, LoopPolicy):
        raise PolicyError(f"apply_policy takes a LoopPolicy, a dict or a policy file, got "
                          f"{type(policy).__name__}", field="policy")
    policy = pin_pipeline(policy)
    workspace = workspace or current_workspace()
    now = now_ms()
    config = json.dumps(policy.to_dict(), sort_keys=True)

    def work(conn: Connection) -> None:
        statement = upsert(conn, loop_policies).values(
            name=policy.name, endpoint=policy.endpoint, model=policy.model, config=config,
            created_at=now, updated_at=now)
        conn.execute(statement.on_conflict_do_update(index_elements=["name"], set_={
            "endpoint": policy.endpoint, "model": policy.model, "config": config,
            "updated_at": now}))
        if conn.execute(select(loop_state.c.policy).where(
                loop_state.c.policy == policy.name)).first() is None:
            conn.execute(insert(loop_state).values(policy=policy.name, phase="idle", data="{}",
                                                   updated_at=now))

    workspace.db.write(work)
    return policy


def get_policy(name: str, *, workspace: Workspace | None = None) -> LoopPolicy:
    check_name(name, what="policy", field="policy")
    workspace = workspace or current_workspace()
    with workspace.db.read() as conn:
        row = conn.execute(select(loop_policies.c.config).where(
            loop_policies.c.name == name)).first()
        names = [] if row else list(conn.execute(select(loop_policies.c.name)).scalars())
    if row is None:
        raise PolicyNotFoundError(f"no loop policy {name!r}; policies: "
                                  f"{', '.join(sorted(names)) or 'none'} (apply one with "
                                  "tidal loop apply FILE)", field="policy")
    return LoopPolicy.from_dict(json.loads(row[0]))


def list_policies(*, workspace: Workspace | None = None) -> list[LoopPolicy]:
    workspace = workspace or current_workspace()
    with workspace.db.read() as conn:
        rows = conn.execute(select(loop_policies.c.config).order_by(loop_policies.c.name))
        return [LoopPolicy.from_dict(json.loads(r[0])) for r in rows]


# -- controller state ---------------------------------------------------------------------------

@dataclass
class LoopState:
    """Where a policy's controller is. ``phase``: idle, rollout, promoting or rolling_back;
    ``cycle``: the id of the current trigger-to-outcome cycle; ``challenger``: the version
    under rollout; ``step``: index into the policy's rollout steps; ``data``: what triggers
    remember between ticks (last schedule check, labels counted) and the rollout baseline."""

    policy: str
    phase: str = "idle"
    cycle: str | None = None
    challenger: int | None = None
    step: int | None = None
    step_started_at: int | None = None
    last_retrain_at: int | None = None
    data: dict[str, Any] = field(default_factory=dict)
    updated_at: int = 0


def read_state(policy: str, *, workspace: Workspace | None = None,
               conn: Connection | None = None) -> LoopState:
    workspace = workspace or current_workspace()
    query = select(loop_state).where(loop_state.c.policy == policy)
    if conn is None:
        with workspace.db.read() as reader:
            row = reader.execute(query).mappings().first()
    else:
        row = conn.execute(query).mappings().first()
    if row is None:
        raise PolicyNotFoundError(f"no loop policy {policy!r}", field="policy")
    values = dict(row)
    values["data"] = json.loads(values["data"])
    return LoopState(**values)


def _check_lease(conn: Connection, policy: str, holder: str) -> None:
    row = conn.execute(select(loop_leases.c.holder, loop_leases.c.expires_at).where(
        loop_leases.c.policy == policy).with_for_update()).first()
    if row is None or row.holder != holder:
        raise LeaseLostError(f"the lease on policy {policy!r} is held by "
                             f"{row.holder if row else 'nobody'}, not by this controller "
                             f"({holder}); it stops here", field="policy")


def save_state(state: LoopState, decisions: list[Decision], *, holder: str,
               workspace: Workspace) -> None:
    """Write ``state`` and append ``decisions`` in one transaction, if ``holder`` still
    holds the lease."""
    state.updated_at = now_ms()

    def work(conn: Connection) -> None:
        _check_lease(conn, state.policy, holder)
        conn.execute(update(loop_state).where(loop_state.c.policy == state.policy).values(
            phase=state.phase, cycle=state.cycle, challenger=state.challenger,
            step=state.step, step_started_at=state.step_started_at,
            last_retrain_at=state.last_retrain_at, data=json.dumps(state.data, default=str),
            updated_at=state.updated_at))
        if decisions:
            conn.execute(insert(loop_decisions), [d.row() for d in decisions])

    workspace.db.write(work)


# -- the lease ----------------------------------------------------------------------------------

def acquire_lease(policy: str, holder: str, ttl_ms: int, *, workspace: Workspace) -> str | None:
    """Take or renew the policy's lease for ``ttl_ms``; ``LeaseHeldError`` while another
    holder's lease has not expired. Returns the holder whose expired lease was taken over
    (a controller that died without giving it back), else None."""
    def work(conn: Connection) -> str | None:
        now = now_ms()
        if conn.execute(select(loop_policies.c.name).where(
                loop_policies.c.name == policy)).first() is None:
            raise PolicyNotFoundError(f"no loop policy {policy!r}", field="policy")
        row = conn.execute(select(loop_leases).where(
            loop_leases.c.policy == policy).with_for_update()).mappings().first()
        if row is None:
            conn.execute(insert(loop_leases).values(policy=policy, holder=holder,
                                                    acquired_at=now, expires_at=now + ttl_ms))
            return None
        if row["holder"] != holder and row["expires_at"] > now:
            left = (row["expires_at"] - now) / 1000
            raise LeaseHeldError(
                f"policy {policy!r} is run by another controller ({row['holder']}); its lease "
                f"ends in {left:.0f} s unless renewed", field="policy")
        acquired = row["acquired_at"] if row["holder"] == holder else now
        conn.execute(update(loop_leases).where(loop_leases.c.policy == policy).values(
            holder=holder, acquired_at=acquired, expires_at=now + ttl_ms))
        return None if row["holder"] == holder else row["holder"]

    return workspace.db.write(work)


def release_lease(policy: str, holder: str, *, workspace: Workspace) -> None:
    workspace.db.write(lambda conn: conn.execute(delete(loop_leases).where(
        loop_leases.c.policy == policy, loop_leases.c.holder == holder)))


# -- decisions ----------------------------------------------------------------------------------

@dataclass(frozen=True)
class Decision:
    """One thing the loop decided, with why and the figures it was held to.

    ``kind``: trigger, retrain, gate, rollout, promote, rollback, resume or error;
    ``outcome``: what came of it (fired, quiet, trained, failed, passed, rejected, started,
    done...)."""

    policy: str
    endpoint: str
    kind: str
    outcome: str
    summary: str
    details: dict[str, Any] = field(default_factory=dict)
    cycle: str | None = None
    model_uri: str | None = None
    at: int = 0
    by: str | None = None
    id: int | None = None

    @property
    def time(self) -> datetime:
        return datetime.fromtimestamp(self.at / 1000, tz=UTC)

    def row(self) -> dict[str, Any]:
        return {"policy": self.policy, "endpoint": self.endpoint, "cycle": self.cycle,
                "kind": self.kind, "outcome": self.outcome, "summary": self.summary,
                "details": json.dumps(self.details, default=str, sort_keys=True),
                "model_uri": self.model_uri, "at": self.at or now_ms(), "by": self.by}

    def to_dict(self) -> dict[str, Any]:
        return {"id": self.id, "at": self.time.isoformat(), "policy": self.policy,
                "endpoint": self.endpoint, "cycle": self.cycle, "kind": self.kind,
                "outcome": self.outcome, "model_uri": self.model_uri,
                "summary": self.summary, "details": self.details, "by": self.by}


def history(endpoint: str | None = None, *, policy: str | None = None,
            since_id: int | None = None,
            workspace: Workspace | None = None) -> list[Decision]:
    """Decisions for an endpoint (or a policy), oldest first; ``since_id`` for only newer."""
    query = select(loop_decisions).order_by(loop_decisions.c.id)
    if endpoint is not None:
        check_name(endpoint, what="endpoint", field="endpoint")
        query = query.where(loop_decisions.c.endpoint == endpoint)
    if policy is not None:
        query = query.where(loop_decisions.c.policy == policy)
    if since_id is not None:
        query = query.where(loop_decisions.c.id > since_id)
    with (workspace or current_workspace()).db.read() as conn:
        rows = conn.execute(query).mappings().all()
    return [Decision(policy=r["policy"], endpoint=r["endpoint"], kind=r["kind"],
                     outcome=r["outcome"], summary=r["summary"],
                     details=json.loads(r["details"]), cycle=r["cycle"],
                     model_uri=r["model_uri"], at=r["at"], by=r["by"], id=r["id"])
            for r in rows]


# -- requests from outside the controller ---------------------------------------------------------

def request_retrain(policy: str, reason: str, *, details: dict[str, Any] | None = None,
                    workspace: Workspace | None = None) -> Decision:
    """Ask the policy's controller to retrain at its next tick (subject to the cooldown), as an
    alert or an operator may. The request is a decision of its own, appended, never a write to
    the controller's state, so it cannot race the controller."""
    if not isinstance(reason, str) or not reason.strip():
        raise PolicyError("a retraining request needs a reason", field="reason")
    found = get_policy(policy, workspace=workspace)
    from tidal.tracking.environment import user_name

    decision = Decision(policy=found.name, endpoint=found.endpoint, kind="request",
                        outcome="received", summary=reason.strip(), details=details or {},
                        at=now_ms(), by=user_name())
    (workspace or current_workspace()).db.write(
        lambda conn: conn.execute(insert(loop_decisions).values(**decision.row())))
    return decision


def pending_requests(policy: str, after_id: int, *, workspace: Workspace) -> list[Decision]:
    """Retraining requests for ``policy`` recorded after decision ``after_id``."""
    return [d for d in history(policy=policy, since_id=after_id, workspace=workspace)
            if d.kind == "request"]

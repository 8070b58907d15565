"""The loop controller: one policy's state machine, advanced one tick at a time.

idle --trigger fires--> retrain --gate passes--> rollout step 1 .. n --all pass--> promoting
--> idle; a failed step goes to rolling_back --> idle. The phase, the step and the challenger
are written to the metadata store (with the decision that changed them) before the endpoint
or the aliases are touched, and every tick first brings the endpoint to what the stored state
says. A controller killed between any two writes is therefore followed by one that finishes
the half-done promotion or rollback, or resumes the live step, and the endpoint always keeps
a route that resolves: the champion alias is moved only when the challenger already serves
all traffic, and the challenger alias is removed only after no route uses it.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any

from tidal.errors import TidalError
from tidal.ids import new_id
from tidal.loop.records import (
    Decision,
    LeaseHeldError,
    LoopState,
    acquire_lease,
    get_policy,
    holder_name,
    pending_requests,
    read_state,
    release_lease,
    request_retrain,
    save_state,
)
from tidal.loop.rollout import desired_routes, judge_step
from tidal.loop.triggers import TriggerEvaluator, TriggerResult
from tidal.store.workspace import Workspace, current_workspace

log = logging.getLogger(__name__)

Clock = Callable[[], datetime]


def _utc_now() -> datetime:
    return datetime.now(UTC)


def _ms(moment: datetime) -> int:
    return int(moment.timestamp() * 1000)


class Controller:
    """Runs policy ``name``. ``clock`` gives the time decisions are taken at (a replay passes
    its stream's time); ``on_decision`` sees each decision as it is recorded (the CLI's live
    timeline). The lease is held from the first tick until ``close``."""

    def __init__(self, name: str, *, workspace: Workspace | None = None,
                 clock: Clock | None = None, lease_ttl: float = 30.0,
                 on_decision: Callable[[Decision], None] | None = None,
                 gauges: Any = None) -> None:
        self.workspace = workspace or current_workspace()
        self.policy = get_policy(name, workspace=self.workspace)
        self.clock = clock or _utc_now
        self.lease_ttl_ms = int(lease_ttl * 1000)
        self.holder = holder_name()
        self.on_decision = on_decision
        self.gauges = gauges  # a MonitoringGauges that shows what each tick measured
        self._evaluator = TriggerEvaluator(self.policy, self.workspace)
        self._took_over: str | None = None  # a dead controller whose lease this one took

    # -- the lease -------------------------------------------------------------------------------

    def acquire(self) -> None:
        """Take the policy's lease; ``LeaseHeldError`` while another controller holds it."""
        dead = acquire_lease(self.policy.name, self.holder, self.lease_ttl_ms,
                             workspace=self.workspace)
        if dead is not None:
            self._took_over = dead

    def close(self) -> None:
        """Give the lease back so another controller can start at once."""
        release_lease(self.policy.name, self.holder, workspace=self.workspace)

    @contextmanager
    def _heartbeat(self) -> Iterator[None]:
        """Renew the lease in the background while a long action (training) runs."""
        done = threading.Event()

        def beat() -> None:
            while not done.wait(self.lease_ttl_ms / 3000):
                try:
                    self.acquire()
                except TidalError as error:
                    log.warning("loop %s: lease renewal failed: %s", self.policy.name, error)
                    return

        thread = threading.Thread(target=beat, name="tidal-loop-lease", daemon=True)
        thread.start()
        try:
            yield
        finally:
            done.set()
            thread.join()

    # -- one tick --------------------------------------------------------------------------------

    def tick(self) -> list[Decision]:
        """One evaluation: renew the lease, reload the policy, then advance the state machine
        by at most one phase. Returns the decisions it recorded."""
        self.acquire()
        policy = get_policy(self.policy.name, workspace=self.workspace)
        if policy != self.policy:
            self.policy, self._evaluator = policy, TriggerEvaluator(policy, self.workspace)
        state = read_state(policy.name, workspace=self.workspace)
        now = self.clock()
        recorded: list[Decision] = []
        if self._took_over is not None:
            dead, self._took_over = self._took_over, None
            if state.phase != "idle":
                self._save(state, recorded, self._decision(
                    state, "resume", state.phase,
                    f"took over from {dead}, whose lease expired, in phase {state.phase}"
                    + (f" at rollout step {state.step + 1}" if state.step is not None else ""),
                    now, model_uri=self._challenger_uri(state)))
        with self._heartbeat():
            if state.phase == "promoting":
                self._promote(state, now, recorded)
            elif state.phase == "rolling_back":
                self._roll_back(state, now, recorded)
            elif state.phase == "rollout":
                self._advance(state, now, recorded)
            else:
                self._idle(state, now, recorded)
        return recorded

    def run(self, stop: threading.Event, *, ticks: int | None = None,
            wait_for_lease: bool = True) -> None:
        """Tick every ``policy.interval`` until ``stop`` is set (or ``ticks`` ticks); waits
        for the lease of a controller that died to expire. A tick that fails is recorded as
        an error decision and the next one tries again."""
        while not stop.is_set():
            try:
                self.acquire()
                break
            except LeaseHeldError as error:
                if not wait_for_lease:
                    raise
                log.info("%s; waiting", error.message)
                stop.wait(min(self.lease_ttl_ms / 3000, 5.0))
        count = 0
        try:
            while not stop.is_set() and (ticks is None or count < ticks):
                try:
                    self.tick()
                except TidalError as error:
                    if isinstance(error, LeaseHeldError):
                        raise
                    self._record_error(error)
                count += 1
                if ticks is None or count < ticks:
                    stop.wait(self.policy.interval.total_seconds())
        finally:
            self.close()

    # -- phases ----------------------------------------------------------------------------------

    def _idle(self, state: LoopState, now: datetime, recorded: list[Decision]) -> None:
        from tidal.models.errors import ModelNotFoundError
        from tidal.models.registry import get_version

        policy = self.policy
        results = self._evaluator.evaluate(now, state.data, state.last_retrain_at)
        self._show(results, now)
        requests = pending_requests(policy.name, int(state.data.get("last_request", 0)),
                                    workspace=self.workspace)
        if requests:
            state.data["last_request"] = requests[-1].id
            results.append(TriggerResult("request", True, "; ".join(
                f"{r.by or 'someone'} asked: {r.summary}" for r in requests),
                {"requests": [r.id for r in requests]}))
        fired = [r for r in results if r.fired]
        if not fired:
            self._save(state, recorded)
            return
        cooling = state.last_retrain_at is not None and \
            _ms(now) - state.last_retrain_at < policy.cooldown.total_seconds() * 1000
        if cooling:
            if state.data.get("cooldown_noted") != state.last_retrain_at:
                state.data["cooldown_noted"] = state.last_retrain_at
                until = datetime.fromtimestamp(state.last_retrain_at / 1000, UTC) + \
                    policy.cooldown
                self._save(state, recorded, self._decision(
                    state, "trigger", "cooldown",
                    f"{', '.join(r.trigger for r in fired)} fired, but the last retraining "
                    f"was less than {policy.cooldown} ago; next one after {until:%H:%M:%S}",
                    now, details={r.trigger: r.details for r in fired}))
            else:
                self._save(state, recorded)
            return
        state.cycle, state.last_retrain_at = new_id(), _ms(now)
        trigger = self._decision(state, "trigger", "fired",
                                 "; ".join(f"{r.trigger}: {r.summary}" for r in fired), now,
                                 details={r.trigger: r.details for r in results})
        try:
            champion = get_version(policy.model, "champion", workspace=self.workspace)
        except ModelNotFoundError:
            self._save(state, recorded, trigger, self._decision(
                state, "retrain", "skipped",
                f"{policy.model} has no champion to improve on; register one and point its "
                "'champion' alias at it", now))
            return
        self._save(state, recorded, trigger)
        self._retrain(state, champion, now, recorded)

    def _retrain(self, state: LoopState, champion: Any, now: datetime,
                 recorded: list[Decision]) -> None:
        from tidal.loop.training import (
            NotEnoughDataError,
            gate_challenger,
            train_challenger,
            training_sets,
        )

        policy = self.policy
        try:
            sets = training_sets(policy, now, workspace=self.workspace)
        except NotEnoughDataError as error:
            self._save(state, recorded, self._decision(state, "retrain", "skipped",
                                                       error.message, now))
            return
        try:
            version, details = train_challenger(policy, sets, state.cycle or "",
                                                workspace=self.workspace)
        except Exception as error:  # a failing pipeline is a decision, not a dead controller
            self._save(state, recorded, self._decision(
                state, "retrain", "failed", f"{type(error).__name__}: {error}", now,
                details=sets.details))
            return
        details.update(sets.details)
        self._save(state, recorded, self._decision(
            state, "retrain", "trained",
            f"{version.uri} trained on {sets.details['train_rows']} rows "
            f"({sets.details['from'][:19]} to {sets.details['holdout_from'][:19]}), "
            f"{sets.details['holdout_rows']} held out", now, details=details,
            model_uri=version.uri))
        report = gate_challenger(policy, version, sets.holdout, workspace=self.workspace)
        results = {r.name: {"passed": r.passed, "reasons": r.reasons, **r.details}
                   for r in report.results}
        if not report.passed:
            reasons = "; ".join(reason for r in report.failed for reason in r.reasons)
            rejected = self._decision(
                state, "gate", "rejected", f"{version.uri} rejected against "
                f"{champion.uri}: {reasons}", now, details=results, model_uri=version.uri)
            state.cycle = None
            self._save(state, recorded, rejected)
            return
        self._start_rollout(state, version, champion, report, results, now, recorded)

    def _start_rollout(self, state: LoopState, version: Any, champion: Any, report: Any,
                       results: dict[str, Any], now: datetime,
                       recorded: list[Decision]) -> None:
        from tidal.models.aliases import set_alias
        from tidal.models.stages import transition

        policy = self.policy
        primary = report.results[0]
        gate = self._decision(state, "gate", "passed", (
            f"{version.uri} passed every gate against {champion.uri}: "
            f"{'; '.join(primary.reasons)}"), now, details=results, model_uri=version.uri)
        transition(version.uri, "approved", reason=f"loop {policy.name}: gate passed",
                   workspace=self.workspace)
        set_alias(policy.model, "challenger", version.version,
                  reason=f"loop {policy.name}: canary rollout", workspace=self.workspace)
        state.phase, state.challenger, state.step = "rollout", version.version, 0
        state.step_started_at = _ms(now)
        state.data.update(champion=champion.version, rollout_started_at=_ms(now))
        share = policy.rollout.steps[0]
        self._save(state, recorded, gate, self._decision(
            state, "rollout", "started", f"step 1/{len(policy.rollout.steps)}: "
            f"{version.uri} gets {share:g}% of traffic", now,
            details={"step": 1, "share": share, "routes": desired_routes(policy, share)},
            model_uri=version.uri))
        self._reconcile(state)

    def _advance(self, state: LoopState, now: datetime, recorded: list[Decision]) -> None:
        policy = self.policy
        self._reconcile(state)
        assert state.step is not None and state.challenger is not None
        verdict = judge_step(policy, challenger=state.challenger,
                             champion=int(state.data["champion"]),
                             step_started_at=int(state.step_started_at or 0),
                             rollout_started_at=int(state.data["rollout_started_at"]),
                             now=now, workspace=self.workspace)
        steps = policy.rollout.steps
        label = f"step {state.step + 1}/{len(steps)} ({steps[state.step]:g}%)"
        uri = self._challenger_uri(state)
        if verdict.status == "wait":
            self._save(state, recorded)
            return
        if verdict.status == "fail":
            state.phase = "rolling_back"
            self._save(state, recorded, self._decision(
                state, "rollout", "failed", f"{label}: {verdict.summary}", now,
                details=verdict.details, model_uri=uri))
            self._roll_back(state, now, recorded)
            return
        passed = self._decision(state, "rollout", "passed", f"{label}: {verdict.summary}",
                                now, details=verdict.details, model_uri=uri)
        if state.step + 1 >= len(steps):
            state.phase = "promoting"
            self._save(state, recorded, passed)
            self._promote(state, now, recorded)
            return
        state.step += 1
        state.step_started_at = _ms(now)
        share = steps[state.step]
        self._save(state, recorded, passed, self._decision(
            state, "rollout", "started", f"step {state.step + 1}/{len(steps)}: {uri} gets "
            f"{share:g}% of traffic", now, details={
                "step": state.step + 1, "share": share,
                "routes": desired_routes(policy, share)}, model_uri=uri))
        self._reconcile(state)

    def _promote(self, state: LoopState, now: datetime, recorded: list[Decision]) -> None:
        """Finish a promotion; every action is idempotent, so a restarted controller simply
        does it again."""
        from tidal.models.aliases import set_alias
        from tidal.models.registry import get_version

        policy = self.policy
        assert state.challenger is not None
        uri = self._challenger_uri(state)
        previous = state.data.get("champion")
        self._reconcile(state)  # the challenger serves all traffic before it becomes champion
        set_alias(policy.model, "champion", state.challenger,
                  reason=f"loop {policy.name}: every canary step passed",
                  workspace=self.workspace)
        state.phase = "idle"
        self._reconcile(state)
        self._move_stage(uri, "deployed", "approved", f"loop {policy.name}: promoted")
        if previous is not None and previous != state.challenger:
            old = get_version(policy.model, int(previous), workspace=self.workspace)
            self._move_stage(old.uri, "approved", "deployed",
                             f"loop {policy.name}: replaced by {uri}")
        self._drop_challenger_alias()
        done = self._decision(
            state, "promote", "done", f"{uri} is the champion and serves 100% of traffic"
            + (f" (was models:/{policy.model}/{previous})" if previous is not None else ""),
            now, model_uri=uri)
        state.challenger = state.step = state.step_started_at = state.cycle = None
        self._save(state, recorded, done)

    def _roll_back(self, state: LoopState, now: datetime, recorded: list[Decision]) -> None:
        policy = self.policy
        uri = self._challenger_uri(state)
        state.phase = "idle"
        self._reconcile(state)
        if uri is not None:
            self._move_stage(uri, "registered", "approved",
                             f"loop {policy.name}: rolled back")
        self._drop_challenger_alias()
        done = self._decision(state, "rollback", "done", f"{uri} removed; "
                              f"{policy.champion_uri} serves 100% of traffic again", now,
                              model_uri=uri)
        state.challenger = state.step = state.step_started_at = state.cycle = None
        self._save(state, recorded, done)

    # -- helpers ---------------------------------------------------------------------------------

    def _show(self, results: list[TriggerResult], now: datetime) -> None:
        """Put the drift a trigger measured, and the last hour's service and model figures
        per route and version, on the gauges."""
        if self.gauges is None:
            return
        from datetime import timedelta

        from tidal.monitoring.performance import performance

        endpoint = self.policy.endpoint
        for result in results:
            if result.report is not None:
                self.gauges.set_drift(endpoint, result.report)
        figures = performance(endpoint, end=now, last=timedelta(hours=1),
                              workspace=self.workspace)
        if len(figures):
            self.gauges.set_performance(endpoint, figures)

    def _reconcile(self, state: LoopState) -> None:
        """Deploy the routes the stored state calls for, if the endpoint has others."""
        from tidal.serving.endpoints import EndpointNotFoundError, deploy, get_endpoint

        policy = self.policy
        share = policy.rollout.steps[state.step] if state.phase in ("rollout", "promoting") \
            and state.step is not None else None
        want = desired_routes(policy, share)
        try:
            have = {r.uri: r.weight for r in get_endpoint(
                policy.endpoint, workspace=self.workspace).config.routes}
        except EndpointNotFoundError:
            have = {}
        if have != want:
            deploy(policy.endpoint, want, workspace=self.workspace)

    def _move_stage(self, uri: str, stage: str, only_from: str, reason: str) -> None:
        from tidal.models.registry import get_version
        from tidal.models.stages import transition

        if get_version(uri, workspace=self.workspace).stage == only_from:
            transition(uri, stage, reason=reason, workspace=self.workspace)

    def _drop_challenger_alias(self) -> None:
        from tidal.models.aliases import delete_alias
        from tidal.models.errors import AliasNotFoundError

        try:
            delete_alias(self.policy.model, "challenger", reason=f"loop {self.policy.name}",
                         workspace=self.workspace)
        except AliasNotFoundError:
            pass

    def _challenger_uri(self, state: LoopState) -> str | None:
        return None if state.challenger is None else \
            f"models:/{self.policy.model}/{state.challenger}"

    def _decision(self, state: LoopState, kind: str, outcome: str, summary: str,
                  now: datetime, *, details: dict[str, Any] | None = None,
                  model_uri: str | None = None) -> Decision:
        return Decision(policy=self.policy.name, endpoint=self.policy.endpoint, kind=kind,
                        outcome=outcome, summary=summary, details=details or {},
                        cycle=state.cycle, model_uri=model_uri, at=_ms(now),
                        by=self.holder)

    def _save(self, state: LoopState, recorded: list[Decision], *decisions: Decision) -> None:
        save_state(state, list(decisions), holder=self.holder, workspace=self.workspace)
        for decision in decisions:
            recorded.append(decision)
            log.info("loop %s: %s %s: %s", self.policy.name, decision.kind, decision.outcome,
                     decision.summary)
            if self.on_decision is not None:
                self.on_decision(decision)

    def _record_error(self, error: TidalError) -> None:
        state = read_state(self.policy.name, workspace=self.workspace)
        self._save(state, [], self._decision(state, "error", "failed",
                                             f"{type(error).__name__}: {error.message}",
                                             self.clock()))


def tick(policy: str, *, workspace: Workspace | None = None,
         clock: Clock | None = None) -> list[Decision]:
    """One evaluation of ``policy`` (for cron): takes the lease, ticks, gives it back."""
    controller = Controller(policy, workspace=workspace, clock=clock)
    try:
        return controller.tick()
    finally:
        controller.close()


def retrain_action(policy: str, *, workspace: Workspace | None = None
                   ) -> Callable[[Any], None]:
    """An alert action that asks ``policy``'s controller to retrain when the alert fires
    (``AlertRule(..., actions=[retrain_action("ctr-loop")])``)."""
    def action(alert: Any) -> None:
        if getattr(alert, "kind", "firing") == "firing":
            request_retrain(policy, f"alert {alert.rule}: {alert.message}",
                            details=alert.to_dict(), workspace=workspace)

    action.__name__ = f"retrain({policy})"
    return action

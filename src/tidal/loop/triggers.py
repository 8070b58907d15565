"""Evaluating a policy's triggers: has the world changed enough to retrain?

Each trigger looks at the endpoint's recent traffic (the prediction log and its feedback) and
answers fired or quiet with the figures it decided on, so the decision in the loop's history
can say exactly why a retraining happened, or why not.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from tidal.loop.policy import METRICS, LoopPolicy, Trigger
from tidal.store.workspace import Workspace


@dataclass(frozen=True)
class TriggerResult:
    trigger: str
    fired: bool
    summary: str
    details: dict[str, Any] = field(default_factory=dict)
    #: The drift report a drift trigger decided on (for gauges; not stored).
    report: Any = field(default=None, compare=False, repr=False)


def window_args(window: timedelta | int, now: datetime) -> dict[str, Any]:
    """``read_window`` arguments for a policy window: a span before ``now`` or the latest
    requests up to ``now``."""
    if isinstance(window, int):
        return {"requests": window, "end": now}
    return {"last": window, "end": now}


def _describe(window: timedelta | int) -> str:
    return f"the last {window} requests" if isinstance(window, int) else \
        f"the last {window}"


class TriggerEvaluator:
    """Evaluates one policy's triggers; caches the drift reference per champion version, since
    reading a training set on every tick would cost more than the test itself."""

    def __init__(self, policy: LoopPolicy, workspace: Workspace) -> None:
        self.policy = policy
        self.workspace = workspace
        self._reference: tuple[str, Any] | None = None

    def evaluate(self, now: datetime, data: dict[str, Any],
                 last_retrain_at: int | None) -> list[TriggerResult]:
        """Every trigger's verdict; ``data`` is the controller state's memory, updated in
        place (the schedule's last check)."""
        results = []
        for trigger in self.policy.triggers:
            method = getattr(self, f"_{trigger.kind}")
            results.append(method(trigger, now, data, last_retrain_at))
        return results

    # -- the four kinds ------------------------------------------------------------------------

    def _drift(self, trigger: Trigger, now: datetime, data: dict[str, Any],
               last_retrain_at: int | None) -> TriggerResult:
        from tidal.monitoring.drift import drift
        from tidal.monitoring.log_window import read_window

        window = read_window(self.policy.endpoint, workspace=self.workspace,
                             **window_args(trigger.window, now))
        current = window.inputs
        if len(current) < trigger.min_rows:
            return TriggerResult("drift", False, (
                f"{len(current)} logged rows with inputs in {_describe(trigger.window)}, "
                f"fewer than the {trigger.min_rows} drift needs"), {"rows": len(current)})
        source, reference = self._reference_frame(trigger)
        columns = [c for c in reference.columns if c in current.columns]
        if not columns:
            return TriggerResult("drift", False, (
                f"the reference {source} shares no input column with the traffic"),
                {"reference": source})
        report = drift(reference[columns], current[columns],
                       correction=trigger.correction or "none")
        fired = report.drifted_share >= float(trigger.threshold or 0.5)
        top = sorted(report.columns, key=lambda c: c.psi, reverse=True)[:5]
        adjusted = "" if report.correction == "none" else (
            f", p-values adjusted: {report.correction}")
        summary = (f"{report.drifted_share:.0%} of {len(columns)} input columns drifted "
                   f"(threshold {trigger.threshold:.0%}{adjusted}) over {len(current)} rows "
                   f"against {source}")
        if report.drifted_columns:
            summary += f": {', '.join(report.drifted_columns[:8])}"
        return TriggerResult("drift", fired, summary, {
            "drifted_share": report.drifted_share, "threshold": trigger.threshold,
            "drifted_columns": report.drifted_columns, "rows": len(current),
            "reference": source,
            "correction": report.correction,
            "columns": {c.column: {"test": c.test, "statistic": c.statistic,
                                   "adjusted": c.adjusted, "psi": c.psi,
                                   "drifted": c.drifted} for c in top}}, report)

    def _reference_frame(self, trigger: Trigger) -> tuple[str, Any]:
        """The frame drift compares traffic with: ``reference`` when the trigger names one,
        else the data the champion was trained on, limited to its input columns."""
        from tidal.data.uri import parse_ref
        from tidal.data.versions import get
        from tidal.models.registry import get_version

        if trigger.reference is not None:
            key = trigger.reference
            if self._reference is None or self._reference[0] != key:
                dataset = get(*parse_ref(trigger.reference), workspace=self.workspace)
                self._reference = (key, dataset.to_pandas())
            return key, self._reference[1]
        champion = get_version(self.policy.model, "champion", workspace=self.workspace)
        if self._reference is None or self._reference[0] != champion.uri:
            datasets = champion.datasets()
            if not datasets:
                from tidal.errors import InvalidValueError

                raise InvalidValueError(
                    f"{champion.uri} records no training dataset to compare traffic "
                    "with; give the drift trigger a reference dataset", field="reference")
            frame = datasets[0].to_pandas()
            inputs = champion.signature.columns if champion.signature is not None and \
                champion.signature.columns is not None else None
            if inputs is not None:
                frame = frame[[c for c in inputs if c in frame.columns]]
            self._reference = (champion.uri, frame)
        return f"{self._reference[0]}'s training data", self._reference[1]

    def _performance(self, trigger: Trigger, now: datetime, data: dict[str, Any],
                     last_retrain_at: int | None) -> TriggerResult:
        from tidal.monitoring.log_window import read_window
        from tidal.monitoring.performance import prediction_metric

        window = read_window(self.policy.endpoint, workspace=self.workspace,
                             **window_args(trigger.window, now))
        labelled = window.labelled
        metric = str(trigger.metric)
        if len(labelled) < trigger.min_rows:
            return TriggerResult("performance", False, (
                f"{len(labelled)} labelled rows in {_describe(trigger.window)}, fewer than "
                f"the {trigger.min_rows} needed to judge {metric}"), {"rows": len(labelled)})
        value = prediction_metric(metric, list(labelled["label"]),
                                  list(labelled["prediction"]))
        threshold = float(trigger.threshold)  # type: ignore[arg-type]
        higher = METRICS[metric]
        fired = value < threshold if higher else value > threshold
        word = "below" if higher else "above"
        state = word if fired else ("at or above" if higher else "at or below")
        return TriggerResult("performance", fired, (
            f"live {metric} {value:.4f} over {len(labelled)} labelled rows is {state} "
            f"{threshold:g}"), {"metric": metric, "value": value, "threshold": threshold,
                                "rows": len(labelled)})

    def _schedule(self, trigger: Trigger, now: datetime, data: dict[str, Any],
                  last_retrain_at: int | None) -> TriggerResult:
        from croniter import croniter

        last = data.get("schedule_checked_at")
        data["schedule_checked_at"] = now.timestamp()
        if last is None:
            return TriggerResult("schedule", False, f"schedule {trigger.cron!r} starts now")
        due = croniter(trigger.cron, datetime.fromtimestamp(last, UTC)).get_next(datetime)
        fired = due <= now
        return TriggerResult("schedule", fired, (
            f"schedule {trigger.cron!r} was due at {due:%Y-%m-%d %H:%M} UTC" if fired else
            f"schedule {trigger.cron!r} is next due at {due:%Y-%m-%d %H:%M} UTC"),
            {"cron": trigger.cron, "due": due.isoformat()})

    def _labels(self, trigger: Trigger, now: datetime, data: dict[str, Any],
                last_retrain_at: int | None) -> TriggerResult:
        from tidal.monitoring.log_window import read_window

        since = datetime.fromtimestamp(last_retrain_at / 1000, UTC) if last_retrain_at \
            else None
        count = len(read_window(self.policy.endpoint, start=since, end=now,
                                workspace=self.workspace).labelled)
        fired = count >= int(trigger.rows or 0)
        when = "since the last retraining" if since else "so far"
        return TriggerResult("labels", fired, (
            f"{count} new labelled rows {when}; retrain at {trigger.rows}"),
            {"rows": count, "needed": trigger.rows})

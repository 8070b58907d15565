"""Judging one canary step from live traffic: the challenger's error rate, latency and, once
labels come back, its metric against the champion's.

Only answers logged since the step started count, so a step is judged on the share of traffic
it set. The champion's metric comes from its answers in the same span when there are enough
labelled ones (same users, same time), else from its answers since the rollout began (the last
step sends it nothing).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from tidal.loop.policy import METRICS, LoopPolicy
from tidal.store.workspace import Workspace


@dataclass(frozen=True)
class StepVerdict:
    status: str  # pass, fail or wait
    summary: str
    details: dict[str, Any] = field(default_factory=dict)


def _moment(ms: int) -> datetime:
    return datetime.fromtimestamp(ms / 1000, UTC)


def _metric(metric: str, rows: Any) -> float:
    from tidal.monitoring.performance import prediction_metric

    return prediction_metric(metric, list(rows["label"]), list(rows["prediction"]))


def desired_routes(policy: LoopPolicy, share: float | None) -> dict[str, float]:
    """The endpoint's routes with the challenger at ``share`` percent (None: champion only)."""
    if share is None:
        return {policy.champion_uri: 100.0}
    if share >= 100:
        return {policy.challenger_uri: 100.0}
    return {policy.champion_uri: 100.0 - share, policy.challenger_uri: share}


def judge_step(policy: LoopPolicy, *, challenger: int, champion: int, step_started_at: int,
               rollout_started_at: int, now: datetime, workspace: Workspace) -> StepVerdict:
    """Pass, fail or wait for the live step of a rollout."""
    import numpy as np

    from tidal.monitoring.log_window import read_window

    rollout = policy.rollout
    metric = rollout.metric or policy.gate.metric
    meta = read_window(policy.endpoint, start=_moment(step_started_at), end=now,
                       workspace=workspace).meta
    mine = meta[meta["model_version"] == challenger]
    elapsed = now.timestamp() - step_started_at / 1000
    requests = int(mine["request_id"].nunique())
    details: dict[str, Any] = {"requests": requests, "elapsed_s": round(elapsed, 1)}
    if requests < rollout.min_requests:
        if elapsed >= rollout.max_duration.total_seconds():
            return StepVerdict("fail", (
                f"only {requests} requests reached the challenger in "
                f"{rollout.max_duration}, fewer than the {rollout.min_requests} needed to "
                "judge it"), details)
        return StepVerdict("wait", f"{requests}/{rollout.min_requests} requests so far",
                           details)
    error_rate = float(mine["error"].notna().mean())
    answered = mine[mine["error"].isna()]
    p99 = float(np.percentile(answered["latency_ms"], 99)) if len(answered) else 0.0
    details.update(error_rate=error_rate, max_error_rate=rollout.max_error_rate,
                   latency_p99_ms=p99)
    if error_rate > rollout.max_error_rate:
        return StepVerdict("fail", (
            f"challenger error rate {error_rate:.2%} over {requests} requests is above the "
            f"{rollout.max_error_rate:.2%} allowed"), details)
    if rollout.max_latency_ms is not None and p99 > rollout.max_latency_ms:
        details["max_latency_ms"] = rollout.max_latency_ms
        return StepVerdict("fail", (
            f"challenger p99 latency {p99:.1f} ms is above the {rollout.max_latency_ms:g} ms "
            "allowed"), details)
    labelled = answered[answered["label"].notna()]
    parts = [f"error rate {error_rate:.2%}", f"p99 {p99:.1f} ms"]
    if len(labelled) >= rollout.min_labelled:
        value = _metric(metric, labelled)
        theirs = meta[(meta["model_version"] == champion) & meta["label"].notna()
                      & meta["error"].isna()]
        basis = "in this step"
        if len(theirs) < rollout.min_labelled:
            since = read_window(policy.endpoint, start=_moment(rollout_started_at), end=now,
                                workspace=workspace).meta
            theirs = since[(since["model_version"] == champion) & since["label"].notna()
                           & since["error"].isna()]
            basis = "since the rollout began"
        details.update(metric=metric, value=value, labelled=len(labelled))
        if len(theirs) >= rollout.min_labelled:
            baseline = _metric(metric, theirs)
            loss = baseline - value if METRICS[metric] else value - baseline
            details.update(champion_value=baseline, champion_labelled=len(theirs),
                           tolerance=rollout.tolerance)
            if loss > rollout.tolerance:
                return StepVerdict("fail", (
                    f"challenger {metric} {value:.4f} is worse than the champion's "
                    f"{baseline:.4f} ({basis}) by {loss:.4f}, more than the "
                    f"{rollout.tolerance:g} tolerated"), details)
            parts.append(f"{metric} {value:.4f} vs champion {baseline:.4f}")
        else:
            parts.append(f"{metric} {value:.4f} (too few champion labels to compare)")
    elif elapsed < rollout.max_duration.total_seconds():
        return StepVerdict("wait", (
            f"{len(labelled)}/{rollout.min_labelled} labelled answers to judge {metric}"),
            details)
    else:
        parts.append(f"only {len(labelled)} labelled answers by max_duration; judged on "
                     "errors and latency")
    if elapsed < rollout.min_duration.total_seconds():
        return StepVerdict("wait", f"healthy so far ({', '.join(parts)}); the step lasts at "
                                   f"least {rollout.min_duration}", details)
    return StepVerdict("pass", f"{requests} requests: {', '.join(parts)}", details)

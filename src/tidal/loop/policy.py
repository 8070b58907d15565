"""Loop policies: which endpoint and model a controller looks after, what makes it retrain, on
which data, what a challenger must prove, and how it is rolled out.

A policy is plain data (JSON in the metadata store, TOML or JSON in a file), so a controller
started anywhere, or restarted after a crash, works from exactly the policy that was applied,
and every figure a decision is held to can be shown next to the decision.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import asdict, dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

from tidal.durations import format_duration_text, parse_duration
from tidal.errors import InvalidValueError, NotFoundError
from tidal.ids import check_name
from tidal.models.gates import METRICS

TRIGGER_KINDS = ("drift", "performance", "schedule", "labels")
TRAINING_MODES = ("sliding", "decay")
_TARGET = re.compile(r"[A-Za-z_]\w*(\.[A-Za-z_]\w*)*:[A-Za-z_]\w*", re.ASCII)
_DIGEST = re.compile(r"blake2b:[0-9a-f]{64}")


class PolicyError(InvalidValueError):
    """A policy that cannot be applied as written."""


class PolicyNotFoundError(NotFoundError):
    """No policy of that name in this workspace."""


def _metric(value: Any, where: str) -> str:
    if value not in METRICS:
        raise PolicyError(f"{where}: metric {value!r} is not one of {', '.join(METRICS)}",
                          field=where)
    return str(value)


def _positive_int(value: Any, where: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise PolicyError(f"{where} must be a positive whole number, got {value!r}",
                          field=where)
    return value


def _number(value: Any, where: str, low: float | None = None,
            high: float | None = None) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or math.isnan(value):
        raise PolicyError(f"{where} must be a number, got {value!r}", field=where)
    if (low is not None and value < low) or (high is not None and value > high):
        span = f"between {low} and {high}" if high is not None else f"at least {low}"
        raise PolicyError(f"{where} must be {span}, got {value!r}", field=where)
    return float(value)


def _span(value: Any, where: str) -> timedelta:
    try:
        return parse_duration(value, where)
    except InvalidValueError as error:
        raise PolicyError(error.message, field=where) from None


def _window(value: Any, where: str) -> timedelta | int:
    """A window is a span of time ("1h") or a number of requests (500)."""
    if isinstance(value, int) and not isinstance(value, bool):
        return _positive_int(value, where)
    return _span(value, where)


def _window_json(value: timedelta | int) -> Any:
    return value if isinstance(value, int) else format_duration_text(value)


@dataclass(frozen=True)
class Trigger:
    """One reason to retrain.

    kind "drift": the share of drifted input columns between the champion's training data (or
    ``reference``, a dataset URI) and the latest ``window`` of traffic reaches ``threshold``;
    ``correction`` ("none", "bonferroni", "bh") adjusts the columns' p-values for their number.
    kind "performance": ``metric`` on the labelled answers of the latest ``window`` is worse
    than ``threshold``. kind "schedule": a ``cron`` time passed. kind "labels": at least
    ``rows`` new labelled rows arrived since the last retraining.
    """

    kind: str
    window: timedelta | int = timedelta(hours=1)
    threshold: float | None = None
    metric: str | None = None
    min_rows: int = 200
    reference: str | None = None
    cron: str | None = None
    rows: int | None = None
    correction: str | None = None

    @classmethod
    def from_dict(cls, data: dict[str, Any], where: str) -> Trigger:
        data = dict(data)
        kind = data.pop("kind", None)
        if kind not in TRIGGER_KINDS:
            raise PolicyError(f"{where}.kind must be one of {', '.join(TRIGGER_KINDS)}, got "
                              f"{kind!r}", field=f"{where}.kind")
        allowed = {"drift": {"window", "threshold", "min_rows", "reference", "correction"},
                   "performance": {"window", "threshold", "metric", "min_rows"},
                   "schedule": {"cron"}, "labels": {"rows"}}[kind]
        unknown = sorted(set(data) - allowed)
        if unknown:
            raise PolicyError(f"{where}: a {kind} trigger takes {', '.join(sorted(allowed))}; "
                              f"not {', '.join(unknown)}", field=where)
        values: dict[str, Any] = {"kind": kind}
        if "window" in data:
            values["window"] = _window(data["window"], f"{where}.window")
        if "min_rows" in data:
            values["min_rows"] = _positive_int(data["min_rows"], f"{where}.min_rows")
        if kind == "drift":
            values["threshold"] = _number(data.get("threshold", 0.5), f"{where}.threshold",
                                          0.0, 1.0)
            if data.get("reference") is not None:
                values["reference"] = str(data["reference"])
            if "correction" in data:
                values["correction"] = _correction(data["correction"], f"{where}.correction")
        elif kind == "performance":
            values["metric"] = _metric(data.get("metric"), f"{where}.metric")
            if "threshold" not in data:
                raise PolicyError(f"{where}: a performance trigger needs a threshold",
                                  field=f"{where}.threshold")
            values["threshold"] = _number(data["threshold"], f"{where}.threshold")
        elif kind == "schedule":
            values["cron"] = _cron(data.get("cron"), f"{where}.cron")
        else:
            values["rows"] = _positive_int(data.get("rows"), f"{where}.rows")
        return cls(**values)

    def to_dict(self) -> dict[str, Any]:
        keep = {"drift": ("window", "threshold", "min_rows", "reference", "correction"),
                "performance": ("window", "threshold", "metric", "min_rows"),
                "schedule": ("cron",), "labels": ("rows",)}[self.kind]
        out: dict[str, Any] = {"kind": self.kind}
        for name in keep:
            value = getattr(self, name)
            if value is not None:
                out[name] = _window_json(value) if name == "window" else value
        return out


def _correction(value: Any, where: str) -> str:
    from tidal.monitoring.drift import CORRECTIONS

    if value not in CORRECTIONS:
        raise PolicyError(f"{where} must be one of {', '.join(CORRECTIONS)}, got {value!r}",
                          field=where)
    return str(value)


def _cron(value: Any, where: str) -> str:
    from croniter import croniter

    if not isinstance(value, str) or not croniter.is_valid(value):
        raise PolicyError(f"{where} must be a cron expression such as '0 3 * * *', got "
                          f"{value!r}", field=where)
    return value


@dataclass(frozen=True)
class Training:
    """The data a challenger is trained on: labelled traffic from the prediction log.

    mode "sliding": only the latest ``window``; mode "decay": everything, each row weighted by
    0.5 ** (age / ``half_life``), passed to the pipeline as a weight column. The most recent
    ``holdout`` share (by time) is kept out of training to gate the challenger on.

    ``code_digest`` is the digest of the pipeline's source file, recorded when the policy is
    applied: a retraining imports the pipeline only while its code on disk is that code.
    """

    pipeline: str
    label: str = "label"
    mode: str = "sliding"
    window: timedelta | int = timedelta(days=1)
    half_life: timedelta | None = None
    holdout: float = 0.25
    min_rows: int = 200
    params: dict[str, Any] = field(default_factory=dict)
    code_digest: str | None = None

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Training:
        data = dict(data)
        unknown = sorted(set(data) - {"pipeline", "label", "mode", "window", "half_life",
                                      "holdout", "min_rows", "params", "code_digest"})
        if unknown:
            raise PolicyError(f"training: unknown setting(s) {', '.join(unknown)}",
                              field="training")
        target = data.get("pipeline")
        if not isinstance(target, str) or not _TARGET.fullmatch(target) \
                or target.partition(":")[0].endswith(".py"):
            raise PolicyError("training.pipeline must name a @tidal.pipeline as "
                              f"'package.module:name' (a module, not a file), got {target!r}",
                              field="training.pipeline")
        code_digest = data.get("code_digest")
        if code_digest is not None and not (isinstance(code_digest, str)
                                            and _DIGEST.fullmatch(code_digest)):
            raise PolicyError("training.code_digest is recorded by apply_policy as "
                              f"'blake2b:<64 hex>', got {code_digest!r}",
                              field="training.code_digest")
        mode = data.get("mode", "sliding")
        if mode not in TRAINING_MODES:
            raise PolicyError(f"training.mode must be one of {', '.join(TRAINING_MODES)}, got "
                              f"{mode!r}", field="training.mode")
        label = data.get("label", "label")
        if not isinstance(label, str) or not label:
            raise PolicyError("training.label must name the label column",
                              field="training.label")
        params = data.get("params", {})
        if not isinstance(params, dict):
            raise PolicyError("training.params must be a table of pipeline parameters",
                              field="training.params")
        half_life = data.get("half_life")
        if mode == "decay" and half_life is None:
            raise PolicyError("training.mode 'decay' needs a half_life, e.g. '6h'",
                              field="training.half_life")
        return cls(
            pipeline=target, label=label, mode=mode,
            window=_window(data.get("window", "1d"), "training.window"),
            half_life=None if half_life is None else _span(half_life, "training.half_life"),
            holdout=_number(data.get("holdout", 0.25), "training.holdout", 0.05, 0.9),
            min_rows=_positive_int(data.get("min_rows", 200), "training.min_rows"),
            params=params, code_digest=code_digest)

    def to_dict(self) -> dict[str, Any]:
        out = {"pipeline": self.pipeline, "label": self.label, "mode": self.mode,
               "window": _window_json(self.window), "holdout": self.holdout,
               "min_rows": self.min_rows, "params": self.params}
        if self.half_life is not None:
            out["half_life"] = format_duration_text(self.half_life)
        if self.code_digest is not None:
            out["code_digest"] = self.code_digest
        return out


@dataclass(frozen=True)
class Gate:
    """What a challenger must show on the holdout before any traffic reaches it: ``metric`` at
    least ``min_delta`` better than the champion's; each guard metric no worse than the
    champion's by more than its tolerance; p95 single-row latency within ``latency_ms``."""

    metric: str = "accuracy"
    min_delta: float = 0.0
    guards: dict[str, float] = field(default_factory=dict)
    latency_ms: float | None = None

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Gate:
        data = dict(data)
        unknown = sorted(set(data) - {"metric", "min_delta", "guards", "latency_ms"})
        if unknown:
            raise PolicyError(f"gate: unknown setting(s) {', '.join(unknown)}", field="gate")
        guards = data.get("guards", {})
        if not isinstance(guards, dict):
            raise PolicyError("gate.guards must map metric names to tolerances",
                              field="gate.guards")
        return cls(
            metric=_metric(data.get("metric", "accuracy"), "gate.metric"),
            min_delta=_number(data.get("min_delta", 0.0), "gate.min_delta"),
            guards={_metric(k, "gate.guards"): _number(v, f"gate.guards.{k}", 0.0)
                    for k, v in guards.items()},
            latency_ms=None if data.get("latency_ms") is None else _number(
                data["latency_ms"], "gate.latency_ms", 0.001))

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class Rollout:
    """The canary: the challenger's share of traffic at each step (the last is 100). A step
    passes once it has lasted ``min_duration`` and the challenger answered ``min_requests``
    with an error rate at most ``max_error_rate``, a p99 latency within ``max_latency_ms`` and,
    when ``min_labelled`` labelled rows came back, ``metric`` no worse than the champion's by
    more than ``tolerance``. A step that fails a check, or has too little traffic after
    ``max_duration``, rolls the challenger back."""

    steps: tuple[float, ...] = (10.0, 50.0, 100.0)
    min_duration: timedelta = timedelta(minutes=5)
    max_duration: timedelta = timedelta(hours=1)
    min_requests: int = 100
    max_error_rate: float = 0.01
    max_latency_ms: float | None = None
    metric: str | None = None
    tolerance: float = 0.02
    min_labelled: int = 50

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Rollout:
        data = dict(data)
        unknown = sorted(set(data) - {"steps", "min_duration", "max_duration", "min_requests",
                                      "max_error_rate", "max_latency_ms", "metric",
                                      "tolerance", "min_labelled"})
        if unknown:
            raise PolicyError(f"rollout: unknown setting(s) {', '.join(unknown)}",
                              field="rollout")
        steps = data.get("steps", [10, 50, 100])
        if not isinstance(steps, (list, tuple)) or not steps:
            raise PolicyError("rollout.steps must be a list of traffic shares ending in 100, "
                              "e.g. [10, 50, 100]", field="rollout.steps")
        shares = tuple(_number(s, "rollout.steps", 0.01, 100.0) for s in steps)
        if list(shares) != sorted(set(shares)) or shares[-1] != 100.0:
            raise PolicyError(f"rollout.steps must rise and end at 100, got {list(steps)}",
                              field="rollout.steps")
        min_duration = _span(data.get("min_duration", "5m"), "rollout.min_duration")
        max_duration = _span(data.get("max_duration", "1h"), "rollout.max_duration")
        if max_duration < min_duration:
            raise PolicyError("rollout.max_duration must be at least rollout.min_duration",
                              field="rollout.max_duration")
        return cls(
            steps=shares, min_duration=min_duration, max_duration=max_duration,
            min_requests=_positive_int(data.get("min_requests", 100), "rollout.min_requests"),
            max_error_rate=_number(data.get("max_error_rate", 0.01), "rollout.max_error_rate",
                                   0.0, 1.0),
            max_latency_ms=None if data.get("max_latency_ms") is None else _number(
                data["max_latency_ms"], "rollout.max_latency_ms", 0.001),
            metric=None if data.get("metric") is None else _metric(data["metric"],
                                                                   "rollout.metric"),
            tolerance=_number(data.get("tolerance", 0.02), "rollout.tolerance", 0.0),
            min_labelled=_positive_int(data.get("min_labelled", 50), "rollout.min_labelled"))

    def to_dict(self) -> dict[str, Any]:
        return {"steps": list(self.steps),
                "min_duration": format_duration_text(self.min_duration),
                "max_duration": format_duration_text(self.max_duration),
                "min_requests": self.min_requests, "max_error_rate": self.max_error_rate,
                "max_latency_ms": self.max_latency_ms, "metric": self.metric,
                "tolerance": self.tolerance, "min_labelled": self.min_labelled}


@dataclass(frozen=True)
class LoopPolicy:
    """Everything one controller needs: ``endpoint`` serves ``model`` from its ``champion``
    alias; ``cooldown`` is the least time between two retrainings, so a trigger that keeps
    firing after a rejected challenger does not retrain on every tick."""

    name: str
    endpoint: str
    model: str
    training: Training
    triggers: tuple[Trigger, ...]
    gate: Gate = Gate()
    rollout: Rollout = Rollout()
    cooldown: timedelta = timedelta(hours=1)
    interval: timedelta = timedelta(seconds=30)

    @property
    def champion_uri(self) -> str:
        return f"models:/{self.model}@champion"

    @property
    def challenger_uri(self) -> str:
        return f"models:/{self.model}@challenger"

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> LoopPolicy:
        if not isinstance(data, dict):
            raise PolicyError(f"a policy is a table of settings, got {type(data).__name__}",
                              field="policy")
        unknown = sorted(set(data) - {"name", "endpoint", "model", "training", "triggers",
                                      "gate", "rollout", "cooldown", "interval"})
        if unknown:
            raise PolicyError(f"policy: unknown setting(s) {', '.join(unknown)}; settings: "
                              "name, endpoint, model, training, triggers, gate, rollout, "
                              "cooldown, interval", field="policy")
        for key in ("name", "endpoint", "model"):
            if not isinstance(data.get(key), str):
                raise PolicyError(f"policy.{key} is required", field=key)
        check_name(data["name"], what="policy", field="name")
        check_name(data["endpoint"], what="endpoint", field="endpoint")
        check_name(data["model"], what="model", field="model")
        if not isinstance(data.get("training"), dict):
            raise PolicyError("policy.training is required: at least its pipeline",
                              field="training")
        triggers = data.get("triggers")
        if not isinstance(triggers, list) or not triggers:
            raise PolicyError("policy.triggers must list at least one trigger (drift, "
                              "performance, schedule or labels)", field="triggers")
        for i, trigger in enumerate(triggers):
            if not isinstance(trigger, dict):
                raise PolicyError(f"triggers[{i}] must be a table", field=f"triggers[{i}]")
        return cls(
            name=data["name"], endpoint=data["endpoint"], model=data["model"],
            training=Training.from_dict(data["training"]),
            triggers=tuple(Trigger.from_dict(t, f"triggers[{i}]")
                           for i, t in enumerate(triggers)),
            gate=Gate.from_dict(data.get("gate", {})),
            rollout=Rollout.from_dict(data.get("rollout", {})),
            cooldown=_span(data.get("cooldown", "1h"), "cooldown"),
            interval=_span(data.get("interval", "30s"), "interval"))

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "endpoint": self.endpoint, "model": self.model,
                "training": self.training.to_dict(),
                "triggers": [t.to_dict() for t in self.triggers],
                "gate": self.gate.to_dict(), "rollout": self.rollout.to_dict(),
                "cooldown": format_duration_text(self.cooldown),
                "interval": format_duration_text(self.interval)}


def read_policy_file(path: str | Path) -> LoopPolicy:
    """A policy from a TOML or JSON file."""
    import tomllib

    file = Path(path)
    if file.suffix not in (".toml", ".json"):
        raise PolicyError(f"{file} is not a .toml or .json policy file", field="path")
    try:
        text = file.read_text()
    except OSError as error:
        raise PolicyError(f"cannot read {file}: {error.strerror}", field="path") from None
    try:
        data = tomllib.loads(text) if file.suffix == ".toml" else json.loads(text)
    except (tomllib.TOMLDecodeError, json.JSONDecodeError) as error:
        raise PolicyError(f"{file} is not valid {file.suffix[1:].upper()}: {error}",
                          field="path") from None
    return LoopPolicy.from_dict(data)

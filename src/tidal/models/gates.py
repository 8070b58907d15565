"""Validation gates: plain functions that look at a model version and say pass or fail, and why.

A gate is any callable taking a :class:`ModelVersion` and returning a :class:`GateResult`; the
factories below build the common ones. ``validate`` runs a list of gates, stores every result
with the version (who ran them and when), and moves a registered version to "validated" when
all of them pass. A gate that raises is recorded as failed with the error, so one broken gate
cannot let a version through.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from tidal.errors import InvalidValueError, TidalError
from tidal.models.errors import ModelNotFoundError
from tidal.models.registry import ModelVersion, get_version
from tidal.models.stages import record_gate_results, transition
from tidal.store.workspace import Workspace


@dataclass(frozen=True)
class GateResult:
    name: str
    passed: bool
    reasons: list[str]
    details: dict[str, Any] = field(default_factory=dict)


Gate = Callable[[ModelVersion], GateResult]


@dataclass(frozen=True)
class GateReport:
    """One run of gates over one version."""

    version: ModelVersion
    results: list[GateResult]

    @property
    def passed(self) -> bool:
        return all(r.passed for r in self.results)

    @property
    def failed(self) -> list[GateResult]:
        return [r for r in self.results if not r.passed]


#: Metrics gates can compute, with whether higher is better.
METRICS: dict[str, bool] = {
    "accuracy": True, "balanced_accuracy": True, "f1": True, "precision": True,
    "recall": True, "roc_auc": True, "log_loss": False, "rmse": False, "mae": False,
    "r2": True,
}


def _check_metric(metric: str) -> str:
    if metric not in METRICS:
        raise InvalidValueError(f"metric {metric!r} is not one gates compute; use one of "
                                f"{', '.join(METRICS)}", field="metric")
    return metric


def score(model: Any, frame: Any, label: str, metric: str) -> float:
    """``metric`` of a loaded model on a labelled frame (the label column is left out of the
    model's input)."""
    import numpy as np
    from sklearn import metrics as m

    _check_metric(metric)
    if label not in frame.columns:
        raise InvalidValueError(f"the evaluation data has no label column {label!r}; its "
                                f"columns: {', '.join(map(str, frame.columns))}", field="label")
    truth = frame[label].to_numpy()
    features = frame.drop(columns=[label])
    if model.signature is not None and model.signature.columns is not None:
        features = features[[c for c in model.signature.columns if c in features.columns]]
    if metric in ("roc_auc", "log_loss"):
        if not model.has_predict_proba:
            raise InvalidValueError(f"{metric} needs class probabilities and "
                                    f"{model.uri} has no predict_proba", field="metric")
        proba = np.asarray(model.predict_proba(features))
        if metric == "log_loss":
            return float(m.log_loss(truth, proba))
        if proba.ndim == 2 and proba.shape[1] == 2:
            proba = proba[:, 1]
        return float(m.roc_auc_score(truth, proba, multi_class="ovr"))
    predicted = np.asarray(model.predict(features)).reshape(len(truth), -1)
    predicted = predicted[:, 0] if predicted.shape[1] == 1 else predicted
    if metric == "rmse":
        return float(math.sqrt(m.mean_squared_error(truth, predicted)))
    if metric == "mae":
        return float(m.mean_absolute_error(truth, predicted))
    if metric == "r2":
        return float(m.r2_score(truth, predicted))
    if metric == "accuracy":
        return float(m.accuracy_score(truth, predicted))
    if metric == "balanced_accuracy":
        return float(m.balanced_accuracy_score(truth, predicted))
    average = "binary" if len(np.unique(truth)) <= 2 else "macro"
    scorer = {"f1": m.f1_score, "precision": m.precision_score, "recall": m.recall_score}[metric]
    return float(scorer(truth, predicted, average=average))


def metric_threshold(metric: str, *, minimum: float | None = None,
                     maximum: float | None = None) -> Gate:
    """Pass when the metric the version's run logged is within [minimum, maximum]."""
    if minimum is None and maximum is None:
        raise InvalidValueError("metric_threshold needs minimum, maximum or both",
                                field="minimum")
    bounds = " and ".join(part for part in (
        None if minimum is None else f">= {minimum}",
        None if maximum is None else f"<= {maximum}") if part)
    name = f"metric_threshold({metric} {bounds})"

    def gate(version: ModelVersion) -> GateResult:
        run = version.run()
        if run is None:
            return GateResult(name, False, [(f"{version.uri} has no run, so no {metric!r} "
                                            "metric to check")])
        value = run.metrics.get(metric)
        if value is None:
            logged = ", ".join(sorted(run.metrics)) or "none"
            return GateResult(name, False, [(f"run {run.id} logged no {metric!r} metric "
                                            f"(logged: {logged})")])
        low = minimum is not None and value < minimum
        high = maximum is not None and value > maximum
        passed = not (low or high or math.isnan(value))
        reason = f"{metric} = {value:.6g}, required {bounds}"
        return GateResult(name, passed, [reason], {"metric": metric, "value": value,
                                                   "minimum": minimum, "maximum": maximum})

    return gate


def better_than_champion(metric: str, dataset: Any, *, label: str, min_delta: float = 0.0,
                         alias: str = "champion", trust: bool = False) -> Gate:
    """Pass when the version beats the model behind ``alias`` by at least ``min_delta`` on
    ``metric`` over ``dataset`` (a dataset version, its URI, or a DataFrame with ``label``).
    With no champion yet, the first candidate passes and the result says so."""
    _check_metric(metric)
    higher = METRICS[metric]
    name = f"better_than_{alias}({metric}, by >= {min_delta})"

    def gate(version: ModelVersion) -> GateResult:
        from tidal.models.loaded import load_version

        frame = _frame(dataset, version.workspace)
        try:
            champion = get_version(version.name, alias, workspace=version.workspace)
        except ModelNotFoundError:
            return GateResult(name, True, [(f"{version.name} has no {alias!r} yet; nothing to "
                                           "beat")], {"champion": None})
        mine = score(load_version(version, trust=trust), frame, label, metric)
        theirs = score(load_version(champion, trust=trust), frame, label, metric)
        gain = mine - theirs if higher else theirs - mine
        passed = gain >= min_delta
        direction = "higher" if higher else "lower"
        reason = (f"{metric}: {mine:.6g} vs {alias} {champion.uri} {theirs:.6g} "
                  f"({direction} is better; gain {gain:+.6g}, required >= {min_delta})")
        return GateResult(name, passed, [reason], {
            "metric": metric, "value": mine, "champion": champion.uri,
            "champion_value": theirs, "gain": gain, "min_delta": min_delta,
            "rows": len(frame)})

    return gate


def _frame(dataset: Any, ws: Workspace) -> Any:
    import pandas as pd

    if isinstance(dataset, pd.DataFrame):
        return dataset
    from tidal.data.uri import parse_ref
    from tidal.data.versions import DatasetVersion, get

    if isinstance(dataset, str):
        dataset = get(*parse_ref(dataset), workspace=ws)
    if isinstance(dataset, DatasetVersion):
        return dataset.to_pandas()
    raise InvalidValueError(f"dataset must be a dataset version, its URI or a DataFrame, got "
                            f"{type(dataset).__name__}", field="dataset")


def signature_compatible(alias: str = "champion") -> Gate:
    """Pass when callers of the model behind ``alias`` could call this version unchanged."""
    name = f"signature_compatible({alias})"

    def gate(version: ModelVersion) -> GateResult:
        try:
            champion = get_version(version.name, alias, workspace=version.workspace)
        except ModelNotFoundError:
            return GateResult(name, True, [f"{version.name} has no {alias!r} yet"])
        if version.signature is None or champion.signature is None:
            missing = version.uri if version.signature is None else champion.uri
            return GateResult(name, False, [f"{missing} has no signature to compare"])
        problems = version.signature.compatibility_problems(champion.signature)
        if problems:
            return GateResult(name, False, problems, {"champion": champion.uri})
        return GateResult(name, True, [f"accepts every input {champion.uri} accepts"],
                          {"champion": champion.uri})

    return gate


def latency_budget(max_ms: float, *, percentile: float = 95, rows: int = 1, repeats: int = 200,
                   trust: bool = False) -> Gate:
    """Pass when predicting ``rows`` rows of the input example takes at most ``max_ms``
    milliseconds at the given percentile, measured after a few warm-up calls."""
    if not max_ms > 0 or not 0 < percentile <= 100 or rows < 1 or repeats < 1:
        raise InvalidValueError("latency_budget needs max_ms > 0, 0 < percentile <= 100, "
                                "rows >= 1 and repeats >= 1", field="max_ms")
    name = f"latency_budget(p{percentile:g} <= {max_ms:g} ms, {rows} row(s))"

    def gate(version: ModelVersion) -> GateResult:
        import numpy as np

        from tidal.models.loaded import load_version

        example = version.input_example()
        if example is None:
            return GateResult(name, False, [(f"{version.uri} has no input example to time; "
                                            "register it with input_example=")])
        batch = example[:rows]
        model = load_version(version, trust=trust)
        for _ in range(min(10, repeats)):
            model.predict(batch)
        samples = []
        for _ in range(repeats):
            start = time.perf_counter_ns()
            model.predict(batch)
            samples.append((time.perf_counter_ns() - start) / 1e6)
        measured = float(np.percentile(samples, percentile))
        passed = measured <= max_ms
        reason = (f"p{percentile:g} latency {measured:.3f} ms over {repeats} calls of "
                  f"{len(batch)} row(s), budget {max_ms:g} ms")
        return GateResult(name, passed, [reason], {
            "percentile": percentile, "latency_ms": measured, "budget_ms": max_ms,
            "median_ms": float(np.median(samples)), "rows": len(batch)})

    return gate


def size_limit(max_bytes: int) -> Gate:
    """Pass when the version's stored files take at most ``max_bytes``."""
    if isinstance(max_bytes, bool) or not isinstance(max_bytes, int) or max_bytes < 1:
        raise InvalidValueError("size_limit needs a positive whole number of bytes",
                                field="max_bytes")
    name = f"size_limit({max_bytes} bytes)"

    def gate(version: ModelVersion) -> GateResult:
        passed = version.size_bytes <= max_bytes
        return GateResult(name, passed, [f"{version.size_bytes} bytes, limit {max_bytes}"],
                          {"size_bytes": version.size_bytes, "max_bytes": max_bytes})

    return gate


def _run_gate(gate: Gate, version: ModelVersion) -> GateResult:
    label = getattr(gate, "__name__", type(gate).__name__)
    try:
        result = gate(version)
    except TidalError as error:
        return GateResult(label, False, [f"the gate could not run: {error.message}"])
    except Exception as error:  # noqa: BLE001 - a user's gate failing is a failed gate
        return GateResult(label, False, [f"the gate raised {type(error).__name__}: {error}"])
    if not isinstance(result, GateResult):
        return GateResult(label, False, [(f"the gate returned {type(result).__name__}, not a "
                                         "GateResult")])
    return result


def validate(uri: str, gates: Sequence[Gate], *, promote: bool = True,
             workspace: Workspace | None = None) -> GateReport:
    """Run ``gates`` on the version ``uri`` names, store the results with it, and (when
    ``promote`` and every gate passed) move a registered version to "validated"."""
    if not gates or not all(callable(g) for g in gates):
        raise InvalidValueError("validate needs a non-empty list of gates (callables taking a "
                                "ModelVersion and returning a GateResult)", field="gates")
    version = get_version(uri, workspace=workspace)
    results = [_run_gate(gate, version) for gate in gates]
    record_gate_results(version, results)
    report = GateReport(version, results)
    if promote and report.passed and version.stage == "registered":
        names = ", ".join(r.name for r in results)
        version = transition(version.uri, "validated", reason=f"passed gates: {names}",
                             workspace=version.workspace)
        report = GateReport(version, results)
    return report

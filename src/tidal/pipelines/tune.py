"""Hyperparameter tuning of a pipeline or a step with Optuna's samplers and pruners.

Each trial is a pipeline run (a tracked run, child of the tuning run), so every trial's
params, metrics and outputs are in ``tidal runs`` and the cache serves repeated settings.
Optuna drives the search through its ask/tell interface; Tidal only turns a trial's
parameters into a run and the run's logged metric into the trial's value. Trials run in
parallel on the process or Ray executors; inline trials run one at a time, as they share the
interpreter, and only they can be pruned (a step reports with ``tidal.pipelines.report``).
"""

from __future__ import annotations

import contextvars
import math
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from tidal.errors import InvalidValueError, missing_dependency
from tidal.pipelines.graph import Pipeline
from tidal.pipelines.step import Step
from tidal.store.workspace import Workspace, current_workspace

DIRECTIONS = ("maximize", "minimize")

_trial: contextvars.ContextVar[Any] = contextvars.ContextVar("tidal_tuning_trial", default=None)


class TrialPruned(Exception):
    """Raised by ``report`` when the pruner stops the trial; the step ends there."""


def report(value: float, step: int) -> None:
    """Report an intermediate value of the tuned metric from inside a step (inline trials):
    the study's pruner may stop the trial, which raises TrialPruned."""
    trial = _trial.get()
    if trial is None:
        return
    trial.report(float(value), step)
    if trial.should_prune():
        raise TrialPruned(f"pruned at step {step} with value {value}")


@dataclass(frozen=True)
class Trial:
    number: int
    params: dict[str, Any]
    value: float | None
    state: str
    run_id: str | None
    error: str | None = None


@dataclass(frozen=True)
class TuneResult:
    """The best trial, every trial, the tuning run's id and Optuna's study."""

    best: Trial
    trials: list[Trial]
    run_id: str
    study: Any


def _distribution(name: str, spec: Any) -> Any:
    import optuna.distributions as d

    if isinstance(spec, d.BaseDistribution):
        return spec
    if isinstance(spec, list) and spec:
        return d.CategoricalDistribution(spec)
    if isinstance(spec, tuple) and len(spec) in (3, 4) and spec[0] in ("float", "int"):
        kind, low, high, *rest = spec
        log = rest == ["log"]
        if rest and not log:
            raise InvalidValueError(f"space {name!r}: the fourth item can only be 'log'",
                                    field="space")
        try:
            return d.FloatDistribution(low, high, log=log) if kind == "float" \
                else d.IntDistribution(low, high, log=log)
        except (ValueError, TypeError) as error:
            raise InvalidValueError(f"space {name!r}: {error}", field="space") from None
    raise InvalidValueError(
        f"space {name!r} is {spec!r}; use ('float', low, high[, 'log']), ('int', low, high), "
        "a list of choices, or an optuna distribution", field="space")


def _as_pipeline(target: Pipeline | Step) -> Pipeline:
    if isinstance(target, Pipeline):
        return target
    if not isinstance(target, Step):
        raise InvalidValueError(f"tune takes a @tidal.pipeline or a @tidal.step, got "
                                f"{type(target).__name__}", field="target")
    step = target

    def single(**params: Any) -> None:
        step(**params)

    single.__signature__ = step.signature.replace(return_annotation=None)  # type: ignore[attr-defined]
    single.__module__ = step.function.__module__
    single.__qualname__ = step.function.__qualname__
    return Pipeline(single, f"tune-{step.name}", None)


def _metric_of(run_id: str, metric: str, ws: Workspace) -> float | None:
    """The metric a trial's run (or one of its step runs, the last to log it) recorded."""
    import tidal

    run = tidal.get_run(run_id, workspace=ws)
    if metric in run.metrics:
        return run.metrics[metric]
    found = [tidal.get_run(child, workspace=ws) for child in run.children]
    found = [r for r in found if metric in r.metrics]
    if not found:
        return None
    return max(found, key=lambda r: r.end_time or r.start_time).metrics[metric]


def tune(target: Pipeline | Step, space: Mapping[str, Any], metric: str,
         direction: str = "maximize", n_trials: int = 20, executor: str = "inline", *,
         params: Mapping[str, Any] | None = None, parallel: int = 2, sampler: Any = None,
         pruner: Any = None, workspace: Workspace | None = None) -> TuneResult:
    """Search ``space`` for the parameters that make ``metric`` best.

    ``space`` maps parameter names to ``('float', low, high[, 'log'])``, ``('int', low,
    high)``, a list of choices, or an Optuna distribution; ``params`` fixes the others.
    ``metric`` is read from what the trial's steps logged (or a step that returns a number
    under that name). ``sampler``/``pruner`` are Optuna's (default TPE, median pruning).
    """
    try:
        import optuna
    except ImportError:
        raise missing_dependency("optuna", "tune", "tidal.tune") from None
    import tidal
    from tidal.pipelines.runner import run_pipeline

    if direction not in DIRECTIONS:
        raise InvalidValueError(f"direction must be one of {', '.join(DIRECTIONS)}, got "
                                f"{direction!r}", field="direction")
    if isinstance(n_trials, bool) or not isinstance(n_trials, int) or n_trials < 1:
        raise InvalidValueError(f"n_trials must be a whole number >= 1, got {n_trials!r}",
                                field="n_trials")
    if not isinstance(metric, str) or not metric:
        raise InvalidValueError("metric must name a logged metric", field="metric")
    if not isinstance(space, Mapping) or not space:
        raise InvalidValueError("space must map at least one parameter to its range",
                                field="space")
    pipeline = _as_pipeline(target)
    distributions = {name: _distribution(name, spec) for name, spec in space.items()}
    fixed = dict(params or {})
    pipeline.parameters({**fixed, **{name: None for name in distributions}})  # names exist
    ws = workspace or current_workspace()
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(direction=direction, sampler=sampler,
                                pruner=pruner or optuna.pruners.MedianPruner())
    workers = 1 if executor == "inline" else max(1, parallel)
    trials: list[Trial] = []

    with tidal.start_run(pipeline.name, name=f"tune-{pipeline.name}", workspace=ws,
                         params={"metric": metric, "direction": direction,
                                 "n_trials": n_trials, "executor": executor},
                         tags={"tidal.tune": pipeline.name}, system_metrics=False) as parent:

        def one(trial: Any) -> Trial:
            values = {**fixed, **trial.params}
            token = _trial.set(trial if executor == "inline" else None)
            try:
                result = run_pipeline(pipeline, values, executor=executor, workspace=ws,
                                      parent=parent.id)
            except tidal.TidalError as error:
                pruned = isinstance(error.__cause__, TrialPruned) or "TrialPruned" in str(error)
                state = optuna.trial.TrialState.PRUNED if pruned else optuna.trial.TrialState.FAIL
                study.tell(trial, state=state)
                return Trial(trial.number, values, None, state.name.lower(), None,
                             error.message)
            finally:
                _trial.reset(token)
            value = _metric_of(result.id, metric, ws)
            if value is None or math.isnan(value):
                study.tell(trial, state=optuna.trial.TrialState.FAIL)
                return Trial(trial.number, values, None, "fail", result.id)
            study.tell(trial, value)
            return Trial(trial.number, values, value, "complete", result.id)

        remaining = n_trials
        with ThreadPoolExecutor(max_workers=workers) as pool:
            while remaining:
                batch = [study.ask(distributions) for _ in range(min(workers, remaining))]
                remaining -= len(batch)
                trials += list(pool.map(one, batch))
        complete = [t for t in trials if t.state == "complete"]
        if not complete:
            raise InvalidValueError(
                f"no trial of {pipeline.name!r} completed with a {metric!r} metric; check "
                "that a step logs it (tidal.log_metric)", field="metric")
        best = (max if direction == "maximize" else min)(complete,
                                                         key=lambda t: t.value)  # type: ignore[arg-type,return-value]
        parent.log_metric(f"best/{metric}", float(best.value))  # type: ignore[arg-type]
        parent.set_tags({"best_run_id": best.run_id or "", "best_trial": best.number})
        parent.log_params({f"best.{k}": v for k, v in best.params.items()})
    return TuneResult(best, sorted(trials, key=lambda t: t.number), parent.id, study)


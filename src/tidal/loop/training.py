"""Retraining and gating a challenger.

The training data is the endpoint's own labelled traffic: the inputs the prediction log kept
and the labels feedback brought, over a time-aware window (the latest span, or everything
with exponentially decayed weights). The most recent share of it is held out, by time, so the
gate judges challenger and champion on data newer than anything the challenger was fitted
on, as it will meet in production. Both sets become dataset versions, so the challenger's
lineage points at exactly what it learned from.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any

from tidal.errors import InvalidValueError
from tidal.loop.policy import LoopPolicy
from tidal.loop.triggers import window_args
from tidal.store.workspace import Workspace

#: The weight column handed to the pipeline in "decay" mode.
WEIGHT_COLUMN = "sample_weight"


class NotEnoughDataError(InvalidValueError):
    """Too few labelled rows with inputs to retrain on."""


@dataclass(frozen=True)
class TrainingSets:
    train: Any  # DataFrame: inputs, label and, in decay mode, the weight column
    holdout: Any
    details: dict[str, Any] = field(default_factory=dict)


def training_sets(policy: LoopPolicy, now: datetime, *, workspace: Workspace) -> TrainingSets:
    """The labelled rows of the training window, split by time into train and holdout."""
    import numpy as np
    import pandas as pd

    from tidal.monitoring.log_window import read_window

    training = policy.training
    if training.mode == "decay":
        window = read_window(policy.endpoint, end=now, workspace=workspace)
    else:
        window = read_window(policy.endpoint, workspace=workspace,
                             **window_args(training.window, now))
    meta = window.meta
    usable = meta[meta["has_inputs"] & meta["label"].notna() & meta["error"].isna()]
    if len(usable) < training.min_rows:
        raise NotEnoughDataError(
            f"{len(usable)} labelled rows with logged inputs in the training window, fewer "
            f"than training.min_rows = {training.min_rows}", field="training.min_rows")
    frame = window.inputs.loc[usable.index].copy()
    frame[training.label] = list(usable["label"])
    order = np.argsort(usable["timestamp"].to_numpy(), kind="stable")
    frame = frame.iloc[order].reset_index(drop=True)
    times = usable["timestamp"].iloc[order].reset_index(drop=True)
    if training.mode == "decay":
        assert training.half_life is not None
        age = (pd.Timestamp(now) - times).dt.total_seconds().to_numpy()
        frame[WEIGHT_COLUMN] = 0.5 ** (age / training.half_life.total_seconds())
    cut = len(frame) - max(1, round(len(frame) * training.holdout))
    train, holdout = frame.iloc[:cut].reset_index(drop=True), \
        frame.iloc[cut:].reset_index(drop=True)
    if WEIGHT_COLUMN in holdout.columns:
        holdout = holdout.drop(columns=[WEIGHT_COLUMN])
    return TrainingSets(train, holdout, {
        "rows": len(frame), "train_rows": len(train), "holdout_rows": len(holdout),
        "from": times.iloc[0].isoformat(), "to": times.iloc[-1].isoformat(),
        "holdout_from": times.iloc[cut].isoformat(), "mode": training.mode})


def pin_pipeline(policy: LoopPolicy) -> LoopPolicy:
    """``policy`` with the digest of its training pipeline's code as it is now, which
    applying a policy records: the pipeline is imported here (the user applying a policy is
    running their own code), so a typo fails now rather than at the first retraining."""
    from tidal.pipelines.graph import load_pipeline
    from tidal.pipelines.targets import code_digest

    digest = code_digest(load_pipeline(policy.training.pipeline))
    return replace(policy, training=replace(policy.training, code_digest=digest))


def train_challenger(policy: LoopPolicy, sets: TrainingSets, cycle: str, *,
                     workspace: Workspace) -> tuple[Any, dict[str, Any]]:
    """Register the training sets, run the policy's pipeline on the training set and register
    the model its last step returns as the next version of the policy's model. The pipeline
    is imported only while its code on disk is the code recorded when the policy was applied
    (UntrustedCodeError otherwise, before anything is imported or registered)."""
    from tidal.data.versions import register as register_dataset
    from tidal.models.registry import register
    from tidal.pipelines.runner import run_pipeline
    from tidal.pipelines.targets import load_recorded

    training = policy.training
    pipeline = load_recorded(
        training.pipeline, training.code_digest, trust_code=False, field="training.pipeline",
        remedy=f"If you trust the code it names now, apply policy {policy.name!r} again "
               "(tidal loop apply FILE / tidal.loop.apply_policy), which records that code")
    train = register_dataset(f"{policy.name}-train", sets.train, workspace=workspace,
                             description=f"loop {policy.name}: training window")
    holdout = register_dataset(f"{policy.name}-holdout", sets.holdout, workspace=workspace,
                               description=f"loop {policy.name}: time-ordered holdout")
    params = {**training.params, "dataset": train.uri, "label": training.label}
    if training.mode == "decay":
        params["weight"] = WEIGHT_COLUMN
    final = pipeline.build(**pipeline.parameters(params)).order[-1]
    run = run_pipeline(pipeline, params, workspace=workspace)
    model = run.output(final)
    features = _model_inputs(model, sets.train.drop(
        columns=[c for c in (training.label, WEIGHT_COLUMN) if c in sets.train.columns]))
    version = register(policy.model, model, run=run.id, datasets=[train],
                       input_example=features.head(5),
                       description=f"retrained by loop policy {policy.name}",
                       tags={"tidal.loop.policy": policy.name, "tidal.loop.cycle": cycle},
                       workspace=workspace)
    return version, {"train_dataset": train.uri, "holdout_dataset": holdout.uri,
                     "pipeline": training.pipeline, "pipeline_run": run.id,
                     "model_uri": version.uri}


def _model_inputs(model: Any, frame: Any) -> Any:
    """The columns of ``frame`` the fitted model reads, for its signature. Logged traffic
    holds more than a model's inputs (the entity keys an endpoint's feature service looked
    up, for one): a signature that asked requests for them would fail the gate's
    compatibility check against the champion. Estimators fitted on a DataFrame name their
    inputs (scikit-learn's ``feature_names_in_``); other models keep every column."""
    names = getattr(model, "feature_names_in_", None)
    if names is None or not set(names) <= set(frame.columns):
        return frame
    return frame[list(names)]


def gate_challenger(policy: LoopPolicy, version: Any, holdout: Any, *,
                    workspace: Workspace) -> Any:
    """Run the policy's gate on the challenger against the champion, on the holdout; the
    results are stored with the version (``tidal models show``) and returned."""
    from tidal.models.gates import (
        better_than_champion,
        latency_budget,
        signature_compatible,
        validate,
    )

    gate, label = policy.gate, policy.training.label
    gates = [better_than_champion(gate.metric, holdout, label=label, min_delta=gate.min_delta)]
    gates += [better_than_champion(metric, holdout, label=label, min_delta=-tolerance)
              for metric, tolerance in gate.guards.items()]
    gates.append(signature_compatible())
    if gate.latency_ms is not None:
        gates.append(latency_budget(gate.latency_ms))
    return validate(version.uri, gates, workspace=workspace)

"""``tidal demo``: the closed loop end to end on one machine, in a few minutes.

A *generated* retail click stream (``tidal.examples.retail``; no real data) goes through every
stage of Tidal, on the workspace's embedded stores:

1. the stream's first day of impressions becomes a versioned dataset, checked by
   expectations;
2. the shop's shoppers and products go into the feature store (definitions applied, values
   materialized online), and the first day is joined point-in-time with their features into
   a training set;
3. two candidates (gradient boosting, logistic regression) are trained and tracked as runs
   under one parent and compared; the better one is registered with its signature, passes its
   gates and becomes the champion;
4. an endpoint serves the champion on 127.0.0.1, from a server in this process, reading the
   stored features online by key, and a loop policy watches it;
5. the next hours of the stream are sent to the endpoint over HTTP, hour by hour, and the
   clicks come back as feedback;
6. at a known hour the shoppers' behaviour changes, and the loop's drift trigger fires;
7. the loop retrains a challenger on the endpoint's own labelled traffic, gates it against the
   champion, rolls it out as a canary judged on live traffic at each step, and promotes it;
8. a summary: accuracy before and after the change for both champions, the loop's decisions,
   an HTML drift report and the commands that explore what the demo left in the workspace.

``--quick`` replays a shorter, thinner stream (for CI); every stage still happens.
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from tidal.cli import render
from tidal.cli.context import ArtifactsOption, WorkspaceOption, open_workspace, state_of

if TYPE_CHECKING:
    import pandas as pd
    from rich.console import Console

    from tidal.data.versions import DatasetVersion
    from tidal.examples.retail.replay import Traffic
    from tidal.loop.records import Decision
    from tidal.store.workspace import Workspace

EXPERIMENT = "retail-demo"
PARENT_NAME = "retail-candidates"
DATASET = "retail-clicks"
TRAINING_SET = "retail-training"
MODEL_NAME = "retail-ctr"
ENDPOINT = "retail"
POLICY = "retail-loop"
PIPELINE = "tidal.examples.retail.pipeline:retrain"
KINDS = ("boosting", "logistic")
STAGES = 8

#: What the demo needs beyond Tidal's own dependencies: (module, package) pairs.
_NEEDS = (("sklearn", "scikit-learn"), ("skops", "skops"), ("scipy", "scipy"),
          ("uvicorn", "uvicorn"), ("starlette", "starlette"), ("orjson", "orjson"),
          ("httpx", "httpx"), ("prometheus_client", "prometheus-client"))

#: The comparison's columns: (metric, 'max' or 'min', heading, format).
COMPARED = (
    ("accuracy", "max", "accuracy", "{:.4f}"),
    ("roc_auc", "max", "roc_auc", "{:.4f}"),
    ("f1", "max", "f1", "{:.4f}"),
    ("log_loss", "min", "log_loss", "{:.4f}"),
    ("fit_seconds", "min", "fit s", "{:.2f}"),
    ("predict_ms_per_row", "min", "predict\nms/row", "{:.4f}"),
)


@dataclass(frozen=True)
class Plan:
    """The shape of a demo: the stream's first ``history_hours`` train the first champion;
    then at most ``live_hours`` are sent to the endpoint, the shoppers changing behaviour
    after ``drift_after`` of them; ``rows_per_request`` impressions go in one request; the
    replay stops ``hours_after_promotion`` hours after the loop promotes a challenger."""

    history_hours: int
    live_hours: int
    drift_after: int
    rows_per_hour: int
    rows_per_request: int
    hours_after_promotion: int

    @property
    def drift_hour(self) -> int:
        return self.history_hours + self.drift_after

    @property
    def requests_per_hour(self) -> int:
        return math.ceil(self.rows_per_hour / self.rows_per_request)

    @property
    def test_hours(self) -> int:
        """The last hours of the history, kept out of the candidates' training to test them."""
        return max(2, self.history_hours // 6)


FULL = Plan(history_hours=24, live_hours=24, drift_after=6, rows_per_hour=1600,
            rows_per_request=8, hours_after_promotion=3)
QUICK = Plan(history_hours=12, live_hours=14, drift_after=2, rows_per_hour=1000,
             rows_per_request=10, hours_after_promotion=1)


def policy_dict(plan: Plan, kind: str = "boosting") -> dict[str, Any]:
    """The demo's loop policy: windows count requests (the replay compresses an hour of the
    stream into seconds of wall time), so each trigger and the training set see the latest
    hour of traffic. An hour holds at least 1,000 rows, where drift is judged by distances
    rather than p-values, which on 9 columns would flag some column by chance every few
    hours."""
    hour = plan.requests_per_hour
    half = plan.rows_per_hour // 2
    return {
        "name": POLICY, "endpoint": ENDPOINT, "model": MODEL_NAME,
        "training": {"pipeline": PIPELINE, "label": "clicked", "mode": "sliding",
                     "window": hour, "holdout": 0.25, "min_rows": half,
                     "params": {"kind": kind}},
        "triggers": [
            {"kind": "drift", "window": hour, "threshold": 0.4, "min_rows": half},
            {"kind": "performance", "metric": "accuracy", "threshold": 0.7, "window": hour,
             "min_rows": half}],
        "gate": {"metric": "accuracy", "min_delta": 0.02, "guards": {"roc_auc": 0.02}},
        "rollout": {"steps": [10, 50, 100], "min_duration": "1ms", "max_duration": "10m",
                    "min_requests": 5, "max_error_rate": 0.01, "metric": "accuracy",
                    "tolerance": 0.05, "min_labelled": 20},
        "cooldown": "30m", "interval": "2s"}


# -- output -----------------------------------------------------------------------------------

class Show:
    """The demo's timeline on the console: numbered stage headings, then one line per event,
    each with the seconds since the start, printed as it happens."""

    def __init__(self, out: Console) -> None:
        self.out = out
        self.started = time.perf_counter()
        self.stage_number = 0

    @property
    def elapsed(self) -> float:
        return time.perf_counter() - self.started

    def stage(self, title: str) -> None:
        from rich.text import Text

        self.stage_number += 1
        self.out.print()
        self.out.rule(Text.assemble((f"{self.stage_number}/{STAGES}  ", "bold cyan"),
                                    (title, "bold")), align="left", style="dim")

    def line(self, *parts: Any) -> None:
        """``parts`` are plain strings or (text, style) pairs; nothing is read as markup."""
        from rich.text import Text

        self.out.print(Text.assemble((f"{self.elapsed:6.1f}s  ", "dim"), *parts),
                       soft_wrap=False)

    def decision(self, decision: Decision) -> None:
        from rich.text import Text

        from tidal.cli.loop import decision_row

        _, kind, outcome, model, summary = decision_row(decision)
        self.line(("loop ", "dim"), (kind, "bold"), " ", Text.from_markup(outcome),
                  ("  " + model if model != render.MISSING else "", "cyan"), "  ", summary)


# -- the command ------------------------------------------------------------------------------

def demo(
    ctx: typer.Context,
    quick: Annotated[bool, typer.Option(
        "--quick", help="A shorter, thinner stream (for CI); every stage still happens.")
    ] = False,
    seed: Annotated[int, typer.Option(
        "--seed", help="Seed of the generated stream and of the models.")] = 7,
    workspace: WorkspaceOption = None,
    artifacts: ArtifactsOption = None,
) -> None:
    """Run the closed loop end to end on a generated retail click stream: a validated
    dataset, features, two tracked candidates, a champion served on 127.0.0.1, live traffic
    with feedback, drift, retraining, a canary rollout and promotion."""
    import importlib.util

    from tidal.errors import missing_dependency

    for module, package in _NEEDS:
        try:
            found = importlib.util.find_spec(module) is not None
        except ValueError:  # a module set to None in sys.modules
            found = False
        if not found:
            raise missing_dependency(package, "demo", "tidal demo")

    plan = QUICK if quick else FULL
    ws = open_workspace(ctx, workspace, artifacts)
    prefix = state_of(ctx).command_prefix()
    _refuse_a_used_workspace(ws, prefix)
    show = Show(render.console())
    with _one_openmp_thread():
        outcome = Scenario(ws, plan, seed, show).run()
    _summary(show, ws, plan, outcome, prefix)


def _refuse_a_used_workspace(ws: Workspace, prefix: str) -> None:
    """The demo's loop keeps state (its cooldown, its phase) in the workspace, so a second
    demo in the same workspace would not show a fresh loop."""
    from tidal.errors import ConfigError
    from tidal.loop.records import list_policies

    if any(p.name == POLICY for p in list_policies(workspace=ws)):
        raise ConfigError(
            f"the workspace {ws.location} already holds a run of the demo (loop policy "
            f"{POLICY}); explore it with '{prefix} loop history {ENDPOINT}', or run the demo "
            f"again in a new workspace: tidal demo -w NEW_FOLDER", field="workspace")


@contextmanager
def _one_openmp_thread() -> Iterator[None]:
    """Fit and predict on one OpenMP thread: scikit-learn's gradient boosting spins its
    threads while waiting, which on a small machine shared with the demo's own server makes
    a one-second fit take ten. The variable is read when OpenMP loads; threadpoolctl covers a
    process where it is already loaded (the demo's tests)."""
    set_here = "OMP_NUM_THREADS" not in os.environ
    if set_here:
        os.environ["OMP_NUM_THREADS"] = "1"
    try:
        from sklearn.ensemble import HistGradientBoostingClassifier  # noqa: F401 (loads it)
        from threadpoolctl import threadpool_limits

        with threadpool_limits(limits=1, user_api="openmp"):
            yield
    finally:
        if set_here:
            os.environ.pop("OMP_NUM_THREADS", None)


# -- the scenario -----------------------------------------------------------------------------

@dataclass
class Candidate:
    kind: str
    run_id: str
    metrics: dict[str, float]
    model: Any


@dataclass
class LiveHour:
    hour: int  # since the stream's start
    changed: bool  # after the change of behaviour
    traffic: Traffic


@dataclass
class Outcome:
    """What the scenario did, for the summary."""

    stream: Any
    hours: Any  # each row's hour since the stream's start
    history: Any  # the first day's training set: impressions with their stored features
    dataset: DatasetVersion  # that training set
    first: Candidate
    first_version: int
    live: list[LiveHour] = field(default_factory=list)
    changed_at: datetime | None = None  # wall time the first changed hour was sent
    retrained_after: int | None = None  # the hour after which the loop retrained
    promoted_after: int | None = None  # the hour after which it promoted


class Scenario:
    def __init__(self, ws: Workspace, plan: Plan, seed: int, show: Show) -> None:
        self.ws, self.plan, self.seed, self.show = ws, plan, seed, show

    def run(self) -> Outcome:
        stream, hours, impressions = self._data()
        history, dataset = self._features(impressions)
        first, version = self._candidates(history, hours, dataset)
        outcome = Outcome(stream, hours, history, dataset, first, version)
        self._live(outcome)
        return outcome

    # -- 1. data ---------------------------------------------------------------------------------

    def _data(self) -> tuple[Any, Any, Any]:
        import tidal
        from tidal.examples.retail.replay import hour_of
        from tidal.examples.retail.stream import START, STORED_FEATURES, generate

        plan, show = self.plan, self.show
        show.stage("Data: a generated click stream, versioned and validated")
        total = plan.history_hours + plan.live_hours
        with show.out.status("Generating the stream…"):
            stream = generate(hours=total, rows_per_hour=plan.rows_per_hour,
                              drift_hour=plan.drift_hour, seed=self.seed)
        hours = hour_of(stream)
        change = START + timedelta(hours=plan.drift_hour)
        show.line("Generated ", (f"{len(stream):,}", "bold"), " impressions of a retail shop "
                  f"over {total} hours ({plan.rows_per_hour}/hour, seed {self.seed}): ",
                  ("synthetic data, not real shoppers", "bold yellow"), ".")
        show.line(f"The shoppers' behaviour changes at hour {plan.drift_hour} "
                  f"({change:%a %H:%M}); the model will not be told.")
        # What the shop logs of an impression: the shopper's and product's stored features
        # are not in it, they come from the feature store.
        impressions = stream[hours < plan.history_hours].drop(
            columns=STORED_FEATURES).reset_index(drop=True)
        with show.out.status("Registering and validating the first day…"):
            dataset = tidal.datasets.register(
                DATASET, impressions, workspace=self.ws,
                description=f"the first {plan.history_hours} hours of impressions of the demo's "
                            "generated (synthetic) retail click stream")
            report = dataset.validate(_expectations(), raise_on_failure=True)
        show.line("Dataset ", (dataset.uri, "cyan"), f": the first {plan.history_hours} hours "
                  f"of impressions, {dataset.num_rows:,} rows, click rate "
                  f"{impressions['clicked'].mean():.1%}; validation: ",
                  (f"{len(report.results)}/{len(report.results)} expectations passed",
                   "green"))
        return stream, hours, impressions

    # -- 2. features -----------------------------------------------------------------------------

    def _features(self, impressions: Any) -> tuple[Any, DatasetVersion]:
        import tidal
        from tidal.examples.retail import features

        show = self.show
        show.stage("Features: the shop's shoppers and products in the feature store")
        with show.out.status("Applying the feature definitions and materializing them…"):
            found = features.set_up(self.ws)
        show.line("Applied ", (f"{found.applied} definitions", "bold"), ": entities shopper "
                  "(user_id) and product (product_id), views shopper_stats (user_ctr) and "
                  "product_stats (popularity) over datasets ", (found.shoppers.uri, "cyan"),
                  " and ", (found.products.uri, "cyan"), ", feature service ",
                  (features.SERVICE, "bold"))
        written = found.materialized
        show.line(f"Materialized {written['shopper_stats']:,} shoppers and "
                  f"{written['product_stats']:,} products into the online store, where the "
                  "endpoint will look them up by key.")
        with show.out.status("Joining the first day with its features…"):
            started = time.perf_counter()
            history = features.training_frame(found.store, impressions)
            seconds = time.perf_counter() - started
            dataset = tidal.datasets.register(
                TRAINING_SET, history, workspace=self.ws,
                description=f"{DATASET} joined point-in-time with feature service "
                            f"{features.SERVICE}")
        show.line("Training set ", (dataset.uri, "cyan"), f": {len(history):,} impressions "
                  "joined point-in-time with their shopper's and product's features (values "
                  f"as of each impression's time) in {seconds * 1000:.0f} ms.")
        return history, dataset

    # -- 3. candidates ---------------------------------------------------------------------------

    def _candidates(self, history: Any, hours: Any,
                    dataset: DatasetVersion) -> tuple[Candidate, int]:
        import tidal

        plan, show = self.plan, self.show
        show.stage("Candidates: two models, tracked, compared, the better one made champion")
        cut = plan.history_hours - plan.test_hours
        in_history = hours[:len(history)]
        train = history[in_history < cut].reset_index(drop=True)
        test = history[in_history >= cut].reset_index(drop=True)
        show.line(f"Training on hours 0-{cut - 1} ({len(train):,} rows), testing on hours "
                  f"{cut}-{plan.history_hours - 1} ({len(test):,} rows): a split by time, as "
                  "in production.")
        candidates = []
        with tidal.start_run(EXPERIMENT, name=PARENT_NAME, workspace=self.ws, params={
                "dataset": dataset.uri, "data": "generated", "seed": self.seed,
                "train_rows": len(train), "test_rows": len(test),
                "models": ",".join(KINDS)}, tags={"purpose": "demo"}) as parent:
            for number, kind in enumerate(KINDS, start=1):
                with show.out.status(f"Training {kind} ({number} of {len(KINDS)})…"):
                    candidate = _train(kind, train, test, parent, dataset, self.seed)
                candidates.append(candidate)
                show.line(("✓ ", "green"), f"{kind:<9} accuracy "
                          f"{candidate.metrics['accuracy']:.4f}  roc_auc "
                          f"{candidate.metrics['roc_auc']:.4f}  fit "
                          f"{candidate.metrics['fit_seconds']:.2f}s  run ",
                          (candidate.run_id[:8], "dim"))
            winner = max(candidates, key=lambda c: (c.metrics["accuracy"],
                                                    c.metrics["roc_auc"]))
            parent.set_tags({"winner": winner.kind, "winner_run_id": winner.run_id})
            parent.log_metrics({f"winner/{k}": winner.metrics[k]
                                for k in ("accuracy", "roc_auc", "f1", "log_loss")})
        _print_comparison(show.out, candidates, winner, len(test))
        with show.out.status("Registering the winner and running its gates…"):
            version, passed = _register(winner, test, self.ws)
        show.line("Registered ", (f"models:/{MODEL_NAME}/{version}", "cyan"),
                  f" with its signature: {passed}")
        return winner, version

    # -- 4 to 7. serving, traffic, drift and the loop -------------------------------------------

    def _live(self, outcome: Outcome) -> None:
        import tidal
        from tidal.cli.demo_traffic import LocalServer
        from tidal.examples.retail.features import SERVICE
        from tidal.loop.controller import Controller
        from tidal.loop.records import apply_policy
        from tidal.models.stages import transition

        plan, show, ws = self.plan, self.show, self.ws
        show.stage("Serving: the champion behind an endpoint, watched by a loop policy")
        tidal.serving.deploy(ENDPOINT, {f"models:/{MODEL_NAME}@champion": 100},
                             feature_service=SERVICE, workspace=ws)
        transition(f"models:/{MODEL_NAME}/{outcome.first_version}", "deployed",
                   reason=f"serves endpoint {ENDPOINT}", workspace=ws)
        policy = apply_policy(policy_dict(plan, outcome.first.kind), workspace=ws)
        server = LocalServer(ws, ENDPOINT)
        with show.out.status("Starting the server on 127.0.0.1…"):
            server.start()
        try:
            show.line("Endpoint ", (ENDPOINT, "bold"), f" → models:/{MODEL_NAME}@champion "
                      "(100%), served at ", (f"{server.url}/predict/{ENDPOINT}", "cyan"),
                      " by a server in this process (127.0.0.1 only); requests carry the "
                      "keys and the impression, and the server adds the stored features of "
                      "feature service ", (SERVICE, "bold"), " from the online store")
            show.line("Loop policy ", (POLICY, "bold"), ": drift (≥40% of input columns) or "
                      "accuracy below 0.7 over the latest hour → retrain "
                      f"{outcome.first.kind} on that hour's labelled traffic → gate (+0.02 "
                      "accuracy on the newest quarter) → canary 10% → 50% → 100%, each step "
                      "judged on live traffic")
            show.stage("Live traffic: the stream replayed over HTTP, clicks sent back as "
                       "feedback")
            show.line(f"Each hour: {plan.rows_per_hour} impressions in "
                      f"{plan.requests_per_hour} requests of {plan.rows_per_request}, then "
                      "their clicks as feedback; then the loop controller ticks.")
            controller = Controller(policy.name, workspace=ws,
                                    on_decision=lambda d: self._on_decision(d, outcome))
            try:
                self._replay(outcome, server, controller)
            finally:
                controller.close()
        finally:
            with show.out.status("Stopping the server…"):
                server.stop()
            show.line(f"Server on {server.url} stopped.")

    def _on_decision(self, decision: Decision, outcome: Outcome) -> None:
        if decision.kind == "retrain" and self.show.stage_number < 7:
            self.show.stage("The loop: retrain, gate, canary, promote")
        self.show.decision(decision)

    def _replay(self, outcome: Outcome, server: Any, controller: Any) -> None:
        from tidal.examples.retail.stream import START

        plan, show = self.plan, self.show
        stream, hours = outcome.stream, outcome.hours
        served = server.served_versions()
        for hour in range(plan.history_hours, plan.history_hours + plan.live_hours):
            changed = hour >= plan.drift_hour
            if changed and outcome.changed_at is None:
                show.stage("The change: shoppers behave differently (as generated)")
                show.line(f"From hour {hour} more shoppers come on mobile, prices and "
                          "discounts rise, the list position matters less and tastes move "
                          "between categories.")
                outcome.changed_at = datetime.now(UTC)
            with show.out.status(f"Sending hour {hour}…"):
                traffic = server.replay(stream[hours == hour], plan.rows_per_request)
            outcome.live.append(LiveHour(hour, changed, traffic))
            moment = START + timedelta(hours=hour)
            show.line(f"hour {hour} ({moment:%a %H:%M}) ", ("▲ " if changed else "", "yellow"),
                      f"{traffic.requests} requests · accuracy ",
                      (f"{traffic.accuracy:.3f}", "bold"), " · ", _shares(traffic),
                      (f" · {traffic.failed} failed" if traffic.failed else "", "red"))
            with show.out.status("The loop controller is ticking…"):
                decisions = controller.tick()
            for decision in decisions:
                if decision.kind == "retrain" and decision.outcome == "trained":
                    outcome.retrained_after = hour
                if decision.kind == "promote" and decision.outcome == "done":
                    outcome.promoted_after = hour
            wanted = _routed_versions(self.ws)
            if wanted != served:
                with show.out.status("Waiting for the server to follow the new routes…"):
                    server.follow(wanted)
                served = wanted
            if outcome.promoted_after is not None and \
                    hour - outcome.promoted_after >= plan.hours_after_promotion:
                break
            if any((d.kind, d.outcome) in _SETTLED for d in decisions):
                break  # the loop settled without a new champion; the summary says so


#: Decisions after which this demo's loop will not change the champion any more.
_SETTLED = {("gate", "rejected"), ("rollback", "done"), ("retrain", "skipped"),
            ("retrain", "failed"), ("trigger", "cooldown")}


def _routed_versions(ws: Workspace) -> set[int]:
    """The versions the endpoint's routes point at in the registry now."""
    import tidal

    endpoint = tidal.serving.get_endpoint(ENDPOINT, workspace=ws)
    return {tidal.models.get_version(r.uri, workspace=ws).version
            for r in endpoint.config.routes}


def _shares(traffic: Traffic) -> str:
    from tidal.examples.retail.replay import shares

    return shares(traffic) if len(traffic.by_version) > 1 else \
        " · ".join(f"v{v} 100%" for v in traffic.by_version)


# -- data and models --------------------------------------------------------------------------

def _expectations() -> list[Any]:
    from tidal.data.validation import expect
    from tidal.examples.retail.stream import (
        CATEGORIES,
        DEVICES,
        LABEL,
        REQUEST_COLUMNS,
        SEGMENTS,
    )

    return [
        expect.row_count(min=1),
        *[expect.not_null(column) for column in (*REQUEST_COLUMNS, LABEL)],
        expect.in_set("segment", SEGMENTS), expect.in_set("category", CATEGORIES),
        expect.in_set("device", DEVICES), expect.in_set(LABEL, (0, 1)),
        expect.between("price", min=0.01), expect.between("discount", 0.0, 0.9),
        expect.between("position", 1, 10), expect.between("hour", 0, 23),
    ]


def _train(kind: str, train: pd.DataFrame, test: pd.DataFrame, parent: Any,
           dataset: DatasetVersion, seed: int) -> Candidate:
    import numpy as np
    from sklearn.metrics import (
        accuracy_score,
        classification_report,
        confusion_matrix,
        f1_score,
        log_loss,
        roc_auc_score,
    )

    import tidal
    from tidal.examples.retail.pipeline import make_model
    from tidal.examples.retail.stream import FEATURES, LABEL

    model = make_model(kind, seed=seed)
    classifier = model.steps[-1][1]
    hyper = classifier.get_params(deep=False)
    important = ("learning_rate", "max_iter", "max_leaf_nodes", "l2_regularization", "C")
    params: dict[str, Any] = {"kind": kind, "model": type(classifier).__name__,
                              "features": len(FEATURES), "train_rows": len(train),
                              "test_rows": len(test), "seed": seed, "data": "generated"}
    params.update({key: hyper[key] for key in important if key in hyper})
    with tidal.start_run(name=kind, parent=parent, workspace=parent.workspace, params=params,
                         tags={"model_family": kind}) as run:
        run.log_input(dataset)
        started = time.perf_counter()
        model.fit(train[FEATURES], train[LABEL])
        fit_seconds = time.perf_counter() - started
        started = time.perf_counter()
        proba = model.predict_proba(test[FEATURES])
        predict_seconds = time.perf_counter() - started
        truth = test[LABEL].to_numpy()
        predicted = model.classes_[np.argmax(proba, axis=1)]
        metrics = {key: float(value) for key, value in {
            "accuracy": accuracy_score(truth, predicted),
            "roc_auc": roc_auc_score(truth, proba[:, 1]),
            "f1": f1_score(truth, predicted),
            "log_loss": log_loss(truth, proba),
            "fit_seconds": fit_seconds,
            "predict_ms_per_row": predict_seconds * 1000 / len(test),
        }.items()}
        run.log_metrics(metrics)
        run.log_dict(classification_report(truth, predicted, output_dict=True),
                     "classification_report.json")
        matrix = confusion_matrix(truth, predicted)
        run.log_text("actual \\ predicted,0,1\n" + "".join(
            f"{label},{row[0]},{row[1]}\n" for label, row in zip((0, 1), matrix, strict=True)),
            "confusion_matrix.csv")
    return Candidate(kind, run.id, metrics, model)


def _register(winner: Candidate, test: pd.DataFrame, ws: Workspace) -> tuple[int, str]:
    """Register the winner, gate it and make it the champion; its version and what passed."""
    import tidal
    from tidal.examples.retail.stream import FEATURES, LABEL
    from tidal.models import (
        better_than_champion,
        latency_budget,
        metric_threshold,
        size_limit,
        validate,
    )
    from tidal.models.stages import transition

    version = tidal.models.register(
        MODEL_NAME, winner.model, run=winner.run_id, input_example=test[FEATURES].head(5),
        description=f"{winner.kind}, the better of the demo's two candidates", workspace=ws)
    tidal.models.update_model(MODEL_NAME, workspace=ws, purpose=(
        "Demonstration only: predicts whether a shopper clicks a product in the demo's "
        "generated (synthetic) retail stream"))
    holdout = test[[*FEATURES, LABEL]]
    report = validate(version.uri, [
        metric_threshold("accuracy", minimum=0.8), metric_threshold("roc_auc", minimum=0.85),
        better_than_champion("accuracy", holdout, label=LABEL),
        latency_budget(200.0, repeats=50), size_limit(50_000_000)], workspace=ws)
    if not report.passed:
        from tidal.errors import TidalError

        failed = "; ".join(r.reasons[0] for r in report.failed)
        raise TidalError(f"{version.uri} failed its gates, so the demo cannot go on: {failed}")
    transition(version.uri, "approved", reason="the better candidate; passed its gates",
               workspace=ws)
    tidal.models.set_alias(MODEL_NAME, "champion", version.version, workspace=ws,
                           reason=f"the demo's better candidate (run {winner.run_id[:8]})")
    return version.version, (f"{len(report.results)} gates passed (accuracy, roc_auc, "
                             "latency, size) → validated → approved → @champion")


def _print_comparison(out: Console, candidates: list[Candidate], winner: Candidate,
                      n_test: int) -> None:
    from rich import box
    from rich.table import Table
    from rich.text import Text

    table = Table(title=f"Model comparison (test hours, {n_test:,} rows)", title_justify="left",
                  caption="best value per column in green; ★ the winner (highest accuracy)",
                  caption_justify="left", box=box.SIMPLE_HEAD, padding=(0, 1), show_edge=False,
                  collapse_padding=True)
    table.add_column("model", style="bold", no_wrap=True)
    for _, _, heading, _ in COMPARED:
        table.add_column(heading, justify="right")
    best = {}
    for key, goal, _, _ in COMPARED:
        values = [c.metrics[key] for c in candidates]
        best[key] = min(values) if goal == "min" else max(values)
    for c in candidates:
        table.add_row(("★ " if c is winner else "  ") + c.kind, *[
            Text(fmt.format(c.metrics[key]),
                 style="bold green" if c.metrics[key] == best[key] else "")
            for key, _, _, fmt in COMPARED])
    out.print()
    out.print(table)
    out.print(Text.assemble(("Winner: ", "bold"), (winner.kind, "bold green"),
                            f" (accuracy {winner.metrics['accuracy']:.4f}, run "
                            f"{winner.run_id})"), soft_wrap=True)


# -- 8. summary -------------------------------------------------------------------------------

def _summary(show: Show, ws: Workspace, plan: Plan, outcome: Outcome, prefix: str) -> None:
    from rich.text import Text

    import tidal
    from tidal.cli.loop import timeline
    from tidal.loop.records import history

    out = show.out
    show.stage("Summary")
    champion = tidal.models.get_version(f"models:/{MODEL_NAME}@champion", workspace=ws)
    promoted = champion.version != outcome.first_version
    if promoted:
        show.line("The loop replaced the champion by itself: ",
                  (f"models:/{MODEL_NAME}/{outcome.first_version}", "cyan"), " → ",
                  (champion.uri, "bold cyan"), f" ({champion.stage}), now serving 100% of "
                  f"endpoint {ENDPOINT}.")
    else:
        show.line(("The loop did not replace the champion in this run; its decisions below "
                   "say why.", "yellow"))
    with out.status("Scoring both champions on the generated stream…"):
        table = _accuracy_table(ws, plan, outcome, champion if promoted else None)
    out.print()
    out.print(table)
    served = _served_accuracy(outcome)
    if served:
        out.print(Text("Accuracy of the answers the endpoint served: " + served + ".",
                       style="dim"), soft_wrap=False)

    out.print()
    decisions = history(ENDPOINT, workspace=ws)
    out.print(timeline(decisions, caption=f"the loop's decisions ({prefix} loop history "
                                          f"{ENDPOINT})"))
    report = _drift_report(ws, outcome)
    out.print()
    if report is not None:
        out.print(Text.assemble(("Drift report: ", "bold"), str(report),
                                " (the first day against the traffic after the change; open "
                                "it in a browser)"), soft_wrap=True)
    out.print(Text.assemble(("Workspace: ", "bold"), ws.location), soft_wrap=True)
    out.print(Text.assemble(("Data: ", "bold"), "generated by tidal.examples.retail.stream; "
                            "synthetic, not real shoppers"), soft_wrap=True)
    out.print("Explore what the demo left behind:", style="bold")
    for command in (f"{prefix} runs list -e {EXPERIMENT}",
                    f"{prefix} datasets list",
                    f"{prefix} features list",
                    f"{prefix} models versions {MODEL_NAME}",
                    f"{prefix} models show {MODEL_NAME}@champion",
                    f"{prefix} endpoints history {ENDPOINT}",
                    f"{prefix} loop history {ENDPOINT}",
                    f"{prefix} loop show {POLICY}"):
        out.print(f"  {command}", markup=False, soft_wrap=True)
    out.print("Run the loop by hand (tidal serve, tidal loop run, a replay of the stream): "
              "examples/retail/README.md", markup=False, soft_wrap=True)
    minutes, seconds = divmod(int(round(show.elapsed)), 60)
    out.print(Text.assemble(("Done in ", "bold"), (f"{minutes}m {seconds:02d}s", "bold"),
                            f" ({'quick' if plan is QUICK else 'full'} demo)."))


def _accuracy_table(ws: Workspace, plan: Plan, outcome: Outcome, new: Any) -> Any:
    """Both champions scored on the generated stream: the live hours before the change, and
    the hours after the loop's retraining (which no model was trained on)."""
    import numpy as np
    from rich.text import Text

    import tidal
    from tidal.examples.retail.stream import FEATURES, LABEL

    stream, hours = outcome.stream, outcome.hours
    end = plan.history_hours + plan.live_hours
    before = stream[(hours >= plan.history_hours) & (hours < plan.drift_hour)]
    first_after = (outcome.retrained_after + 1) if outcome.retrained_after is not None \
        else plan.drift_hour
    after = stream[(hours >= first_after) & (hours < end)]
    new_data = [d.uri for d in new.datasets()] if new is not None else []
    table = render.listing(
        caption=f"before: hours {plan.history_hours}-{plan.drift_hour - 1} ({len(before):,} "
                f"rows); after: hours {first_after}-{end - 1} ({len(after):,} rows), which "
                "no model was trained on" + (f"; v{new.version} learned from {new_data[0]}"
                                              if new_data else ""))
    table.title = "Accuracy on the generated stream, before and after the change"
    table.title_justify = "left"
    for name, justify in (("model", "left"), ("", "left"), ("trained on", "left"),
                          ("before", "right"), ("after", "right")):
        table.add_column(name, justify=justify)  # type: ignore[arg-type]

    def accuracy(model: Any, frame: Any) -> str:
        if not len(frame):
            return render.MISSING
        return f"{float(np.mean(model.predict(frame[FEATURES]) == frame[LABEL])):.3f}"

    old = outcome.first.model
    table.add_row(f"v{outcome.first_version} {outcome.first.kind}", "first champion",
                  f"hours 0-{plan.history_hours - plan.test_hours - 1}",
                  accuracy(old, before), accuracy(old, after))
    if new is not None:
        loaded = tidal.models.load(new.uri, workspace=ws)
        table.add_row(Text(f"v{new.version} {outcome.first.kind}", style="bold"),
                      Text("champion now", style="bold"),
                      f"hour {outcome.retrained_after}, live traffic",
                      accuracy(loaded, before), Text(accuracy(loaded, after), style="bold"))
    return table


def _served_accuracy(outcome: Outcome) -> str:
    from tidal.examples.retail.replay import Traffic

    periods: list[tuple[str, Traffic]] = []
    spans = (("before the change", lambda h: not h.changed),
             ("after it, until the loop promoted", lambda h: h.changed and (
                 outcome.promoted_after is None or h.hour <= outcome.promoted_after)),
             ("after the promotion", lambda h: outcome.promoted_after is not None
              and h.hour > outcome.promoted_after))
    for label, wanted in spans:
        total = Traffic()
        for hour in outcome.live:
            if wanted(hour):
                total.add(hour.traffic)
        if total.answered:
            periods.append((label, total))
    return "; ".join(f"{label} {traffic.accuracy:.3f} ({traffic.answered:,} rows)"
                     for label, traffic in periods)


def _drift_report(ws: Workspace, outcome: Outcome) -> Path | None:
    """An HTML drift report: the first champion's training day against the inputs the
    server logged after the change."""
    from tidal.examples.retail.stream import FEATURES
    from tidal.monitoring.drift import drift
    from tidal.monitoring.html_report import write_drift_html
    from tidal.monitoring.log_window import read_window

    if outcome.changed_at is None:
        return None
    current = read_window(ENDPOINT, start=outcome.changed_at, workspace=ws).inputs
    if current.empty:
        return None
    reference = outcome.history[FEATURES]
    current = current[[c for c in FEATURES if c in current.columns]]
    report = drift(reference, current)
    return write_drift_html(
        Path(ws.settings.home) / "reports" / "retail-drift.html", report, reference, current,
        title=f"Retail demo: {outcome.dataset.uri} against the traffic after the change "
              "(generated data)")

"""``tidal demo``: a real, tracked comparison of three classifiers, in seconds.

Trains a scaled logistic regression, a random forest and a histogram gradient boosting
model on scikit-learn's bundled breast-cancer dataset (no download), each in its own run of
the "demo" experiment, all nested under one "demo-comparison" run. Each run gets the model's
hyperparameters, the dataset's name and sizes, test-set metrics, timing, learning curves
where the model has them, and artifacts: a classification report (JSON), the confusion
matrix and feature importances (CSV). The training split is a dataset version every run
reads, and the winner is registered as a model version with its signature, passes its gates,
and becomes the model's champion, so the registry can be explored too.
"""

from __future__ import annotations

import io
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Annotated, Any

import typer

from tidal.cli import render
from tidal.cli.context import ArtifactsOption, WorkspaceOption, open_workspace, state_of

if TYPE_CHECKING:
    import numpy as np
    import pandas as pd
    from rich.console import Console

    from tidal.data.versions import DatasetVersion
    from tidal.store.workspace import Workspace
    from tidal.tracking.run import ActiveRun

EXPERIMENT = "demo"
PARENT_NAME = "demo-comparison"
DATASET = "breast_cancer"
TEST_SIZE = 0.25
MODEL_NAME = "breast-cancer"

#: The comparison's columns: (metric, 'max' or 'min', heading, format).
SUMMARY = (
    ("accuracy", "max", "accuracy", "{:.4f}"),
    ("f1", "max", "f1", "{:.4f}"),
    ("roc_auc", "max", "roc_auc", "{:.4f}"),
    ("log_loss", "min", "log_loss", "{:.4f}"),
    ("fit_seconds", "min", "fit s", "{:.3f}"),
    ("predict_ms_per_row", "min", "predict\nms/row", "{:.4f}"),
)


@dataclass
class Data:
    x_train: np.ndarray
    x_test: np.ndarray
    y_train: np.ndarray
    y_test: np.ndarray
    feature_names: list[str]
    target_names: list[str]

    def train_frame(self) -> pd.DataFrame:
        """The training split as a table: the features by name, and the target."""
        import pandas as pd

        frame = pd.DataFrame(self.x_train, columns=self.feature_names)
        frame["target"] = self.y_train
        return frame

    @property
    def sizes(self) -> dict[str, int]:
        return {"n_train": len(self.y_train), "n_test": len(self.y_test),
                "n_features": self.x_train.shape[1]}


@dataclass
class ModelSpec:
    name: str
    build: Callable[[], Any]
    #: Hyperparameters worth logging, read back with get_params() from the fitted estimator.
    important: tuple[str, ...]
    curves: Callable[[Any, Data], dict[str, list[float]]] | None = None
    importances: Callable[[Any, Data], str] | None = None
    importances_file: str = "feature_importances.csv"


@dataclass
class Result:
    name: str
    run_id: str
    metrics: dict[str, float] = field(default_factory=dict)
    model: Any = None


def demo(
    ctx: typer.Context,
    seed: Annotated[int, typer.Option(
        "--seed", help="Random seed of the train/test split and of the models.")] = 42,
    workspace: WorkspaceOption = None,
    artifacts: ArtifactsOption = None,
) -> None:
    """Train three classifiers on a bundled dataset, track every run, and compare them."""
    try:
        import sklearn  # noqa: F401
    except ImportError:
        from tidal.errors import missing_dependency

        raise missing_dependency("scikit-learn", "demo", "tidal demo") from None
    from rich.text import Text

    import tidal

    ws = open_workspace(ctx, workspace, artifacts)
    out = render.console()
    with out.status("Loading the breast-cancer dataset…"):
        data = _load(seed)
    total = len(data.y_train) + len(data.y_test)
    out.print(Text.assemble(("Tidal demo", "bold"),
                            ": three scikit-learn classifiers, each in a tracked run"))
    out.print(f"Data: {DATASET}, {total} rows × {data.x_train.shape[1]} features; "
              f"{len(data.y_train)} train / {len(data.y_test)} test (seed {seed})", markup=False)

    specs = _specs(seed)
    results: list[Result] = []
    training = tidal.datasets.register(f"{DATASET}_train", data.train_frame(), workspace=ws,
                                       description="the demo's training split")
    with tidal.start_run(EXPERIMENT, name=PARENT_NAME, workspace=ws, params={
            "dataset": DATASET, "test_size": TEST_SIZE, "seed": seed, **data.sizes,
            "models": ",".join(spec.name for spec in specs)},
            tags={"purpose": "demo"}) as parent:
        for number, spec in enumerate(specs, start=1):
            with out.status(f"Training {spec.name} ({number} of {len(specs)})…"):
                result = _train(spec, data, parent, seed, training)
            results.append(result)
            out.print(f"  [green]✓[/] {spec.name:<23} roc_auc "
                      f"{result.metrics['roc_auc']:.4f}  fit "
                      f"{result.metrics['fit_seconds']:.2f}s  run [dim]{result.run_id[:8]}[/]")
        winner = max(results, key=lambda r: (r.metrics["roc_auc"], -r.metrics["log_loss"]))
        parent.set_tags({"winner": winner.name, "winner_run_id": winner.run_id})
        parent.log_metrics({f"winner/{key}": winner.metrics[key] for key in
                            ("accuracy", "f1", "roc_auc", "log_loss")})
        parent.log_text(_comparison_csv(results), "comparison.csv")

    _print_summary(out, results, winner, parent.id, len(data.y_test))
    with out.status("Registering the winner and running its gates…"):
        registered = _register(winner, data, ws)
    out.print(Text.assemble(("Registered: ", "bold"), registered), soft_wrap=True)
    out.print()
    out.print(Text.assemble(("Workspace: ", "bold"), ws.location), soft_wrap=True)
    prefix = state_of(ctx).command_prefix()
    ids = " ".join(r.run_id for r in results)
    out.print("Explore the runs and the registry:", style="bold")
    for command in (f"{prefix} runs list -e {EXPERIMENT} -o 'metrics.roc_auc DESC'",
                    f"{prefix} runs show {winner.run_id}",
                    f"{prefix} runs compare {ids}",
                    f"{prefix} runs show {parent.id}",
                    f"{prefix} models show {MODEL_NAME}@champion",
                    f"{prefix} models card {MODEL_NAME}/latest"):
        out.print(f"  {command}", markup=False, soft_wrap=True)


# -- data and models --------------------------------------------------------------------------

def _load(seed: int) -> Data:
    from sklearn.datasets import load_breast_cancer
    from sklearn.model_selection import train_test_split

    bunch = load_breast_cancer()
    x_train, x_test, y_train, y_test = train_test_split(
        bunch.data, bunch.target, test_size=TEST_SIZE, random_state=seed, stratify=bunch.target)
    return Data(x_train, x_test, y_train, y_test, [str(n) for n in bunch.feature_names],
                [str(n) for n in bunch.target_names])


def _specs(seed: int) -> list[ModelSpec]:
    from sklearn.ensemble import HistGradientBoostingClassifier, RandomForestClassifier
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    return [
        ModelSpec(
            "logistic-regression",
            lambda: make_pipeline(StandardScaler(), LogisticRegression(C=1.0, max_iter=1000)),
            ("C", "l1_ratio", "solver", "max_iter", "tol", "class_weight"),
            importances=_coefficients, importances_file="coefficients.csv"),
        ModelSpec(
            "random-forest",
            lambda: RandomForestClassifier(n_estimators=200, min_samples_leaf=1,
                                           random_state=seed),
            ("n_estimators", "max_depth", "max_features", "min_samples_leaf", "criterion",
             "bootstrap"),
            curves=_forest_curves, importances=_forest_importances),
        ModelSpec(
            "hist-gradient-boosting",
            lambda: HistGradientBoostingClassifier(
                learning_rate=0.1, max_iter=300, early_stopping=True, validation_fraction=0.15,
                n_iter_no_change=15, random_state=seed),
            ("learning_rate", "max_iter", "max_leaf_nodes", "min_samples_leaf",
             "l2_regularization", "early_stopping", "validation_fraction", "n_iter_no_change"),
            curves=_boosting_curves),
    ]


def _estimator(model: Any) -> Any:
    """The classifier itself: the last step of a pipeline, else the model."""
    return model.steps[-1][1] if hasattr(model, "steps") else model


def _train(spec: ModelSpec, data: Data, parent: ActiveRun, seed: int,
           training: DatasetVersion) -> Result:
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

    model = spec.build()
    estimator = _estimator(model)
    hyper = estimator.get_params(deep=False)
    params: dict[str, Any] = {"model": type(estimator).__name__, "dataset": DATASET,
                              "seed": seed, **data.sizes}
    if estimator is not model:
        params["preprocessing"] = "+".join(type(step).__name__ for _, step in model.steps[:-1])
    params.update({key: "None" if hyper[key] is None else hyper[key]
                   for key in spec.important if key in hyper})

    with tidal.start_run(name=spec.name, parent=parent, workspace=parent.workspace,
                         params=params, tags={"model_family": spec.name}) as run:
        run.log_input(training)
        started = time.perf_counter()
        model.fit(data.x_train, data.y_train)
        fit_seconds = time.perf_counter() - started

        predict_seconds = float("inf")
        for _ in range(3):  # best of three: the first call pays for warming caches
            started = time.perf_counter()
            proba = model.predict_proba(data.x_test)
            predict_seconds = min(predict_seconds, time.perf_counter() - started)
        predicted = model.classes_[np.argmax(proba, axis=1)]

        metrics = {
            "accuracy": accuracy_score(data.y_test, predicted),
            "f1": f1_score(data.y_test, predicted),
            "roc_auc": roc_auc_score(data.y_test, proba[:, 1]),
            "log_loss": log_loss(data.y_test, proba),
            "fit_seconds": fit_seconds,
            "predict_ms_per_row": predict_seconds * 1000 / len(data.y_test),
        }
        metrics = {key: float(value) for key, value in metrics.items()}
        run.log_metrics(metrics)

        for key, values in (spec.curves(model, data) if spec.curves else {}).items():
            for step, value in enumerate(values, start=1):
                run.log_metric(key, float(value), step=step)

        run.log_dict(classification_report(data.y_test, predicted,
                                           target_names=data.target_names, output_dict=True),
                     "classification_report.json")
        run.log_text(_confusion_csv(confusion_matrix(data.y_test, predicted),
                                    data.target_names), "confusion_matrix.csv")
        if spec.importances is not None:
            run.log_text(spec.importances(model, data), spec.importances_file)
    return Result(spec.name, run.id, metrics, model)


def _register(winner: Result, data: Data, ws: Workspace) -> str:
    """Register the winner, run its gates and, when they pass, make it the champion; returns
    a line saying what happened."""
    import tidal
    from tidal.models import latency_budget, metric_threshold, size_limit, validate

    version = tidal.models.register(
        MODEL_NAME, winner.model, run=winner.run_id, input_example=data.x_test[:5],
        description=f"{winner.name}, the demo comparison's best roc_auc", workspace=ws)
    tidal.models.update_model(MODEL_NAME, workspace=ws, purpose=(
        "Demonstration only: tells malignant from benign tumours in scikit-learn's "
        "breast-cancer dataset; not for clinical use"))
    report = validate(version.uri, [metric_threshold("roc_auc", minimum=0.9),
                                    latency_budget(100.0, repeats=50),
                                    size_limit(100_000_000)], workspace=ws)
    if not report.passed:
        failed = "; ".join(r.reasons[0] for r in report.failed)
        return f"{version.uri} (gates failed: {failed})"
    tidal.models.set_alias(MODEL_NAME, "champion", version.version, workspace=ws,
                           reason=f"passed its gates; best roc_auc of run {winner.run_id[:8]}")
    return f"{version.uri} ({report.version.stage}, @champion): {len(report.results)} gates passed"


# -- learning curves and importances -----------------------------------------------------------

def _binary_log_loss(y: np.ndarray, p: np.ndarray) -> np.ndarray:
    """Log loss of P(class 1) for each row of ``p`` (stages x rows), vectorised."""
    import numpy as np

    p = np.clip(p, 1e-15, 1 - 1e-15)
    return -(y * np.log(p) + (1 - y) * np.log(1 - p)).mean(axis=-1)


def _forest_curves(model: Any, data: Data) -> dict[str, list[float]]:
    """Test accuracy and log loss of the forest's first k trees, for k = 1..n_estimators."""
    import numpy as np

    x_test = data.x_test.astype(np.float32)  # what the trees were fitted on
    votes = np.stack([tree.predict_proba(x_test)[:, 1] for tree in model.estimators_])
    stages = np.cumsum(votes, axis=0) / np.arange(1, len(votes) + 1)[:, None]
    accuracy = ((stages > 0.5).astype(int) == data.y_test).mean(axis=1)
    return {"curve/test_accuracy": accuracy.tolist(),
            "curve/test_log_loss": _binary_log_loss(data.y_test, stages).tolist()}


def _boosting_curves(model: Any, data: Data) -> dict[str, list[float]]:
    """Training and validation loss per boosting iteration (recorded by early stopping), and
    the test log loss of each stage."""
    import numpy as np

    stages = np.stack([p[:, 1] for p in model.staged_predict_proba(data.x_test)])
    curves = {"curve/test_log_loss": _binary_log_loss(data.y_test, stages).tolist(),
              "curve/test_accuracy": ((stages > 0.5).astype(int) == data.y_test)
              .mean(axis=1).tolist()}
    if getattr(model, "do_early_stopping_", False) and model.scoring == "loss":
        # scores are negated losses; the first entry is before the first iteration
        curves["curve/train_loss"] = (-model.train_score_[1:]).tolist()
        curves["curve/validation_loss"] = (-model.validation_score_[1:]).tolist()
    return curves


def _importance_csv(rows: list[tuple[str, float]], heading: str) -> str:
    rows = sorted(rows, key=lambda row: abs(row[1]), reverse=True)
    return f"feature,{heading}\n" + "".join(f"{name},{value:.6g}\n" for name, value in rows)


def _forest_importances(model: Any, data: Data) -> str:
    return _importance_csv(list(zip(data.feature_names, model.feature_importances_, strict=True)),
                           "importance")


def _coefficients(model: Any, data: Data) -> str:
    """The logistic regression's coefficients on standardised features, largest first."""
    coefficients = _estimator(model).coef_[0]
    return _importance_csv(list(zip(data.feature_names, coefficients, strict=True)), "coefficient")


def _confusion_csv(matrix: np.ndarray, labels: list[str]) -> str:
    buffer = io.StringIO()
    buffer.write("actual \\ predicted," + ",".join(labels) + "\n")
    for label, row in zip(labels, matrix, strict=True):
        buffer.write(label + "," + ",".join(str(int(v)) for v in row) + "\n")
    return buffer.getvalue()


def _comparison_csv(results: list[Result]) -> str:
    keys = [key for key, *_ in SUMMARY]
    lines = ["model,run_id," + ",".join(keys)]
    lines += [f"{r.name},{r.run_id}," + ",".join(f"{r.metrics[k]:.6g}" for k in keys)
              for r in results]
    return "\n".join(lines) + "\n"


# -- output -----------------------------------------------------------------------------------

def _print_summary(out: Console, results: list[Result], winner: Result, parent_id: str,
                   n_test: int) -> None:
    from rich import box
    from rich.table import Table
    from rich.text import Text

    table = Table(title=f"Model comparison (test set, {n_test} rows)", title_justify="left",
                  caption="best value per column in green, ★ the winner (highest roc_auc)",
                  caption_justify="left", box=box.SIMPLE_HEAD, padding=(0, 1), show_edge=False,
                  collapse_padding=True)
    table.add_column("model", style="bold", no_wrap=True)
    for _, _, heading, _ in SUMMARY:
        table.add_column(heading, justify="right")
    best = {}
    for key, goal, _, _ in SUMMARY:
        values = [r.metrics[key] for r in results]
        best[key] = min(values) if goal == "min" else max(values)
    for r in results:
        table.add_row(("★ " if r is winner else "  ") + r.name, *[
            Text(fmt.format(r.metrics[key]),
                 style="bold green" if r.metrics[key] == best[key] else "")
            for key, _, _, fmt in SUMMARY])
    out.print()
    out.print(table)
    out.print(Text.assemble(
        ("Winner: ", "bold"), (winner.name, "bold green"),
        f" (roc_auc {winner.metrics['roc_auc']:.4f}, log_loss "
        f"{winner.metrics['log_loss']:.4f})"))
    out.print(Text.assemble("Runs: ", (winner.run_id, "dim"), " (winner), ",
                            (parent_id, "dim"), " (parent)"), soft_wrap=True)

"""Registry benchmark, MLflow side: run with the MLflow virtual environment's interpreter.

    benchmarks/.venvs/mlflow/bin/python benchmarks/registry/bench_mlflow.py prepare --work DIR
    benchmarks/.venvs/mlflow/bin/python benchmarks/registry/bench_mlflow.py register \\
        --work DIR [--calls 20] [--warmup 3] [--example]
    benchmarks/.venvs/mlflow/bin/python benchmarks/registry/bench_mlflow.py load \\
        --work DIR --loader sklearn|pyfunc

MLflow uses its SQLite backend (``sqlite:///DIR/mlflow/mlflow.db``, artifacts under
DIR/mlflow) for tracking and for the model registry. prepare: creates the store and
registers the pipeline once as bench-load/1, for the load samples. register: in this fresh
process, times ``mlflow.sklearn.log_model(..., registered_model_name=...)`` inside a run, once
cold and then in a steady state. load: in this fresh process, times loading models:/bench-load/1
with all modules imported beforehand. Each prints one JSON object on stdout.
"""

from __future__ import annotations

import argparse
import logging
import os
import platform
import sys
import warnings
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import workload as w

TOOL = "mlflow"


def store(work: Path) -> tuple[str, str]:
    folder = work / "mlflow"
    folder.mkdir(parents=True, exist_ok=True)
    return f"sqlite:///{folder / 'mlflow.db'}", (folder / "artifacts").as_uri()


def quiet() -> None:
    os.environ.setdefault("MLFLOW_ENABLE_ASYNC_LOGGING", "false")
    warnings.filterwarnings("ignore")
    logging.getLogger("mlflow").setLevel(logging.ERROR)


def experiment(mlflow, work: Path) -> None:
    uri, artifacts = store(work)
    mlflow.set_tracking_uri(uri)
    mlflow.set_registry_uri(uri)
    if mlflow.get_experiment_by_name(w.EXPERIMENT) is None:
        mlflow.create_experiment(w.EXPERIMENT, artifact_location=artifacts)
    mlflow.set_experiment(w.EXPERIMENT)


def prepare(work: Path) -> dict:
    import mlflow
    import mlflow.sklearn

    quiet()
    experiment(mlflow, work)
    model = w.pipeline()
    with mlflow.start_run():
        mlflow.sklearn.log_model(model, name="model", registered_model_name=w.LOAD_NAME,
                                 pip_requirements=w.pip_requirements())
    return {"checksum": w.checksum(model.predict_proba(w.frame(w.PREDICT_ROWS, w.SEED + 7)))}


def register(work: Path, calls: int, warmup: int, example: bool) -> dict:
    import mlflow
    import mlflow.sklearn

    quiet()
    model = w.pipeline()
    requirements = w.pip_requirements()
    input_example = w.frame().head(w.EXAMPLE_ROWS) if example else None
    experiment(mlflow, work)
    call_ns, block_ns = [], []
    for _ in range(1 + warmup + calls):
        start_block = w.clock()
        with mlflow.start_run():
            start = w.clock()
            mlflow.sklearn.log_model(model, name="model", registered_model_name=w.REGISTER_NAME,
                                     pip_requirements=requirements,
                                     input_example=input_example)
            call_ns.append(w.clock() - start)
        block_ns.append(w.clock() - start_block)
    steady = call_ns[1 + warmup:]
    return {"first_s": call_ns[0] / 1e9, "steady_median_s": w.median(steady) / 1e9,
            "steady_s": [ns / 1e9 for ns in steady],
            "block_first_s": block_ns[0] / 1e9,
            "block_median_s": w.median(block_ns[1 + warmup:]) / 1e9}


def load(work: Path, loader: str, preimport: str | None, modules_out: str | None) -> dict:
    # Everything a serving process would have imported before it loads a model.
    import mlflow
    import mlflow.pyfunc
    import mlflow.sklearn
    import mlflow.store.model_registry.sqlalchemy_store
    import mlflow.store.tracking.sqlalchemy_store
    import mlflow.tracking
    import pandas  # noqa: F401
    import sklearn.compose
    import sklearn.linear_model
    import sklearn.pipeline
    import sklearn.preprocessing  # noqa: F401

    quiet()
    preimported = w.preimport(preimport)
    uri, _ = store(work)
    load_model = mlflow.sklearn.load_model if loader == "sklearn" else mlflow.pyfunc.load_model
    data = w.frame(w.PREDICT_ROWS, w.SEED + 7)
    modules = set(sys.modules)
    start = w.clock()
    mlflow.set_tracking_uri(uri)
    mlflow.set_registry_uri(uri)
    model = load_model(f"models:/{w.LOAD_NAME}/1")
    elapsed = w.clock() - start
    imported = w.new_modules(modules, modules_out)
    raw = model if loader == "sklearn" else model.get_raw_model()
    return {"load_s": elapsed / 1e9, "modules_imported_while_timed": imported,
            "modules_preimported": preimported,
            "checksum": w.checksum(raw.predict_proba(data))}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("mode", choices=["prepare", "register", "load"])
    parser.add_argument("--work", type=Path, required=True)
    parser.add_argument("--calls", type=int, default=20)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--example", action="store_true",
                        help="give log_model the same 5-row input example Tidal gets")
    parser.add_argument("--loader", choices=["sklearn", "pyfunc"], default="sklearn")
    parser.add_argument("--preimport", help="file of module names to import before timing")
    parser.add_argument("--modules-out", help="write the modules imported while timed here")
    args = parser.parse_args()
    import mlflow

    if args.mode == "prepare":
        result = prepare(args.work)
    elif args.mode == "register":
        result = register(args.work, args.calls, args.warmup, args.example)
    else:
        result = load(args.work, args.loader, args.preimport, args.modules_out)
    result.update(tool=TOOL, version=mlflow.__version__, python=platform.python_version())
    w.emit(result)


if __name__ == "__main__":
    main()

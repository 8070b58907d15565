"""Tracking benchmark, MLflow side: run with the MLflow virtual environment's interpreter.

    benchmarks/.venvs/mlflow/bin/python benchmarks/tracking/bench_mlflow.py [--quick]

Does the workload of workload.py against MLflow's SQLite backend
(``sqlite:///<tmpdir>/mlflow.db``, artifacts under <tmpdir>) and prints one JSON object of
figures on stdout; progress goes to stderr. MLflow's defaults are kept: synchronous logging, no
system metrics.
"""

from __future__ import annotations

import contextlib
import logging
import os
import platform
import sys
import time

import workload as w

TOOL = "mlflow"


def part_a(mlflow, n: int) -> dict:
    """n single log_metric calls in one run, then read the history back."""
    from mlflow.tracking import MlflowClient

    values = w.metric_values(n)
    mlflow.set_experiment(w.METRIC_EXPERIMENT)
    w.progress(TOOL, f"(a) {n:,} single log_metric calls")
    with mlflow.start_run() as run:
        log_metric, key = mlflow.log_metric, w.METRIC_KEY
        start = time.perf_counter()
        for i in range(n):
            log_metric(key, values[i], step=i)
        calls_s = time.perf_counter() - start

        start = time.perf_counter()  # log_metric is synchronous: points are durable already
        history = MlflowClient().get_metric_history(run.info.run_id, key)
        read_s = time.perf_counter() - start
        start = time.perf_counter()  # for information: a second read
        MlflowClient().get_metric_history(run.info.run_id, key)
        read_again_s = time.perf_counter() - start
        run_id = run.info.run_id
    history = sorted(history, key=lambda m: m.step)
    assert len(history) == n, f"history has {len(history)} points, expected {n}"
    assert [m.step for m in history] == list(range(n)), "history steps are not 0..n-1"
    assert [m.value for m in history] == values, "history values differ from the logged ones"
    return {
        "calls": n,
        "calls_s": calls_s,
        "us_per_call": calls_s / n * 1e6,
        "calls_per_s": n / calls_s,
        "flush_s": 0.0,
        "read_s": read_s,
        "read_again_s": read_again_s,
        "durable_read_s": read_s,
        "total_s": calls_s + read_s,
        "history_points": len(history),
        "run_id": run_id,
    }


def part_b(mlflow, n: int, repeats: int) -> dict:
    """n runs with 10 params and 10 metrics each, then a filtered, ordered, limited search."""
    specs = w.run_specs(n)
    mlflow.set_experiment(w.SEARCH_EXPERIMENT)
    w.progress(TOOL, f"(b) creating {n:,} runs with 10 params and 10 metrics each")
    start = time.perf_counter()
    for i, (params, metrics) in enumerate(specs):
        with mlflow.start_run():
            mlflow.log_params(params)
            mlflow.log_metrics(metrics, step=0)
        if i and i % 500 == 0:
            w.progress(TOOL, f"    {i:,} runs, {time.perf_counter() - start:.0f} s")
    create_s = time.perf_counter() - start

    w.progress(TOOL, f"(b) search, 1 + {repeats} times")
    return {"runs": n, "create_s": create_s, "ms_per_run": create_s / n * 1e3,
            **w.time_searches(searcher(mlflow), repeats)}


def searcher(mlflow):  # type: ignore[no-untyped-def]
    """The search of part (b), as a call without arguments."""
    return lambda: mlflow.search_runs(experiment_names=[w.SEARCH_EXPERIMENT],
                                      filter_string=w.SEARCH_FILTER, order_by=w.SEARCH_ORDER,
                                      max_results=w.SEARCH_LIMIT)


def open_for_search(folder: str):  # type: ignore[no-untyped-def]
    os.chdir(folder)
    import mlflow

    logging.getLogger("mlflow").setLevel(logging.WARNING)
    mlflow.set_tracking_uri(f"sqlite:///{folder}/mlflow.db")
    return searcher(mlflow)


def main() -> None:
    args = w.parse_args(__doc__.splitlines()[0])
    real_stdout = sys.stdout
    if args.search_in:
        w.search_only(TOOL, args.search_in, open_for_search, args.search_repeats)
        return
    with contextlib.redirect_stdout(sys.stderr), \
            w.fresh_directory(TOOL, args.tmp_root, args.keep) as root:
        w.progress(TOOL, f"(c) cold import, {args.import_repeats} fresh processes")
        imports = w.import_times(sys.executable, "mlflow", args.import_repeats, root)

        os.chdir(root)  # nothing (mlruns/, artifacts) lands in the caller's folder
        import mlflow

        logging.getLogger("mlflow").setLevel(logging.WARNING)
        logging.getLogger("alembic").setLevel(logging.WARNING)
        # MLflow 3 deprecates the file store default; its SQLite backend, named explicitly.
        mlflow.set_tracking_uri(f"sqlite:///{root}/mlflow.db")
        mlflow.set_experiment("Default")  # creates the database (schema migrations) up front
        result = {
            "tool": TOOL,
            "root": root,
            "version": mlflow.__version__,
            "python": platform.python_version(),
            "executable": sys.executable,
            "backend": "sqlite:///<tmpdir>/mlflow.db",
            "quick": args.quick,
            "a": part_a(mlflow, args.metric_calls),
            "b": part_b(mlflow, args.runs, args.search_repeats),
            "c": imports,
        }
    w.emit(result, real_stdout)


if __name__ == "__main__":
    main()

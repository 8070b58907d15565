"""Tracking benchmark, Tidal side: run with the interpreter Tidal is installed in.

    python benchmarks/tracking/bench_tidal.py [--quick]

Does the workload of workload.py in a fresh temporary workspace (SQLite file and local
artifacts) and prints one JSON object of figures on stdout; progress goes to stderr.
"""

from __future__ import annotations

import contextlib
import platform
import sys
import time

import workload as w

TOOL = "tidal"


def part_a(tidal, n: int) -> dict:
    """n single log_metric calls in one run, then make them durable and read the history."""
    values = w.metric_values(n)
    w.progress(TOOL, f"(a) {n:,} single log_metric calls")
    with tidal.start_run(experiment=w.METRIC_EXPERIMENT, system_metrics=False) as run:
        log_metric, key = run.log_metric, w.METRIC_KEY
        start = time.perf_counter()
        for i in range(n):
            log_metric(key, values[i], step=i)
        calls_s = time.perf_counter() - start

        start = time.perf_counter()
        tidal.flush()
        flushed = time.perf_counter()
        history = tidal.get_run(run.id).metric_history(key)
        read_s = time.perf_counter() - flushed
        flush_s = flushed - start
        start = time.perf_counter()  # for information: a second read, all imports done
        tidal.get_run(run.id).metric_history(key)
        read_again_s = time.perf_counter() - start
        run_id = run.id
    assert len(history) == n, f"history has {len(history)} points, expected {n}"
    assert history["step"].tolist() == list(range(n)), "history steps are not 0..n-1 in order"
    assert history["value"].tolist() == values, "history values differ from the logged ones"

    # For information: the module-level tidal.log_metric (active-run lookup on each call).
    with tidal.start_run(experiment=w.METRIC_EXPERIMENT, system_metrics=False):
        log_metric = tidal.log_metric
        start = time.perf_counter()
        for i in range(n):
            log_metric(key, values[i], step=i)
        fluent_s = time.perf_counter() - start
    return {
        "calls": n,
        "calls_s": calls_s,
        "us_per_call": calls_s / n * 1e6,
        "calls_per_s": n / calls_s,
        "flush_s": flush_s,
        "read_s": read_s,
        "read_again_s": read_again_s,
        "durable_read_s": flush_s + read_s,
        "total_s": calls_s + flush_s + read_s,
        "history_points": len(history),
        "run_id": run_id,
        "fluent_us_per_call": fluent_s / n * 1e6,
    }


def part_b(tidal, n: int, repeats: int) -> dict:
    """n runs with 10 params and 10 metrics each, then a filtered, ordered, limited search."""
    specs = w.run_specs(n)
    w.progress(TOOL, f"(b) creating {n:,} runs with 10 params and 10 metrics each")
    start = time.perf_counter()
    for params, metrics in specs:
        with tidal.start_run(experiment=w.SEARCH_EXPERIMENT, params=params,
                             system_metrics=False) as run:
            run.log_metrics(metrics, step=0)
    create_s = time.perf_counter() - start

    w.progress(TOOL, f"(b) search, 1 + {repeats} times")
    return {"runs": n, "create_s": create_s, "ms_per_run": create_s / n * 1e3,
            **w.time_searches(searcher(tidal), repeats)}


def searcher(tidal):  # type: ignore[no-untyped-def]
    """The search of part (b), as a call without arguments."""
    return lambda: tidal.search_runs(w.SEARCH_EXPERIMENT, filter=w.SEARCH_FILTER,
                                     order_by=w.SEARCH_ORDER, limit=w.SEARCH_LIMIT)


def open_for_search(folder: str):  # type: ignore[no-untyped-def]
    import tidal

    tidal.workspace(f"{folder}/workspace")
    return searcher(tidal)


def main() -> None:
    args = w.parse_args(__doc__.splitlines()[0])
    real_stdout = sys.stdout
    if args.search_in:
        w.search_only(TOOL, args.search_in, open_for_search, args.search_repeats)
        return
    with contextlib.redirect_stdout(sys.stderr), \
            w.fresh_directory(TOOL, args.tmp_root, args.keep) as root:
        w.progress(TOOL, f"(c) cold import, {args.import_repeats} fresh processes")
        imports = w.import_times(sys.executable, "tidal", args.import_repeats, root)
        # For information: `import tidal` is lazy, so also time loading the tracking API itself.
        imports_api = w.import_times(sys.executable, "tidal.tracking.fluent",
                                     args.import_repeats, root)

        import tidal

        tidal.workspace(f"{root}/workspace")  # creates the SQLite file (schema) up front
        result = {
            "tool": TOOL,
            "root": root,
            "version": tidal.__version__,
            "python": platform.python_version(),
            "executable": sys.executable,
            "backend": "SQLite workspace (tidal.workspace(<tmpdir>))",
            "quick": args.quick,
            "a": part_a(tidal, args.metric_calls),
            "b": part_b(tidal, args.runs, args.search_repeats),
            "c": imports,
            "c_api": imports_api,
        }
    w.emit(result, real_stdout)


if __name__ == "__main__":
    main()

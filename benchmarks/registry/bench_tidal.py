"""Registry benchmark, Tidal side, in Tidal's own interpreter.

    python benchmarks/registry/bench_tidal.py prepare --work DIR
    python benchmarks/registry/bench_tidal.py register --work DIR [--calls 20] [--warmup 3] \\
        [--example]
    python benchmarks/registry/bench_tidal.py load --work DIR
    python benchmarks/registry/bench_tidal.py predict [--calls 300]
    python benchmarks/registry/bench_tidal.py export [--rounds 7] [--calls 300]

Tidal uses a SQLite workspace (``tidal.workspace(DIR/tidal)``). prepare: creates it and
registers the pipeline once as bench-load/1, for the load samples. register: in this fresh
process, times ``tidal.models.register(...)`` inside ``tidal.start_run``, once cold and then in
a steady state. load: in this fresh process, times opening the workspace and
``tidal.models.load("models:/bench-load/1")`` with all modules imported beforehand. predict:
``LoadedModel.predict`` against the raw pipeline's ``predict`` on 1,000 rows, alternating.
export: ONNX export of the pipeline and of a LightGBM classifier, then single-row latency of
source and export through ``tidal.models.load(...).predict``, alternating. Each prints one
JSON object on stdout.
"""

from __future__ import annotations

import argparse
import platform
import sys
import tempfile
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
import workload as w

TOOL = "tidal"


def workspace(work: Path) -> Any:
    import tidal

    return tidal.workspace(work / "tidal")


def prepare(work: Path) -> dict:
    import tidal

    ws = workspace(work)
    model = w.pipeline()
    with tidal.start_run(w.EXPERIMENT, workspace=ws, system_metrics=False):
        tidal.models.register(w.LOAD_NAME, model, workspace=ws)
    return {"checksum": w.checksum(model.predict_proba(w.frame(w.PREDICT_ROWS, w.SEED + 7)))}


def register(work: Path, calls: int, warmup: int, example: bool) -> dict:
    import tidal

    model = w.pipeline()
    input_example = w.frame().head(w.EXAMPLE_ROWS) if example else None
    ws = workspace(work)
    call_ns, block_ns = [], []
    for _ in range(1 + warmup + calls):
        start_block = w.clock()
        with tidal.start_run(w.EXPERIMENT, workspace=ws, system_metrics=False):
            start = w.clock()
            tidal.models.register(w.REGISTER_NAME, model, input_example=input_example,
                                  workspace=ws)
            call_ns.append(w.clock() - start)
        block_ns.append(w.clock() - start_block)
    steady = call_ns[1 + warmup:]
    return {"first_s": call_ns[0] / 1e9, "steady_median_s": w.median(steady) / 1e9,
            "steady_s": [ns / 1e9 for ns in steady],
            "block_first_s": block_ns[0] / 1e9,
            "block_median_s": w.median(block_ns[1 + warmup:]) / 1e9}


def load(work: Path, preimport: str | None, modules_out: str | None,
         profile: str | None) -> dict:
    # Everything a serving process would have imported before it loads a model.
    import pandas  # noqa: F401
    import sklearn.compose
    import sklearn.linear_model
    import sklearn.pipeline
    import sklearn.preprocessing  # noqa: F401

    import tidal
    import tidal.models.flavors.sklearn
    import tidal.models.loaded
    import tidal.store.workspace

    preimported = w.preimport(preimport)
    data = w.frame(w.PREDICT_ROWS, w.SEED + 7)
    modules = set(sys.modules)
    profiler = None
    if profile:
        import cProfile

        profiler = cProfile.Profile()
        profiler.enable()
    start = w.clock()
    ws = tidal.workspace(work / "tidal")
    opened = w.clock()
    model = tidal.models.loaded.load(f"models:/{w.LOAD_NAME}/1", workspace=ws)
    elapsed = w.clock() - start
    if profiler is not None:
        profiler.disable()
        profiler.dump_stats(profile)
    imported = w.new_modules(modules, modules_out)
    return {"load_s": elapsed / 1e9, "open_workspace_s": (opened - start) / 1e9,
            "load_only_s": (elapsed - (opened - start)) / 1e9,
            "modules_imported_while_timed": imported, "modules_preimported": preimported,
            "checksum": w.checksum(model.predict_proba(data))}


def predict(calls: int) -> dict:
    """Tidal's predict against the raw pipeline's on the same 1,000-row DataFrame, in
    alternating chunks of calls so that both see the same machine."""
    import tidal

    with tempfile.TemporaryDirectory(prefix="tidal-bench-") as folder:
        ws = tidal.workspace(Path(folder))
        model = w.pipeline()
        data = w.frame(w.PREDICT_ROWS, w.SEED + 7)
        version = tidal.models.register(w.LOAD_NAME, model, input_example=data.head(5),
                                        workspace=ws)
        loaded = tidal.models.load(version.uri, workspace=ws)
        raw = loaded.raw
        assert (loaded.predict(data) == raw.predict(data)).all()
        for _ in range(20):
            loaded.predict(data)
            raw.predict(data)
        tidal_ns, raw_ns, ratios = [], [], []
        chunk = 25
        for _ in range(calls // chunk):
            chunk_tidal, chunk_raw = [], []
            for _ in range(chunk):
                start = w.clock()
                raw.predict(data)
                chunk_raw.append(w.clock() - start)
                start = w.clock()
                loaded.predict(data)
                chunk_tidal.append(w.clock() - start)
            tidal_ns += chunk_tidal
            raw_ns += chunk_raw
            ratios.append(w.median(chunk_tidal) / w.median(chunk_raw))
        prepare_ns = []
        for _ in range(calls):
            start = w.clock()
            loaded.prepare(data)
            prepare_ns.append(w.clock() - start)
    return {"rows": len(data), "calls": len(tidal_ns), "tidal_median_s": w.median(tidal_ns) / 1e9,
            "raw_median_s": w.median(raw_ns) / 1e9,
            "overhead": w.median(tidal_ns) / w.median(raw_ns) - 1,
            "chunk_overheads": [r - 1 for r in ratios],
            "prepare_median_s": w.median(prepare_ns) / 1e9}


def latency_rounds(source: Any, exported: Any, row: Any, rounds: int, calls: int) -> dict:
    """Single-row predict latency of the source and of its export, alternating in rounds."""
    for _ in range(50):
        source.predict(row)
        exported.predict(row)
    source_medians, export_medians, ratios = [], [], []
    for index in range(rounds):
        order = (source, exported) if index % 2 == 0 else (exported, source)
        medians = {}
        for model in order:
            samples = []
            for _ in range(calls):
                start = w.clock()
                model.predict(row)
                samples.append(w.clock() - start)
            medians[id(model)] = w.median(samples) / 1e9
        source_medians.append(medians[id(source)])
        export_medians.append(medians[id(exported)])
        ratios.append(medians[id(source)] / medians[id(exported)])
    return {"source_median_s": w.median(source_medians),
            "export_median_s": w.median(export_medians),
            "latency_speedup": w.median(ratios), "round_speedups": ratios}


def export(rounds: int, calls: int) -> dict:
    import lightgbm

    import tidal
    from tidal.models.export import export_onnx

    results = {}
    with tempfile.TemporaryDirectory(prefix="tidal-bench-") as folder:
        ws = tidal.workspace(Path(folder))
        data = w.frame()
        fresh = w.frame(w.PREDICT_ROWS, w.SEED + 7)
        example = data.sample(50, random_state=0)
        pipeline = w.pipeline()
        lgbm_data = w.lightgbm_frame(data)
        booster = lightgbm.LGBMClassifier(n_estimators=200, num_leaves=31, verbose=-1)
        booster.fit(lgbm_data, w.labels(data))
        cases = [("sklearn pipeline", w.REGISTER_NAME + "-pipeline", pipeline, example, fresh),
                 ("LightGBM classifier", w.REGISTER_NAME + "-lightgbm", booster,
                  w.lightgbm_frame(example), w.lightgbm_frame(fresh))]
        for label, name, model, model_example, model_fresh in cases:
            w.progress(TOOL, f"(d) exporting the {label} to ONNX")
            source = tidal.models.register(name, model, input_example=model_example,
                                           workspace=ws)
            start = w.clock()
            report = export_onnx(source.uri, workspace=ws)
            export_s = (w.clock() - start) / 1e9
            original = tidal.models.load(source.uri, workspace=ws)
            converted = tidal.models.load(report.exported.uri, workspace=ws)
            fresh_diff = float(abs(original.predict_proba(model_fresh)
                                   - converted.predict_proba(model_fresh)).max())
            same_labels = bool((original.predict(model_fresh)
                                == converted.predict(model_fresh)).all())
            w.progress(TOOL, f"(d) single-row latency of {source.uri} and "
                             f"{report.exported.uri}, {rounds} alternating rounds")
            timing = latency_rounds(original, converted, model_fresh.iloc[:1], rounds, calls)
            results[label] = {**report.to_dict(), "export_s": export_s,
                              "fresh_rows": len(model_fresh),
                              "fresh_max_abs_diff": fresh_diff,
                              "fresh_same_labels": same_labels, **timing}
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("mode", choices=["prepare", "register", "load", "predict", "export"])
    parser.add_argument("--work", type=Path)
    parser.add_argument("--calls", type=int, default=20)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--example", action="store_true",
                        help="give register the same 5-row input example MLflow gets")
    parser.add_argument("--preimport", help="file of module names to import before timing")
    parser.add_argument("--modules-out", help="write the modules imported while timed here")
    parser.add_argument("--profile", help="write a cProfile of the timed load here")
    args = parser.parse_args()
    if args.mode in ("prepare", "register", "load") and args.work is None:
        parser.error(f"{args.mode} needs --work")
    if args.mode == "prepare":
        result = prepare(args.work)
    elif args.mode == "register":
        result = register(args.work, args.calls, args.warmup, args.example)
    elif args.mode == "load":
        result = load(args.work, args.preimport, args.modules_out, args.profile)
    elif args.mode == "predict":
        result = predict(args.calls)
    else:
        result = export(args.rounds, args.calls)
    import tidal

    result.update(tool=TOOL, version=tidal.__version__, python=platform.python_version())
    w.emit(result)


if __name__ == "__main__":
    main()

"""Evidently's side of the drift benchmark, run by the Evidently virtual environment's
interpreter.

    benchmarks/.venvs/evidently/bin/python benchmarks/monitoring/bench_evidently.py --data DIR \
        [--round N]

Reads DIR/reference.parquet and DIR/current.parquet into pandas DataFrames (not timed), warms
up on the first 20,000 rows, then times one ``Report([DataDriftPreset(...)],
include_tests=True).run(current, reference)`` per configuration, in an order that rotates with
--round:

- evidently-ks: ``DataDriftPreset(num_method="ks")``, the two-sample KS p-value, drifted at or
  below 0.05 (the test Tidal runs with ``numeric_test="ks"``)
- evidently-default: ``DataDriftPreset()``, which picks its own test per column (above 1,000
  rows, the Wasserstein distance normed by the reference's standard deviation, drifted at or
  above 0.1; the test Tidal's "auto" picks there)

``include_tests=True`` makes the snapshot carry Evidently's own verdict per column. Only
``run`` is timed, not turning the snapshot into a dict. Prints one JSON line: seconds, the
test, statistic and verdict per column, and the drifted-column count.
"""

from __future__ import annotations

import gc
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
import workload as w  # noqa: E402

CONFIGURATIONS = {"evidently-ks": {"num_method": "ks"}, "evidently-default": {}}


def run_preset(options: dict[str, Any], reference: Any, current: Any) -> tuple[float, Any]:
    from evidently import Report
    from evidently.presets import DataDriftPreset

    report = Report([DataDriftPreset(**options)], include_tests=True)
    start = time.perf_counter()
    snapshot = report.run(current, reference)
    return time.perf_counter() - start, snapshot


def columns_of(snapshot: Any) -> tuple[dict[str, Any], float]:
    """Per column: Evidently's test, its statistic and its own verdict (the drift test's
    status); and the count of drifted columns of its DriftedColumnsCount metric."""
    result = snapshot.dict()
    columns: dict[str, Any] = {}
    count = float("nan")
    for metric in result["metrics"]:
        config = metric["config"]
        if config["type"].endswith("ValueDrift"):
            columns[config["column"]] = {"statistic": float(metric["value"]),
                                         "test": config["method"],
                                         "threshold": config["threshold"]}
        elif config["type"].endswith("DriftedColumnsCount"):
            count = float(metric["value"]["count"])
    for test in result["tests"]:
        params = test["metric_config"]["params"]
        if params["type"].endswith("ValueDrift") and params["column"] in columns:
            columns[params["column"]]["drifted"] = test["status"] == "FAIL"
    return columns, count


def main() -> None:
    reference, current, round_ = w.bench_arguments(__doc__.splitlines()[0])

    import evidently

    w.progress("evidently", f"warming up on {w.WARMUP_ROWS:,} rows...")
    for options in CONFIGURATIONS.values():
        run_preset(options, reference.head(w.WARMUP_ROWS), current.head(w.WARMUP_ROWS))
    order = w.rotate(list(CONFIGURATIONS), round_)
    results = {}
    for name in order:
        gc.collect()
        w.progress("evidently", f"{name} on {len(reference):,} + {len(current):,} rows...")
        seconds, snapshot = run_preset(CONFIGURATIONS[name], reference, current)
        columns, count = columns_of(snapshot)
        results[name] = {"seconds": seconds, "columns": columns, "drifted_count": count}
        del snapshot
    w.emit({"versions": {"evidently": evidently.__version__, **w.library_versions()},
            "rows": [len(reference), len(current)], "order": order, "results": results,
            "peak_rss_mb": w.peak_rss_mb()})


if __name__ == "__main__":
    main()

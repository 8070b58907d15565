"""Tidal's side of the drift benchmark, and the direct SciPy loop, in Tidal's interpreter.

    python benchmarks/monitoring/bench_tidal.py --data DIR [--round N]

Reads DIR/reference.parquet and DIR/current.parquet into pandas DataFrames (not timed), warms
every contestant up on the first 20,000 rows, then times one call of each on the whole
samples, in an order that rotates with --round:

- tidal-ks: ``tidal.monitoring.drift(reference, current, numeric_test="ks")``
- tidal-wasserstein: the same with ``numeric_test="wasserstein"`` (what "auto" picks here)
- scipy-ks: for each column, ``scipy.stats.ks_2samp(ref, cur).pvalue``
- scipy-wasserstein: for each column, ``scipy.stats.wasserstein_distance(ref, cur)``
  divided by ``np.std(ref)``

Tidal also computes PSI for every column; the SciPy loop does not. Afterwards, times scipy's
KS p-value routine alone on each column's statistic. Prints one JSON line: seconds,
per-column statistics and verdicts for each contestant.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
import workload as w  # noqa: E402

CONTESTANTS = ["tidal-ks", "tidal-wasserstein", "scipy-ks", "scipy-wasserstein"]


def tidal_drift(test: str) -> Callable[[Any, Any], dict[str, Any]]:
    from tidal.monitoring import drift

    def run(reference: Any, current: Any) -> dict[str, Any]:
        report = drift(reference, current, numeric_test=test)
        return {c.column: {"statistic": c.statistic, "drifted": c.drifted, "test": c.test}
                for c in report.columns}

    return run


def scipy_loop(test: str) -> Callable[[Any, Any], dict[str, Any]]:
    """Each column through scipy directly, with the same thresholds as Tidal's."""
    import numpy as np
    from scipy import stats

    def run(reference: Any, current: Any) -> dict[str, Any]:
        out = {}
        for name in reference.columns:
            ref, cur = reference[name].to_numpy(), current[name].to_numpy()
            if test == "ks":
                result = stats.ks_2samp(ref, cur)
                statistic = float(result.pvalue)
                drifted = statistic < w.KS_LEVEL
                out[name] = {"d": float(result.statistic)}
            else:
                statistic = float(stats.wasserstein_distance(ref, cur) / np.std(ref))
                drifted = statistic > w.WASSERSTEIN_THRESHOLD
                out[name] = {}
            out[name].update(statistic=statistic, drifted=drifted, test=test)
        return out

    return run


def kstwo_seconds(columns: dict[str, Any], n1: int, n2: int) -> dict[str, float]:
    """Per column, the seconds of scipy's p-value routine for the KS statistic found, which
    every contestant calls once per column (Evidently more): ``kstwo.sf``, as ks_2samp calls
    it above 10,000 rows."""
    import numpy as np
    from scipy import stats

    effective = np.round(max(n1, n2) * min(n1, n2) / (n1 + n2))
    seconds = {}
    for name, column in columns.items():
        start = time.perf_counter()
        stats.kstwo.sf(column["d"], effective)
        seconds[name] = time.perf_counter() - start
    return seconds


def main() -> None:
    reference, current, round_ = w.bench_arguments(__doc__.splitlines()[0])

    import tidal

    runs = {"tidal-ks": tidal_drift("ks"), "tidal-wasserstein": tidal_drift("wasserstein"),
            "scipy-ks": scipy_loop("ks"), "scipy-wasserstein": scipy_loop("wasserstein")}
    w.progress("tidal", f"warming up on {w.WARMUP_ROWS:,} rows...")
    for run in runs.values():
        run(reference.head(w.WARMUP_ROWS), current.head(w.WARMUP_ROWS))
    results = {}
    for name in w.rotate(CONTESTANTS, round_):
        w.progress("tidal", f"{name} on {len(reference):,} + {len(current):,} rows...")
        start = time.perf_counter()
        columns = runs[name](reference, current)
        results[name] = {"seconds": time.perf_counter() - start, "columns": columns}
    w.emit({"kstwo_sf_s": kstwo_seconds(results["scipy-ks"]["columns"], len(reference),
                                        len(current)),
            "versions": {"tidal": tidal.__version__, **w.library_versions()},
            "rows": [len(reference), len(current)], "order": w.rotate(CONTESTANTS, round_),
            "results": results, "peak_rss_mb": w.peak_rss_mb()})


if __name__ == "__main__":
    main()

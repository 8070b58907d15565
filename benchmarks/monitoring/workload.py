"""The workload of the drift benchmark: sizes, seed, the 20 columns, and the Parquet files.

bench_tidal.py imports it under Tidal's interpreter and bench_evidently.py under the Evidently
virtual environment's, so both read exactly the same files. Only the standard library, numpy,
pandas and pyarrow are used; both environments have them.
"""

from __future__ import annotations

import argparse
import json
import resource
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROWS = 1_000_000
ROWS_QUICK = 100_000
WARMUP_ROWS = 20_000
SEED = 20_261_123

#: The thresholds of every contestant: the p-value level of KS (drifted below it) and the
#: distance above which the normed Wasserstein distance flags drift; Tidal's and Evidently's
#: defaults alike.
KS_LEVEL = 0.05
WASSERSTEIN_THRESHOLD = 0.1


def _columns() -> dict[str, tuple[Callable[[Any, int], Any], Callable[[Any, Any], Any] | None]]:
    """Each column: how to draw ``n`` values, and how the current sample differs from the
    reference (None: it does not). Drifts are sized in the column's own standard deviations,
    so that the drifted columns are drifted for both tests (normed Wasserstein distance 0.15
    and more) and the others are not."""

    def shift(sds: float) -> Callable[[Any, Any], Any]:
        return lambda rng, x: x + sds * x.std()

    def widen(factor: float) -> Callable[[Any, Any], Any]:
        return lambda rng, x: x.mean() + (x - x.mean()) * factor

    def new_mode(share: float, sds: float) -> Callable[[Any, Any], Any]:
        def apply(rng: Any, x: Any) -> Any:
            moved = rng.random(len(x)) < share
            return x + moved * (sds * x.std())
        return apply

    return {
        "amount": (lambda rng, n: rng.lognormal(4, 0.8, n), None),
        "age": (lambda rng, n: rng.normal(41, 12, n), shift(0.25)),
        "latency_ms": (lambda rng, n: rng.exponential(80, n), None),
        "score": (lambda rng, n: rng.beta(2, 5, n), None),
        "temperature": (lambda rng, n: rng.normal(21, 3, n), widen(1.3)),
        "balance": (lambda rng, n: rng.standard_t(5, n) * 1000, None),
        "ratio": (lambda rng, n: rng.uniform(0, 1, n), None),
        "price": (lambda rng, n: (rng.gamma(3, 15, n)).round(2), None),  # cents: ties
        "sessions": (lambda rng, n: rng.poisson(20, n).astype(float), new_mode(0.1, 3)),
        "distance_km": (lambda rng, n: rng.gamma(2, 4, n), None),
        "income": (lambda rng, n: rng.lognormal(10, 0.5, n), shift(0.5)),
        "clicks": (lambda rng, n: rng.poisson(4, n).astype(float), None),  # few values: ties
        "height_cm": (lambda rng, n: rng.normal(170, 9, n), None),
        "load": (lambda rng, n: rng.weibull(1.5, n), shift(0.15)),
        "error": (lambda rng, n: rng.laplace(0, 2, n), None),
        "discount": (lambda rng, n: rng.uniform(0, 30, n).round(1), None),
        "depth": (lambda rng, n: rng.chisquare(6, n), widen(0.75)),
        "volume": (lambda rng, n: rng.lognormal(2, 1, n), None),
        "humidity": (lambda rng, n: rng.normal(55, 15, n), None),
        "speed": (lambda rng, n: rng.gamma(9, 2, n), None),
    }


COLUMNS = list(_columns())
DRIFTED = [name for name, (_, change) in _columns().items() if change is not None]


def generate(folder: Path, rows: int) -> dict[str, str]:
    """Write reference.parquet and current.parquet (``rows`` x 20 float64 columns each, no
    missing values) into ``folder``; return their paths."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.parquet as pq

    rng = np.random.default_rng(SEED)
    reference, current = {}, {}
    for name, (draw, change) in _columns().items():
        reference[name] = draw(rng, rows)
        values = draw(rng, rows)
        current[name] = change(rng, values) if change is not None else values
    paths = {"reference": folder / "reference.parquet", "current": folder / "current.parquet"}
    for side, columns in (("reference", reference), ("current", current)):
        pq.write_table(pa.table({k: pa.array(v, pa.float64()) for k, v in columns.items()}),
                       paths[side])
    return {side: str(path) for side, path in paths.items()}


def read(folder: Path) -> tuple[Any, Any]:
    """Both samples as pandas DataFrames: what every contestant is given."""
    import pandas as pd

    return (pd.read_parquet(folder / "reference.parquet"),
            pd.read_parquet(folder / "current.parquet"))


def bench_arguments(description: str) -> tuple[Any, Any, int]:
    """What a bench script is run with: the two samples, read, and the round number."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--data", required=True, help="folder with the two Parquet files")
    parser.add_argument("--round", type=int, default=0, help="rotates the order (default 0)")
    args = parser.parse_args()
    return (*read(Path(args.data)), args.round)


def library_versions() -> dict[str, str]:
    """Python's, numpy's, pandas' and scipy's versions in this interpreter."""
    import platform

    import numpy as np
    import pandas as pd
    import scipy

    return {"python": platform.python_version(), "numpy": np.__version__,
            "pandas": pd.__version__, "scipy": scipy.__version__}


def rotate(items: list[str], index: int) -> list[str]:
    """``items`` starting at ``index`` (mod its length): who goes first changes by round."""
    index %= len(items)
    return items[index:] + items[:index]


def progress(tool: str, message: str) -> None:
    print(f"[{tool}] {message}", file=sys.stderr, flush=True)


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def emit(result: dict[str, Any]) -> None:
    """The result as one JSON line on stdout (progress goes to stderr)."""
    print(json.dumps(result, default=float), flush=True)

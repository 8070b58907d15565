"""Data validation: each expectation, the report, its storage, and bad expectations."""

from __future__ import annotations

import pandas as pd
import pytest

import tidal
from tidal.errors import InvalidValueError

expect = tidal.datasets.expect


@pytest.fixture
def version(workspace):
    return tidal.datasets.register("users", pd.DataFrame({
        "id": [1, 2, 3, 3, 5, 6],
        "email": ["a@x.io", "b@x.io", "bad", "c@x.io", None, "d@x.io"],
        "age": [20, 35, -4, 51, 130, 44],
        "country": ["de", "fr", "de", "xx", "us", None],
    }))


def by_name(report):
    return {r.expectation: r for r in report.results}


def test_each_expectation_counts_failures_and_samples_bad_values(version):
    report = version.validate([
        expect.not_null("email"),
        expect.between("age", 0, 120),
        expect.in_set("country", ["de", "fr", "us"]),
        expect.unique("id"),
        expect.matches("email", r"[^@]+@[^@]+\.[a-z]+"),
        expect.row_count(min=1, max=100),
        expect.null_share("country", max=0.10),
        expect.schema({"id": "int64", "age": "int64", "email": "string"}),
    ])
    results = by_name(report)
    assert not report.passed
    assert (results["not_null(email)"].failing_count, results["not_null(email)"].sample) \
        == (1, [None])
    assert results["between[0, 120](age)"].failing_count == 2
    assert sorted(results["between[0, 120](age)"].sample) == [-4, 130]
    assert results["in_set['de', 'fr', 'us'](country)"].sample == ["xx"]  # nulls are not judged
    assert results["unique(id)"].failing_count == 2 and results["unique(id)"].sample == [3, 3]
    assert results[r"matches[[^@]+@[^@]+\.[a-z]+](email)"].sample == ["bad"]
    assert results["row_count[1, 100]"].passed
    assert not results["null_share<=0.1(country)"].passed
    assert "16.67% nulls" in results["null_share<=0.1(country)"].detail
    assert results["schema"].passed


def test_reports_are_stored_with_the_version(version):
    version.validate([expect.not_null("id")])
    version.validate([expect.not_null("email")])
    stored = version.validation_reports()
    assert [r.passed for r in stored] == [True, False]
    assert stored[1].results[0].failing_count == 1


def test_raise_on_failure_lists_every_failed_expectation(version):
    with pytest.raises(tidal.datasets.DataValidationError) as info:
        version.validate([expect.not_null("id"), expect.between("age", 0, 120),
                          expect.unique("id")], raise_on_failure=True)
    message = str(info.value)
    assert "failed 2 of 3 expectations" in message
    assert "between[0, 120](age): 2 of 6 rows fail; e.g." in message
    assert "unique(id)" in message and "not_null(id)" not in message
    assert info.value.report.failures[0].column == "age"


def test_schema_compatibility_with_the_previous_version(workspace):
    tidal.datasets.register("t", pd.DataFrame({"a": [1], "b": ["x"]}))
    v2 = tidal.datasets.register("t", pd.DataFrame({"a": [1.5], "c": [2]}))
    result = v2.validate([expect.compatible_with_previous()]).results[0]
    assert not result.passed
    assert "b removed" in result.detail and "a: int64 -> double" in result.detail
    v3 = tidal.datasets.register("t", pd.DataFrame({"a": [2.5], "c": [2], "d": [0]}))
    assert v3.validate([expect.compatible_with_previous()]).passed


def test_bad_expectations_are_refused(version):
    with pytest.raises(InvalidValueError, match="'nope', which datasets:/users/1 does not"):
        version.validate([expect.not_null("nope")])
    with pytest.raises(InvalidValueError, match="not a valid regular expression"):
        expect.matches("email", "([")
    with pytest.raises(InvalidValueError, match="min, max or both"):
        expect.between("age")
    with pytest.raises(InvalidValueError, match="at least one allowed value"):
        expect.in_set("country", [])
    with pytest.raises(InvalidValueError, match="within 0..1"):
        expect.null_share("country", 5)
    with pytest.raises(InvalidValueError, match="at least one expectation"):
        version.validate([])
    with pytest.raises(InvalidValueError, match="must come from tidal.datasets.expect"):
        version.validate(["not_null(id)"])
    assert version.validation_reports() == []  # refused before anything was checked

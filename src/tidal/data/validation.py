"""Data validation: expectations declared in Python, checked by DuckDB, reported in full.

Each expectation compiles to one SQL predicate that is true for a bad row (or one aggregate
check for whole-table expectations); DuckDB counts the bad rows and returns a few sample bad
values, over the version's Parquet file, out of core. ``validate`` runs them all, stores the
report with the version, and with ``raise_on_failure`` raises a DataValidationError that lists
every failed expectation.

    from tidal.data.validation import expect
    report = version.validate([expect.not_null("user_id"), expect.between("amount", 0, 1e4)])
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from sqlalchemy import insert, select

from tidal.data.schema import validation_reports
from tidal.data.versions import DatasetVersion
from tidal.errors import InvalidValueError, TidalError
from tidal.ids import new_id, now_ms

SAMPLE_SIZE = 5


def _quote(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


@dataclass(frozen=True)
class Expectation:
    """One rule. ``bad_rows`` is a SQL predicate true for a failing row (with its parameters);
    ``check`` judges the whole version instead, from its schema, row count and profile."""

    name: str
    column: str | None = None
    bad_rows: str | None = None
    params: tuple[Any, ...] = ()
    check: Any = field(default=None, compare=False, repr=False)

    def describe(self) -> str:
        return self.name if self.column is None else f"{self.name}({self.column})"


@dataclass(frozen=True)
class ExpectationResult:
    expectation: str
    column: str | None
    passed: bool
    failing_count: int
    sample: list[Any]
    detail: str


@dataclass(frozen=True)
class ValidationReport:
    dataset: str
    passed: bool
    results: list[ExpectationResult]

    @property
    def failures(self) -> list[ExpectationResult]:
        return [r for r in self.results if not r.passed]

    def to_dict(self) -> dict[str, Any]:
        return {"dataset": self.dataset, "passed": self.passed,
                "results": [asdict(r) for r in self.results]}


class DataValidationError(TidalError):
    """A dataset version failed expectations; ``report`` holds every result."""

    status_code = 422

    def __init__(self, report: ValidationReport) -> None:
        lines = [f"{report.dataset} failed {len(report.failures)} of {len(report.results)} "
                 "expectations:"]
        for failure in report.failures:
            sample = f"; e.g. {failure.sample}" if failure.sample else ""
            lines.append(f"  - {failure.expectation}: {failure.detail}{sample}")
        super().__init__("\n".join(lines), field="data")
        self.report = report


def _column(name: Any) -> str:
    if not isinstance(name, str) or not name:
        raise InvalidValueError(f"an expectation needs a column name, got {name!r}",
                                field="column")
    return name


class expect:  # noqa: N801 - a namespace of constructors, read as `expect.not_null(...)`
    """Constructors of the supported expectations."""

    @staticmethod
    def not_null(column: str) -> Expectation:
        q = _quote(_column(column))
        return Expectation("not_null", column, f"{q} IS NULL")

    @staticmethod
    def between(column: str, min: float | None = None, max: float | None = None) -> Expectation:
        if min is None and max is None:
            raise InvalidValueError("between needs min, max or both", field="between")
        q = _quote(_column(column))
        parts, params = [], []
        if min is not None:
            parts.append(f"{q} < ?")
            params.append(min)
        if max is not None:
            parts.append(f"{q} > ?")
            params.append(max)
        return Expectation(f"between[{min}, {max}]", column, " OR ".join(parts), tuple(params))

    @staticmethod
    def in_set(column: str, values: Iterable[Any]) -> Expectation:
        allowed = list(values)
        if not allowed:
            raise InvalidValueError("in_set needs at least one allowed value", field="values")
        q = _quote(_column(column))
        marks = ", ".join("?" for _ in allowed)
        return Expectation(f"in_set{sorted(map(str, allowed))[:5]}", column,
                           f"{q} IS NOT NULL AND {q} NOT IN ({marks})", tuple(allowed))

    @staticmethod
    def matches(column: str, pattern: str) -> Expectation:
        try:
            re.compile(pattern)
        except (re.error, TypeError) as error:
            raise InvalidValueError(f"pattern {pattern!r} is not a valid regular expression: "
                                    f"{error}", field="pattern") from error
        q = _quote(_column(column))
        return Expectation(f"matches[{pattern}]", column,
                           f"{q} IS NOT NULL AND NOT regexp_full_match(CAST({q} AS VARCHAR), ?)",
                           (pattern,))

    @staticmethod
    def unique(column: str) -> Expectation:
        q = _quote(_column(column))
        # a row is bad when its value appears more than once
        return Expectation("unique", column,
                           f"{q} IS NOT NULL AND count(*) OVER (PARTITION BY {q}) > 1")

    @staticmethod
    def row_count(min: int | None = None, max: int | None = None) -> Expectation:
        def check(version: DatasetVersion, _previous: DatasetVersion | None) -> tuple[bool, str]:
            rows = version.num_rows
            ok = (min is None or rows >= min) and (max is None or rows <= max)
            return ok, f"{rows} rows; expected between {min} and {max}"

        return Expectation(f"row_count[{min}, {max}]", None, check=check)

    @staticmethod
    def null_share(column: str, max: float) -> Expectation:
        if not 0 <= max <= 1:
            raise InvalidValueError(f"null_share max must be within 0..1, got {max}",
                                    field="max")
        _column(column)

        def check(version: DatasetVersion, _previous: DatasetVersion | None) -> tuple[bool, str]:
            stats = version.profile["columns"][column]
            share = stats["nulls"] / version.num_rows if version.num_rows else 0.0
            return share <= max, f"{share:.2%} nulls; at most {max:.2%} allowed"

        return Expectation(f"null_share<={max}", column, check=check)

    @staticmethod
    def schema(types: dict[str, str], *, exact: bool = False) -> Expectation:
        """Columns with these Arrow types (``"int64"``, ``"string"``, ...); ``exact``: no others."""
        def check(version: DatasetVersion, _previous: DatasetVersion | None) -> tuple[bool, str]:
            actual = {f.name: str(f.type) for f in version.schema}
            problems = [f"{c}: missing" for c in types if c not in actual]
            problems += [f"{c}: {actual[c]} instead of {t}" for c, t in types.items()
                         if c in actual and actual[c] != t]
            if exact:
                problems += [f"{c}: not expected" for c in actual if c not in types]
            return not problems, "; ".join(problems) or "schema as expected"

        return Expectation("schema", None, check=check)

    @staticmethod
    def compatible_with_previous() -> Expectation:
        """No column of the previous version removed or retyped (new columns are fine)."""
        def check(version: DatasetVersion, previous: DatasetVersion | None) -> tuple[bool, str]:
            if previous is None:
                return True, "no previous version"
            before = {f.name: f.type for f in previous.schema}
            now = {f.name: f.type for f in version.schema}
            problems = [f"{c} removed" for c in before if c not in now]
            problems += [f"{c}: {before[c]} -> {now[c]}" for c in before
                         if c in now and now[c] != before[c]]
            return not problems, "; ".join(problems) or f"compatible with version " \
                                                        f"{previous.version}"

        return Expectation("compatible_with_previous", None, check=check)


def _check_columns(version: DatasetVersion, expectations: Sequence[Expectation]) -> None:
    names = set(version.schema.names)
    for expectation in expectations:
        if not isinstance(expectation, Expectation):
            raise InvalidValueError(f"expectations must come from tidal.datasets.expect, got "
                                    f"{type(expectation).__name__}", field="expectations")
        if expectation.column is not None and expectation.column not in names:
            raise InvalidValueError(
                f"expectation {expectation.describe()} names column {expectation.column!r}, "
                f"which {version.uri} does not have; its columns: {sorted(names)}",
                field="column")


def _previous(version: DatasetVersion) -> DatasetVersion | None:
    from tidal.data.versions import get

    return None if version.version == 1 else get(version.name, version.version - 1,
                                                 workspace=version.workspace)


def _sample_value(value: Any) -> Any:
    if isinstance(value, (str, int, float, bool)) or value is None:
        return value
    return str(value)


def validate(version: DatasetVersion, expectations: Sequence[Expectation], *,
             raise_on_failure: bool = False) -> ValidationReport:
    """Check every expectation, store the report with the version, and return it."""
    import duckdb

    if isinstance(expectations, Expectation):
        expectations = [expectations]
    if not expectations:
        raise InvalidValueError("give at least one expectation", field="expectations")
    _check_columns(version, expectations)
    previous = _previous(version) if any(e.check for e in expectations) else None
    source = f"read_parquet('{str(version.local_path()).replace(chr(39), chr(39) * 2)}')"
    results = []
    conn = duckdb.connect()
    try:
        for expectation in expectations:
            if expectation.check is not None:
                passed, detail = expectation.check(version, previous)
                results.append(ExpectationResult(expectation.describe(), expectation.column,
                                                 passed, 0 if passed else 1, [], detail))
                continue
            q = _quote(expectation.column or "")
            flagged = (f"SELECT {q} AS value, ({expectation.bad_rows}) AS bad FROM {source}")
            count, sample = conn.execute(
                f"SELECT count(*) FILTER (WHERE bad), "
                f"list(value) FILTER (WHERE bad)[1:{SAMPLE_SIZE}] FROM ({flagged})",
                list(expectation.params)).fetchall()[0]
            count = int(count or 0)
            results.append(ExpectationResult(
                expectation.describe(), expectation.column, count == 0, count,
                [_sample_value(v) for v in (sample or [])][:SAMPLE_SIZE],
                "all rows pass" if count == 0 else f"{count} of {version.num_rows} rows fail"))
    except duckdb.Error as error:
        raise InvalidValueError(f"an expectation could not be checked on {version.uri}: "
                                f"{error}", field="expectations") from error
    finally:
        conn.close()
    report = ValidationReport(version.uri, all(r.passed for r in results), results)
    version.workspace.db.write(lambda c: c.execute(insert(validation_reports).values(
        id=new_id(), dataset_version_id=version.id, passed=report.passed,
        report=json.dumps(report.to_dict()), created_at=now_ms())))
    if raise_on_failure and not report.passed:
        raise DataValidationError(report)
    return report


def reports(version: DatasetVersion) -> list[ValidationReport]:
    """Every stored validation report of a version, oldest first."""
    with version.workspace.db.read() as conn:
        rows = conn.execute(
            select(validation_reports.c.report)
            .where(validation_reports.c.dataset_version_id == version.id)
            .order_by(validation_reports.c.created_at)).scalars().all()
    out = []
    for text in rows:
        data = json.loads(text)
        out.append(ValidationReport(data["dataset"], data["passed"],
                                    [ExpectationResult(**r) for r in data["results"]]))
    return out

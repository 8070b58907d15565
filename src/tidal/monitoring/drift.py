"""Data drift between a reference and a current sample, column by column.

Each column gets a test chosen by its type and the sample size, as monitoring tools settled
on: with few rows a significance test (Kolmogorov-Smirnov for numbers, chi-square for
categories), which has power there; with many rows a distance (Wasserstein normalised by the
reference's spread, Jensen-Shannon), because every p-value becomes tiny on large samples and
would flag changes nobody cares about. PSI is always reported beside it. A column is drifted
when its test says so; the dataset is drifted when the share of drifted columns reaches
``drift_share``.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from tidal.errors import InvalidValueError, missing_dependency

#: Above this many rows on either side, "auto" picks a distance rather than a p-value test.
LARGE_SAMPLE = 1000
NUMERIC_TESTS = ("ks", "wasserstein")
CATEGORICAL_TESTS = ("chi2", "jensenshannon")
#: Defaults: p-value level for the tests, distance above which the distances flag drift.
DEFAULT_THRESHOLDS = {"ks": 0.05, "chi2": 0.05, "wasserstein": 0.1, "jensenshannon": 0.1}
_P_VALUE_TESTS = {"ks", "chi2"}
_PSI_FLOOR = 1e-4


class DriftInputError(InvalidValueError):
    """The samples cannot be compared (empty, different columns, unknown test)."""


@dataclass(frozen=True)
class ColumnDrift:
    """One column's verdict: the test used, its statistic (a p-value for ks and chi2, a
    distance otherwise), the threshold it was held to, and PSI."""

    column: str
    kind: str  # numeric or categorical
    test: str
    statistic: float
    threshold: float
    drifted: bool
    psi: float
    reference_rows: int
    current_rows: int
    new_categories: tuple[str, ...] = ()
    missing_categories: tuple[str, ...] = ()


@dataclass(frozen=True)
class DriftReport:
    """Every compared column's verdict and the dataset's."""

    columns: tuple[ColumnDrift, ...]
    drift_share: float
    drifted_share: float = field(init=False)
    drifted: bool = field(init=False)

    def __post_init__(self) -> None:
        share = sum(c.drifted for c in self.columns) / len(self.columns)
        object.__setattr__(self, "drifted_share", share)
        object.__setattr__(self, "drifted", share >= self.drift_share)

    def column(self, name: str) -> ColumnDrift:
        for column in self.columns:
            if column.column == name:
                return column
        raise KeyError(name)

    @property
    def drifted_columns(self) -> list[str]:
        return [c.column for c in self.columns if c.drifted]

    def to_dict(self) -> dict[str, Any]:
        return {"drifted": self.drifted, "drifted_share": self.drifted_share,
                "drift_share": self.drift_share,
                "columns": [asdict(c) for c in self.columns]}


def _frame(data: Any, what: str) -> Any:
    import pandas as pd

    if isinstance(data, pd.DataFrame):
        return data
    module = type(data).__module__.split(".", 1)[0]
    if module in ("pyarrow", "polars"):
        return data.to_pandas()
    if isinstance(data, dict):
        return pd.DataFrame(data)
    raise DriftInputError(f"{what} must be a pandas DataFrame, an Arrow table or a dict of "
                          f"columns, got {type(data).__name__}", field=what)


def _scipy() -> None:
    try:
        import scipy  # noqa: F401
    except ImportError as error:
        raise missing_dependency("scipy", "monitoring", "drift tests") from error


def _is_numeric(series: Any) -> bool:
    import pandas as pd

    return bool(pd.api.types.is_numeric_dtype(series)) and not pd.api.types.is_bool_dtype(
        series)


def _psi(reference: Any, current: Any) -> float:
    """Population stability index of two distributions given as counts over the same bins."""
    import numpy as np

    ref = np.maximum(reference / reference.sum(), _PSI_FLOOR)
    cur = np.maximum(current / current.sum(), _PSI_FLOOR)
    return float(np.sum((cur - ref) * np.log(cur / ref)))


def _numeric(name: str, ref: Any, cur: Any, test: str, threshold: float,
             bins: int) -> ColumnDrift:
    import numpy as np
    from scipy import stats

    if test == "ks":
        statistic = float(stats.ks_2samp(ref, cur).pvalue)
    else:
        spread = float(np.std(ref))
        distance = float(stats.wasserstein_distance(ref, cur))
        statistic = distance / spread if spread > 0 else (0.0 if distance == 0 else np.inf)
    edges = np.unique(np.quantile(ref, np.linspace(0, 1, bins + 1)))
    if len(edges) < 2:
        edges = np.array([edges[0] - 0.5, edges[0] + 0.5])
    inner = edges[1:-1]
    ref_counts = np.bincount(np.searchsorted(inner, ref, side="right"), minlength=len(edges) - 1)
    cur_counts = np.bincount(np.searchsorted(inner, cur, side="right"), minlength=len(edges) - 1)
    drifted = statistic < threshold if test in _P_VALUE_TESTS else statistic > threshold
    return ColumnDrift(name, "numeric", test, statistic, threshold, bool(drifted),
                       _psi(ref_counts.astype(float), cur_counts.astype(float)), len(ref),
                       len(cur))


def _categorical(name: str, ref: Any, cur: Any, test: str, threshold: float) -> ColumnDrift:
    import numpy as np
    import pandas as pd
    from scipy import stats
    from scipy.spatial.distance import jensenshannon

    ref_counts = pd.Series(ref).astype(str).value_counts()
    cur_counts = pd.Series(cur).astype(str).value_counts()
    categories = sorted(set(ref_counts.index) | set(cur_counts.index))
    r = ref_counts.reindex(categories, fill_value=0).to_numpy(dtype=float)
    c = cur_counts.reindex(categories, fill_value=0).to_numpy(dtype=float)
    if test == "chi2":
        # A test of homogeneity (both samples are samples), not goodness of fit to the
        # reference's shares, which would ignore the reference's own noise and flag too often.
        statistic = 1.0 if len(categories) == 1 else float(
            stats.chi2_contingency(np.vstack([r, c]), correction=False).pvalue)
    else:
        statistic = float(jensenshannon(r / r.sum(), c / c.sum(), base=2))
    drifted = statistic < threshold if test in _P_VALUE_TESTS else statistic > threshold
    new = tuple(k for k in categories if k not in ref_counts.index)
    missing = tuple(k for k in categories if k not in cur_counts.index)
    return ColumnDrift(name, "categorical", test, statistic, threshold, bool(drifted),
                       _psi(r, c), int(r.sum()), int(c.sum()), new, missing)


def drift(reference: Any, current: Any, columns: list[str] | None = None, *,
          numeric_test: str = "auto", categorical_test: str = "auto",
          thresholds: dict[str, float] | None = None, psi_bins: int = 10,
          drift_share: float = 0.5) -> DriftReport:
    """Compare ``current`` with ``reference`` (DataFrames, Arrow tables or dicts of columns)
    column by column; ``columns`` defaults to those of the reference.

    ``numeric_test``: "auto", "ks" or "wasserstein"; ``categorical_test``: "auto", "chi2" or
    "jensenshannon"; ``thresholds`` overrides the p-value level or distance per test
    (defaults: ks and chi2 0.05, distances 0.1). Missing values are left out of each column's
    comparison.
    """
    if numeric_test not in ("auto", *NUMERIC_TESTS):
        raise DriftInputError(f"numeric_test must be auto, {', '.join(NUMERIC_TESTS)}; got "
                              f"{numeric_test!r}", field="numeric_test")
    if categorical_test not in ("auto", *CATEGORICAL_TESTS):
        raise DriftInputError(f"categorical_test must be auto, {', '.join(CATEGORICAL_TESTS)}; "
                              f"got {categorical_test!r}", field="categorical_test")
    limits = {**DEFAULT_THRESHOLDS, **(thresholds or {})}
    unknown = set(limits) - set(DEFAULT_THRESHOLDS)
    if unknown:
        raise DriftInputError(f"thresholds for unknown tests {sorted(unknown)}; tests: "
                              f"{', '.join(DEFAULT_THRESHOLDS)}", field="thresholds")
    if not 0 < drift_share <= 1:
        raise DriftInputError(f"drift_share must be in (0, 1], got {drift_share!r}",
                              field="drift_share")
    if type(psi_bins) is not int or psi_bins < 2:
        raise DriftInputError(f"psi_bins must be an integer of at least 2, got {psi_bins!r}",
                              field="psi_bins")
    _scipy()
    ref_frame, cur_frame = _frame(reference, "reference"), _frame(current, "current")
    names = list(ref_frame.columns) if columns is None else list(columns)
    if not names:
        raise DriftInputError("there are no columns to compare", field="columns")
    for side, frame in (("reference", ref_frame), ("current", cur_frame)):
        absent = [n for n in names if n not in frame.columns]
        if absent:
            raise DriftInputError(f"the {side} lacks column(s) {absent}; it has "
                                  f"{list(map(str, frame.columns))}", field=side)
    results = []
    for name in names:
        ref, cur = ref_frame[name].dropna(), cur_frame[name].dropna()
        if len(ref) == 0 or len(cur) == 0:
            side = "reference" if len(ref) == 0 else "current"
            raise DriftInputError(f"column {name!r} has no values in the {side} sample",
                                  field=side)
        large = max(len(ref), len(cur)) > LARGE_SAMPLE
        if _is_numeric(ref) and _is_numeric(cur):
            test = numeric_test if numeric_test != "auto" else (
                "wasserstein" if large else "ks")
            results.append(_numeric(name, ref.to_numpy(dtype=float),
                                    cur.to_numpy(dtype=float), test, limits[test], psi_bins))
        else:
            test = categorical_test if categorical_test != "auto" else (
                "jensenshannon" if large else "chi2")
            results.append(_categorical(name, ref.to_numpy(), cur.to_numpy(), test,
                                        limits[test]))
    return DriftReport(tuple(results), drift_share)

"""Data drift between a reference and a current sample, column by column.

Each column gets a test chosen by its type and the sample size, as monitoring tools settled
on: with few rows a significance test (Kolmogorov-Smirnov for numbers, chi-square for
categories), which has power there; with many rows a distance (Wasserstein normalised by the
reference's spread, Jensen-Shannon), because every p-value becomes tiny on large samples and
would flag changes nobody cares about. PSI is always reported beside it. A column is drifted
when its test says so; the dataset is drifted when the share of drifted columns reaches
``drift_share``. Testing many columns at the 5% level flags some column by chance on most
windows; ``correction`` adjusts the p-values for the number of columns tested (Bonferroni, or
Benjamini-Hochberg's false discovery rate) before they are held to the level.

Numeric columns are sorted once per sample and every statistic is read from the sorted
samples and their merge, instead of each scipy call sorting and searching again; on large
samples the columns run on a thread pool. The statistics equal scipy's (``ks_2samp``,
``wasserstein_distance``) and the PSI bins those of ``np.quantile``.
"""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field, replace
from typing import Any

from tidal.errors import missing_dependency
from tidal.monitoring.inputs import DriftInputError, sample

#: Above this many rows on either side, "auto" picks a distance rather than a p-value test.
LARGE_SAMPLE = 1000
NUMERIC_TESTS = ("ks", "wasserstein")
CATEGORICAL_TESTS = ("chi2", "jensenshannon")
#: Defaults: p-value level for the tests, distance above which the distances flag drift.
DEFAULT_THRESHOLDS = {"ks": 0.05, "chi2": 0.05, "wasserstein": 0.1, "jensenshannon": 0.1}
_P_VALUE_TESTS = {"ks", "chi2"}
#: How p-values are adjusted for testing many columns: "bonferroni" keeps the chance of any
#: false alarm under the level, "bh" the expected share of false alarms among the flagged.
CORRECTIONS = ("none", "bonferroni", "bh")
_PSI_FLOOR = 1e-4
#: scipy's ks_2samp gives the exact p-value up to this many rows on the larger side and the
#: asymptotic one above (its method="auto"); Tidal follows it.
_KS_EXACT_ROWS = 10_000
#: From this many rows on either side, columns are compared on a thread pool: sorting and the
#: array arithmetic release the GIL, so columns then run on several cores. At most
#: ``_MAX_WORKERS`` threads, as each holds temporary arrays of about 150 bytes per row.
_PARALLEL_ROWS = 100_000
_MAX_WORKERS = 4


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
    #: Compared with a stored profile's bins rather than the reference's rows.
    binned: bool = False
    #: The p-value adjusted for the number of columns tested (see ``correction``), which is
    #: what the threshold was held to; None without a correction or for a distance.
    adjusted: float | None = None


@dataclass(frozen=True)
class DriftReport:
    """Every compared column's verdict and the dataset's."""

    columns: tuple[ColumnDrift, ...]
    drift_share: float
    #: The drift of the model's own answers, when both samples are prediction-log windows;
    #: reported beside the columns, not counted in the drifted share.
    prediction: ColumnDrift | None = None
    correction: str = "none"
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
                "drift_share": self.drift_share, "correction": self.correction,
                "columns": [asdict(c) for c in self.columns],
                "prediction": None if self.prediction is None else asdict(self.prediction)}


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


def _sorted_values(series: Any) -> Any:
    """The column as sorted float64 with its missing values left out. Every numeric statistic
    below reads the sorted order, and sorting puts NaN last, so dropping them is a slice rather
    than pandas' masked copy."""
    import numpy as np

    values = np.sort(series.to_numpy(dtype=float, na_value=np.nan))
    return values[: np.searchsorted(values, np.nan)]


@dataclass(frozen=True)
class _Merged:
    """Both samples merged in sorted order, with how many values of each lie at or before every
    position: the two empirical CDFs at every value, which KS and Wasserstein both read."""

    values: Any
    ref_below: Any
    cur_below: Any


def _merge(ref: Any, cur: Any) -> _Merged:
    import numpy as np

    both = np.concatenate([ref, cur])
    # A stable sort (timsort) of two sorted runs is a linear merge: cheaper than the binary
    # searches of every value of both samples into each sample that scipy does.
    order = np.argsort(both, kind="stable")
    # 32-bit counts whenever they fit: numpy's cumulative sum is several times faster on them.
    counts = np.int32 if len(both) < 2**31 else np.int64
    ref_below = np.cumsum(order < len(ref), dtype=counts)
    cur_below = np.arange(1, len(both) + 1, dtype=counts)
    cur_below -= ref_below
    return _Merged(both[order], ref_below, cur_below)


def _ks_pvalue(ref: Any, cur: Any) -> float:
    """Two-sided two-sample KS p-value, equal to ``scipy.stats.ks_2samp``'s default: the exact
    distribution up to ``_KS_EXACT_ROWS`` rows (scipy computes it), above that scipy's
    asymptotic one (``kstwo``) applied to the statistic read from the merged samples."""
    import numpy as np
    from scipy import stats

    n1, n2 = len(ref), len(cur)
    if max(n1, n2) <= _KS_EXACT_ROWS:
        return float(stats.ks_2samp(ref, cur).pvalue)
    large, small = max(n1, n2), min(n1, n2)
    effective = np.round(large * small / (large + small))
    statistic = _ks_statistic(_merge(ref, cur), n1, n2)
    return float(np.clip(stats.kstwo.sf(statistic, effective), 0, 1))


def _ks_statistic(merged: _Merged, n1: int, n2: int) -> float:
    """The largest gap between the two empirical CDFs, computed as scipy does (the same
    divisions of the same counts), so that the p-value matches to the last bit."""
    import numpy as np

    ref_below, cur_below = merged.ref_below, merged.cur_below
    tied = merged.values[1:] == merged.values[:-1]
    if tied.any():  # the CDFs are read after the last of equal values only
        last = np.append(~tied, True)
        ref_below, cur_below = ref_below[last], cur_below[last]
    gaps = ref_below / n1
    gaps -= cur_below / n2
    return max(float(np.clip(-gaps.min(), 0, 1)), float(gaps.max()))


def _wasserstein(ref: Any, cur: Any) -> float:
    """``scipy.stats.wasserstein_distance``: the area between the two empirical CDFs, summed
    over the gaps between successive merged values. Within a run of equal values the gap is 0,
    so the counts there need no correction for ties."""
    import numpy as np

    merged = _merge(ref, cur)
    gaps = merged.ref_below[:-1] / len(ref)
    gaps -= merged.cur_below[:-1] / len(cur)
    return float(np.dot(np.abs(gaps, out=gaps), np.diff(merged.values)))


def _bin_counts(values: Any, inner_edges: Any) -> Any:
    """How many of the sorted ``values`` fall in each bin: what ``np.bincount`` of
    ``np.searchsorted(inner_edges, values, side="right")`` gives, from one binary search per
    edge instead of one per value."""
    import numpy as np

    below = np.searchsorted(values, inner_edges, side="left")
    return np.diff(np.concatenate(([0], below, [len(values)]))).astype(float)


def _numeric(name: str, ref: Any, cur: Any, test: str, threshold: float,
             bins: int) -> ColumnDrift:
    """One numeric column, from its two samples sorted and without missing values."""
    import numpy as np

    if test == "ks":
        statistic = _ks_pvalue(ref, cur)
    else:
        spread = float(np.std(ref))
        distance = _wasserstein(ref, cur)
        statistic = distance / spread if spread > 0 else (0.0 if distance == 0 else np.inf)
    edges = np.unique(np.quantile(ref, np.linspace(0, 1, bins + 1)))
    if len(edges) < 2:
        edges = np.array([edges[0] - 0.5, edges[0] + 0.5])
    inner = edges[1:-1]
    drifted = statistic < threshold if test in _P_VALUE_TESTS else statistic > threshold
    return ColumnDrift(name, "numeric", test, statistic, threshold, bool(drifted),
                       _psi(_bin_counts(ref, inner), _bin_counts(cur, inner)), len(ref),
                       len(cur))


def _categorical(name: str, ref: Any, cur: Any, test: str, threshold: float) -> ColumnDrift:
    import pandas as pd

    ref_counts = pd.Series(ref).astype(str).value_counts()
    cur_counts = pd.Series(cur).astype(str).value_counts()
    categories = sorted(set(ref_counts.index) | set(cur_counts.index))
    r = ref_counts.reindex(categories, fill_value=0).to_numpy(dtype=float)
    c = cur_counts.reindex(categories, fill_value=0).to_numpy(dtype=float)
    statistic = _category_statistic(r, c, test)
    drifted = statistic < threshold if test in _P_VALUE_TESTS else statistic > threshold
    new = tuple(k for k in categories if k not in ref_counts.index)
    missing = tuple(k for k in categories if k not in cur_counts.index)
    return ColumnDrift(name, "categorical", test, statistic, threshold, bool(drifted),
                       _psi(r, c), int(r.sum()), int(c.sum()), new, missing)


def _category_statistic(ref: Any, cur: Any, test: str) -> float:
    """chi2's p-value or the Jensen-Shannon distance of two count vectors over the same
    categories."""
    import numpy as np
    from scipy import stats
    from scipy.spatial.distance import jensenshannon

    if test == "chi2":
        # A test of homogeneity (both samples are samples), not goodness of fit to the
        # reference's shares, which would ignore the reference's own noise and flag too often.
        present = (ref + cur) > 0
        if present.sum() < 2:
            return 1.0
        return float(stats.chi2_contingency(np.vstack([ref[present], cur[present]]),
                                            correction=False).pvalue)
    return float(jensenshannon(ref / ref.sum(), cur / cur.sum(), base=2))


def _against_profile(name: str, column: dict[str, Any], current: Any, numeric_test: str,
                     categorical_test: str, limits: dict[str, float]) -> ColumnDrift:
    """One column's verdict against its stored profile (see ``profile_drift``)."""
    from tidal.monitoring import profile_drift

    rows = int(column.get("count", 0)) - int(column.get("nulls", 0))
    if "histogram" in column and _is_numeric(current):
        cur = _sorted_values(current)
        _require_values(name, rows, len(cur))
        test = numeric_test if numeric_test != "auto" else (
            "wasserstein" if max(rows, len(cur)) > LARGE_SAMPLE else "ks")
        statistic, psi, rows = profile_drift.numeric_from_profile(column, cur, test, _psi)
        kind, new, missing, count = "numeric", (), (), len(cur)
    elif "top" in column:
        values = current.dropna().to_numpy()
        _require_values(name, rows, len(values))
        test = categorical_test if categorical_test != "auto" else (
            "jensenshannon" if max(rows, len(values)) > LARGE_SAMPLE else "chi2")
        ref, cur_counts, _, new, missing = profile_drift.categorical_from_profile(column,
                                                                                   values)
        statistic, psi = _category_statistic(ref, cur_counts, test), _psi(ref, cur_counts)
        kind, count = "categorical", len(values)
    else:
        raise DriftInputError(f"the profile of column {name!r} has neither a histogram nor "
                              "top values to compare with", field="reference")
    threshold = limits[test]
    drifted = statistic < threshold if test in _P_VALUE_TESTS else statistic > threshold
    return ColumnDrift(name, kind, test, statistic, threshold, bool(drifted), psi, rows,
                       count, new, missing, binned=True)


def drift(reference: Any, current: Any, columns: list[str] | None = None, *,
          numeric_test: str = "auto", categorical_test: str = "auto",
          thresholds: dict[str, float] | None = None, psi_bins: int = 10,
          drift_share: float = 0.5, correction: str = "none") -> DriftReport:
    """Compare ``current`` with ``reference`` column by column; ``columns`` defaults to those
    of the reference. Each side is a DataFrame, an Arrow table, a dict of columns, a dataset
    version or its URI, or a prediction-log window (``read_window``); the reference may also
    be a stored profile (``DatasetVersion.profile``), compared on its bins. Two log windows
    also get the drift of the predictions, as ``report.prediction``.

    ``numeric_test``: "auto", "ks" or "wasserstein"; ``categorical_test``: "auto", "chi2" or
    "jensenshannon"; ``thresholds`` overrides the p-value level or distance per test
    (defaults: ks and chi2 0.05, distances 0.1). Missing values are left out of each column's
    comparison. ``correction``: "none", "bonferroni" or "bh", applied to the p-values of the
    columns compared by a test (distances are not p-values and are left as they are).
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
    if correction not in CORRECTIONS:
        raise DriftInputError(f"correction must be one of {', '.join(CORRECTIONS)}; got "
                              f"{correction!r}", field="correction")
    _scipy()
    ref, cur = sample(reference, "reference"), sample(current, "current")
    if cur.profile is not None:
        raise DriftInputError("current must be rows (data, a dataset version or a log "
                              "window), not a profile; only the reference can be one",
                              field="current")
    names = ref.columns if columns is None else list(columns)
    if not names:
        raise DriftInputError("there are no columns to compare", field="columns")
    for side, found in (("reference", ref), ("current", cur)):
        absent = [n for n in names if n not in found.columns]
        if absent:
            raise DriftInputError(f"the {side} lacks column(s) {absent}; it has "
                                  f"{found.columns}", field=side)
    cur_frame = cur.frame
    prediction = None
    if ref.predictions is not None and cur.predictions is not None:
        prediction = _compare("prediction", ref.predictions, cur.predictions, numeric_test,
                              categorical_test, limits, psi_bins)
    if ref.profile is not None:
        profiled = ref.profile["columns"]
        verdicts = [_against_profile(name, profiled[name], cur_frame[name], numeric_test,
                                     categorical_test, limits) for name in names]
    else:
        verdicts = _compare_all(ref.frame, cur_frame, names, numeric_test, categorical_test,
                                limits, psi_bins)
    return DriftReport(_corrected(verdicts, correction), drift_share, prediction, correction)


def _compare_all(ref_frame: Any, cur_frame: Any, names: list[str], numeric_test: str,
                 categorical_test: str, limits: dict[str, float],
                 psi_bins: int) -> list[ColumnDrift]:
    def compare(name: str) -> ColumnDrift:
        return _compare(name, ref_frame[name], cur_frame[name], numeric_test,
                        categorical_test, limits, psi_bins)

    rows = max(len(ref_frame), len(cur_frame))
    workers = min(len(names), os.cpu_count() or 1, _MAX_WORKERS) \
        if rows >= _PARALLEL_ROWS else 1
    if workers == 1:
        return list(map(compare, names))
    with ThreadPoolExecutor(workers) as pool:
        return list(pool.map(compare, names))


def _corrected(verdicts: list[ColumnDrift], correction: str) -> tuple[ColumnDrift, ...]:
    """The verdicts with the p-values of the tested columns adjusted for their number."""
    tested = [i for i, v in enumerate(verdicts) if v.test in _P_VALUE_TESTS]
    if correction == "none" or not tested:
        return tuple(verdicts)
    import numpy as np
    from scipy import stats

    p_values = np.array([verdicts[i].statistic for i in tested], dtype=float)
    if correction == "bonferroni":
        adjusted = np.minimum(p_values * len(tested), 1.0)
    else:
        adjusted = stats.false_discovery_control(p_values, method="bh")
    out = list(verdicts)
    for i, value in zip(tested, adjusted, strict=True):
        out[i] = replace(out[i], adjusted=float(value),
                         drifted=bool(value < out[i].threshold))
    return tuple(out)


def _compare(name: str, reference: Any, current: Any, numeric_test: str,
             categorical_test: str, limits: dict[str, float], psi_bins: int) -> ColumnDrift:
    """One column's verdict from its two samples (pandas Series); missing values are left
    out."""
    if _is_numeric(reference) and _is_numeric(current):
        ref, cur = _sorted_values(reference), _sorted_values(current)
        _require_values(name, len(ref), len(cur))
        test = numeric_test if numeric_test != "auto" else (
            "wasserstein" if max(len(ref), len(cur)) > LARGE_SAMPLE else "ks")
        return _numeric(name, ref, cur, test, limits[test], psi_bins)
    ref, cur = reference.dropna().to_numpy(), current.dropna().to_numpy()
    _require_values(name, len(ref), len(cur))
    test = categorical_test if categorical_test != "auto" else (
        "jensenshannon" if max(len(ref), len(cur)) > LARGE_SAMPLE else "chi2")
    return _categorical(name, ref, cur, test, limits[test])


def _require_values(name: str, reference_rows: int, current_rows: int) -> None:
    if reference_rows == 0 or current_rows == 0:
        side = "reference" if reference_rows == 0 else "current"
        raise DriftInputError(f"column {name!r} has no values in the {side} sample",
                              field=side)

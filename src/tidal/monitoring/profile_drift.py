"""Drift of current rows against a stored profile instead of the reference rows themselves.

A profile keeps, per numeric column, a fixed-bin histogram over [min, max] with the count,
mean and standard deviation, and per categorical column its top values with their counts.
The tests are the same ones drift runs on rows, computed on those bins: Kolmogorov-Smirnov
on the two CDFs at the bin edges (a lower bound of the exact statistic, so it flags no more
often), Wasserstein as the L1 distance between the binned CDFs normalised by the reference's
standard deviation, chi-square and Jensen-Shannon on the top values plus one "other" bucket,
and PSI on the profile's own bins. Current values outside the profile's range count in its
end bins.
"""

from __future__ import annotations

from typing import Any

#: The bucket of every category a profile did not keep among its top values.
OTHER = "(other)"


def _pvalue_ks(statistic: float, n1: int, n2: int) -> float:
    from scipy import stats

    effective = n1 * n2 / (n1 + n2)
    return float(stats.kstwobign.sf(statistic * effective ** 0.5))


def numeric_from_profile(column: dict[str, Any], values: Any, test: str,
                         psi: Any) -> tuple[float, float, int]:
    """(statistic, psi, reference rows) of sorted float ``values`` against a profiled
    numeric column; ``psi`` computes PSI from two count arrays."""
    import numpy as np

    histogram = column.get("histogram")
    if not histogram or not histogram.get("counts"):
        raise ValueError("the profile keeps no histogram of this column")
    edges = np.asarray(histogram["edges"], dtype=float)
    ref_counts = np.asarray(histogram["counts"], dtype=float)
    inner = edges[1:-1]
    cur_counts = np.bincount(np.searchsorted(inner, values, side="right"),
                             minlength=len(ref_counts)).astype(float)
    n1, n2 = int(ref_counts.sum()), len(values)
    ref_cdf = np.cumsum(ref_counts) / n1
    cur_cdf = np.cumsum(cur_counts) / n2
    if test == "ks":
        statistic = _pvalue_ks(float(np.max(np.abs(ref_cdf - cur_cdf))), n1, n2)
    else:
        widths = np.diff(edges)
        distance = float(np.sum(np.abs(ref_cdf - cur_cdf)[:-1] * widths[1:]))
        spread = float(column.get("std") or 0.0)
        statistic = distance / spread if spread > 0 else (0.0 if distance == 0 else np.inf)
    return statistic, psi(ref_counts, cur_counts), n1


def categorical_from_profile(column: dict[str, Any], values: Any
                             ) -> tuple[Any, Any, list[str], tuple[str, ...], tuple[str, ...]]:
    """Reference and current counts over the profile's top values plus "other", the bucket
    names, and the new and missing categories (new only when the profile kept every
    category, so that "not in the top" cannot be mistaken for "never seen")."""
    import numpy as np
    import pandas as pd

    top = {str(value): int(count) for value, count in column.get("top") or []}
    rest = int(column.get("count", 0)) - int(column.get("nulls", 0)) - sum(top.values())
    current = pd.Series(values).astype(str).value_counts()
    names = list(top)
    ref = [top[name] for name in names]
    cur = [int(current.get(name, 0)) for name in names]
    unseen = [name for name in current.index if name not in top]
    if rest > 0 or unseen:
        names.append(OTHER)
        ref.append(max(rest, 0))
        cur.append(int(sum(current[name] for name in unseen)))
    new = tuple(sorted(unseen)) if rest <= 0 else ()
    missing = tuple(name for name in top if name not in current.index)
    return np.asarray(ref, dtype=float), np.asarray(cur, dtype=float), names, new, missing

"""What drift accepts as a sample, turned into rows or a stored profile.

A sample can be data in memory (pandas, Arrow, Polars, a dict of columns), a dataset version
or its URI (its rows), a stored profile (a dataset version's ``profile``, so a training set
need not be kept around to monitor against it), or a window of an endpoint's prediction log
(the inputs the model saw, and its predictions, whose drift is reported on its own).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from tidal.errors import InvalidValueError


class DriftInputError(InvalidValueError):
    """The samples cannot be compared (empty, different columns, unknown test)."""


@dataclass(frozen=True)
class Sample:
    """Rows (``frame``) or a profile (``profile``: its "columns" mapping and "rows"), and
    the predictions made on the rows when the sample is a prediction-log window."""

    frame: Any = None
    profile: dict[str, Any] | None = None
    predictions: Any = None

    @property
    def columns(self) -> list[str]:
        if self.profile is not None:
            return list(self.profile["columns"])
        return [str(c) for c in self.frame.columns]


def _is_profile(data: Any) -> bool:
    return isinstance(data, dict) and isinstance(data.get("columns"), dict) and "rows" in data


def _scalar_predictions(meta: Any) -> Any:
    """The window's answers as one value per row: a class or number as is, a list of class
    probabilities as the last class's (the positive class of a binary model)."""
    import pandas as pd

    values = [p[-1] if isinstance(p, list) and p else p for p in meta["prediction"]]
    series = pd.Series(values, index=meta.index, dtype=object).dropna()
    if len(series) and all(isinstance(v, (int, float)) and not isinstance(v, bool)
                           for v in series):
        return series.astype(float)
    return series.astype(str)


def sample(data: Any, what: str) -> Sample:
    """``data`` as a Sample; a DriftInputError naming ``what`` when it is none of the
    accepted kinds."""
    import pandas as pd

    from tidal.monitoring.log_window import LogWindow

    if isinstance(data, pd.DataFrame):
        return Sample(frame=data)
    if isinstance(data, LogWindow):
        answered = data.meta[data.meta["error"].isna()]
        return Sample(frame=data.inputs, predictions=_scalar_predictions(answered))
    if _is_profile(data):
        return Sample(profile=data)
    module = type(data).__module__.split(".", 1)[0]
    if module in ("pyarrow", "polars"):
        return Sample(frame=data.to_pandas())
    if type(data).__name__ == "DatasetVersion" or (isinstance(data, str) and
                                                     data.startswith("datasets:/")):
        from tidal.data.versions import get

        version = get(data) if isinstance(data, str) else data
        return Sample(frame=version.to_pandas())
    if isinstance(data, dict):
        return Sample(frame=pd.DataFrame(data))
    raise DriftInputError(
        f"{what} must be a pandas DataFrame, an Arrow table, a dict of columns, a dataset "
        f"version or its URI, a stored profile or a prediction-log window; got "
        f"{type(data).__name__}", field=what)

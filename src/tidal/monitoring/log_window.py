"""A window of an endpoint's prediction log as data: the inputs the models saw, what they
answered, and the labels that came back, one row per predicted row.

The prediction log keeps each request's inputs and outputs as JSON text (requests differ in
shape and size); monitoring needs columns. A request of n rows becomes n rows here, each
carrying its request's id, time, route and version, its own output and, when feedback came,
its own label (a request of several rows is labelled with a list of as many labels).

A label the answers cannot be compared with (a string where the model answers numbers, a list
left on one row, whatever got into the feedback store past its checks) is left out of
``labelled`` and counted in ``invalid_labels``: one bad label must never turn a window's
metrics into NaN or reach a retraining set.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import cached_property
from typing import TYPE_CHECKING, Any

from tidal.errors import InvalidValueError

if TYPE_CHECKING:
    import pandas as pd

    from tidal.store.workspace import Workspace

#: Columns of ``LogWindow.meta``, one row per predicted row.
META_COLUMNS = ("request_id", "timestamp", "route", "model_uri", "model_version", "latency_ms",
                "error", "prediction", "label")


@dataclass(frozen=True)
class LogWindow:
    """``inputs``: the model's input columns (rows whose request was logged without inputs,
    under ``log_sample`` < 1, are left out of it and have ``has_inputs`` False in ``meta``);
    ``meta``: the columns of ``META_COLUMNS`` plus ``has_inputs``, on the same index."""

    endpoint: str
    start: datetime | None
    end: datetime | None
    inputs: pd.DataFrame
    meta: pd.DataFrame

    @cached_property
    def _labels(self) -> tuple[Any, Any]:
        """(answered rows with a label, which of those labels can be compared)."""
        import numpy as np

        meta = self.meta
        answered = (meta["label"].notna() & meta["error"].isna()).to_numpy()
        comparable = np.zeros(len(meta), dtype=bool)
        comparable[answered] = comparable_labels(meta["label"][answered].tolist(),
                                                 meta["prediction"][answered].tolist())
        return answered, comparable

    @property
    def labelled(self) -> pd.DataFrame:
        """``meta`` rows that have an answer (failed requests have none) and a label it can
        be compared with."""
        answered, comparable = self._labels
        return self.meta[answered & comparable]

    @property
    def invalid_labels(self) -> pd.DataFrame:
        """``meta`` rows with an answer and a label it cannot be compared with."""
        answered, comparable = self._labels
        return self.meta[answered & ~comparable]

    def __len__(self) -> int:
        return len(self.meta)


def unwrap(value: Any) -> Any:
    """A one-element list (a regressor's 2-D output row) as its element."""
    return value[0] if isinstance(value, list) and len(value) == 1 else value


def _kind(value: Any) -> str | None:
    """"number" or "string" for a scalar one row's answer can be compared with, else None."""
    if isinstance(value, str):
        return "string"
    if isinstance(value, bool | int) or (isinstance(value, float) and not math.isnan(value)):
        return "number"
    return None


def comparable_labels(labels: Sequence[Any], predictions: Sequence[Any]) -> list[bool]:
    """Which labels can be compared with their rows' answers: a number or a string (never a
    list, an object or NaN), of the kind the answers are (numbers for numbers, strings for
    strings); where the answers are probability rows, of the labels' most common kind."""
    kinds = [_kind(label) for label in labels]
    answers = {_kind(unwrap(p)) for p in predictions if p is not None}
    if len(answers) == 1 and None not in answers:
        expected = answers.pop()
    else:
        counts = Counter(kind for kind in kinds if kind is not None)
        expected = max(("number", "string"), key=lambda kind: counts[kind])
    return [kind == expected for kind in kinds]


def _bounds(start: datetime | None, end: datetime | None,
            last: timedelta | None) -> tuple[datetime | None, datetime | None]:
    if last is not None:
        if start is not None:
            raise InvalidValueError("give start or last, not both", field="last")
        if not isinstance(last, timedelta) or last <= timedelta(0):
            raise InvalidValueError(f"last must be a positive timedelta, got {last!r}",
                                    field="last")
        end = end or datetime.now(UTC)
        start = end - last
    return start, end


def read_window(endpoint: str, *, start: datetime | None = None, end: datetime | None = None,
                last: timedelta | None = None, requests: int | None = None,
                route: str | None = None, workspace: Workspace | None = None) -> LogWindow:
    """The live (not shadow) answers of ``endpoint`` with start <= time < end, or in the
    ``last`` span before ``end`` (default now), optionally only the latest ``requests``
    requests and only one ``route``, joined with their feedback."""
    import orjson
    import pandas as pd

    from tidal.serving.feedback import join_feedback

    if requests is not None and (isinstance(requests, bool) or not isinstance(requests, int)
                                 or requests < 1):
        raise InvalidValueError(f"requests must be a positive integer, got {requests!r}",
                                field="requests")
    start, end = _bounds(start, end, last)
    joined = join_feedback(endpoint, start=start, end=end, workspace=workspace)
    if route is not None:
        joined = joined[joined["route"] == route]
    if requests is not None:
        joined = joined.iloc[-requests:]
    meta: dict[str, list[Any]] = {name: [] for name in META_COLUMNS}
    meta["has_inputs"] = []
    input_rows: list[tuple[dict[str, list[Any]], int]] = []
    for record in joined.itertuples(index=False):
        # Missing text is None or NaN depending on pandas' string dtype: test for str.
        outputs = orjson.loads(record.outputs) if isinstance(record.outputs, str) else []
        inputs = orjson.loads(record.inputs) if isinstance(record.inputs, str) else None
        inputs = inputs or None  # an object without columns holds no inputs either
        count = len(next(iter(inputs.values()))) if inputs else max(len(outputs), 1)
        label = record.label
        labels = label if isinstance(label, list) and len(label) == count and count > 1 \
            else [label] * count
        for i in range(count):
            meta["request_id"].append(record.request_id)
            meta["timestamp"].append(record.timestamp)
            meta["route"].append(record.route)
            meta["model_uri"].append(record.model_uri)
            meta["model_version"].append(record.model_version)
            meta["latency_ms"].append(record.latency_ms)
            meta["error"].append(record.error)
            meta["prediction"].append(outputs[i] if i < len(outputs) else None)
            meta["label"].append(labels[i])
            meta["has_inputs"].append(inputs is not None)
        if inputs is not None:
            input_rows.append((inputs, count))
    # Answers and labels stay the Python values JSON gave (a column of ints and None would
    # otherwise become floats); a missing error is None, not NaN.
    loose = {name: pd.Series(meta.pop(name), dtype=object)
             for name in ("error", "prediction", "label")}
    frame = pd.DataFrame(meta)
    for name, values in loose.items():
        frame[name] = values.where(values.notna(), None)
    frame = frame[[*META_COLUMNS, "has_inputs"]]
    if len(frame):
        frame["timestamp"] = pd.to_datetime(frame["timestamp"], utc=True)
    if input_rows:
        names = list(dict.fromkeys(name for rows, _ in input_rows for name in rows))
        inputs_frame = pd.DataFrame({name: [v for rows, count in input_rows
                                            for v in rows.get(name, [None] * count)]
                                     for name in names})
        inputs_frame.index = frame.index[frame["has_inputs"].to_numpy()]
    else:
        inputs_frame = pd.DataFrame(index=frame.index[:0])
    return LogWindow(endpoint, start, end, inputs_frame, frame)

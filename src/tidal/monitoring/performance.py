"""How an endpoint serves and how good its answers are, window by window, from its prediction log.

A window is a span of time or a number of requests, tumbling (one after the other) or sliding
(``step`` apart, overlapping). Windows are laid out backwards from the end of the log window
read (now, for ``last=``), so the latest one is always whole: "the last 15 minutes" or "the
last 500 requests" is the final row, and only the oldest window can be partial. Without a known
end, time windows fall on multiples of ``step`` since the epoch, so repeated calls agree.

Per window and per (route, model version): traffic, the share of rows whose model failed,
latency percentiles (over requests, not rows: a request's rows share one latency), and, on the
rows whose label came back, model metrics. A metric that a window cannot support (AUC with one
class, precision with no positive prediction, r2 on one row) is NaN there, as NannyML does,
because one thin window must not break a report over many.
Labels the answers cannot be compared with (see ``log_window.comparable_labels``) are left out
of the metrics and counted per window in ``invalid_labels``: one bad label in the feedback
store never blanks a metric.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from tidal.errors import InvalidValueError
from tidal.models.gates import METRICS
from tidal.monitoring.log_window import LogWindow, comparable_labels, read_window, unwrap

if TYPE_CHECKING:
    import numpy as np
    import pandas as pd

    from tidal.store.workspace import Workspace

#: Metrics that need class probabilities rather than predicted labels.
PROBABILITY_METRICS = ("roc_auc", "log_loss")
REGRESSION_METRICS = ("rmse", "mae", "r2")
CLASSIFICATION_METRICS = tuple(m for m in METRICS if m not in REGRESSION_METRICS)
#: What rows can be grouped by inside a window.
GROUP_COLUMNS = ("route", "model_version", "model_uri")
#: Latency percentiles reported, as column suffixes.
LATENCY_QUANTILES = (50, 95, 99)
#: Most windows one call lays out; more means a step far too small for the span.
MAX_WINDOWS = 10_000

_NAN = float("nan")


class _Unsupported(Exception):
    """The values cannot give this metric (wrong kind, unknown class order): the metric is NaN."""


# -- one metric -------------------------------------------------------------------------------

def check_metrics(metrics: str | Sequence[str] | None) -> list[str] | None:
    """The metric names as a list (one name alone is accepted), or InvalidValueError naming
    the accepted ones; None stays None (pick by the data)."""
    if metrics is None:
        return None
    names = [metrics] if isinstance(metrics, str) else list(metrics)
    unknown = [name for name in names if name not in METRICS]
    if unknown:
        raise InvalidValueError(f"unknown metric(s) {', '.join(map(repr, unknown))}; accepted: "
                                f"{', '.join(METRICS)}", field="metric")
    return list(dict.fromkeys(names))


def _missing(value: Any) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value))


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _key(label: Any) -> str:
    """A label as the JSON object key a model's {class: probability} answer uses for it."""
    if isinstance(label, bool):
        return "true" if label else "false"
    if isinstance(label, float) and label.is_integer():
        return str(int(label))
    return str(label)


def _sorted(values: set[Any]) -> list[Any]:
    try:
        return sorted(values)
    except TypeError as error:  # labels of mixed types (1 and "a")
        raise _Unsupported from error


def _binary_classes(truth: list[Any], classes: Sequence[Any] | None) -> list[Any]:
    """[negative, positive] for scores that are P(positive): 0/1 labels, else the two labels
    seen, in sorted order (scikit-learn's ``classes_``)."""
    if classes is not None:
        if len(classes) != 2:
            raise InvalidValueError(f"predictions are single scores, which need two classes; "
                                    f"classes has {len(classes)}", field="classes")
        return list(classes)
    seen = set(truth)
    if seen <= {0, 1}:
        return [0, 1]
    if len(seen) == 2:
        return _sorted(seen)
    raise _Unsupported


def _matrix(truth: list[Any], predictions: list[Any],
            classes: Sequence[Any] | None) -> tuple[list[Any], np.ndarray, np.ndarray]:
    """(classes, truth as class indices, probabilities rows x classes) of predictions that are
    lists or dicts of class probabilities."""
    import numpy as np

    if all(isinstance(p, dict) for p in predictions):
        keys = ([_key(c) for c in classes] if classes is not None
                else list(dict.fromkeys(k for p in predictions for k in p)))
        matrix = np.array([[float(p.get(k, 0.0)) for k in keys] for p in predictions])
        index = {k: i for i, k in enumerate(keys)}
        labels = [_key(t) for t in truth]
        # Classes are named as the labels name them (1, not the JSON key "1").
        back = {_key(t): t for t in truth}
        names: list[Any] = (list(classes) if classes is not None
                            else [back.get(k, k) for k in keys])
    elif all(isinstance(p, list) for p in predictions):
        widths = {len(p) for p in predictions}
        if len(widths) != 1:
            raise _Unsupported
        width = widths.pop()
        matrix = np.array(predictions, dtype=float)
        if classes is not None:
            if len(classes) != width:
                raise InvalidValueError(f"predictions hold {width} class probabilities but "
                                        f"classes names {len(classes)}", field="classes")
            names = list(classes)
        else:
            seen = set(truth)
            if all(_is_number(t) or isinstance(t, bool) for t in seen) and all(
                    float(t).is_integer() and 0 <= t < width for t in seen):
                names = list(range(width))
            elif len(seen) == width:
                names = _sorted(seen)
            else:  # which column is which class cannot be told
                raise _Unsupported
        index = {name: i for i, name in enumerate(names)}
        labels = truth
    else:
        raise _Unsupported
    try:
        codes = np.array([index[label] for label in labels])
    except (KeyError, TypeError) as error:  # a label the model has no probability for
        raise _Unsupported from error
    return names, codes, matrix


def _predicted_labels(truth: list[Any], predictions: list[Any],
                      classes: Sequence[Any] | None) -> list[Any]:
    """Class labels from labels, from probability rows (the likeliest class) or from binary
    scores in [0, 1] (positive at 0.5 and above)."""
    if all(isinstance(p, list | dict) for p in predictions):
        names, _, matrix = _matrix(truth, predictions, classes)
        return [names[i] for i in matrix.argmax(axis=1)]
    if any(isinstance(p, list | dict) for p in predictions):
        raise _Unsupported
    if all(_is_number(p) for p in predictions) and any(
            not float(p).is_integer() for p in predictions):
        if not all(0.0 <= p <= 1.0 for p in predictions):
            raise _Unsupported  # numbers that are neither labels nor probabilities
        negative, positive = _binary_classes(truth, classes)
        return [positive if p >= 0.5 else negative for p in predictions]
    return predictions


def _probabilities(truth: list[Any], predictions: list[Any], classes: Sequence[Any] | None
                   ) -> tuple[list[Any], np.ndarray, np.ndarray]:
    """(classes, truth as class indices, probability matrix) for AUC and log loss."""
    import numpy as np

    if all(_is_number(p) for p in predictions):
        scores = np.array(predictions, dtype=float)
        if not ((scores >= 0) & (scores <= 1)).all():
            raise _Unsupported
        names = _binary_classes(truth, classes)
        if not set(truth) <= set(names):
            raise _Unsupported
        codes = np.array([names.index(t) for t in truth])
        return names, codes, np.column_stack([1 - scores, scores])
    return _matrix(truth, predictions, classes)


def _compute(metric: str, truth: list[Any], predictions: list[Any],
             classes: Sequence[Any] | None) -> float:
    import numpy as np
    from sklearn import metrics as m

    if metric in REGRESSION_METRICS:
        if not all(_is_number(v) for v in (*truth, *predictions)):
            raise _Unsupported
        y, p = np.array(truth, dtype=float), np.array(predictions, dtype=float)
        if metric == "rmse":
            return math.sqrt(m.mean_squared_error(y, p))
        if metric == "mae":
            return m.mean_absolute_error(y, p)
        return m.r2_score(y, p) if len(y) >= 2 else _NAN
    if metric in PROBABILITY_METRICS:
        names, codes, matrix = _probabilities(truth, predictions, classes)
        if metric == "log_loss":
            return m.log_loss(codes, matrix, labels=list(range(len(names))))
        if len(set(codes.tolist())) < 2:
            return _NAN
        if len(names) == 2:
            return m.roc_auc_score(codes, matrix[:, 1])
        return m.roc_auc_score(codes, matrix, multi_class="ovr",
                               labels=list(range(len(names))))
    labels = _predicted_labels(truth, predictions, classes)
    y, p = np.asarray(truth), np.asarray(labels)
    if metric == "accuracy":
        return m.accuracy_score(y, p)
    if metric == "balanced_accuracy":
        return m.balanced_accuracy_score(y, p)
    seen = set(truth) | set(labels)
    average = "binary" if seen <= {0, 1} else "macro"
    scorer = {"f1": m.f1_score, "precision": m.precision_score, "recall": m.recall_score}[metric]
    return scorer(y, p, average=average, zero_division=np.nan)


def _metric(metric: str, truth: list[Any], predictions: list[Any],
            classes: Sequence[Any] | None) -> float:
    """A checked metric on paired values; NaN when the values cannot give it."""
    pairs = [(t, unwrap(p)) for t, p in zip(truth, predictions, strict=True)
             if not _missing(t) and not _missing(p)]
    if not pairs:
        return _NAN
    truth = [t for t, _ in pairs]
    predictions = [p for _, p in pairs]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # sklearn's UndefinedMetricWarning: NaN says it
        try:
            return float(_compute(metric, truth, predictions, classes))
        except _Unsupported:
            return _NAN
        except (ValueError, TypeError):  # scikit-learn refusing these values
            return _NAN


def prediction_metric(metric: str, truth: Sequence[Any], predictions: Sequence[Any], *,
                      classes: Sequence[Any] | None = None) -> float:
    """``metric`` (one of ``tidal.models.gates.METRICS``) of predictions against true labels.

    Predictions may be labels, numbers (regression), binary scores in [0, 1] (P of the
    positive class: 1, or the larger of the two labels), or rows of class probabilities as
    lists or {class: probability} dicts. List rows follow ``classes`` when given, else classes
    0..k-1 when the labels are such integers, else the sorted labels seen. Pairs with a missing
    side are left out; NaN when the rest cannot give the metric (AUC with one class...).
    """
    (name,) = check_metrics([metric])
    truth, predictions = list(truth), list(predictions)
    if len(truth) != len(predictions):
        raise InvalidValueError(f"truth has {len(truth)} values and predictions "
                                f"{len(predictions)}; they must pair up", field="predictions")
    return _metric(name, truth, predictions, classes)


def default_metrics(truth: Sequence[Any], predictions: Sequence[Any]) -> list[str]:
    """The metrics that fit the data: regression ones when labels or predictions are
    non-integer numbers outside binary scores; else classification ones, with AUC and log
    loss only when the predictions are probabilities (hard labels make them misleading)."""
    values = [t for t in truth if not _missing(t)]
    if not values:
        return []
    numbers = all(_is_number(t) for t in values)
    fractional = any(not float(t).is_integer() for t in values) if numbers else False
    answers = [unwrap(p) for p in predictions if not _missing(p)]
    scores = [p for p in answers if _is_number(p) and not float(p).is_integer()]
    if numbers and (fractional or any(not 0 <= p <= 1 for p in scores)):
        return list(REGRESSION_METRICS)
    if scores or any(isinstance(p, list | dict) for p in answers):
        return list(CLASSIFICATION_METRICS)
    return [m for m in CLASSIFICATION_METRICS if m not in PROBABILITY_METRICS]


# -- windows ----------------------------------------------------------------------------------

def _check_window(size: timedelta | int | None, step: timedelta | int | None
                  ) -> tuple[timedelta | int | None, timedelta | int | None]:
    def kind(value: Any, name: str) -> str:
        if isinstance(value, timedelta):
            if value <= timedelta(0):
                raise InvalidValueError(f"{name} must be a positive duration, got {value}",
                                        field=name)
            return "time"
        if isinstance(value, int) and not isinstance(value, bool):
            if value < 1:
                raise InvalidValueError(f"{name} must be at least 1 request, got {value}",
                                        field=name)
            return "count"
        raise InvalidValueError(f"{name} must be a timedelta (a span of time) or an integer "
                                f"(a number of requests), got {value!r}", field=name)

    if size is None:
        if step is not None:
            raise InvalidValueError("step needs a window size", field="step")
        return None, None
    size_kind = kind(size, "size")
    if step is None:
        return size, size
    if kind(step, "step") != size_kind:
        wanted = "a timedelta" if size_kind == "time" else "a number of requests"
        raise InvalidValueError(f"step must be of the same kind as size ({wanted})",
                                field="step")
    if step > size:  # type: ignore[operator]
        raise InvalidValueError(f"step ({step}) must not exceed size ({size}): windows would "
                                "skip the rows between them", field="step")
    return size, step


def _nanoseconds(span: timedelta) -> int:
    return span // timedelta(microseconds=1) * 1000


def _bounds(count: int, anchor: int, first: int, size: int, step: int
            ) -> tuple[np.ndarray, np.ndarray]:
    """Starts and ends of windows laid out back from ``anchor`` until one starts at or before
    ``first``, oldest first."""
    import numpy as np

    if count > MAX_WINDOWS:
        raise InvalidValueError(f"these windows would be {count} over the span; the limit is "
                                f"{MAX_WINDOWS}: use a larger step or a shorter span",
                                field="step")
    ends = anchor - step * np.arange(count, dtype=np.int64)[::-1]
    starts = ends - size
    keep = starts > first - step
    return starts[keep], ends[keep]


def _time_windows(stamps: np.ndarray, anchor: int | None, size: int, step: int
                  ) -> list[tuple[int, int, int, int]]:
    """(row from, row to, start ns, end ns) of each non-empty time window."""
    import numpy as np

    first, last = int(stamps[0]), int(stamps[-1])
    if anchor is None:  # epoch-aligned: the first multiple of step after the last row
        anchor = (last // step + 1) * step
    count = (anchor - first) // step + size // step + 2
    starts, ends = _bounds(count, anchor, first, size, step)
    lows = np.searchsorted(stamps, starts, side="left")
    highs = np.searchsorted(stamps, ends, side="left")
    return [(int(lo), int(hi), int(s), int(e))
            for lo, hi, s, e in zip(lows, highs, starts, ends, strict=True) if hi > lo]


def _count_windows(sequence: np.ndarray, stamps: np.ndarray, size: int, step: int
                   ) -> list[tuple[int, int, int, int]]:
    """(row from, row to, first ns, last ns) of each window of ``size`` requests."""
    import numpy as np

    total = int(sequence[-1]) + 1
    starts, ends = _bounds((total - 1) // step + size // step + 2, total, 0, size, step)
    lows = np.searchsorted(sequence, np.maximum(starts, 0), side="left")
    highs = np.searchsorted(sequence, ends, side="left")
    return [(int(lo), int(hi), int(stamps[lo]), int(stamps[hi - 1]))
            for lo, hi in zip(lows, highs, strict=True) if hi > lo]


def _columns(by: Sequence[str], metrics: list[str]) -> list[str]:
    latency = [f"latency_p{q}_ms" for q in LATENCY_QUANTILES]
    return ["window", "start", "end", *by, "requests", "rows", "errors", "error_rate", *latency,
            "labelled", "invalid_labels", *metrics]


def _figures(rows: pd.DataFrame, metrics: list[str], classes: Sequence[Any] | None
             ) -> dict[str, Any]:
    import numpy as np

    failed = rows["error"].notna().to_numpy()
    firsts = rows.drop_duplicates("_request")
    latency = firsts["latency_ms"].to_numpy(dtype=float)
    latency = latency[~np.isnan(latency)]
    quantiles = (np.percentile(latency, LATENCY_QUANTILES) if len(latency)
                 else [_NAN] * len(LATENCY_QUANTILES))
    invalid = rows["_invalid"].to_numpy() & ~failed
    labelled = rows[rows["label"].notna().to_numpy() & ~failed]
    figures: dict[str, Any] = {
        "requests": len(firsts), "rows": len(rows), "errors": int(failed.sum()),
        "error_rate": float(failed.mean()),
        **{f"latency_p{q}_ms": float(v) for q, v in zip(LATENCY_QUANTILES, quantiles,
                                                       strict=True)},
        "labelled": len(labelled), "invalid_labels": int(invalid.sum()),
    }
    truth, predictions = labelled["label"].tolist(), labelled["prediction"].tolist()
    for metric in metrics:
        figures[metric] = _metric(metric, truth, predictions, classes)
    return figures


def window_performance(window: LogWindow, *, size: timedelta | int | None = None,
                       step: timedelta | int | None = None,
                       metrics: str | Sequence[str] | None = None,
                       by: Sequence[str] = ("route", "model_version"),
                       classes: Sequence[Any] | None = None) -> pd.DataFrame:
    """Service and model figures of a read log window, per window and per ``by`` group.

    ``size``: None (the whole log window as one), a timedelta, or a number of requests;
    ``step``: for sliding windows, how far apart they start (default ``size``: tumbling).
    ``metrics``: names from ``METRICS``; None picks by the labels (none without labels).
    ``classes``: the model's class order, for probability rows (see ``prediction_metric``).
    Columns: window (0 = oldest), start, end (time windows: their bounds, [start, end); count
    and whole windows: the first and last request's times), the ``by`` columns, requests,
    rows, errors, error_rate, latency_p50_ms/p95/p99, labelled, then one per metric. Windows
    with no rows are left out.
    """
    import numpy as np
    import pandas as pd

    size, step = _check_window(size, step)
    chosen = check_metrics(metrics)
    groups = list(by)
    bad = [name for name in groups if name not in GROUP_COLUMNS]
    if bad or len(set(groups)) != len(groups):
        raise InvalidValueError(f"by must name distinct columns among {', '.join(GROUP_COLUMNS)}"
                                f", got {groups}", field="by")
    meta = window.meta.sort_values("timestamp", kind="stable").reset_index(drop=True)
    has_label = meta["label"].notna().to_numpy()
    comparable = np.ones(len(meta), dtype=bool)
    comparable[has_label] = comparable_labels(meta["label"][has_label].tolist(),
                                              meta["prediction"][has_label].tolist())
    meta["_invalid"] = ~comparable
    meta["label"] = meta["label"].where(pd.Series(comparable, index=meta.index), None)
    if chosen is None:
        chosen = default_metrics(meta["label"].tolist(), meta["prediction"].tolist())
    columns = _columns(groups, chosen)
    if meta.empty:
        return pd.DataFrame(columns=columns)
    stamps = (pd.to_datetime(meta["timestamp"], utc=True).astype("datetime64[ns, UTC]")
              .astype("int64").to_numpy())
    new = (meta["request_id"] != meta["request_id"].shift()) | (meta["timestamp"]
                                                                 != meta["timestamp"].shift())
    meta["_request"] = new.cumsum().to_numpy() - 1
    if size is None:
        spans = [(0, len(meta), int(stamps[0]), int(stamps[-1]))]
    elif isinstance(size, timedelta):
        anchor = None if window.end is None else int(pd.Timestamp(window.end).value)
        spans = _time_windows(stamps, anchor, _nanoseconds(size), _nanoseconds(step))
    else:
        spans = _count_windows(meta["_request"].to_numpy(), stamps, size, int(step))
    records = []
    for number, (low, high, start, end) in enumerate(spans):
        rows = meta.iloc[low:high]
        parts = rows.groupby(groups, sort=True, dropna=False) if groups else [((), rows)]
        for key, part in parts:
            keys = key if isinstance(key, tuple) else (key,)
            records.append({"window": number, "start": start, "end": end,
                            **dict(zip(groups, keys, strict=True)),
                            **_figures(part, chosen, classes)})
    frame = pd.DataFrame.from_records(records, columns=columns)
    for name in ("start", "end"):
        frame[name] = pd.to_datetime(frame[name].astype(np.int64), utc=True)
    return frame


def latest_window(frame: pd.DataFrame) -> pd.DataFrame:
    """The rows of a performance frame's newest window: what alerts and gauges report."""
    return frame[frame["window"] == frame["window"].max()] if len(frame) else frame


def performance(endpoint: str | LogWindow, *, size: timedelta | int | None = None,
                step: timedelta | int | None = None, metrics: str | Sequence[str] | None = None,
                by: Sequence[str] = ("route", "model_version"),
                classes: Sequence[Any] | None = None, start: datetime | None = None,
                end: datetime | None = None, last: timedelta | None = None,
                requests: int | None = None, route: str | None = None,
                workspace: Workspace | None = None) -> pd.DataFrame:
    """Performance and service figures of an endpoint's prediction log (see
    ``window_performance`` for the windows and columns); ``start``/``end``/``last``/
    ``requests``/``route`` choose the log window as ``read_window`` does. An already read
    ``LogWindow`` may be given instead of the endpoint's name."""
    if isinstance(endpoint, LogWindow):
        given = {"start": start, "end": end, "last": last, "requests": requests, "route": route}
        clash = [name for name, value in given.items() if value is not None]
        if clash:
            raise InvalidValueError(f"{', '.join(clash)} select a log window to read; a "
                                    "LogWindow was given, already read", field=clash[0])
        window = endpoint
    else:
        window = read_window(endpoint, start=start, end=end, last=last, requests=requests,
                             route=route, workspace=workspace)
    return window_performance(window, size=size, step=step, metrics=metrics, by=by,
                              classes=classes)

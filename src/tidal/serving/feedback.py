"""Ground truth sent back for earlier predictions, joined to the prediction log by request id.

Labels often arrive long after the answer (a click, a chargeback), so they are stored apart:
each ``record_feedback`` call writes one Parquet file at
``feedback/<endpoint>/date=YYYY-MM-DD/hour=HH/<ms>-<random>.parquet`` before it returns, with
the same all-or-nothing write as the prediction log. Nothing is updated in place: a second
label for a request is a new row, and the join takes the latest.

Labels are checked against the endpoint's models' outputs (see ``tidal.serving.labels``) before
anything is stored. Over HTTP a label also needs a request id that a server of the workspace
issued for this endpoint (``tidal.serving.request_ids``); the Python API, which whoever holds
the workspace uses to import labels for logged answers (a backfill, a replay that wrote its own
log), checks ids that way only when given the issuer.
"""

from __future__ import annotations

import secrets
from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

import pandas as pd
import pyarrow as pa

from tidal.errors import InvalidValueError, NotFoundError
from tidal.ids import check_name, now_ms
from tidal.serving.labels import LabelRule, endpoint_label_rule
from tidal.serving.prediction_log import (
    TIMESTAMP,
    dumps,
    epoch_ms,
    loads,
    partition,
    read_partitions,
    read_prediction_log,
    write_parquet,
)
from tidal.serving.request_ids import RequestIds, claimed_rows

if TYPE_CHECKING:
    from tidal.store.workspace import Workspace

FEEDBACK_FOLDER = "feedback"
MAX_ITEMS = 10_000
MAX_REQUEST_ID = 128
SCHEMA = pa.schema([("request_id", pa.string()), ("label", pa.string()),
                    ("timestamp", TIMESTAMP)])
# Feedback can only follow its prediction, but workers' clocks differ a little: a join looks
# this far before the predictions' start for their labels.
_CLOCK_SKEW = timedelta(hours=1)
_KEYS = ("request_id", "label")


class UnknownRequestError(NotFoundError):
    """Feedback for a request id that no server of the workspace issued for the endpoint."""


def _workspace(workspace: Workspace | None) -> Workspace:
    from tidal.store.workspace import current_workspace

    return workspace or current_workspace()


def _check_item(position: int, item: Any, endpoint: str, rule: LabelRule,
                issuer: RequestIds | None) -> tuple[str, str]:
    """The request id and the label's JSON text of one item; InvalidValueError,
    LabelTypeError or UnknownRequestError naming the item's field."""
    where = f"items[{position}]"
    if not isinstance(item, dict):
        raise InvalidValueError(f"{where} must be an object with 'request_id' and 'label', got "
                                f"{type(item).__name__}", field=where)
    unknown = sorted(str(key) for key in item if key not in _KEYS)
    if unknown:
        raise InvalidValueError(f"{where} has unknown key(s) {', '.join(unknown)}; accepted: "
                                "request_id, label", field=f"{where}.{unknown[0]}")
    request_id = item.get("request_id")
    if not isinstance(request_id, str) or not request_id or len(request_id) > MAX_REQUEST_ID:
        got = (f"{len(request_id)} characters" if isinstance(request_id, str)
               else "none" if "request_id" not in item else type(request_id).__name__)
        raise InvalidValueError(f"{where}.request_id must be a non-empty string of at most "
                                f"{MAX_REQUEST_ID} characters (the id the prediction was "
                                f"answered with), got {got}", field=f"{where}.request_id")
    accepted = "a number, string, boolean, or a list or object of those"
    try:
        label = dumps(item["label"]) if "label" in item else "null"
    except TypeError as error:
        raise InvalidValueError(f"{where}.label cannot be stored as JSON ({error}); accepted: "
                                f"{accepted}", field=f"{where}.label") from None
    if label == "null":  # also NaN, which JSON has no word for
        raise InvalidValueError(f"{where}.label is missing, null or NaN; accepted: {accepted}",
                                field=f"{where}.label")
    if issuer is None:
        rows = claimed_rows(request_id)
    else:
        rows = issuer.rows(endpoint, request_id)
        if rows is None:
            raise UnknownRequestError(f"{where}.request_id {request_id!r} is "
                                      f"not an id this server gave an answer of {endpoint!r}; "
                                      "send the request_id of a prediction's response",
                                      field=f"{where}.request_id")
    rule.check(loads(label), rows, f"{where}.label")
    return request_id, label


def record_feedback(endpoint: str, items: list[dict], *, at: datetime | None = None,
                    workspace: Workspace | None = None, request_ids: RequestIds | None = None,
                    labels: LabelRule | None = None) -> int:
    """Store labels for earlier predictions of an endpoint; returns how many.

    ``items``: ``[{"request_id": ..., "label": ...}, ...]``, at most 10,000. ``at``: when the
    labels became known, for labels imported after the fact (a backfill, a replay); default
    now. Windows of labelled traffic count a label from that moment. ``request_ids``: refuse
    (UnknownRequestError, 404) ids this issuer did not give for the endpoint, as servers do;
    without it any id goes. ``labels``: the rule labels must follow (LabelTypeError, 422);
    default: the output signatures of the versions the endpoint serves now. Everything is
    checked before anything is written, and the file is durable when this returns.
    """
    check_name(endpoint, what="endpoint", field="endpoint")
    if not isinstance(items, Sequence) or isinstance(items, str | bytes):
        raise InvalidValueError(f"feedback items must be a list of objects with 'request_id' "
                                f"and 'label', got {type(items).__name__}", field="items")
    if len(items) > MAX_ITEMS:
        raise InvalidValueError(f"{len(items)} feedback items in one call; the limit is "
                                f"{MAX_ITEMS}, send them in several calls", field="items")
    stamp = now_ms() if at is None else epoch_ms(at, "at")
    if not items:
        return 0
    ws = _workspace(workspace)
    rule = endpoint_label_rule(endpoint, ws) if labels is None else labels
    rows = [_check_item(position, item, endpoint, rule, request_ids)
            for position, item in enumerate(items)]
    table = pa.table({"request_id": [request_id for request_id, _ in rows],
                      "label": [label for _, label in rows],
                      "timestamp": [stamp] * len(rows)}, schema=SCHEMA)
    folder = partition(FEEDBACK_FOLDER, endpoint, stamp // 3_600_000)
    write_parquet(ws.artifacts, f"{folder}/{stamp}-{secrets.token_hex(8)}.parquet", table)
    return len(rows)


def read_feedback(endpoint: str, *, start: datetime | None = None, end: datetime | None = None,
                  workspace: Workspace | None = None) -> pd.DataFrame:
    """Feedback received for an endpoint with start <= timestamp < end, oldest first:
    columns request_id, label (decoded from JSON) and timestamp."""
    table = read_partitions(_workspace(workspace).artifacts, FEEDBACK_FOLDER, endpoint, SCHEMA,
                            start, end)
    frame = table.to_pandas()
    frame["label"] = pd.Series([loads(text) for text in table["label"].to_pylist()],
                               index=frame.index, dtype=object)
    return frame


def join_feedback(endpoint: str, *, start: datetime | None = None, end: datetime | None = None,
                  include_shadow: bool = False,
                  workspace: Workspace | None = None) -> pd.DataFrame:
    """The prediction log of an endpoint with start <= timestamp < end, each row with the
    latest label received for its request id: the columns of ``read_prediction_log`` plus
    ``label`` (None where no feedback came) and ``feedback_timestamp``. Shadow answers are
    left out unless ``include_shadow``."""
    ws = _workspace(workspace)
    predictions = read_prediction_log(endpoint, start=start, end=end, workspace=ws)
    if not include_shadow:
        predictions = predictions[~predictions["shadow"]].reset_index(drop=True)
    feedback = read_feedback(endpoint, start=None if start is None else start - _CLOCK_SKEW,
                             workspace=ws)
    latest = (feedback.drop_duplicates("request_id", keep="last")
              .rename(columns={"timestamp": "feedback_timestamp"}))
    joined = predictions.merge(latest, on="request_id", how="left", sort=False)
    joined["label"] = joined["label"].astype(object).where(joined["label"].notna(), None)
    return joined

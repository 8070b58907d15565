"""Request bodies to checked columns, one request at a time, before any batching.

Each request is checked on its own against the model's signature, so one bad request gets its
own 4xx answer and never fails the requests it would have been batched with. The checks run
on the JSON values directly (a type test per value), which for the usual few rows costs a few
microseconds; the batch is turned into a DataFrame once, after coalescing.
"""

from __future__ import annotations

import reprlib
from collections.abc import Mapping
from typing import Any

from tidal.errors import InvalidValueError, TidalError
from tidal.models.signature import ColumnSpec, Signature, SignatureMismatchError, TensorSpec

MAX_PROBLEMS = 20
#: The deepest a value of an ``object`` column may nest (lists and objects in lists...).
#: orjson parses up to 1,024 levels, but Python code that walks a value (repr, NumPy, a
#: model) recurses once a level and fails at about 1,000 with a RecursionError.
MAX_DEPTH = 32
DEFAULT_MAX_ROWS = 10_000
_REPR = reprlib.Repr()
_REPR.maxlevel, _REPR.maxstring, _REPR.maxother, _REPR.maxlist, _REPR.maxdict = 3, 30, 30, 4, 4
INT_RANGES = {"int8": (-2**7, 2**7 - 1), "int16": (-2**15, 2**15 - 1),
               "int32": (-2**31, 2**31 - 1), "int64": (-2**63, 2**63 - 1),
               "uint8": (0, 2**8 - 1), "uint16": (0, 2**16 - 1), "uint32": (0, 2**32 - 1),
               "uint64": (0, 2**64 - 1)}


class BadRequestError(InvalidValueError):
    """The request is not a well-formed request of the protocol (400)."""


class PayloadTooLargeError(TidalError):
    """The body is larger than the server accepts (413)."""

    status_code = 413


class UnsupportedMediaTypeError(TidalError):
    """The body is not JSON (415)."""

    status_code = 415


def check_rows(rows: int, max_rows: int, field: str) -> None:
    """Refuse a request of more rows than the server takes, before any work on them: one
    huge request would hold the model, and every request batched behind it, for seconds."""
    if rows > max_rows:
        raise PayloadTooLargeError(f"the request has {rows} rows; this server takes at most "
                                   f"{max_rows} per request (max_rows_per_request, tidal serve "
                                   "--max-rows-per-request): send them in several requests",
                                   field=field)


def too_deep(value: Any, limit: int = MAX_DEPTH) -> bool:
    """Whether lists and objects nest more than ``limit`` levels in ``value``; walked with a
    stack of its own, so no depth can exhaust Python's."""
    stack = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        children = item.values() if isinstance(item, dict) else item
        for child in children:
            if isinstance(child, (list, dict)):
                if depth >= limit:
                    return True
                stack.append((child, depth + 1))
    return False


class Columns:
    """A request's input as named columns of equal length."""

    __slots__ = ("data", "rows")

    def __init__(self, data: dict[str, Any], rows: int) -> None:
        self.data = data
        self.rows = rows


def _value_problem(value: Any, spec: ColumnSpec) -> str | None:
    """Why a JSON value cannot be a value of the column, or None when it can."""
    kind = spec.type
    if value is None:
        return None if spec.nullable or kind == "object" else "null where the model needs a value"
    cls = type(value)
    if kind in ("float64", "float32"):
        if cls is float or cls is int or cls is bool:
            return None
    elif kind in INT_RANGES:
        if cls is float and value.is_integer():
            value = int(value)
            cls = int
        if cls is int:
            low, high = INT_RANGES[kind]
            return None if low <= value <= high else f"{value} is outside {kind}'s range"
    elif kind == "bool":
        if cls is bool:
            return None
    elif kind in ("string", "category", "datetime"):
        if cls is str:
            return None
    else:  # object
        if (cls is list or cls is dict) and too_deep(value):
            return f"a value nested more than {MAX_DEPTH} levels deep"
        return None
    return f"expected {kind}, got {_json_type(value)} {short(value)}"


def _json_type(value: Any) -> str:
    return {bool: "boolean", int: "integer", float: "number", str: "string", list: "array",
            dict: "object"}.get(type(value), type(value).__name__)


def short(value: Any) -> str:
    """A value as an error message quotes it: a few levels and characters of it, however deep
    or long it is."""
    return _REPR.repr(value)


def check_columns(signature: Signature | None, columns: Columns, *,
                  extra: str = "refuse") -> Columns:
    """The request's columns checked against the signature's column inputs: every missing or
    unexpected column and every bad value is named (the first few of each), in one 422."""
    if signature is None or isinstance(signature.inputs, TensorSpec):
        return columns
    specs: tuple[ColumnSpec, ...] = signature.inputs
    data = columns.data
    problems: list[str] = []
    missing = [s.name for s in specs if s.name not in data]
    if missing:
        problems.append("missing column" + ("s " if len(missing) > 1 else " ")
                        + ", ".join(repr(n) for n in missing))
    names = {s.name for s in specs}
    unexpected = [n for n in data if n not in names]
    if unexpected and extra == "refuse":
        problems.append("unexpected column" + ("s " if len(unexpected) > 1 else " ")
                        + ", ".join(repr(n) for n in unexpected[:MAX_PROBLEMS])
                        + f" (the model takes {', '.join(s.name for s in specs)})")
    for spec in specs:
        values = data.get(spec.name)
        if values is None:
            continue
        if hasattr(values, "dtype"):  # a NumPy column from a binary tensor: checked by dtype
            problem = _array_problem(values, spec)
            if problem:
                problems.append(f"column {spec.name!r}: {problem}")
            continue
        for row, value in enumerate(values):
            problem = _value_problem(value, spec)
            if problem is not None:
                where = f" in row {row}" if columns.rows > 1 else ""
                problems.append(f"column {spec.name!r}{where}: {problem}")
                break
        if len(problems) >= MAX_PROBLEMS:
            break
    if problems:
        raise SignatureMismatchError(problems)
    if unexpected:
        return Columns({s.name: data[s.name] for s in specs}, columns.rows)
    return columns


def _array_problem(values: Any, spec: ColumnSpec) -> str | None:
    kind = values.dtype.kind
    target = spec.type
    if target == "object":
        return None
    if target.startswith("float") and kind in "fiub":
        if kind == "f" and not spec.nullable and bool(_isnan_any(values)):
            return "NaN where the model needs a value"
        return None
    if target in INT_RANGES and kind in "iu":
        return None
    if target == "bool" and kind == "b":
        return None
    if target in ("string", "category", "datetime") and kind in "UOS":
        return None
    return f"expected {target}, got a {values.dtype} tensor"


def _isnan_any(values: Any) -> bool:
    import numpy as np

    return bool(np.isnan(values).any())


def _records(records: Any, max_rows: int) -> Columns:
    if not isinstance(records, list) or not records:
        raise BadRequestError("'records' must be a non-empty list of objects, one per row",
                              field="records")
    check_rows(len(records), max_rows, "records")
    first = records[0]
    if not isinstance(first, dict):
        raise BadRequestError(f"record 0 is {_json_type(first)}; each record is an object "
                              "of column name to value", field="records")
    names = list(first)
    data: dict[str, list[Any]] = {name: [] for name in names}
    appenders = [(name, data[name].append) for name in names]
    for position, record in enumerate(records):
        if not isinstance(record, dict):
            raise BadRequestError(f"record {position} is {_json_type(record)}; each record is "
                                  "an object of column name to value", field="records")
        if len(record) != len(names) or (position and record.keys() != first.keys()):
            odd = sorted(set(record).symmetric_difference(names))
            raise BadRequestError(f"record {position} has other columns than record 0 "
                                  f"(differing: {', '.join(map(repr, odd[:10]))}); every "
                                  "record needs the same columns", field="records")
        for name, append in appenders:
            append(record[name])
    return Columns(data, len(records))


def _columns(columns: Any, max_rows: int) -> Columns:
    if not isinstance(columns, dict) or not columns:
        raise BadRequestError("'columns' must be a non-empty object of column name to list of "
                              "values", field="columns")
    lengths = set()
    for name, values in columns.items():
        if not isinstance(values, list):
            raise BadRequestError(f"column {name!r} is {_json_type(values)}; each column is a "
                                  "list of values, one per row", field="columns")
        lengths.add(len(values))
    if len(lengths) != 1 or 0 in lengths:
        raise BadRequestError(f"the columns have lengths {sorted(lengths)}; they must all have "
                              "the same, non-zero, length", field="columns")
    rows = lengths.pop()
    check_rows(rows, max_rows, "columns")
    return Columns(columns, rows)


def _instances(instances: Any, spec: TensorSpec, max_rows: int) -> Columns:
    import numpy as np

    if not isinstance(instances, list) or not instances:
        raise BadRequestError("'instances' must be a non-empty list, one entry per row",
                              field="instances")
    check_rows(len(instances), max_rows, "instances")
    try:
        array = np.asarray(instances)
    except (ValueError, TypeError):
        raise BadRequestError("'instances' is not a regular array (rows of different shapes)",
                              field="instances") from None
    if array.dtype.kind not in "biuf":
        raise SignatureMismatchError([(f"'instances' holds {_json_type(instances[0])} "
                                       f"values; the model takes a {spec.dtype} tensor")])
    return Columns({"": array}, len(array))


def parse_simple(body: Any, signature: Signature | None, max_rows: int = DEFAULT_MAX_ROWS,
                 ) -> tuple[Columns, Mapping[str, Any]]:
    """A simple-protocol body: ``{"records": [...]}``, ``{"columns": {...}}``, or for tensor
    models ``{"instances": [...]}``; plus the optional ``key`` (A/B routing) and ``id``.
    More than ``max_rows`` rows are refused (413) before any row is read."""
    if not isinstance(body, dict):
        raise BadRequestError(f"the body is a JSON {_json_type(body)}; send an object with "
                              "'records' or 'columns'", field="body")
    given = [k for k in ("records", "columns", "instances") if k in body]
    unknown = [k for k in body if k not in ("records", "columns", "instances", "key", "id")]
    if unknown:
        raise BadRequestError(f"unknown field(s) {', '.join(map(repr, unknown))}; the body "
                              "takes 'records' or 'columns', and optionally 'key' and 'id'",
                              field="body")
    if len(given) != 1:
        raise BadRequestError("give exactly one of 'records' (a list of row objects) or "
                              "'columns' (an object of column lists)", field="body")
    tensor = signature is not None and isinstance(signature.inputs, TensorSpec)
    if given[0] == "instances":
        if not tensor:
            raise BadRequestError("'instances' is for tensor models; this model takes columns: "
                                  "send 'records' or 'columns'", field="instances")
        spec: TensorSpec = signature.inputs  # type: ignore[union-attr]
        return _instances(body["instances"], spec, max_rows), body
    if tensor:
        raise BadRequestError("this model takes a tensor: send {'instances': [...]}",
                              field=given[0])
    parsed = _records(body["records"], max_rows) if given[0] == "records" \
        else _columns(body["columns"], max_rows)
    return parsed, body


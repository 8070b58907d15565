"""Model signatures: what a model takes and gives, inferred from examples and enforced on input.

A signature is either a list of named, typed columns (tabular models) or one tensor with a
dtype and a shape (-1 where any size goes). It is inferred from an input example and the
model's output on it, stored with the version as JSON, and checked on every ``predict`` and
by serving. Checking coerces casts that lose nothing a model cares about (wider integers,
integers to floats, floats between widths, integral floats to integers, ISO strings to
datetimes) and refuses the rest, naming every bad column at once so a caller fixes a request
in one go.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import cached_property
from typing import TYPE_CHECKING, Any

from tidal.errors import InvalidValueError

if TYPE_CHECKING:
    import numpy as np
    import pandas as pd

#: Column types a signature knows; "object" accepts anything (a column of mixed values).
COLUMN_TYPES = ("bool", "int8", "int16", "int32", "int64", "uint8", "uint16", "uint32",
                "uint64", "float32", "float64", "string", "datetime", "category", "object")
_INTS = {"int8", "int16", "int32", "int64", "uint8", "uint16", "uint32", "uint64"}
_FLOATS = {"float32", "float64"}


class SignatureMismatchError(InvalidValueError):
    """Input does not fit the model's signature; the message names every bad column."""

    status_code = 422

    def __init__(self, problems: Sequence[str], *, what: str = "input") -> None:
        self.problems = list(problems)
        listing = "; ".join(self.problems)
        super().__init__(f"{what} does not match the model signature: {listing}",
                         field="input")


@dataclass(frozen=True)
class ColumnSpec:
    name: str
    type: str
    nullable: bool = False

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "type": self.type, "nullable": self.nullable}


@dataclass(frozen=True)
class TensorSpec:
    dtype: str
    shape: tuple[int, ...]

    def to_dict(self) -> dict[str, Any]:
        return {"dtype": self.dtype, "shape": list(self.shape)}


Spec = tuple[ColumnSpec, ...] | TensorSpec


def _spec_to_json(spec: Spec | None) -> Any:
    if spec is None:
        return None
    if isinstance(spec, TensorSpec):
        return {"tensor": spec.to_dict()}
    return {"columns": [c.to_dict() for c in spec]}


def _spec_from_json(data: Any, field: str) -> Spec | None:
    if data is None:
        return None
    if not isinstance(data, Mapping) or len(data) != 1:
        raise InvalidValueError(f"signature {field} must be {{'columns': [...]}} or "
                                f"{{'tensor': {{...}}}}, got {data!r}", field="signature")
    if "tensor" in data:
        tensor = data["tensor"]
        try:
            import numpy as np

            dtype = np.dtype(tensor["dtype"]).name
            shape = tuple(int(d) for d in tensor["shape"])
        except (TypeError, KeyError, ValueError) as error:
            raise InvalidValueError(f"signature {field} tensor {tensor!r} is not valid: "
                                    f"{error}", field="signature") from None
        if not shape or any(d < -1 or d == 0 for d in shape):
            raise InvalidValueError(f"signature {field} tensor shape {list(shape)} is not "
                                    "valid; use positive sizes and -1 for any size",
                                    field="signature")
        return TensorSpec(dtype, shape)
    columns = data.get("columns")
    if not isinstance(columns, list) or not columns:
        raise InvalidValueError(f"signature {field} columns must be a non-empty list",
                                field="signature")
    specs = []
    for column in columns:
        if not isinstance(column, Mapping) or not isinstance(column.get("name"), str) \
                or column.get("type") not in COLUMN_TYPES:
            raise InvalidValueError(
                f"signature {field} column {column!r} is not valid; each needs a 'name' and a "
                f"'type' among {', '.join(COLUMN_TYPES)}", field="signature")
        specs.append(ColumnSpec(column["name"], column["type"], bool(column.get("nullable"))))
    names = [c.name for c in specs]
    if len(set(names)) != len(names):
        raise InvalidValueError(f"signature {field} names a column twice: {names}",
                                field="signature")
    return tuple(specs)


@dataclass(frozen=True)
class Signature:
    """The inputs a model accepts and the outputs it gives."""

    inputs: Spec
    outputs: Spec | None = None

    @property
    def columns(self) -> list[str] | None:
        """Input column names in order, or None for a tensor signature."""
        return None if isinstance(self.inputs, TensorSpec) else [c.name for c in self.inputs]

    def to_dict(self) -> dict[str, Any]:
        return {"inputs": _spec_to_json(self.inputs), "outputs": _spec_to_json(self.outputs)}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Signature:
        if not isinstance(data, Mapping) or "inputs" not in data:
            raise InvalidValueError("a signature is a mapping with 'inputs' (and 'outputs')",
                                    field="signature")
        inputs = _spec_from_json(data["inputs"], "inputs")
        if inputs is None:
            raise InvalidValueError("a signature needs inputs", field="signature")
        return cls(inputs, _spec_from_json(data.get("outputs"), "outputs"))

    def validate_input(self, data: Any, *, extra: str = "refuse") -> Any:
        """Check ``data`` against the inputs and return it in the model's form.

        Column signatures give a pandas DataFrame with the signature's columns, in its order
        and types; tensor signatures give a NumPy array of its dtype. ``extra``: "refuse"
        (default) names unexpected columns as an error; "drop" leaves them out.
        """
        if extra not in ("refuse", "drop"):
            raise InvalidValueError(f"extra must be 'refuse' or 'drop', got {extra!r}",
                                    field="extra")
        if isinstance(self.inputs, TensorSpec):
            return _validate_tensor(self.inputs, data)
        frame = to_frame(data, [c.name for c in self.inputs])
        if self._conforms(frame):
            return frame
        return _validate_columns(self.inputs, frame, extra)

    @cached_property
    def _fast_check(self) -> tuple[Any, list[Any], Any]:
        """Column names, a test per column of whether a pandas dtype already is the column's
        type, and the positions of columns that must hold no nulls: what the common case, a
        frame that already has the right columns and types, is checked with."""
        import numpy as np
        import pandas as pd

        assert not isinstance(self.inputs, TensorSpec)
        names = pd.Index([c.name for c in self.inputs])
        tests = [_dtype_test(c.type) for c in self.inputs]
        required = np.array([not c.nullable for c in self.inputs])
        return names, tests, required

    def _conforms(self, frame: pd.DataFrame) -> bool:
        """Whether ``frame`` needs no change at all: checked with whole-frame operations, which
        keeps ``predict``'s overhead small next to the model's own time."""
        names, tests, required = self._fast_check
        if not frame.columns.equals(names):
            return False
        actual, nulls = _dtypes_and_nulls(frame)
        if not all(test(found) for test, found in zip(tests, actual, strict=True)):
            return False
        return not (nulls & required).any()

    def compatibility_problems(self, previous: Signature) -> list[str]:
        """Why callers of a model with ``previous`` could not call this one (empty: they can)."""
        problems: list[str] = []
        if isinstance(self.inputs, TensorSpec) or isinstance(previous.inputs, TensorSpec):
            if not (isinstance(self.inputs, TensorSpec)
                    and isinstance(previous.inputs, TensorSpec)):
                return ["one signature takes a tensor and the other columns"]
            if not _tensor_castable(previous.inputs.dtype, self.inputs.dtype):
                problems.append(f"input dtype {previous.inputs.dtype} cannot become "
                                f"{self.inputs.dtype}")
            if not _shapes_compatible(previous.inputs.shape, self.inputs.shape):
                problems.append(f"input shape {list(previous.inputs.shape)} does not fit "
                                f"{list(self.inputs.shape)}")
        else:
            old = {c.name: c for c in previous.inputs}
            for column in self.inputs:
                before = old.get(column.name)
                if before is None:
                    problems.append(f"column {column.name!r} is required but was not before")
                elif not _column_castable(before.type, column.type):
                    problems.append(f"column {column.name!r} was {before.type} and is now "
                                    f"{column.type}")
                elif before.nullable and not column.nullable:
                    problems.append(f"column {column.name!r} allowed nulls and no longer does")
        if previous.outputs is not None and self.outputs is not None:
            old_out, new_out = _describe_spec(previous.outputs), _describe_spec(self.outputs)
            if old_out != new_out:
                problems.append(f"outputs changed from {old_out} to {new_out}")
        return problems

    def __str__(self) -> str:
        out = "" if self.outputs is None else f" -> {_describe_spec(self.outputs)}"
        return f"{_describe_spec(self.inputs)}{out}"


def _describe_spec(spec: Spec) -> str:
    if isinstance(spec, TensorSpec):
        return f"tensor {spec.dtype}{list(spec.shape)}"
    return "(" + ", ".join(f"{c.name}: {c.type}{'?' if c.nullable else ''}" for c in spec) + ")"


def _dtypes_and_nulls(frame: pd.DataFrame) -> tuple[list[Any], Any]:
    """Each column's dtype, and whether it holds a null, read block by block.

    pandas keeps a frame as a few 2-D blocks (one per dtype run); asking the public API for
    dtypes and nulls builds a Series and a boolean frame, which costs several times more than
    the check itself. The block walk uses pandas' block manager, so any surprise there (a
    pandas that stores frames differently, object columns whose nulls take a look at values)
    falls back to the public API.
    """
    import numpy as np

    dtypes: list[Any] = [None] * frame.shape[1]
    nulls = np.zeros(frame.shape[1], dtype=bool)
    try:
        for block in frame._mgr.blocks:
            positions = block.mgr_locs.indexer
            values = block.values
            if isinstance(values, np.ndarray):
                if values.dtype.kind == "f":
                    nulls[positions] = np.isnan(values).any(axis=1)
                elif values.dtype.kind in "mM":
                    nulls[positions] = np.isnat(values).any(axis=1)
                elif values.dtype.kind not in "biu":
                    raise TypeError("only the public API tells nulls in this block")
            else:
                nulls[positions] = values.isna().any()
            for position in np.arange(frame.shape[1])[positions]:
                dtypes[position] = block.dtype
    except (AttributeError, TypeError, ValueError, IndexError):
        return list(frame.dtypes.values), frame.isna().to_numpy().any(axis=0)
    return dtypes, nulls


def _dtype_test(column_type: str) -> Any:
    """A test of whether a pandas dtype is ``column_type`` as it stands (object columns of
    strings fail it: only a look at their values can tell, which the full check takes)."""
    import numpy as np
    import pandas as pd

    if column_type in _INTS or column_type in _FLOATS or column_type == "bool":
        expected = np.dtype(column_type)
        return lambda dtype: dtype == expected
    if column_type == "string":
        return lambda dtype: isinstance(dtype, pd.StringDtype)
    if column_type == "category":
        return lambda dtype: isinstance(dtype, pd.CategoricalDtype)
    if column_type == "datetime":
        return lambda dtype: pd.api.types.is_datetime64_any_dtype(dtype)
    return lambda dtype: True


# -- inference --------------------------------------------------------------------------------

def column_type(series: pd.Series) -> str:
    """The signature type of a pandas column."""
    import pandas as pd

    dtype = series.dtype
    if isinstance(dtype, pd.CategoricalDtype):
        return "category"
    if pd.api.types.is_bool_dtype(dtype):
        return "bool"
    if pd.api.types.is_datetime64_any_dtype(dtype):
        return "datetime"
    if pd.api.types.is_integer_dtype(dtype) or pd.api.types.is_float_dtype(dtype):
        return str(dtype).lower()
    if isinstance(dtype, pd.StringDtype):
        return "string"
    if pd.api.types.is_string_dtype(dtype):
        kind = pd.api.types.infer_dtype(series, skipna=True)
        if kind in ("string", "empty"):
            return "string"
    return "object"


def _infer_spec(data: Any, what: str) -> Spec:
    import numpy as np
    import pandas as pd

    if isinstance(data, np.ndarray):
        if data.ndim == 0:
            raise InvalidValueError(f"{what} is a scalar; give a batch of rows",
                                    field=what.replace(" ", "_"))
        dtype = data.dtype.name if data.dtype.kind in "biuf" else "object"
        return TensorSpec(dtype, (-1, *data.shape[1:]))
    if hasattr(data, "detach") and hasattr(data, "numpy"):  # a torch tensor
        return _infer_spec(data.detach().cpu().numpy(), what)
    if isinstance(data, pd.Series):
        data = data.to_frame(name=str(data.name) if data.name is not None else "prediction")
    frame = to_frame(data, None)
    if frame.shape[1] == 0:
        raise InvalidValueError(f"{what} has no columns", field=what.replace(" ", "_"))
    return tuple(ColumnSpec(str(name), column_type(frame[name]), bool(frame[name].isna().any()))
                 for name in frame.columns)


def infer_signature(input_example: Any, output: Any = None) -> Signature:
    """A signature from an input example (DataFrame, Arrow table, dict of columns, NumPy array
    or tensor) and, optionally, the model's output on it."""
    inputs = _infer_spec(input_example, "input example")
    outputs = None if output is None else _infer_spec(output, "output")
    return Signature(inputs, outputs)


# -- conversion and checks --------------------------------------------------------------------

def to_frame(data: Any, columns: list[str] | None) -> pd.DataFrame:
    """A pandas DataFrame from the kinds of tabular input Tidal accepts. A 2-D NumPy array
    takes the signature's column names when it has as many columns."""
    import numpy as np
    import pandas as pd

    if isinstance(data, pd.DataFrame):
        return data
    module = type(data).__module__.split(".", 1)[0]
    if module in ("pyarrow", "polars"):
        return data.to_pandas()
    if isinstance(data, np.ndarray):
        if data.ndim == 1 and columns is not None and len(columns) == 1:
            data = data.reshape(-1, 1)
        if data.ndim != 2:
            raise SignatureMismatchError([(f"an array of shape {list(data.shape)} is not a "
                                           "table of rows; give a 2-D array")])
        if columns is not None and data.shape[1] != len(columns):
            raise SignatureMismatchError([(f"the array has {data.shape[1]} columns; the model "
                                           f"takes {len(columns)}: {', '.join(columns)}")])
        return pd.DataFrame(data, columns=columns)
    if isinstance(data, Mapping):
        try:
            return pd.DataFrame({str(k): v for k, v in data.items()})
        except ValueError as error:
            raise SignatureMismatchError([f"the columns do not form a table: {error}"]) \
                from None
    if isinstance(data, list) and all(isinstance(row, Mapping) for row in data):
        return pd.DataFrame.from_records(data)
    raise InvalidValueError(
        f"model input must be a pandas DataFrame, an Arrow table, a NumPy array, a dict of "
        f"columns or a list of records, got {type(data).__name__}", field="input")


def _column_castable(source: str, target: str) -> bool:
    if source == target or target == "object":
        return True
    if target in _FLOATS:
        return source in _INTS or source in _FLOATS or source == "bool"
    if target in _INTS:
        return source in _INTS
    if target == "category":
        return source in ("string", "category")
    return False


def _coerce_column(series: pd.Series, spec: ColumnSpec) -> tuple[pd.Series | None, str | None]:
    """The column in the spec's type, or a reason it cannot be."""
    import numpy as np
    import pandas as pd

    actual = column_type(series)
    target = spec.type
    if actual == target or target == "object":
        return series, None
    try:
        if target in _FLOATS and (actual in _INTS or actual in _FLOATS or actual == "bool"):
            return series.astype(target), None
        if target in _INTS and (actual in _INTS or actual in _FLOATS):
            values = series.to_numpy()
            if actual in _FLOATS:
                if np.isnan(values).any():
                    return None, f"expected {target}, got floats with missing values"
                if not np.array_equal(values, np.floor(values)):
                    return None, f"expected {target}, got floats with a fractional part"
            info = np.iinfo(target)
            if len(values) and (values.min() < info.min or values.max() > info.max):
                return None, f"expected {target}, got values outside its range"
            return series.astype(target), None
        if target == "datetime" and actual in ("string", "object"):
            return pd.to_datetime(series, utc=None, format="ISO8601"), None
        if target == "category" and actual in ("string", "object", "category"):
            return series.astype("category"), None
        if target == "string" and actual == "category":
            return series.astype(object), None
    except (ValueError, TypeError, OverflowError):
        return None, f"expected {target}, got {actual} values that do not convert"
    return None, f"expected {target}, got {actual}"


def _validate_columns(specs: tuple[ColumnSpec, ...], frame: pd.DataFrame,
                      extra: str) -> pd.DataFrame:
    import pandas as pd

    names = [c.name for c in specs]
    present = [str(c) for c in frame.columns]
    problems: list[str] = []
    missing = [n for n in names if n not in present]
    if missing:
        problems.append("missing column" + ("s " if len(missing) > 1 else " ")
                        + ", ".join(repr(n) for n in missing))
    unexpected = [n for n in present if n not in set(names)]
    if unexpected and extra == "refuse":
        problems.append("unexpected column" + ("s " if len(unexpected) > 1 else " ")
                        + ", ".join(repr(n) for n in unexpected)
                        + f" (the model takes {', '.join(names)})")
    if len(set(present)) != len(present):
        problems.append("a column name appears twice")
        raise SignatureMismatchError(problems)
    fast = present == names and not problems
    nulls = dict(zip(present, frame.isna().to_numpy().sum(axis=0).tolist(), strict=True))
    out: dict[str, pd.Series] = {}
    for spec in specs:
        if spec.name not in present:
            continue
        series = frame[spec.name]
        if not spec.nullable and nulls[spec.name]:
            problems.append(f"column {spec.name!r} has {nulls[spec.name]} missing values; the "
                            "model does not accept missing values there")
            continue
        coerced, problem = _coerce_column(series, spec)
        if problem:
            problems.append(f"column {spec.name!r}: {problem}")
        elif coerced is not series:
            fast = False
            out[spec.name] = coerced
        else:
            out[spec.name] = series
    if problems:
        raise SignatureMismatchError(problems)
    if fast:
        return frame
    return pd.DataFrame(out, index=frame.index)[names]


def _tensor_castable(source: Any, target: Any) -> bool:
    import numpy as np

    source, target = np.dtype(source), np.dtype(target)
    if target.kind == "O":
        return True
    return bool(np.can_cast(source, target, casting="same_kind")) \
        or (source.kind in "iub" and target.kind == "f")


def _shapes_compatible(actual: Sequence[int], expected: Sequence[int]) -> bool:
    return len(actual) == len(expected) and all(
        e == -1 or a == e or a == -1 for a, e in zip(actual, expected, strict=True))


def _validate_tensor(spec: TensorSpec, data: Any) -> np.ndarray:
    import numpy as np
    import pandas as pd

    if isinstance(data, pd.DataFrame):
        data = data.to_numpy()
    elif type(data).__module__.split(".", 1)[0] == "pyarrow":
        data = data.to_pandas().to_numpy()
    elif hasattr(data, "detach") and hasattr(data, "numpy"):
        data = data.detach().cpu().numpy()
    elif not isinstance(data, np.ndarray):
        try:
            data = np.asarray(data)
        except (ValueError, TypeError):
            raise SignatureMismatchError(["the input is not an array"]) from None
    problems = []
    if not _shapes_compatible(data.shape, spec.shape):
        problems.append(f"shape {list(data.shape)} does not fit {list(spec.shape)} "
                        "(-1: any size)")
    if data.dtype.name != spec.dtype and not _tensor_castable(data.dtype, spec.dtype):
        problems.append(f"dtype {data.dtype} cannot be cast to {spec.dtype}")
    if problems:
        raise SignatureMismatchError(problems)
    if data.dtype.name == spec.dtype or spec.dtype == "object":
        return data
    return data.astype(spec.dtype)

"""What a label for an endpoint's answers may be, read from its models' output signatures.

A label that cannot be compared with the answers (``"yes"`` for a model that predicts 0 or 1,
a list for a single-output model) would only turn a window's metrics to NaN later, so it is
refused when it arrives, naming the item and the expected type. The rule comes from the
``predict`` outputs of the versions the endpoint serves: a tensor's dtype (booleans, integer
class labels, finite numbers, strings or any scalar) and its width (one value a row, or a list
of k for a k-output model), or a column signature's columns. A version without an output
signature constrains nothing beyond JSON; with several versions, a label that suits any is
taken (a classifier may be replaced by one with other classes).

A label is one row's label, which a request of several rows shares, or a list of one label a
row.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from tidal.errors import InvalidValueError
from tidal.models.signature import ColumnSpec, Signature, TensorSpec

if TYPE_CHECKING:
    from tidal.store.workspace import Workspace

_KINDS = {"b": "bool", "i": "integer", "u": "integer", "f": "number"}
_COLUMN_KINDS = {"bool": "bool", "float32": "number", "float64": "number", "string": "string",
                 "datetime": "string"}
_WORDS = {"bool": "a boolean", "integer": "an integer class label", "number": "a finite number",
          "string": "a string", "scalar": "a string, number or boolean"}


class LabelTypeError(InvalidValueError):
    """A label that the endpoint's answers cannot be compared with (422)."""

    status_code = 422


def _is_scalar(value: Any) -> bool:
    return isinstance(value, str | int | float | bool)


def _fits(kind: str, value: Any) -> bool:
    if kind == "bool":
        return isinstance(value, bool) or (type(value) is int and value in (0, 1))
    if isinstance(value, bool):
        return False
    if kind == "integer":
        return type(value) is int or (isinstance(value, float) and value.is_integer())
    if kind == "number":
        return isinstance(value, int | float)  # JSON has no NaN or infinity: both arrive null
    if kind == "string":
        return isinstance(value, str)
    return _is_scalar(value)


@dataclass(frozen=True)
class OutputShape:
    """One model's answer for one row: ``kinds`` holds one kind for a single output, or one
    per output of a model with several (a label is then a list of as many)."""

    kinds: tuple[str, ...]
    several: bool
    dtype: str

    def describe(self) -> str:
        if not self.several:
            return f"{_WORDS[self.kinds[0]]} (the model answers {self.dtype})"
        return (f"a list of {len(self.kinds)} values, one per output "
                f"({', '.join(_WORDS[k] for k in self.kinds)})")

    def row_fits(self, value: Any) -> bool:
        if not self.several:
            return _fits(self.kinds[0], value)
        return (isinstance(value, list) and len(value) == len(self.kinds)
                and all(_fits(k, v) for k, v in zip(self.kinds, value, strict=True)))


def output_shape(signature: Signature | None) -> OutputShape | None:
    """The answer shape of a signature's outputs; None when it says too little to check by."""
    outputs = None if signature is None else signature.outputs
    if isinstance(outputs, TensorSpec):
        kind = _KINDS.get(_dtype_kind(outputs.dtype), "scalar")
        shape = outputs.shape
        if len(shape) == 1 or (len(shape) == 2 and shape[1] == 1):
            return OutputShape((kind,), False, outputs.dtype)
        if len(shape) == 2 and shape[1] > 1:
            return OutputShape((kind,) * shape[1], True, outputs.dtype)
        return None
    if isinstance(outputs, tuple) and outputs:
        kinds = tuple(_column_kind(spec) for spec in outputs)
        dtype = ", ".join(spec.type for spec in outputs)
        return OutputShape(kinds, len(kinds) > 1, dtype)
    return None


def _dtype_kind(dtype: str) -> str:
    import numpy as np

    return np.dtype(dtype).kind


def _column_kind(spec: ColumnSpec) -> str:
    if spec.type in _COLUMN_KINDS:
        return _COLUMN_KINDS[spec.type]
    return "integer" if spec.type.startswith(("int", "uint")) else "scalar"


@dataclass(frozen=True)
class LabelRule:
    """The label shapes an endpoint accepts: one per served version with an output signature;
    none means any JSON label."""

    endpoint: str
    shapes: tuple[OutputShape, ...]

    @classmethod
    def of(cls, endpoint: str, signatures: Sequence[Signature | None]) -> LabelRule:
        shapes = {s for s in map(output_shape, signatures) if s is not None}
        return cls(endpoint, tuple(sorted(shapes, key=repr)))

    def check(self, label: Any, rows: int | None, where: str) -> None:
        """Raise LabelTypeError unless ``label`` (decoded JSON) suits a request of ``rows``
        rows (None: not known) of one of the shapes."""
        if not self.shapes:
            return
        for shape in self.shapes:
            if shape.row_fits(label):
                return
            per_row = isinstance(label, list) and len(label) > 1 and (rows is None or (
                rows > 1 and len(label) == rows))
            if per_row and all(shape.row_fits(value) for value in label):
                return
        expected = " or ".join(dict.fromkeys(s.describe() for s in self.shapes))
        rows_note = "" if not rows or rows == 1 else \
            f", or a list of {rows} such labels, one per row of the request"
        raise LabelTypeError(f"{where} is {_show(label)}, which endpoint {self.endpoint!r}'s "
                             f"answers cannot be compared with; expected {expected}{rows_note}",
                             field=where)


def _show(value: Any) -> str:
    text = repr(value)
    return f"{text[:60]}... ({type(value).__name__})" if len(text) > 60 else \
        f"{text} ({type(value).__name__})"


def endpoint_label_rule(endpoint: str, workspace: Workspace) -> LabelRule:
    """The rule for an endpoint's labels from the versions it serves now (live and shadow).
    An endpoint that is not deployed (a log imported from elsewhere) or whose routes no longer
    resolve has no versions to tell by: any JSON label goes."""
    from tidal.errors import NotFoundError
    from tidal.serving.endpoints import get_endpoint
    from tidal.serving.runtime import resolve

    try:
        live, shadows = resolve(get_endpoint(endpoint, workspace=workspace), workspace)
    except NotFoundError:
        return LabelRule(endpoint, ())
    return LabelRule.of(endpoint, [version.signature for version in (*live, *shadows)])

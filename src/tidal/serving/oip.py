"""The Open Inference Protocol v2 (KServe, Seldon MLServer, Triton): model metadata from the
signature, and inference requests and responses, JSON or with Triton's binary tensor
extension (raw tensor bytes after the JSON header), which Triton's clients use by default.
"""

from __future__ import annotations

import math
from typing import Any

import orjson

from tidal.ids import parse_count
from tidal.models.signature import ColumnSpec, Signature, SignatureMismatchError, TensorSpec
from tidal.serving.inputs import (
    DEFAULT_MAX_ROWS,
    BadRequestError,
    Columns,
    check_rows,
    short,
)

HEADER_LENGTH = "inference-header-content-length"
#: NumPy's own limit is 64 dimensions; no model input needs more than a few.
MAX_DIMENSIONS = 32
MAX_DIMENSION = 2**31 - 1
_TO_NUMPY = {"BOOL": "bool", "INT8": "int8", "INT16": "int16", "INT32": "int32",
             "INT64": "int64", "UINT8": "uint8", "UINT16": "uint16", "UINT32": "uint32",
             "UINT64": "uint64", "FP16": "float16", "FP32": "float32", "FP64": "float64",
             "BYTES": "object"}
_FROM_TYPE = {"bool": "BOOL", "int8": "INT8", "int16": "INT16", "int32": "INT32",
              "int64": "INT64", "uint8": "UINT8", "uint16": "UINT16", "uint32": "UINT32",
              "uint64": "UINT64", "float16": "FP16", "float32": "FP32", "float64": "FP64"}
_NUMERIC_KINDS = {"BOOL": "b", "INT8": "i", "INT16": "i", "INT32": "i", "INT64": "i",
                  "UINT8": "u", "UINT16": "u", "UINT32": "u", "UINT64": "u", "FP16": "f",
                  "FP32": "f", "FP64": "f"}


def datatype(type_name: str) -> str:
    """The protocol's datatype for a signature column type or NumPy dtype name."""
    return _FROM_TYPE.get(type_name, "BYTES")


def tensor_metadata(signature: Signature | None, flavor: str) -> tuple[list[dict[str, Any]],
                                                                       list[dict[str, Any]]]:
    """Inputs and outputs as the metadata endpoint describes them: one tensor per column of
    shape [-1], or the model's tensor."""
    if signature is None:
        return [], [{"name": "predict", "datatype": "BYTES", "shape": [-1]}]
    if isinstance(signature.inputs, TensorSpec):
        inputs = [{"name": "input", "datatype": datatype(signature.inputs.dtype),
                   "shape": list(signature.inputs.shape)}]
    else:
        inputs = [{"name": c.name, "datatype": datatype(c.type), "shape": [-1]}
                  for c in signature.inputs]
    outputs_spec = signature.outputs
    if isinstance(outputs_spec, TensorSpec):
        outputs = [{"name": "predict", "datatype": datatype(outputs_spec.dtype),
                    "shape": list(outputs_spec.shape)}]
    elif outputs_spec:
        first = outputs_spec[0]
        outputs = [{"name": "predict", "datatype": datatype(first.type), "shape": [-1]}]
    else:
        outputs = [{"name": "predict", "datatype": "BYTES", "shape": [-1]}]
    return inputs, outputs


def split_body(body: bytes, header_length: str | None) -> tuple[Any, bytes]:
    """The JSON part of a request and the binary tensor bytes after it."""
    if header_length is None:
        json_part, rest = body, b""
    else:
        cut = parse_count(header_length)
        if cut is None or cut > len(body):
            raise BadRequestError(f"Inference-Header-Content-Length {header_length!r} is not a "
                                  f"length within the body ({len(body)} bytes)",
                                  field="Inference-Header-Content-Length")
        json_part, rest = body[:cut], body[cut:]
    try:
        return orjson.loads(json_part), rest
    except orjson.JSONDecodeError as error:
        raise BadRequestError(f"the inference request is not valid JSON: {error}",
                              field="body") from None


def _shape(tensor: dict[str, Any], position: int) -> list[int]:
    shape = tensor.get("shape")
    if not isinstance(shape, list) or not 0 < len(shape) <= MAX_DIMENSIONS or not all(
            type(d) is int and 0 <= d <= MAX_DIMENSION for d in shape):
        raise BadRequestError(f"input {position} has shape {short(shape)}; a shape is a list "
                              f"of 1 to {MAX_DIMENSIONS} non-negative integers, each at most "
                              f"{MAX_DIMENSION}", field="inputs")
    return shape


def _flatten(data: Any, levels: int) -> list[Any]:
    """Tensor data as one flat list, from data given flat or nested as the shape: at most
    ``levels`` deep, so deeper lists stay elements (and fail the datatype check) rather than
    being walked without end."""
    if not isinstance(data, list):
        return [data]
    for _ in range(levels - 1):
        if not data or not isinstance(data[0], list):
            break
        flat: list[Any] = []
        for item in data:
            if isinstance(item, list):
                flat.extend(item)
            else:
                flat.append(item)
        data = flat
    return data


def _binary(tensor: dict[str, Any], name: str, kind: str, count: int, size: int,
            blob: memoryview) -> Any:
    import numpy as np

    if kind != "BYTES":
        width = np.dtype(_TO_NUMPY[kind]).itemsize
        if size % width:
            raise BadRequestError(f"input {name!r}: binary_data_size {size} is not a whole "
                                  f"number of {kind} values ({width} bytes each)",
                                  field="inputs")
        array = np.frombuffer(blob, dtype=_TO_NUMPY[kind])
        if array.size != count:
            raise BadRequestError(f"input {name!r}: {size} bytes of {kind} hold {array.size} "
                                  f"values; its shape needs {count}", field="inputs")
        return array
    values, offset = [], 0
    while offset < size:
        if offset + 4 > size:
            raise BadRequestError(f"input {name!r}: truncated BYTES element", field="inputs")
        length = int.from_bytes(blob[offset:offset + 4], "little")
        offset += 4
        if offset + length > size:
            raise BadRequestError(f"input {name!r}: truncated BYTES element", field="inputs")
        try:
            values.append(bytes(blob[offset:offset + length]).decode())
        except UnicodeDecodeError:
            raise BadRequestError(f"input {name!r}: a BYTES element is not UTF-8 text",
                                  field="inputs") from None
        offset += length
    if len(values) != count:
        raise BadRequestError(f"input {name!r} has {len(values)} elements; its shape needs "
                              f"{count}", field="inputs")
    return values


def _check_kind(name: str, kind: str, values: list[Any]) -> None:
    """JSON values must be of the declared datatype (the signature then checks the column)."""
    expected = _NUMERIC_KINDS.get(kind)
    for value in values:
        cls = type(value)
        if expected == "b":
            ok = cls is bool
        elif expected in ("i", "u"):
            ok = cls is int and (expected == "i" or value >= 0)
        elif expected == "f":
            ok = cls is float or cls is int
        else:
            ok = cls is str
        if not ok:
            raise SignatureMismatchError([f"input {name!r} is declared {kind} but holds "
                                          + short(value)])


def parse_infer(request: Any, binary: bytes, signature: Signature | None,
                max_rows: int = DEFAULT_MAX_ROWS,
                ) -> tuple[Columns, list[dict[str, Any]], str | None, dict[str, Any]]:
    """Columns for the model from an inference request, with the outputs asked for, the
    request's id and its parameters. A tensor of more than ``max_rows`` rows (its first
    dimension) is refused (413) before its data is read."""
    if not isinstance(request, dict):
        raise BadRequestError("an inference request is a JSON object with 'inputs'",
                              field="body")
    inputs = request.get("inputs")
    if not isinstance(inputs, list) or not inputs:
        raise BadRequestError("'inputs' must be a non-empty list of tensors", field="inputs")
    parameters = request.get("parameters") or {}
    outputs = request.get("outputs") or []
    request_id = request.get("id")
    if not isinstance(parameters, dict) or not isinstance(outputs, list) or not all(
            isinstance(o, dict) and isinstance(o.get("name"), str) for o in outputs):
        raise BadRequestError("'parameters' must be an object and 'outputs' a list of objects "
                              "with a 'name'", field="outputs")
    if request_id is not None and not isinstance(request_id, str):
        raise BadRequestError("'id' must be a string", field="id")
    blob = memoryview(binary)
    offset = 0
    tensors: list[tuple[str, list[int], Any]] = []
    for position, tensor in enumerate(inputs):
        if not isinstance(tensor, dict) or not isinstance(tensor.get("name"), str):
            raise BadRequestError(f"input {position} must be an object with a 'name', "
                                  "'shape', 'datatype' and 'data'", field="inputs")
        name = tensor["name"]
        shape = _shape(tensor, position)
        check_rows(shape[0], max_rows, "inputs")
        kind = tensor.get("datatype")
        if type(kind) is not str or kind not in _TO_NUMPY:
            raise BadRequestError(f"input {name!r} has datatype {short(kind)}; accepted: "
                                  f"{', '.join(_TO_NUMPY)}", field="inputs")
        count = math.prod(shape)
        params = tensor.get("parameters") or {}
        size = params.get("binary_data_size") if isinstance(params, dict) else None
        if size is not None:
            if type(size) is not int or size < 0 or offset + size > len(blob):
                raise BadRequestError(f"input {name!r}: binary_data_size {size!r} does not fit "
                                      f"the {len(blob)} bytes after the JSON header",
                                      field="inputs")
            values = _binary(tensor, name, kind, count, size, blob[offset:offset + size])
            offset += size
        else:
            if "data" not in tensor:
                raise BadRequestError(f"input {name!r} has no 'data'", field="inputs")
            values = _flatten(tensor["data"], len(shape))
            if len(values) != count:
                raise BadRequestError(f"input {name!r} has {len(values)} values; its shape "
                                      f"{shape} needs {count}", field="inputs")
            _check_kind(name, kind, values)
        tensors.append((name, shape, values))
    if offset != len(blob):
        raise BadRequestError(f"{len(blob) - offset} bytes after the JSON header belong to no "
                              "input", field="inputs")
    return _columns(tensors, signature), outputs, request_id, parameters


def _columns(tensors: list[tuple[str, list[int], Any]], signature: Signature | None) -> Columns:
    import numpy as np

    if signature is not None and isinstance(signature.inputs, TensorSpec):
        if len(tensors) != 1:
            raise BadRequestError(f"this model takes one tensor; got {len(tensors)} inputs",
                                  field="inputs")
        _, shape, values = tensors[0]
        try:
            array = np.asarray(values).reshape(shape)
        except (ValueError, TypeError, OverflowError):
            raise BadRequestError("the input tensor's data does not fit its shape",
                                  field="inputs") from None
        return Columns({"": array}, shape[0])
    specs: tuple[ColumnSpec, ...] | None = None if signature is None else signature.inputs
    names = None if specs is None else [s.name for s in specs]
    if len(tensors) == 1 and names is not None and tensors[0][0] not in names \
            and len(tensors[0][1]) == 2 and tensors[0][1][1] == len(names):
        _, shape, values = tensors[0]  # one [rows, columns] tensor, columns in signature order
        rows = shape[0]
        if hasattr(values, "reshape"):
            matrix = values.reshape(shape)
            return Columns({n: matrix[:, i] for i, n in enumerate(names)}, rows)
        width = len(names)
        return Columns({n: values[i::width] for i, n in enumerate(names)}, rows)
    data: dict[str, Any] = {}
    rows = None
    for name, shape, values in tensors:
        if len(shape) > 2 or (len(shape) == 2 and shape[1] != 1):
            raise BadRequestError(f"input {name!r} has shape {shape}; a column is [rows] or "
                                  "[rows, 1]", field="inputs")
        if rows is not None and shape[0] != rows:
            raise BadRequestError(f"input {name!r} has {shape[0]} rows, another input "
                                  f"{rows}; all columns need the same number of rows",
                                  field="inputs")
        rows = shape[0]
        if name in data:
            raise BadRequestError(f"input {name!r} is given twice", field="inputs")
        data[name] = values
    if not rows:
        raise BadRequestError("the inputs have no rows", field="inputs")
    return Columns(data, rows)


def output_tensor(name: str, rows: list[Any], binary: bool) -> tuple[dict[str, Any], bytes]:
    """An output tensor of the answer, with its bytes when the client asked for binary data."""
    import numpy as np

    array = np.asarray(rows)
    if array.dtype.kind in "USO":
        kind = "BYTES"
        data: Any = [str(v) for v in array.ravel().tolist()]
    else:
        kind = datatype(array.dtype.name)
        data = array.ravel().tolist()
    tensor: dict[str, Any] = {"name": name, "datatype": kind, "shape": list(array.shape)}
    if not binary:
        tensor["data"] = data
        return tensor, b""
    if kind == "BYTES":
        raw = b"".join(len(b).to_bytes(4, "little") + b for b in (s.encode() for s in data))
    else:
        raw = np.ascontiguousarray(array).tobytes()
    tensor["parameters"] = {"binary_data_size": len(raw)}
    return tensor, raw

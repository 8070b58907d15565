"""Exporting a registered model to ONNX, checked against the original before it is registered.

``export_onnx("models:/churn/3")`` converts the version's model to an ONNX graph
(scikit-learn models and pipelines with skl2onnx, LightGBM with onnxmltools, PyTorch modules
with ``torch.onnx.export``), optionally quantizes its weights to 8-bit integers, and runs both
the original and the graph on the version's stored input example. Only when every output
agrees within the tolerance is the graph registered, as the next version of the same model,
linked to the version it came from (``source``), to the same run and to the same training
datasets, with the same signature and input example. The report says how far apart the
outputs were, and what the export did to the stored size and to single-row latency.

Tolerances (``Tolerance``), judged per output element as ``|onnx - source| <= atol + rtol *
scale``:

- plain export: ``rtol=1e-4, atol=1e-5`` on float outputs (class probabilities, regression
  values, network outputs), scale being ``|source|``, and class labels equal on every row.
  ONNX Runtime computes in float32 where scikit-learn and LightGBM compute in float64, so
  exact equality is not to be had; 1e-4 relative is far above float32 rounding and far
  below any real disagreement.
- ``quantize="dynamic"``: ``rtol=0.05, atol=0.05`` with scale the largest ``|source|`` of
  the same output over the example (quantization errors grow with an output's range, not
  with each value: a network output near 0 is off by as much as one near its maximum), and
  labels equal on every row where the source's two most probable classes are more than
  ``label_margin=0.1`` apart: a label may flip only where the source itself nearly tied,
  which a probability error within ``atol`` can flip. 8-bit weights typically move outputs
  by around a percent of their range.

The check is only as wide as the input example: register models with an example of a few
typical rows (more rows make a stronger check).
"""

from __future__ import annotations

import logging
import statistics
import tempfile
import time
import warnings
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tidal.errors import InvalidValueError, TidalError, missing_dependency
from tidal.models.flavors.base import FolderFiles

if TYPE_CHECKING:
    import numpy as np

    from tidal.models.loaded import LoadedModel
    from tidal.models.registry import ModelVersion
    from tidal.store.workspace import Workspace

#: The extra that installs every library export needs.
EXTRA = "onnx"
#: Flavors export converts, and the library that converts each.
CONVERTERS = {"sklearn": "skl2onnx", "lightgbm": "onnxmltools", "pytorch": "torch.onnx"}
QUANTIZE_MODES = ("dynamic",)
#: Calls timed for the single-row latency, after the warm-up calls.
LATENCY_CALLS = 200
LATENCY_WARMUP = 10
#: ONNX operators dynamic quantization writes in place of float ones.
_QUANTIZED_OPS = frozenset({"DynamicQuantizeMatMul", "MatMulInteger", "ConvInteger",
                            "DynamicQuantizeLSTM", "QAttention", "QEmbedLayerNormalization",
                            "DequantizeLinear"})
#: ONNX operators whose weights dynamic quantization quantizes (Gemm is rewritten as MatMul).
_QUANTIZABLE_OPS = frozenset({"MatMul", "Conv", "Gather", "LSTM", "Attention",
                              "EmbedLayerNormalization"})
_NUMERIC = frozenset({"bool", "int8", "int16", "int32", "int64", "uint8", "uint16", "uint32",
                      "uint64", "float32", "float64"})


class ExportError(TidalError):
    """The model cannot be exported: its flavor or one of its parts has no ONNX converter, or
    the converter failed."""

    status_code = 422


class ExportMismatchError(ExportError):
    """The exported graph's outputs differ from the source model's beyond the tolerance;
    nothing was registered."""

    def __init__(self, message: str, *, max_abs_diff: float) -> None:
        super().__init__(message, field="tolerance")
        self.max_abs_diff = max_abs_diff


@dataclass(frozen=True)
class Tolerance:
    """How close the exported model's outputs must be to the source's.

    Float outputs pass when ``|onnx - source| <= atol + rtol * scale`` everywhere, where
    ``scale`` is ``|source|`` itself (``relative_to="value"``) or the largest ``|source|`` of
    the same output column over the example (``relative_to="column"``: for errors that grow
    with an output's range rather than with each value, as quantization's do). Labels must be
    equal on every row when ``label_margin`` is None; otherwise only on rows where the
    source's two most probable classes are more than ``label_margin`` apart.
    """

    rtol: float
    atol: float
    label_margin: float | None = None
    relative_to: str = "value"

    def to_dict(self) -> dict[str, Any]:
        return {"rtol": self.rtol, "atol": self.atol, "label_margin": self.label_margin,
                "relative_to": self.relative_to}

    def __str__(self) -> str:
        labels = "labels exact" if self.label_margin is None else \
            f"labels equal where the top-2 margin > {self.label_margin:g}"
        scale = "" if self.relative_to == "value" else " of the column's largest value"
        return f"rtol={self.rtol:g}{scale}, atol={self.atol:g}, {labels}"


DEFAULT_TOLERANCE = Tolerance(rtol=1e-4, atol=1e-5)
QUANTIZED_TOLERANCE = Tolerance(rtol=0.05, atol=0.05, label_margin=0.1, relative_to="column")


@dataclass(frozen=True)
class ExportReport:
    """What an export made and how it compares with its source."""

    source: ModelVersion
    exported: ModelVersion
    max_abs_diff: float
    tolerance: Tolerance
    size_before: int
    size_after: int
    latency_before_s: float
    latency_after_s: float
    quantize: str | None = None
    rows_compared: int = 0

    @property
    def speedup(self) -> float:
        """Single-row latency of the source over that of the export (above 1: faster)."""
        if self.latency_after_s <= 0:
            return float("inf")
        return self.latency_before_s / self.latency_after_s

    def to_dict(self) -> dict[str, Any]:
        return {"source": self.source.uri, "exported": self.exported.uri,
                "format": "onnx", "quantize": self.quantize,
                "max_abs_diff": self.max_abs_diff, "tolerance": self.tolerance.to_dict(),
                "rows_compared": self.rows_compared,
                "size_before": self.size_before, "size_after": self.size_after,
                "latency_before_s": self.latency_before_s,
                "latency_after_s": self.latency_after_s, "speedup": self.speedup}


# -- the entry point ------------------------------------------------------------------------

def export_onnx(uri: str | ModelVersion, *, quantize: str | None = None,
                tolerance: Tolerance | Mapping[str, Any] | None = None, trust: bool = False,
                workspace: Workspace | None = None) -> ExportReport:
    """Convert the version ``uri`` points at to ONNX, check it, and register it.

    ``quantize="dynamic"``: quantize the weights of matrix products, convolutions and
    embeddings to int8 (ONNX Runtime's ``quantize_dynamic``; activations are quantized on the
    fly). ``tolerance``: a :class:`Tolerance` or a mapping overriding some of its fields; by
    default ``rtol=1e-4, atol=1e-5`` and exact labels, or for quantized graphs ``atol=0.05``
    plus ``rtol=0.05`` of each output's largest magnitude, with labels free to differ only
    where the source's top two probabilities are within 0.1 (see the module's
    documentation); the report carries the tolerance used. ``trust``: load a source stored
    in a format that can run code (needed, for instance, for pipelines holding LightGBM
    estimators, which skops does not trust).

    Latency in the report: the median of 200 ``LoadedModel.predict`` calls on the example's
    first row, after 10 warm-up calls, for the source and for the export. Size: the bytes of
    the source's stored files and of ``model.onnx``.

    Raises InvalidValueError when the source has no input example, ExportError when it cannot
    be converted, and ExportMismatchError (nothing registered) when the outputs disagree.
    """
    from tidal.models.loaded import load_version
    from tidal.models.registry import ModelVersion, get_version, register

    if quantize is not None and quantize not in QUANTIZE_MODES:
        raise InvalidValueError(f"quantize must be None or one of {', '.join(QUANTIZE_MODES)}, "
                                f"got {quantize!r}", field="quantize")
    chosen = _tolerance(tolerance, quantize)
    source = uri if isinstance(uri, ModelVersion) else get_version(uri, workspace=workspace)
    if source.flavor not in CONVERTERS:
        raise ExportError(
            f"{source.uri} is a {source.flavor} model; ONNX export converts only "
            f"{', '.join(CONVERTERS)} models", field="flavor")
    example = source.input_example()
    if example is None:
        raise InvalidValueError(
            f"{source.uri} has no input example, which export needs to convert the model and "
            "to check the converted one against it; register the model with input_example= "
            "(a few typical rows)", field="input_example")
    original = load_version(source, trust=trust)
    prepared = original.prepare(example)

    proto = _convert(source, original.raw, prepared, example)
    if quantize == "dynamic":
        proto = _quantize_dynamic(proto)

    onnx_flavor, onnx_model = _load_onnx(proto)
    max_diff = _compare(original, prepared, onnx_flavor, onnx_model, chosen, source.uri)

    exported = register(
        source.name, proto, run=source.run_id or False, signature=source.signature,
        input_example=example, datasets=source.datasets(),
        description=f"{source.uri} exported to ONNX"
                    + (" (dynamically quantized to int8)" if quantize else ""),
        tags={"exported_from": source.uri, "format": "onnx", "quantize": quantize or "none"},
        flavor="onnx", source=source, workspace=source.workspace)
    converted = load_version(exported)
    row = _first_row(example)
    return ExportReport(source=source, exported=exported, max_abs_diff=max_diff,
                        tolerance=chosen, size_before=source.size_bytes,
                        size_after=exported.size_bytes,
                        latency_before_s=single_row_latency(original, row),
                        latency_after_s=single_row_latency(converted, row),
                        quantize=quantize, rows_compared=len(example))


def _tolerance(tolerance: Any, quantize: str | None) -> Tolerance:
    base = QUANTIZED_TOLERANCE if quantize else DEFAULT_TOLERANCE
    if tolerance is None:
        return base
    if isinstance(tolerance, Tolerance):
        chosen = tolerance
    elif isinstance(tolerance, Mapping):
        unknown = sorted(set(tolerance) - {"rtol", "atol", "label_margin", "relative_to"})
        if unknown:
            raise InvalidValueError(f"tolerance takes rtol, atol, label_margin and "
                                    f"relative_to, got {unknown}", field="tolerance")
        chosen = replace(base, **tolerance)
    else:
        raise InvalidValueError(f"tolerance must be a Tolerance or a mapping, got "
                                f"{type(tolerance).__name__}", field="tolerance")
    if chosen.relative_to not in ("value", "column"):
        raise InvalidValueError(f"tolerance relative_to must be 'value' or 'column', got "
                                f"{chosen.relative_to!r}", field="tolerance")
    for name in ("rtol", "atol", "label_margin"):
        value = getattr(chosen, name)
        if value is None and name == "label_margin":
            continue
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not value >= 0:
            raise InvalidValueError(f"tolerance {name} must be a number of 0 or more, got "
                                    f"{value!r}", field="tolerance")
    return chosen


def _import(module: str, package: str) -> Any:
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError as error:
        raise missing_dependency(package, EXTRA, "exporting models to ONNX") from error


# -- conversion -----------------------------------------------------------------------------

def _convert(source: ModelVersion, raw: Any, prepared: Any, example: Any) -> Any:
    if source.flavor == "sklearn":
        proto = _convert_sklearn(source, raw, example)
    elif source.flavor == "lightgbm":
        proto = _convert_lightgbm(source, raw, example)
    else:
        proto = _convert_pytorch(source, raw, prepared)
    _dynamic_batch_outputs(proto)
    return proto


def _column_kinds(source: ModelVersion, example: Any) -> list[tuple[str, str]] | None:
    """``(column, "number" | "string")`` for each input column of a column signature; None for
    a tensor signature. Columns ONNX converters cannot take (datetimes...) are refused."""
    from tidal.models.signature import ColumnSpec, infer_signature

    signature = source.signature or infer_signature(example)
    if not isinstance(signature.inputs, tuple):
        return None
    kinds = []
    for column in signature.inputs:
        assert isinstance(column, ColumnSpec)
        strings = column.type in ("string", "category") or (
            column.type == "object" and hasattr(example, "columns")
            and all(isinstance(v, str) for v in example[column.name].dropna()))
        if column.type in _NUMERIC:
            kinds.append((column.name, "number"))
        elif strings:
            kinds.append((column.name, "string"))
        else:
            raise ExportError(f"{source.uri} takes column {column.name!r} of type "
                              f"{column.type}; ONNX export takes numeric and string columns "
                              "only", field="signature")
    return kinds


def _width(example: Any) -> int:
    import numpy as np

    array = np.asarray(example)
    return int(np.prod(array.shape[1:])) if array.ndim > 1 else 1


def _final_estimator(model: Any) -> Any:
    while hasattr(model, "steps"):
        model = model.steps[-1][1]
    return model


def _uses_lightgbm(model: Any) -> bool:
    from tidal.models.flavors.base import from_module

    if from_module(model, "lightgbm"):
        return True
    if not hasattr(model, "get_params"):
        return False
    return any(from_module(value, "lightgbm")
               for value in model.get_params(deep=True).values())


def _register_lightgbm_converters() -> None:
    """Teach skl2onnx LightGBM's estimators, with onnxmltools' converters, so that pipelines
    ending in (or holding) one convert as a whole. This is the registration skl2onnx's
    documentation gives for LightGBM."""
    lightgbm = _import("lightgbm", "lightgbm")
    skl2onnx = _import("skl2onnx", "skl2onnx")
    shapes = _import("skl2onnx.common.shape_calculator", "skl2onnx")
    converters = _import("onnxmltools.convert.lightgbm.operator_converters.LightGbm",
                         "onnxmltools")
    regressor_shape = _import("onnxmltools.convert.lightgbm.shape_calculators.Regressor",
                              "onnxmltools").calculate_linear_regressor_output_shapes
    skl2onnx.update_registered_converter(
        lightgbm.LGBMClassifier, "LightGbmLGBMClassifier",
        shapes.calculate_linear_classifier_output_shapes, converters.convert_lightgbm,
        options={"nocl": [True, False], "zipmap": [True, False, "columns"]})
    skl2onnx.update_registered_converter(
        lightgbm.LGBMRegressor, "LightGbmLGBMRegressor", regressor_shape,
        converters.convert_lightgbm, options={"split": None})


def _convert_sklearn(source: ModelVersion, model: Any, example: Any) -> Any:
    skl2onnx = _import("skl2onnx", "skl2onnx")
    types = _import("skl2onnx.common.data_types", "skl2onnx")
    exceptions = _import("skl2onnx.common.exceptions", "skl2onnx")
    from sklearn.base import is_classifier

    target_opset = None
    if _uses_lightgbm(model):
        _register_lightgbm_converters()
        # onnxmltools writes the ai.onnx.ml operators of version 3.
        target_opset = {"": skl2onnx.get_latest_tested_opset_version(), "ai.onnx.ml": 3}
    final = _final_estimator(model)
    options = {id(final): {"zipmap": False}} if is_classifier(final) else None
    kinds = _column_kinds(source, example)
    attempts: list[list[tuple[str, Any]]] = []
    if kinds is None:
        attempts.append([("X", types.FloatTensorType([None, _width(example)]))])
    else:
        if all(kind == "number" for _, kind in kinds):
            # One 2-D float input is the fastest form to feed and to run; a pipeline that
            # selects columns by name (a ColumnTransformer) needs one input per column.
            attempts.append([("X", types.FloatTensorType([None, len(kinds)]))])
        attempts.append([(name, types.FloatTensorType([None, 1]) if kind == "number"
                          else types.StringTensorType([None, 1])) for name, kind in kinds])
    unsupported = (exceptions.MissingShapeCalculator, exceptions.MissingConverter)
    failure: Exception | None = None
    for initial_types in attempts:
        try:
            return skl2onnx.convert_sklearn(model, initial_types=initial_types,
                                            options=options, target_opset=target_opset)
        except unsupported as error:
            raise ExportError(
                f"{source.uri} cannot be converted to ONNX: skl2onnx has no converter for "
                f"{_unconverted_type(model, error)}. Export converts the estimators skl2onnx "
                "supports (and LightGBM); register a custom estimator's ONNX graph yourself "
                "with flavor='onnx'", field="model") from error
        except Exception as error:  # noqa: BLE001 - the next form of inputs may convert
            failure = error
    raise ExportError(f"skl2onnx could not convert {source.uri}: "
                      f"{type(failure).__name__}: {failure}", field="model") from failure


def _unconverted_type(model: Any, error: Exception) -> str:
    """The estimator skl2onnx lacks a converter for, named from its error when it can be."""
    import re

    found = re.search(r"<class '([^']+)'>", str(error))
    if found:
        return found.group(1)
    return f"{type(model).__module__}.{type(model).__qualname__} or one of its steps"


def _convert_lightgbm(source: ModelVersion, model: Any, example: Any) -> Any:
    import numpy as np

    onnxmltools = _import("onnxmltools", "onnxmltools")
    types = _import("onnxmltools.convert.common.data_types", "onnxmltools")
    kinds = _column_kinds(source, example)
    if kinds is not None and any(kind != "number" for _, kind in kinds):
        raise ExportError(f"{source.uri} takes string or categorical columns; ONNX export "
                          "converts LightGBM models on numeric columns only", field="signature")
    booster = model.booster
    width = booster.num_feature()
    try:
        proto = onnxmltools.convert_lightgbm(
            booster, initial_types=[("X", types.FloatTensorType([None, width]))], zipmap=False)
    except (NotImplementedError, RuntimeError, ValueError) as error:
        raise ExportError(f"onnxmltools could not convert {source.uri}: {error}",
                          field="model") from error
    classes = model.classes
    if classes is not None and not (classes.dtype.kind in "iu" and np.array_equal(
            classes, np.arange(len(classes)))):
        _relabel(proto, classes)
    return proto


def _relabel(proto: Any, classes: np.ndarray) -> None:
    """Make the graph's ``label`` output the classifier's own labels: onnxmltools gives the
    class index, which a Gather over the stored classes turns into the label."""
    import numpy as np

    onnx = _import("onnx", "onnx")
    helper, numpy_helper = onnx.helper, onnx.numpy_helper
    graph = proto.graph
    index_name = "label_index"
    for node in graph.node:
        node.output[:] = [index_name if name == "label" else name for name in node.output]
    values = classes.astype(object) if classes.dtype.kind in "OU" else classes
    constant = numpy_helper.from_array(np.asarray(values), name="classes")
    graph.initializer.append(constant)
    graph.node.append(helper.make_node("Gather", ["classes", index_name], ["label"], axis=0,
                                       name="label_from_index"))
    for output in graph.output:
        if output.name == "label":
            output.type.tensor_type.elem_type = constant.data_type


def _convert_pytorch(source: ModelVersion, module: Any, prepared: Any) -> Any:
    import io

    import numpy as np

    torch = _import("torch", "torch")
    onnx = _import("onnx", "onnx")
    array = np.ascontiguousarray(prepared.to_numpy() if hasattr(prepared, "to_numpy")
                                 else prepared)
    tensor = torch.from_numpy(array.copy())
    if tensor.is_floating_point():
        floats = [t.dtype for t in (*module.parameters(), *module.buffers())
                  if t.is_floating_point()]
        tensor = tensor.to(floats[0] if floats else torch.float32)
    arguments = {"input_names": ["X"], "output_names": ["output"],
                 "dynamic_axes": {"X": {0: "batch"}, "output": {0: "batch"}}}
    errors = []
    # The TorchScript exporter first: it needs nothing beyond torch, where the torch.export
    # based one also needs onnxscript.
    for dynamo in (False, True):
        buffer = io.BytesIO()
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                with torch.no_grad():
                    torch.onnx.export(module, (tensor,), buffer, dynamo=dynamo, **arguments)
            return onnx.load_from_string(buffer.getvalue())
        except Exception as error:  # noqa: BLE001 - each exporter fails on other modules
            errors.append(f"{'dynamo' if dynamo else 'TorchScript'} exporter: "
                          f"{type(error).__name__}: {error}")
    raise ExportError(f"torch.onnx.export could not convert {source.uri}: "
                      + "; ".join(errors), field="model")


def _dynamic_batch_outputs(proto: Any) -> None:
    """Give every output a symbolic batch dimension: some converters (onnxmltools' LightGBM
    labels) declare a fixed one, which ONNX Runtime then warns about on every batch."""
    for output in proto.graph.output:
        dims = output.type.tensor_type.shape.dim
        if len(dims) and dims[0].HasField("dim_value"):
            dims[0].dim_param = "N"


# -- quantization ---------------------------------------------------------------------------

def _gemm_as_matmul(proto: Any) -> Any:
    """Rewrite Gemm nodes with a constant weight (torch's Linear layers) as MatMul + Add, the
    form ONNX Runtime's dynamic quantization quantizes (it leaves Gemm in float)."""
    onnx = _import("onnx", "onnx")
    helper, numpy_helper = onnx.helper, onnx.numpy_helper
    graph = proto.graph
    initializers = {init.name: init for init in graph.initializer}
    nodes = []
    for node in graph.node:
        attributes = {a.name: helper.get_attribute_value(a) for a in node.attribute}
        if node.op_type != "Gemm" or node.input[1] not in initializers \
                or attributes.get("transA", 0) or attributes.get("alpha", 1.0) != 1.0 \
                or attributes.get("beta", 1.0) != 1.0:
            nodes.append(node)
            continue
        weight = numpy_helper.to_array(initializers[node.input[1]])
        if attributes.get("transB", 0):
            weight = weight.T.copy()
        weight_name = f"{node.input[1]}_matmul"
        graph.initializer.append(numpy_helper.from_array(weight, name=weight_name))
        has_bias = len(node.input) > 2 and node.input[2]
        product = f"{node.output[0]}_matmul" if has_bias else node.output[0]
        nodes.append(helper.make_node("MatMul", [node.input[0], weight_name], [product],
                                      name=f"{node.name or 'gemm'}_matmul"))
        if has_bias:
            nodes.append(helper.make_node("Add", [product, node.input[2]], [node.output[0]],
                                          name=f"{node.name or 'gemm'}_bias"))
    del graph.node[:]
    graph.node.extend(nodes)
    used = {name for node in graph.node for name in node.input}
    kept = [init for init in graph.initializer if init.name in used]
    del graph.initializer[:]
    graph.initializer.extend(kept)
    return proto


@contextmanager
def _quiet_root_logger() -> Iterator[None]:
    """Drop the advice ONNX Runtime's quantizer logs on the root logger at every call (to run
    its pre-processing script, which only matters for static quantization of large graphs)."""
    root = logging.getLogger()
    drop = logging.Filter("tidal.never")  # accepts no record from the root logger
    root.addFilter(drop)
    try:
        yield
    finally:
        root.removeFilter(drop)


def _quantize_dynamic(proto: Any) -> Any:
    onnx = _import("onnx", "onnx")
    quantization = _import("onnxruntime.quantization", "onnxruntime")
    proto = _gemm_as_matmul(proto)
    ops = {node.op_type for node in proto.graph.node}
    if not ops & _QUANTIZABLE_OPS:
        raise ExportError(
            "dynamic quantization would find nothing to quantize: it quantizes the weights of "
            f"{', '.join(sorted(_QUANTIZABLE_OPS | {'Gemm'}))} nodes, and this graph has only "
            f"{', '.join(sorted(ops))}; export it without quantize", field="quantize")
    with tempfile.TemporaryDirectory(prefix="tidal-quantize-") as folder:
        source, target = Path(folder) / "float.onnx", Path(folder) / "int8.onnx"
        source.write_bytes(proto.SerializeToString())
        try:
            with warnings.catch_warnings(), _quiet_root_logger():
                warnings.simplefilter("ignore")
                # 7-bit signed weights: x86 CPUs without VNNI multiply uint8 activations by
                # int8 weights in saturating int16 sums, which full 8-bit weights overflow.
                quantization.quantize_dynamic(source, target, reduce_range=True,
                                              weight_type=quantization.QuantType.QInt8)
        except Exception as error:  # the quantizer's own failure, reported with its cause
            raise ExportError(f"ONNX Runtime could not quantize the graph: "
                              f"{type(error).__name__}: {error}", field="quantize") from error
        quantized = onnx.load_from_string(target.read_bytes())
    if not any(node.op_type in _QUANTIZED_OPS for node in quantized.graph.node):
        raise ExportError("dynamic quantization left every weight of the graph in float; "
                          "export it without quantize", field="quantize")
    return quantized


# -- checking -------------------------------------------------------------------------------

def _load_onnx(proto: Any) -> tuple[Any, Any]:
    """The ONNX flavor and the graph loaded by it, as the registered version will be."""
    from tidal.models.flavors.registry import get_flavor

    flavor = get_flavor("onnx")
    with tempfile.TemporaryDirectory(prefix="tidal-export-") as folder:
        metadata = flavor.save(proto, Path(folder), {})
        return flavor, flavor.load(FolderFiles(Path(folder)), metadata, trust=False)


def _as_rows(values: Any) -> np.ndarray:
    """An output as a 2-D array of rows (a 1-D output is one column)."""
    import numpy as np

    array = np.asarray(values.to_numpy() if hasattr(values, "to_numpy") else values)
    return array.reshape(len(array), -1)


def _float_diff(source: np.ndarray, exported: np.ndarray, tolerance: Tolerance, what: str,
                uri: str) -> float:
    import numpy as np

    if source.shape != exported.shape:
        raise ExportMismatchError(f"the ONNX graph's {what} have shape {list(exported.shape)} "
                                  f"where {uri}'s have {list(source.shape)}",
                                  max_abs_diff=float("inf"))
    a, b = source.astype(np.float64), exported.astype(np.float64)
    diff = np.abs(a - b)
    diff[np.isnan(a) & np.isnan(b)] = 0.0
    diff[np.isnan(diff)] = np.inf
    worst = float(diff.max()) if diff.size else 0.0
    scale = np.abs(a)
    if tolerance.relative_to == "column" and scale.size:
        scale = np.nanmax(scale, axis=0, keepdims=True)
    allowed = tolerance.atol + tolerance.rtol * scale
    bad = diff > allowed
    if bad.any():
        row, column = (int(i) for i in np.argwhere(bad)[0])
        raise ExportMismatchError(
            f"the ONNX graph's {what} differ from {uri}'s by up to {worst:.3g}, beyond the "
            f"tolerance ({tolerance}) on {int(bad.sum())} of {bad.size} values (first: row "
            f"{row}, column {column}: {a[row, column]!r} against {b[row, column]!r}); nothing "
            "was registered", max_abs_diff=worst)
    return worst


def _check_labels(source: np.ndarray, exported: np.ndarray, probabilities: np.ndarray | None,
                  tolerance: Tolerance, uri: str, worst: float) -> None:
    import numpy as np

    a, b = source.ravel(), exported.ravel()
    if a.shape != b.shape:
        raise ExportMismatchError(f"the ONNX graph gives {b.size} labels for {a.size} rows",
                                  max_abs_diff=worst)
    differ = np.array([x != y for x, y in zip(a.tolist(), b.tolist(), strict=True)], dtype=bool)
    if tolerance.label_margin is not None and probabilities is not None \
            and probabilities.shape[1] > 1:
        top = np.sort(probabilities, axis=1)
        near_tie = (top[:, -1] - top[:, -2]) <= tolerance.label_margin
        differ &= ~near_tie
    if differ.any():
        row = int(np.argmax(differ))
        raise ExportMismatchError(
            f"the ONNX graph's labels differ from {uri}'s on {int(differ.sum())} of {a.size} "
            f"rows (first: row {row}: {a[row]!r} against {b[row]!r}); tolerance: {tolerance}; "
            "nothing was registered", max_abs_diff=worst)


def _compare(original: LoadedModel, prepared: Any, onnx_flavor: Any, onnx_model: Any,
             tolerance: Tolerance, uri: str) -> float:
    """The largest absolute difference between the source's outputs and the graph's on the
    input example; ExportMismatchError when any is beyond the tolerance."""
    worst = 0.0
    probabilities = None
    if original.has_predict_proba:
        if not onnx_flavor.has_predict_proba(onnx_model):
            raise ExportMismatchError(f"{uri} gives class probabilities and the ONNX graph "
                                      "does not", max_abs_diff=float("inf"))
        probabilities = _as_rows(original.flavor.predict_proba(original.raw, prepared))
        worst = _float_diff(probabilities,
                            _as_rows(onnx_flavor.predict_proba(onnx_model, prepared)),
                            tolerance, "class probabilities", uri)
    source = _as_rows(original.flavor.predict(original.raw, prepared))
    exported = _as_rows(onnx_flavor.predict(onnx_model, prepared))
    if source.dtype.kind == "f":
        return max(worst, _float_diff(source, exported, tolerance, "predictions", uri))
    _check_labels(source, exported, probabilities, tolerance, uri, worst)
    return worst


# -- latency --------------------------------------------------------------------------------

def _first_row(example: Any) -> Any:
    return example.iloc[:1] if hasattr(example, "iloc") else example[:1]


def single_row_latency(model: LoadedModel, row: Any, *, calls: int = LATENCY_CALLS,
                       warmup: int = LATENCY_WARMUP) -> float:
    """Median seconds of ``model.predict(row)`` over ``calls`` calls, after ``warmup``."""
    for _ in range(warmup):
        model.predict(row)
    samples = []
    clock = time.perf_counter_ns
    for _ in range(calls):
        start = clock()
        model.predict(row)
        samples.append(clock() - start)
    return statistics.median(samples) / 1e9

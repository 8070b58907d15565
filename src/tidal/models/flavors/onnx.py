"""The ONNX flavor: a ``onnx.ModelProto`` stored as ``model.onnx`` and run with ONNX Runtime.

An ONNX file is a graph of operators and constants that runs no Python when loaded, whatever
library produced it (skl2onnx, onnxmltools, torch.onnx...). The loaded model is an
:class:`ONNXModel`: the session plus what predict needs to know about its inputs and outputs,
read once at load rather than on every call.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from tidal.errors import InvalidValueError
from tidal.models.flavors.base import Flavor, ModelFiles

MODEL_FILE = "model.onnx"

#: The NumPy dtype fed to an input of each ONNX Runtime tensor type.
INPUT_DTYPES: dict[str, Any] = {
    "tensor(float)": np.float32,
    "tensor(double)": np.float64,
    "tensor(float16)": np.float16,
    "tensor(int64)": np.int64,
    "tensor(int32)": np.int32,
    "tensor(int16)": np.int16,
    "tensor(int8)": np.int8,
    "tensor(uint64)": np.uint64,
    "tensor(uint32)": np.uint32,
    "tensor(uint16)": np.uint16,
    "tensor(uint8)": np.uint8,
    "tensor(bool)": np.bool_,
    "tensor(string)": np.str_,
}

#: The output name skl2onnx and onnxmltools give class probabilities (with zipmap=False).
PROBABILITIES = "probabilities"


@dataclass(frozen=True)
class ONNXModel:
    """A loaded ONNX model: its session, its inputs as (name, type), its output names, and
    which output holds class probabilities (None when none does)."""

    session: Any
    inputs: tuple[tuple[str, str], ...]
    outputs: tuple[str, ...]
    proba_output: str | None

    def feed(self, data: Any) -> dict[str, np.ndarray]:
        """The session's input feed for a batch.

        A graph with one input takes the whole batch as one 2-D tensor; a graph with several
        takes a DataFrame's columns by name, each as an (n, 1) tensor, as skl2onnx converts
        pipelines whose columns have different types. Each is cast to its input's type.
        """
        if len(self.inputs) == 1:
            name, onnx_type = self.inputs[0]
            values = data.to_numpy() if hasattr(data, "to_numpy") else data
            return {name: _cast(np.asarray(values), onnx_type, name)}
        if not hasattr(data, "columns"):
            raise InvalidValueError(
                f"the ONNX model has {len(self.inputs)} inputs "
                f"({', '.join(name for name, _ in self.inputs)}); pass a DataFrame with one "
                "column for each", field="data")
        missing = [name for name, _ in self.inputs if name not in data.columns]
        if missing:
            raise InvalidValueError(f"the data lacks the columns {missing} that the ONNX model "
                                    "takes as inputs", field="data")
        return {name: _cast(data[name].to_numpy().reshape(-1, 1), onnx_type, name)
                for name, onnx_type in self.inputs}

    @property
    def has_predict_proba(self) -> bool:
        return self.proba_output is not None

    def predict(self, data: Any) -> np.ndarray:
        """The first output (the labels of a classifier); an (n, 1) output is given as (n,),
        the shape scikit-learn regressors predict."""
        (result,) = self.session.run([self.outputs[0]], self.feed(data))
        if result.ndim == 2 and result.shape[1] == 1:
            return result[:, 0]
        return result

    def predict_proba(self, data: Any) -> np.ndarray:
        if self.proba_output is None:
            raise NotImplementedError("the ONNX model has no class probabilities output")
        (result,) = self.session.run([self.proba_output], self.feed(data))
        return result


def session_options() -> Any:
    """Session options for serving: one thread per operator. Tidal's models are small and
    called a few rows at a time, where thread hand-offs cost more than they save, and a server
    running several workers would otherwise start a pool per worker on every core."""
    ort = ONNXFlavor().import_library("onnxruntime")
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    return options


class ONNXFlavor(Flavor):
    name: ClassVar[str] = "onnx"
    packages: ClassVar[tuple[str, ...]] = ("onnxruntime", "onnx")
    extra: ClassVar[str] = "onnx"
    priority: ClassVar[int] = 10

    def handles(self, model: Any) -> bool:
        return type(model).__module__.split(".", 1)[0] == "onnx"

    def save(self, model: Any, directory: Path, options: Mapping[str, Any]) -> dict[str, Any]:
        """Write the serialized graph, after ONNX's checker has found it well formed, so that
        a broken graph is refused when registered rather than when served."""
        self.check_options(options)
        onnx = self.import_library("onnx")
        if not isinstance(model, onnx.ModelProto):
            raise InvalidValueError(f"the onnx flavor stores an onnx.ModelProto, got a "
                                    f"{type(model).__module__}.{type(model).__qualname__}",
                                    field="model")
        try:
            onnx.checker.check_model(model)
        except onnx.checker.ValidationError as error:
            raise InvalidValueError(f"the ONNX model is not valid: {error}",
                                    field="model") from error
        (directory / MODEL_FILE).write_bytes(model.SerializeToString())
        return {}

    def load(self, files: ModelFiles, metadata: Mapping[str, Any], *, trust: bool) -> Any:
        return self._session_model(files.read_bytes(MODEL_FILE))

    def predict(self, model: Any, data: Any) -> Any:
        return self._onnx_model(model).predict(data)

    def predict_proba(self, model: Any, data: Any) -> Any:
        return self._onnx_model(model).predict_proba(data)

    def has_predict_proba(self, model: Any) -> bool:
        return self._onnx_model(model).has_predict_proba

    def _onnx_model(self, model: Any) -> ONNXModel:
        """The model as predict takes it: a loaded ONNXModel, or a ModelProto not stored yet
        (the registry predicts on the input example with the original to infer a signature),
        which gets a session of its own."""
        if isinstance(model, ONNXModel):
            return model
        return self._session_model(model.SerializeToString())

    def _session_model(self, serialized: bytes) -> ONNXModel:
        ort = self.import_library("onnxruntime")
        session = ort.InferenceSession(serialized, sess_options=session_options(),
                                       providers=["CPUExecutionProvider"])
        outputs = session.get_outputs()
        return ONNXModel(session=session,
                         inputs=tuple((node.name, node.type) for node in session.get_inputs()),
                         outputs=tuple(node.name for node in outputs),
                         proba_output=_proba_output(outputs))


def _proba_output(outputs: list[Any]) -> str | None:
    """The output holding class probabilities: the one named ``probabilities``, else a second
    output that is a 2-D float tensor (a classifier's scores next to its labels)."""
    for node in outputs:
        if node.name == PROBABILITIES:
            return str(node.name)
    if len(outputs) > 1 and outputs[1].type in ("tensor(float)", "tensor(double)") \
            and len(outputs[1].shape) == 2:
        return str(outputs[1].name)
    return None


def _cast(values: np.ndarray, onnx_type: str, name: str) -> np.ndarray:
    dtype = INPUT_DTYPES.get(onnx_type)
    if dtype is None:
        raise InvalidValueError(f"the ONNX model's input {name!r} has type {onnx_type}, which "
                                "the onnx flavor cannot feed from a table", field="data")
    return values.astype(dtype, copy=False)

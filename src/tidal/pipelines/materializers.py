"""Materializers: how step outputs are stored in the artifact store and read back, by type.

Outputs never travel through the driver's memory: a step's values are written by the process
that ran it and read by the process that needs them, through the workspace's stores. Each
stored output is a JSON reference with a content ``digest``, which is what a downstream step's
cache key is made of. The first materializer that handles a value is used; ``register`` puts a
new one in front. Nothing falls back to pickle: a value no materializer handles is an error
that says how to add one.
"""

from __future__ import annotations

import io
import json
from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Any, ClassVar

from tidal.pipelines.errors import StepOutputError
from tidal.store.workspace import Workspace


@dataclass(frozen=True)
class OutputSlot:
    """Where an output belongs: which workspace, pipeline, node and position."""

    workspace: Workspace
    pipeline: str
    node: str
    index: int
    outputs: int

    @property
    def label(self) -> str:
        suffix = f".{self.index}" if self.outputs > 1 else ""
        return f"{self.pipeline}.{self.node}{suffix}"


class Materializer(ABC):
    name: ClassVar[str]

    @abstractmethod
    def handles(self, value: Any) -> bool:
        """Whether this materializer stores values like ``value``."""

    @abstractmethod
    def save(self, value: Any, slot: OutputSlot) -> dict[str, Any]:
        """Store ``value``; return a JSON reference holding at least its content ``digest``."""

    @abstractmethod
    def load(self, ref: dict[str, Any], ws: Workspace) -> Any:
        """Read a stored value back from its reference."""


def _module_root(value: Any) -> str:
    return type(value).__module__.split(".", 1)[0]


class TableMaterializer(Materializer):
    """pandas DataFrames and Arrow tables, as dataset versions named ``pipeline.node``: a step's
    table output is versioned, profiled and deduplicated like any dataset, and lineage to the
    runs that read it comes with it."""

    name = "table"

    def handles(self, value: Any) -> bool:
        return (_module_root(value) == "pandas" and type(value).__name__ == "DataFrame") or \
            (_module_root(value) == "pyarrow" and type(value).__name__ == "Table")

    def save(self, value: Any, slot: OutputSlot) -> dict[str, Any]:
        kind = "arrow" if _module_root(value) == "pyarrow" else "pandas"
        if value.shape[0] == 0 if kind == "pandas" else value.num_rows == 0:
            return _EMPTY_TABLES.save(value, slot)
        from tidal.data.versions import register

        version = register(slot.label, value, workspace=slot.workspace,
                           description=f"output of step {slot.node} of pipeline {slot.pipeline}")
        return {"dataset": version.uri, "digest": version.digest, "kind": kind}

    def load(self, ref: dict[str, Any], ws: Workspace) -> Any:
        if "dataset" not in ref:
            return _EMPTY_TABLES.load(ref, ws)
        from tidal.data.uri import parse_ref
        from tidal.data.versions import get

        version = get(*parse_ref(ref["dataset"]), workspace=ws)
        return version.to_arrow() if ref["kind"] == "arrow" else version.to_pandas()


class _ParquetBlobs:
    """Tables with no rows, which a dataset version cannot be: a Parquet blob instead."""

    def save(self, value: Any, slot: OutputSlot) -> dict[str, Any]:
        import pyarrow as pa
        import pyarrow.parquet as pq

        kind = "arrow" if _module_root(value) == "pyarrow" else "pandas"
        table = value if kind == "arrow" else pa.Table.from_pandas(value, preserve_index=False)
        buffer = io.BytesIO()
        pq.write_table(table, buffer)
        blob = slot.workspace.artifacts.put_bytes(buffer.getvalue())
        return {"blob": blob.digest, "digest": blob.digest, "kind": kind}

    def load(self, ref: dict[str, Any], ws: Workspace) -> Any:
        import pyarrow.parquet as pq

        table = pq.read_table(io.BytesIO(ws.artifacts.get_bytes(ref["blob"])))
        return table if ref["kind"] == "arrow" else table.to_pandas()


_EMPTY_TABLES = _ParquetBlobs()


class NumpyMaterializer(Materializer):
    """NumPy arrays of numbers, booleans or strings, as .npy (never with pickled objects)."""

    name = "numpy"

    def handles(self, value: Any) -> bool:
        return _module_root(value) == "numpy" and type(value).__name__ == "ndarray" \
            and value.dtype.kind in "biufcUSmM"

    def save(self, value: Any, slot: OutputSlot) -> dict[str, Any]:
        import numpy as np

        buffer = io.BytesIO()
        np.save(buffer, value, allow_pickle=False)
        blob = slot.workspace.artifacts.put_bytes(buffer.getvalue())
        return {"blob": blob.digest, "digest": blob.digest}

    def load(self, ref: dict[str, Any], ws: Workspace) -> Any:
        import numpy as np

        return np.load(io.BytesIO(ws.artifacts.get_bytes(ref["blob"])), allow_pickle=False)


class ModelMaterializer(Materializer):
    """Models that a registry flavor stores in a safe format (scikit-learn, LightGBM, XGBoost,
    PyTorch, ONNX): saved by that flavor, loaded without pickle."""

    name = "model"

    def _flavor(self, value: Any) -> Any:
        from tidal.models.flavors.registry import FlavorNotFoundError, detect_flavor

        try:
            flavor = detect_flavor(value)
        except FlavorNotFoundError:
            return None
        return flavor if flavor.safe else None

    def handles(self, value: Any) -> bool:
        if isinstance(value, (str, bytes, int, float, bool, list, dict, tuple)) or value is None:
            return False
        return self._flavor(value) is not None

    def save(self, value: Any, slot: OutputSlot) -> dict[str, Any]:
        from tidal.models.package import content_digest, save_files

        flavor = self._flavor(value)
        metadata, files = save_files(slot.workspace, flavor, value, {})
        return {"flavor": flavor.name, "metadata": metadata, "files": files,
                "digest": content_digest(flavor.name, metadata, files)}

    def load(self, ref: dict[str, Any], ws: Workspace) -> Any:
        from tidal.models.flavors.registry import get_flavor
        from tidal.models.package import StoredFiles

        flavor = get_flavor(ref["flavor"])
        return flavor.load(StoredFiles(ws, ref["files"]), ref["metadata"], trust=False)


class JsonMaterializer(Materializer):
    """Numbers, strings, booleans, None, and lists and dicts of them, as JSON."""

    name = "json"

    def handles(self, value: Any) -> bool:
        return _is_json(value)

    @staticmethod
    def _dump(value: Any) -> str:
        return json.dumps(value, sort_keys=True, separators=(",", ":"))

    def save(self, value: Any, slot: OutputSlot) -> dict[str, Any]:
        blob = slot.workspace.artifacts.put_bytes(self._dump(value).encode())
        return {"blob": blob.digest, "digest": blob.digest}

    def load(self, ref: dict[str, Any], ws: Workspace) -> Any:
        return json.loads(ws.artifacts.get_bytes(ref["blob"]))


def _is_json(value: Any) -> bool:
    """Whether JSON holds ``value`` exactly (tuples would come back as lists, so they do not)."""
    if value is None or isinstance(value, (bool, int, float, str)):
        return True
    if isinstance(value, list):
        return all(_is_json(item) for item in value)
    if isinstance(value, dict):
        return all(isinstance(k, str) and _is_json(v) for k, v in value.items())
    return False


_materializers: list[Materializer] = [TableMaterializer(), NumpyMaterializer(),
                                      JsonMaterializer(), ModelMaterializer()]


def register_materializer(materializer: Materializer) -> None:
    """Put a materializer in front of the others (it is asked first)."""
    from tidal.errors import InvalidValueError

    if not isinstance(materializer, Materializer):
        raise InvalidValueError(f"register_materializer takes a Materializer, got "
                                f"{type(materializer).__name__}", field="materializer")
    _materializers.insert(0, materializer)


def by_name(name: str) -> Materializer:
    for materializer in _materializers:
        if materializer.name == name:
            return materializer
    raise StepOutputError(f"no materializer named {name!r} is registered in this process "
                          "(register it before running the pipeline)", field="materializer")


def save_output(value: Any, slot: OutputSlot) -> dict[str, Any]:
    for materializer in _materializers:
        if materializer.handles(value):
            ref = materializer.save(value, slot)
            return {"materializer": materializer.name, **ref}
    raise StepOutputError(
        f"step {slot.node!r} of pipeline {slot.pipeline!r} returned a "
        f"{type(value).__module__}.{type(value).__qualname__}, which no materializer stores "
        f"(known: {', '.join(m.name for m in _materializers)}); return a DataFrame, an array, "
        "a model or JSON values, or add one with tidal.pipelines.register_materializer",
        field="return")


def load_output(ref: dict[str, Any], ws: Workspace) -> Any:
    return by_name(ref["materializer"]).load(ref, ws)

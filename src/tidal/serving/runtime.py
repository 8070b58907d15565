"""What one server worker holds for an endpoint: its loaded models, their batchers, and the
routing table over them, as one immutable snapshot.

A route change builds a new snapshot off the event loop (loading only versions it does not
hold yet) and swaps it in with one assignment; requests already routed finish on the snapshot
they started with, so a switch drops nothing.
"""

from __future__ import annotations

import bisect
import hashlib
import random
import time
from collections.abc import Callable, Sequence
from contextlib import nullcontext
from dataclasses import dataclass
from typing import Any

from tidal.models.loaded import LoadedModel, load_version
from tidal.models.registry import ModelVersion, get_version
from tidal.models.signature import TensorSpec
from tidal.serving.batching import Batcher
from tidal.serving.crashmarks import CrashMarks
from tidal.serving.endpoints import Endpoint
from tidal.serving.inputs import Columns
from tidal.store.workspace import Workspace

_NUMERIC = {"bool", "int8", "int16", "int32", "int64", "uint8", "uint16", "uint32", "uint64",
            "float32", "float64"}


def _concat(parts: list[Any]) -> Any:
    if len(parts) == 1:
        return parts[0]
    if any(hasattr(p, "dtype") for p in parts):
        import numpy as np

        return np.concatenate([np.asarray(p) for p in parts])
    out: list[Any] = []
    for part in parts:
        out.extend(part)
    return out


def _to_list(output: Any) -> list[Any]:
    """Model output as JSON-ready rows: a list with one entry per input row."""
    if hasattr(output, "to_dict") and hasattr(output, "columns"):  # a DataFrame
        return output.to_dict("records")  # type: ignore[no-any-return]
    if hasattr(output, "tolist"):
        return output.tolist()  # type: ignore[no-any-return]
    return list(output)


class ServedModel:
    """One registered version loaded in this worker, with a batcher per method."""

    def __init__(self, version: ModelVersion, loaded: LoadedModel, *, max_batch_size: int,
                 max_wait_ms: float, load_seconds: float,
                 on_batch: Callable[[ModelVersion, int], None] | None = None,
                 on_outputs: Callable[[ModelVersion, list[Any]], None] | None = None,
                 marks: CrashMarks | None = None) -> None:
        self.version = version
        self._marks = marks
        self.loaded = loaded
        self.load_seconds = load_seconds
        self.settings = (max_batch_size, max_wait_ms)
        self._on_outputs = on_outputs
        signature = loaded.signature
        self._tensor = signature is not None and isinstance(signature.inputs, TensorSpec)
        specs = None if signature is None or self._tensor else signature.inputs
        self._specs = specs
        dtypes = {s.type for s in specs} if specs else set()
        self._one_dtype = next(iter(dtypes)) if len(dtypes) == 1 and dtypes <= _NUMERIC \
            and not any(s.nullable for s in specs or ()) else None  # type: ignore[union-attr]
        name = f"{version.name}-{version.version}"

        def batch_hook(rows: int) -> None:
            if on_batch is not None:
                on_batch(version, rows)

        self.batchers = {
            method: Batcher(self._predictor(method), max_batch_size=max_batch_size,
                            max_wait_ms=max_wait_ms, name=name, on_batch=batch_hook)
            for method in (("predict", "predict_proba") if loaded.has_predict_proba
                           else ("predict",))}

    @property
    def uri(self) -> str:
        return self.version.uri

    def model_input(self, batch: Sequence[Columns]) -> Any:
        """The batch as the model takes it: one DataFrame (or array) for all its rows, built
        with the signature's dtypes so the model's own check takes its fast path."""
        import numpy as np
        import pandas as pd

        if self._tensor:
            return _concat([c.data[""] for c in batch])
        first = batch[0].data
        names = list(first) if self._specs is None else [s.name for s in self._specs]
        columns = {name: _concat([c.data[name] for c in batch]) for name in names}
        if self._one_dtype is not None:
            matrix = np.column_stack([np.asarray(columns[n], dtype=self._one_dtype)
                                      for n in names])
            return pd.DataFrame(matrix, columns=names)
        if self._specs is not None:
            for spec in self._specs:
                if spec.type in _NUMERIC:
                    try:
                        columns[spec.name] = np.asarray(columns[spec.name], dtype=spec.type)
                    except (TypeError, ValueError):
                        pass  # nulls in an integer column: the model's check decides
        return pd.DataFrame(columns)

    def _predictor(self, method: str) -> Callable[[Sequence[Columns]], list[list[Any]]]:
        call = getattr(self.loaded, method)
        marks, uri = self._marks, self.version.uri

        def predict_many(batch: Sequence[Columns]) -> list[list[Any]]:
            data = self.model_input(batch)
            # Marked while the model runs: if it takes the process down, the supervisor
            # knows which model did.
            with marks.hold("predict", uri) if marks is not None else nullcontext():
                output = call(data)
            rows = _to_list(output)
            if self._on_outputs is not None and method == "predict":
                self._on_outputs(self.version, rows)
            if len(batch) == 1:
                return [rows]
            out, start = [], 0
            for columns in batch:
                out.append(rows[start:start + columns.rows])
                start += columns.rows
            return out

        return predict_many

    async def predict(self, columns: Columns, method: str = "predict") -> list[Any]:
        return await self.batchers[method].predict(columns)

    @property
    def closed(self) -> bool:
        return all(batcher.closed for batcher in self.batchers.values())

    def close(self) -> None:
        for batcher in self.batchers.values():
            batcher.close()


@dataclass(frozen=True)
class RouteChoice:
    route: str  # the URI as deployed
    model: ServedModel


class EndpointState:
    """An endpoint's routing table at one revision, over models loaded in this worker."""

    def __init__(self, endpoint: Endpoint, live: list[RouteChoice],
                 shadows: list[RouteChoice], resolved: tuple[str, ...]) -> None:
        self.endpoint = endpoint
        self.live = live
        self.shadows = shadows
        self.resolved = resolved  # version ids behind the routes: an alias move changes it
        self._cumulative: list[float] = []
        total = 0.0
        for route in endpoint.config.routes:
            total += route.weight
            self._cumulative.append(total)
        self._total = total
        self.sticky = endpoint.config.mode == "ab"

    @property
    def name(self) -> str:
        return self.endpoint.name

    def pick(self, key: str | None) -> RouteChoice:
        """The live route for this request: by weight at random, or by a hash of ``key`` in
        A/B mode so one key always reaches one route."""
        if len(self.live) == 1:
            return self.live[0]
        if self.sticky and key is not None:
            digest = hashlib.blake2b(key.encode(), digest_size=8).digest()
            point = int.from_bytes(digest, "big") / 2**64 * self._total
        else:
            point = random.random() * self._total
        index = bisect.bisect_right(self._cumulative, point)
        return self.live[min(index, len(self.live) - 1)]

    def models(self) -> list[ServedModel]:
        return [c.model for c in self.live + self.shadows]

    def by_version(self, number: int) -> ServedModel | None:
        for model in self.models():
            if model.version.version == number:
                return model
        return None


def resolve(endpoint: Endpoint, ws: Workspace) -> tuple[list[ModelVersion], list[ModelVersion]]:
    """The versions the endpoint's routes and shadows point at now."""
    config = endpoint.config
    return ([get_version(r.uri, workspace=ws) for r in config.routes],
            [get_version(uri, workspace=ws) for uri in config.shadows])


def build_state(endpoint: Endpoint, ws: Workspace, *, trust: bool,
                held: dict[tuple[str, int, float], ServedModel],
                on_load: Callable[[ModelVersion, float], None] | None = None,
                on_batch: Callable[[ModelVersion, int], None] | None = None,
                on_outputs: Callable[[ModelVersion, list[Any]], None] | None = None,
                marks: CrashMarks | None = None) -> EndpointState:
    """A routing table for ``endpoint``, reusing models in ``held`` (by version id and batch
    settings) and loading the others. Blocking: call it off the event loop. ``marks``: where
    a supervised worker notes the model it is loading or running."""
    config = endpoint.config
    live_versions, shadow_versions = resolve(endpoint, ws)

    def served(version: ModelVersion) -> ServedModel:
        key = (version.id, config.max_batch_size, config.max_wait_ms)
        model = held.get(key)
        if model is None:
            started = time.perf_counter()
            with marks.hold("load", version.uri) if marks is not None else nullcontext():
                loaded = load_version(version, trust=trust)
            seconds = time.perf_counter() - started
            model = ServedModel(version, loaded, max_batch_size=config.max_batch_size,
                                max_wait_ms=config.max_wait_ms, load_seconds=seconds,
                                on_batch=on_batch, on_outputs=on_outputs, marks=marks)
            if on_load is not None:
                on_load(version, seconds)
        return model

    live = [RouteChoice(r.uri, served(v)) for r, v in zip(config.routes, live_versions,
                                                          strict=True)]
    shadows = [RouteChoice(uri, served(v)) for uri, v in zip(config.shadows, shadow_versions,
                                                             strict=True)]
    resolved = tuple(v.id for v in live_versions + shadow_versions)
    return EndpointState(endpoint, live, shadows, resolved)

"""Pipelines: a function calling steps, traced into a graph of nodes and data dependencies.

Tracing runs the pipeline function once with its parameters, with a builder in a context
variable: each step call becomes a node whose arguments are either outputs of earlier nodes
(``StepOutput`` handles) or plain JSON-able values. Ordering without data (``after=``) may
name nodes by name, which is the one way a cycle can be written; the topological sort refuses
it before anything runs.
"""

from __future__ import annotations

import contextvars
import graphlib
import inspect
import json
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from tidal.errors import InvalidValueError
from tidal.ids import check_name
from tidal.pipelines.errors import PipelineDefinitionError
from tidal.pipelines.step import Step

_builder: contextvars.ContextVar[GraphBuilder | None] = contextvars.ContextVar(
    "tidal_pipeline_builder", default=None)


def current_builder() -> GraphBuilder | None:
    return _builder.get()


@dataclass(frozen=True)
class StepOutput:
    """A handle to an output a node will produce; passed to later steps as an input."""

    node: str
    index: int = 0

    def __iter__(self) -> Iterator[StepOutput]:
        raise PipelineDefinitionError(
            f"the output of {self.node!r} is one value; annotate the step's return as "
            "tuple[A, B, ...] to unpack several", field="return")

    def __bool__(self) -> bool:
        raise PipelineDefinitionError(
            f"the output of {self.node!r} does not exist yet while the pipeline is traced, so "
            "it cannot steer Python control flow; branch inside a step instead", field="step")


class _Outputs(tuple):  # type: ignore[type-arg]
    """The handles of a step with several outputs, unpackable like its tuple."""


@dataclass
class Node:
    name: str
    step: Step
    inputs: dict[str, StepOutput]
    params: dict[str, Any]
    after: list[str] = field(default_factory=list)

    @property
    def upstream(self) -> set[str]:
        return {ref.node for ref in self.inputs.values()} | set(self.after)


class GraphBuilder:
    def __init__(self, pipeline: str) -> None:
        self.pipeline = pipeline
        self.nodes: dict[str, Node] = {}

    def add(self, step: Step, args: tuple[Any, ...], kwargs: Mapping[str, Any]) -> Any:
        after = kwargs.get("after", ())
        arguments = step.bind(args, kwargs)
        count = sum(1 for n in self.nodes.values() if n.step.name == step.name)
        name = step.name if count == 0 else f"{step.name}_{count + 1}"
        inputs: dict[str, StepOutput] = {}
        params: dict[str, Any] = {}
        for key, value in arguments.items():
            if isinstance(value, StepOutput):
                inputs[key] = value
            elif isinstance(value, _Outputs):
                raise PipelineDefinitionError(
                    f"step {name!r}, argument {key!r}: pass one output of a multi-output step "
                    "(unpack it first)", field=key)
            else:
                params[key] = _json_value(value, name, key)
        self.nodes[name] = Node(name, step, inputs, params, _after_names(after, name))
        if step.outputs == 1:
            return StepOutput(name)
        return _Outputs(StepOutput(name, i) for i in range(step.outputs))


def _after_names(after: Any, name: str) -> list[str]:
    items = after if isinstance(after, (list, tuple)) else [after]
    names = []
    for item in items:
        if isinstance(item, StepOutput):
            names.append(item.node)
        elif isinstance(item, str):
            names.append(item)
        else:
            raise PipelineDefinitionError(f"step {name!r}: after= takes step outputs or node "
                                          f"names, got {type(item).__name__}", field="after")
    return names


def _json_value(value: Any, node: str, key: str) -> Any:
    """Plain arguments become part of the cache key, so they must have one JSON form."""
    try:
        return json.loads(json.dumps(value, sort_keys=True, allow_nan=False))
    except (TypeError, ValueError):
        raise PipelineDefinitionError(
            f"step {node!r}, argument {key!r}: a {type(value).__name__} is neither the output "
            "of a step nor a JSON value (numbers, strings, booleans, None, lists, dicts); "
            "produce it in a step and pass that step's output", field=key) from None


@dataclass
class Graph:
    pipeline: str
    nodes: dict[str, Node]
    order: list[str]

    def descendants(self, name: str) -> set[str]:
        found: set[str] = set()
        frontier = [name]
        while frontier:
            current = frontier.pop()
            for node in self.nodes.values():
                if current in node.upstream and node.name not in found:
                    found.add(node.name)
                    frontier.append(node.name)
        return found


class Pipeline:
    """A function of parameters that calls steps; ``build(**params)`` traces it."""

    def __init__(self, function: Callable[..., Any], name: str,
                 schedule: str | None) -> None:
        self.function = function
        self.name = name
        self.schedule = schedule
        self.signature = inspect.signature(function)

    def __repr__(self) -> str:
        return f"Pipeline({self.name})"

    @property
    def target(self) -> str:
        return f"{self.function.__module__}:{self.function.__qualname__}"

    def parameters(self, params: Mapping[str, Any]) -> dict[str, Any]:
        """The pipeline's parameters with defaults; unknown or missing ones refused."""
        unknown = sorted(set(params) - set(self.signature.parameters))
        if unknown:
            known = ", ".join(self.signature.parameters) or "none"
            raise PipelineDefinitionError(
                f"pipeline {self.name!r} has no parameter {', '.join(map(repr, unknown))}; its "
                f"parameters: {known}", field="params")
        try:
            bound = self.signature.bind(**params)
        except TypeError as error:
            raise PipelineDefinitionError(f"pipeline {self.name!r}: {error}",
                                          field="params") from None
        bound.apply_defaults()
        return dict(bound.arguments)

    def build(self, **params: Any) -> Graph:
        builder = GraphBuilder(self.name)
        token = _builder.set(builder)
        try:
            self.function(**self.parameters(params))
        finally:
            _builder.reset(token)
        if not builder.nodes:
            raise PipelineDefinitionError(f"pipeline {self.name!r} calls no step",
                                          field="pipeline")
        for node in builder.nodes.values():
            unknown = [n for n in node.after if n not in builder.nodes]
            if unknown:
                raise PipelineDefinitionError(
                    f"step {node.name!r} runs after {', '.join(map(repr, unknown))}, which is "
                    f"no step of pipeline {self.name!r}", field="after")
        sorter = graphlib.TopologicalSorter({n.name: n.upstream for n in builder.nodes.values()})
        try:
            order = list(sorter.static_order())
        except graphlib.CycleError as error:
            cycle = " -> ".join(error.args[1])
            raise PipelineDefinitionError(f"pipeline {self.name!r} has a cycle: {cycle}",
                                          field="after") from None
        return Graph(self.name, builder.nodes, order)

    def __call__(self, **params: Any) -> Any:
        """Run the pipeline (inline executor unless ``executor=`` says otherwise)."""
        from tidal.pipelines.runner import run_pipeline

        executor = params.pop("executor", "inline")
        return run_pipeline(self, params, executor=executor)


def load_pipeline(target: str) -> Pipeline:
    """The pipeline at ``module:attribute``; a file path works as the module
    (``flows.py:daily``)."""
    import importlib
    import importlib.util
    import sys
    from pathlib import Path

    module_name, _, attribute = target.rpartition(":")
    if not module_name or not attribute:
        raise InvalidValueError(f"pipeline {target!r} is not MODULE:PIPELINE or "
                                "FILE.py:PIPELINE", field="pipeline")
    try:
        if module_name.endswith(".py"):
            path = Path(module_name).resolve()
            spec = importlib.util.spec_from_file_location(path.stem, path)
            if spec is None or spec.loader is None or not path.is_file():
                raise InvalidValueError(f"no Python file {module_name!r}", field="pipeline")
            module = importlib.util.module_from_spec(spec)
            sys.modules.setdefault(path.stem, module)
            spec.loader.exec_module(module)
        else:
            module = importlib.import_module(module_name)
    except ImportError as error:
        raise InvalidValueError(f"pipeline {target!r}: cannot import {module_name!r} "
                                f"({error})", field="pipeline") from None
    value: Any = module
    for part in attribute.split("."):
        value = getattr(value, part, None)
    if not isinstance(value, Pipeline):
        raise InvalidValueError(f"{target} is not a @tidal.pipeline", field="pipeline")
    return value


def pipeline(function: Callable[..., Any] | None = None, *, name: str | None = None,
             schedule: str | None = None) -> Any:
    """Make a function that calls steps a pipeline. ``schedule``: a cron expression."""
    if schedule is not None:
        from tidal.pipelines.schedule import check_cron

        check_cron(schedule)

    def wrap(fn: Callable[..., Any]) -> Pipeline:
        if not callable(fn):
            raise InvalidValueError("@tidal.pipeline decorates a function", field="pipeline")
        # the name prefixes the dataset versions of the pipeline's outputs
        return Pipeline(fn, check_name(name or fn.__name__, what="pipeline"), schedule)

    return wrap(function) if function is not None else wrap

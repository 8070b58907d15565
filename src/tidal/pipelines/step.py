"""Steps: typed Python functions that a pipeline runs, caches and records.

``@tidal.step`` turns a function into a :class:`Step`. Called inside a ``@tidal.pipeline``
function, a step does not run: it adds a node to the graph and returns a handle to its future
output, so data dependencies are read off the calls. Called anywhere else, it is the plain
function, which keeps steps easy to unit-test.
"""

from __future__ import annotations

import functools
import hashlib
import inspect
import textwrap
import types
import typing
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from tidal.errors import InvalidValueError
from tidal.ids import check_name
from tidal.pipelines.errors import PipelineDefinitionError, StepOutputError


@dataclass(frozen=True)
class StepOptions:
    cache: bool = True
    version: str | None = None
    retries: int = 0
    retry_delay: float = 1.0
    timeout: float | None = None
    resources: Mapping[str, Any] = field(default_factory=dict)


class Step:
    """A function a pipeline can run. ``outputs`` is how many values it returns: one, or the
    length of a ``tuple[...]`` return annotation."""

    def __init__(self, function: Callable[..., Any], name: str, options: StepOptions) -> None:
        self.function = function
        self.name = name
        self.options = options
        self.signature = inspect.signature(function)
        try:
            self.hints = typing.get_type_hints(function)
        except (NameError, TypeError) as error:
            raise PipelineDefinitionError(
                f"step {name!r}: its annotations do not resolve ({error})", field="step") \
                from None
        self.return_hint = self.hints.get("return", Any)
        self.outputs = _output_count(self.return_hint)
        #: ``module:qualname`` where the decorated step is found: how other processes import it
        self.target = f"{function.__module__}:{function.__qualname__}"
        functools.update_wrapper(self, function)

    def __repr__(self) -> str:
        return f"Step({self.name})"


    @functools.cached_property
    def code_digest(self) -> str:
        """A digest of the step's source (its bytecode when the source is not available), so
        that changing the code changes the cache key."""
        try:
            code = textwrap.dedent(inspect.getsource(self.function)).encode()
        except (OSError, TypeError):
            code = self.function.__code__.co_code
        return hashlib.blake2b(code, digest_size=16).hexdigest()

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        from tidal.pipelines.graph import current_builder

        builder = current_builder()
        if builder is None:
            return self.function(*args, **kwargs)
        return builder.add(self, args, kwargs)

    def bind(self, args: tuple[Any, ...], kwargs: Mapping[str, Any]) -> dict[str, Any]:
        """Arguments by parameter name, defaults applied; unknown or missing ones refused."""
        kwargs = {k: v for k, v in kwargs.items() if k != "after"}
        try:
            bound = self.signature.bind(*args, **kwargs)
        except TypeError as error:
            raise PipelineDefinitionError(f"step {self.name!r}: {error}", field="arguments") \
                from None
        bound.apply_defaults()
        return dict(bound.arguments)

    def check_output(self, value: Any) -> list[Any]:
        """The step's return value as a list of outputs, each checked against the return
        annotation; a mismatch is a StepOutputError naming the step."""
        if self.outputs == 1:
            values, hints = [value], [self.return_hint]
        else:
            if not isinstance(value, tuple) or len(value) != self.outputs:
                raise StepOutputError(
                    f"step {self.name!r} is annotated to return {self.outputs} values "
                    f"({_describe(self.return_hint)}) and returned {_describe_value(value)}",
                    field="return")
            values, hints = list(value), list(typing.get_args(self.return_hint))
        for position, (item, hint) in enumerate(zip(values, hints, strict=True)):
            if not _matches(item, hint):
                where = "" if self.outputs == 1 else f" (output {position})"
                raise StepOutputError(
                    f"step {self.name!r} returned {_describe_value(item)}{where}, which does "
                    f"not match its annotation {_describe(hint)}", field="return")
        return values


def _output_count(hint: Any) -> int:
    if typing.get_origin(hint) is tuple:
        arguments = typing.get_args(hint)
        if arguments and arguments[-1] is not Ellipsis:
            return len(arguments)
    return 1


def _describe(hint: Any) -> str:
    return getattr(hint, "__name__", None) or str(hint).replace("typing.", "")


def _describe_value(value: Any) -> str:
    return f"a {type(value).__module__}.{type(value).__qualname__}".replace("builtins.", "")


def _matches(value: Any, hint: Any) -> bool:
    """Whether ``value`` fits ``hint``: classes by isinstance, unions by any member, generics
    by their origin (their parameters are not checked element by element)."""
    if hint is Any or hint is inspect.Signature.empty:
        return True
    if hint is None or hint is type(None):
        return value is None
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        return any(_matches(value, member) for member in typing.get_args(hint))
    if origin is typing.Literal:
        return value in typing.get_args(hint)
    if origin is not None:
        return isinstance(value, origin) if isinstance(origin, type) else True
    if isinstance(hint, type):
        if hint is float and isinstance(value, int) and not isinstance(value, bool):
            return True
        return isinstance(value, hint)
    return True


def step(function: Callable[..., Any] | None = None, *, name: str | None = None,
         cache: bool = True, version: str | None = None, retries: int = 0,
         retry_delay: float = 1.0, timeout: float | None = None,
         resources: Mapping[str, Any] | None = None) -> Any:
    """Make a function a pipeline step.

    ``cache``: reuse outputs when the code, ``version``, parameters and inputs are unchanged.
    ``retries`` with exponential backoff from ``retry_delay`` seconds; ``timeout`` in seconds
    per attempt; ``resources`` such as ``{"cpus": 2, "gpus": 1, "memory": "4GB"}`` for Ray.
    """
    if isinstance(retries, bool) or not isinstance(retries, int) or retries < 0:
        raise InvalidValueError(f"retries must be a whole number >= 0, got {retries!r}",
                                field="retries")
    if timeout is not None and not (isinstance(timeout, (int, float)) and timeout > 0):
        raise InvalidValueError(f"timeout must be a positive number of seconds, got "
                                f"{timeout!r}", field="timeout")
    if not (isinstance(retry_delay, (int, float)) and retry_delay >= 0):
        raise InvalidValueError(f"retry_delay must be >= 0 seconds, got {retry_delay!r}",
                                field="retry_delay")
    options = StepOptions(cache, version, retries, float(retry_delay), timeout,
                          dict(resources or {}))

    def wrap(fn: Callable[..., Any]) -> Step:
        if not callable(fn) or isinstance(fn, Step):
            raise InvalidValueError("@tidal.step decorates a function", field="step")
        # the name is a node's name, and part of its outputs' dataset names
        return Step(fn, check_name(name or fn.__name__, what="step"), options)

    return wrap(function) if function is not None else wrap

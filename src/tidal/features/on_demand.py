"""On-demand features: computed at request time from stored features and request data.

An on-demand view is a vectorised Python function over columns: the features it reads from
feature views (by their short names) and request fields that the caller supplies (an entity
row's extra keys online, extra columns of the entity frame offline). The same function runs for
training and for serving, so the two can never compute a feature differently.

``mode="pandas"`` hands the function a DataFrame and expects a DataFrame (or a dict of columns)
back; ``mode="python"`` hands it a dict of lists and expects one back, which skips building a
DataFrame per online request.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from tidal.errors import InvalidValueError, TidalError
from tidal.features.definitions import Feature, _identifier, find_feature

MODES = ("pandas", "python")
#: Arrow types of the feature dtypes (definitions.TYPES), for casting what a function returns.
_ARROW_TYPES = {"float64": "float64", "float32": "float32", "int64": "int64", "int32": "int32",
                "bool": "bool_", "string": "string", "timestamp": "timestamp"}


class OnDemandFeatureError(TidalError):
    """An on-demand feature function failed or returned something other than it declared."""

    status_code = 422


def _features(items: Any, what: str, view: str) -> tuple[Feature, ...]:
    items = [items] if isinstance(items, Feature) else list(items or ())
    if not all(isinstance(item, Feature) for item in items):
        raise InvalidValueError(f"on-demand view {view!r}: {what} must be Feature objects",
                                field=what)
    return tuple(items)


@dataclass(frozen=True, eq=False)
class OnDemandFeatureView:
    """Features computed by ``function`` from ``inputs`` ("view:feature" references) and
    ``request`` fields; asked for as ``"<name>:<feature>"`` like any other feature."""

    name: str
    inputs: tuple[str, ...]
    request: tuple[Feature, ...]
    features: tuple[Feature, ...]
    function: Callable[[Any], Any]
    mode: str = "pandas"
    description: str = ""
    tags: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        _identifier(self.name, "on-demand view name")
        inputs = (self.inputs,) if isinstance(self.inputs, str) else tuple(self.inputs or ())
        for ref in inputs:
            view, sep, feature = ref.partition(":") if isinstance(ref, str) else ("", "", "")
            if not sep or not view or not feature:
                raise InvalidValueError(f"on-demand view {self.name!r}: input {ref!r} is not of "
                                        "the form 'view:feature'", field="inputs")
        request = _features(self.request, "request", self.name)
        features = _features(self.features, "features", self.name)
        if not features:
            raise InvalidValueError(f"on-demand view {self.name!r} needs one or more Feature",
                                    field="features")
        if not inputs and not request:
            raise InvalidValueError(f"on-demand view {self.name!r} needs inputs, request "
                                    "fields, or both", field="inputs")
        names = [ref.partition(":")[2] for ref in inputs] + [f.name for f in request]
        if len(set(names)) != len(names):
            raise InvalidValueError(
                f"on-demand view {self.name!r}: its inputs and request fields must have distinct "
                f"names, as the function sees them by name; got {names}", field="inputs")
        if not callable(self.function):
            raise InvalidValueError(f"on-demand view {self.name!r} needs a function",
                                    field="function")
        if self.mode not in MODES:
            raise InvalidValueError(f"on-demand view {self.name!r} has mode {self.mode!r}; "
                                    f"accepted: {list(MODES)}", field="mode")
        object.__setattr__(self, "inputs", inputs)
        object.__setattr__(self, "request", request)
        object.__setattr__(self, "features", features)

    def feature(self, name: str) -> Feature:
        return find_feature(self, name, "on-demand view")

    @property
    def source_code(self) -> str | None:
        """The function's source, recorded with the definition so that a change shows."""
        try:
            return inspect.getsource(self.function)
        except (OSError, TypeError):
            return None

    def compute(self, columns: Mapping[str, Sequence[Any]], rows: int) -> dict[str, Any]:
        """Run the function over ``columns`` (input short names and request fields, each of
        ``rows`` values); return each declared feature as an Arrow array."""
        import pyarrow as pa

        if self.mode == "pandas":
            import pandas as pd

            argument: Any = pd.DataFrame(dict(columns), index=range(rows))
        else:
            argument = {name: list(values) for name, values in columns.items()}
        try:
            result = self.function(argument)
        except OnDemandFeatureError:
            raise
        except Exception as error:
            raise OnDemandFeatureError(f"on-demand view {self.name!r} failed: "
                                       f"{type(error).__name__}: {error}",
                                       field=self.name) from error
        if not hasattr(result, "__getitem__") or not hasattr(result, "__contains__"):
            raise OnDemandFeatureError(f"on-demand view {self.name!r} returned "
                                       f"{type(result).__name__}; return a "
                                       f"{'DataFrame' if self.mode == 'pandas' else 'dict'} of "
                                       "its features", field=self.name)
        out: dict[str, Any] = {}
        for feature in self.features:
            if feature.name not in result:
                raise OnDemandFeatureError(f"on-demand view {self.name!r} returned no column "
                                           f"{feature.name!r}", field=feature.name)
            values = result[feature.name]
            kind = _ARROW_TYPES[feature.dtype]
            arrow_type = pa.timestamp("us", "UTC") if kind == "timestamp" else getattr(pa, kind)()
            try:
                array = pa.array(values, from_pandas=True)
                array = array.cast(arrow_type)
            except (pa.ArrowInvalid, pa.ArrowTypeError, pa.ArrowNotImplementedError,
                    TypeError, ValueError) as error:
                raise OnDemandFeatureError(
                    f"on-demand view {self.name!r}: feature {feature.name!r} is declared "
                    f"{feature.dtype} but the function returned values that do not convert "
                    f"({error})", field=feature.name) from error
            if len(array) != rows:
                raise OnDemandFeatureError(
                    f"on-demand view {self.name!r}: feature {feature.name!r} has {len(array)} "
                    f"values for {rows} rows", field=feature.name)
            out[feature.name] = array
        return out


def on_demand_feature_view(*, features: Any, inputs: Sequence[str] = (),
                           request: Any = (), mode: str = "pandas", name: str | None = None,
                           description: str = "", tags: dict[str, str] | None = None
                           ) -> Callable[[Callable[[Any], Any]], OnDemandFeatureView]:
    """Decorate a function to make an OnDemandFeatureView named after it (or ``name``)."""

    def wrap(function: Callable[[Any], Any]) -> OnDemandFeatureView:
        return OnDemandFeatureView(name or function.__name__, tuple(inputs), request, features,
                                   function, mode, description or (function.__doc__ or "").strip(),
                                   dict(tags or {}))

    return wrap


"""The PyTorch flavor: a module's weights in safetensors, and the class that holds them by name.

``torch.save`` pickles, so a stored model could run any code when loaded. This flavor stores
only tensors (``weights.safetensors``) and a *declared module*: the import path of the class
and the keyword arguments that build it, kept twice: in the version's metadata and in the
weights file's own header, whose digest the version records. Importing a module runs its
code, so loading first checks the metadata against the header (metadata rewritten after
registration is refused), then finds the class's source without running anything and never
in the current directory (:func:`tidal.modules.find_source`), checks that it defines that
class, and only then imports it, checks that it is a ``torch.nn.Module`` before calling it,
builds it and copies the weights in. The class must therefore be importable where the model
is loaded, which ``save`` proves by rebuilding the model before anything is stored.
"""

from __future__ import annotations

import ast
import importlib
import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from tidal.errors import InvalidValueError, TidalError
from tidal.models.flavors.base import Flavor, ModelFiles
from tidal.modules import ModuleSourceError, find_source, top_level_definition

WEIGHTS_FILE = "weights.safetensors"
#: Keys of the weights file's header that record the declared module at registration.
HEADER_CLASS = "tidal.class"
HEADER_INIT_KWARGS = "tidal.init_kwargs"


class ModuleClassError(TidalError):
    """The class a stored PyTorch model declares cannot be imported, or is no torch Module."""


class PyTorchFlavor(Flavor):
    name: ClassVar[str] = "pytorch"
    packages: ClassVar[tuple[str, ...]] = ("torch", "safetensors")
    extra: ClassVar[str] = "pytorch"
    priority: ClassVar[int] = 20

    def handles(self, model: Any) -> bool:
        return any(cls.__module__ == "torch.nn.modules.module" and cls.__qualname__ == "Module"
                   for cls in type(model).__mro__)

    def save(self, model: Any, directory: Path, options: Mapping[str, Any]) -> dict[str, Any]:
        """Store the weights and the declared module, after proving that the declared class,
        built with ``init_kwargs``, takes the weights back exactly."""
        self.check_options(options, ("init_kwargs",))
        torch = self.import_library("torch")
        safetensors_torch = self.import_library("safetensors.torch")
        target = _declared_class(model)
        if "init_kwargs" in options:
            init_kwargs = _json_kwargs(options["init_kwargs"], "flavor_options")
        elif callable(getattr(model, "get_config", None)):
            init_kwargs = _json_kwargs(model.get_config(), "model")
        else:
            init_kwargs = {}
        path = directory / WEIGHTS_FILE
        # save_model keeps one name of each group of tied tensors (safetensors refuses shared
        # storage) and makes every tensor contiguous; load_model ties them back.
        safetensors_torch.save_model(model, str(path), metadata={
            HEADER_CLASS: target, HEADER_INIT_KWARGS: _canonical(init_kwargs)})
        _prove_rebuildable(torch, safetensors_torch, model, target, init_kwargs, path)
        return {"class": target, "init_kwargs": init_kwargs}

    def load(self, files: ModelFiles, metadata: Mapping[str, Any], *, trust: bool) -> Any:
        torch = self.import_library("torch")
        safetensors_torch = self.import_library("safetensors.torch")
        init_kwargs = metadata.get("init_kwargs", {})
        if not isinstance(init_kwargs, dict):
            raise InvalidValueError("the pytorch model's metadata init_kwargs is not an object",
                                    field="metadata")
        weights = files.path(WEIGHTS_FILE)
        _check_recorded(self.import_library("safetensors"), weights, metadata, trust=trust)
        cls = _module_class(torch, metadata.get("class"))
        model = cls(**init_kwargs)
        safetensors_torch.load_model(model, str(weights), strict=True)
        return model.eval()

    def predict(self, model: Any, data: Any) -> Any:
        """Run the module on the whole batch, without autograd.

        The input (a DataFrame, an array or a tensor) becomes one tensor. Floating-point data
        takes the dtype of the module's floating-point parameters (float32 unless the module
        was converted), since a float64 DataFrame would otherwise not multiply with float32
        weights; integer and boolean data keep their dtype, since they are what embedding
        lookups and masks take (a network that wants floats is given floats).
        """
        torch = self.import_library("torch")
        if isinstance(data, torch.Tensor):
            tensor = data
        else:
            array = np.ascontiguousarray(data.to_numpy() if hasattr(data, "to_numpy") else data)
            if not array.flags.writeable:
                # pandas hands out read-only views, which torch.from_numpy warns about.
                array = array.copy()
            tensor = torch.from_numpy(array)
        if tensor.is_floating_point():
            tensor = tensor.to(_float_dtype(torch, model))
        with torch.inference_mode():
            output = model(tensor)
        if not isinstance(output, torch.Tensor):
            raise InvalidValueError(f"the pytorch flavor predicts with modules whose forward "
                                    f"returns one tensor; this one returned a "
                                    f"{type(output).__name__}", field="model")
        return output.detach().cpu().numpy()


def _declared_class(model: Any) -> str:
    """``package.module:QualName`` of the model's class, refused when no other process could
    import it: a class from ``__main__`` or one defined inside a function."""
    cls = type(model)
    if cls.__module__ == "__main__" or "<locals>" in cls.__qualname__:
        raise InvalidValueError(
            f"the pytorch flavor stores the model's class by import path, and "
            f"{cls.__module__}.{cls.__qualname__} cannot be imported from another process; "
            "define the class at the top level of an importable module", field="model")
    return f"{cls.__module__}:{cls.__qualname__}"


def _json_kwargs(value: Any, field: str) -> dict[str, Any]:
    """Constructor arguments as stored: a JSON object, checked now rather than when the
    registry writes the metadata."""
    if not isinstance(value, dict) or not all(isinstance(key, str) for key in value):
        raise InvalidValueError(f"init_kwargs must be a dict with string keys, got "
                                f"{type(value).__name__}", field=field)
    try:
        json.dumps(value, allow_nan=False)
    except (TypeError, ValueError) as error:
        raise InvalidValueError(f"init_kwargs must be JSON-able: {error}", field=field) from error
    return value


def _canonical(init_kwargs: Mapping[str, Any]) -> str:
    return json.dumps(init_kwargs, sort_keys=True, separators=(",", ":"), allow_nan=False)


def _check_recorded(safetensors: Any, weights: Path, metadata: Mapping[str, Any], *,
                    trust: bool) -> None:
    """Refuse metadata whose class or init_kwargs are not those the weights file recorded at
    registration, before anything is imported. Weights saved without that record (by an older
    Tidal) load only with ``trust=True``."""
    with safetensors.safe_open(str(weights), framework="pt") as handle:
        header = handle.metadata() or {}
    if HEADER_CLASS not in header:
        if trust:
            return
        raise ModuleClassError(
            "the pytorch model's weights do not record the class it was registered with, so "
            f"the class its metadata names ({metadata.get('class')!r}) cannot be checked "
            "before it is imported; register the model again, or load it with trust=True "
            "(Python) / --trust (CLI) if you trust that class", field="metadata")
    declared = metadata.get("class")
    try:
        kwargs_match = _canonical(metadata.get("init_kwargs", {})) == \
            header.get(HEADER_INIT_KWARGS)
    except (TypeError, ValueError):
        kwargs_match = False
    if declared != header[HEADER_CLASS] or not kwargs_match:
        raise ModuleClassError(
            f"the pytorch model's metadata declares class {declared!r} with init_kwargs "
            f"{metadata.get('init_kwargs', {})!r}, but it was registered with class "
            f"{header[HEADER_CLASS]!r} and init_kwargs {header.get(HEADER_INIT_KWARGS)}: the "
            "metadata was changed after registration; refusing to import anything. Register "
            "the model again from its source", field="metadata")


def _prove_rebuildable(torch: Any, safetensors_torch: Any, model: Any, target: str,
                       init_kwargs: dict[str, Any], path: Path) -> None:
    """Build the declared class with ``init_kwargs``, load the stored weights into it and
    compare its state with the model's, so that a model that could not be loaded, or would
    load different (e.g. converted to another dtype) weights, is refused at save time."""
    hint = ('pass flavor_options={"init_kwargs": {...}} with the arguments that build the '
            "model, or give the module a get_config() method returning them")
    try:
        rebuilt = _module_class(torch, target)(**init_kwargs)
        safetensors_torch.load_model(rebuilt, str(path), strict=True)
        expected = model.state_dict()
        actual = rebuilt.state_dict()
        if set(expected) != set(actual):
            raise ValueError(f"the rebuilt module has state {sorted(set(actual))}, "
                             f"not {sorted(set(expected))}")
        for key, tensor in expected.items():
            torch.testing.assert_close(actual[key], tensor.cpu(), rtol=0, atol=0,
                                       equal_nan=True,
                                       msg=lambda message, key=key: f"{key}: {message}")
    except Exception as error:
        raise InvalidValueError(f"the model cannot be rebuilt from {target} with init_kwargs "
                                f"{init_kwargs}: {error}\n{hint}", field="model") from error


def _module_class(torch: Any, target: Any) -> Any:
    """The class named ``package.module:QualName``. Its module's source is found without
    running anything and outside the current directory, and must define that class at its
    top level before it is imported; what it holds must then be a torch Module class before
    anything calls it: metadata that names a function (``os:system``) is refused."""
    if not isinstance(target, str) or target.count(":") != 1:
        raise ModuleClassError(f"the pytorch model declares class {target!r}; expected "
                               "'package.module:QualName'", field="metadata")
    module_name, qualname = target.split(":")
    try:
        source = find_source(module_name)
    except ModuleSourceError as error:
        raise ModuleClassError(f"the pytorch model's class {target} cannot be imported: "
                               f"{error.message}; install the package that defines it",
                               field="metadata") from None
    outer = qualname.split(".", 1)[0]
    if not isinstance(top_level_definition(source.read_bytes(), outer), ast.ClassDef):
        raise ModuleClassError(f"the pytorch model declares {target}, but {source} defines no "
                               f"class {outer!r} at its top level; refusing to import it",
                               field="metadata")
    try:
        found: Any = importlib.import_module(module_name)
        for part in qualname.split("."):
            found = getattr(found, part)
    except (ImportError, AttributeError) as error:
        raise ModuleClassError(f"the pytorch model's class {target} cannot be imported here "
                               f"({error}); install the package that defines it",
                               field="metadata") from error
    if not (isinstance(found, type) and issubclass(found, torch.nn.Module)):
        raise ModuleClassError(f"the pytorch model declares {target}, which is not a "
                               "torch.nn.Module class; refusing to call it", field="metadata")
    return found


def _float_dtype(torch: Any, model: Any) -> Any:
    """The dtype of the module's first floating-point parameter or buffer, else float32."""
    for tensor in (*model.parameters(), *model.buffers()):
        if tensor.is_floating_point():
            return tensor.dtype
    return torch.float32

"""The PyTorch flavor: safetensors weights plus a declared module, rebuilt only from a class
that is a torch Module, named by metadata that matches what the weights recorded at
registration, and found without importing anything from the current directory."""

from __future__ import annotations

import importlib
import json
import os
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import safetensors.torch as safetensors_torch
import torch
from sqlalchemy import update
from torch import nn

import tidal
from tests.models.flavors.torch_nets import ConfiguredNet, TiedNet, TinyNet
from tests.models.test_safety import swap_file
from tests.planted import forgetting_planted, on_import_path, plant
from tidal.errors import InvalidValueError, TidalError
from tidal.models.flavors.base import FolderFiles
from tidal.models.flavors.pytorch import (
    HEADER_CLASS,
    HEADER_INIT_KWARGS,
    ModuleClassError,
    PyTorchFlavor,
)
from tidal.models.flavors.registry import get_flavor
from tidal.models.loaded import clear_cache
from tidal.models.schema import model_versions

FLAVOR = PyTorchFlavor()


def roundtrip(model: Any, tmp_path: Path, options: dict[str, Any] | None = None,
              ) -> tuple[Any, dict[str, Any]]:
    """Save, pass the metadata through JSON as the registry stores it, and load."""
    directory = tmp_path / "model"
    directory.mkdir(parents=True)
    metadata = json.loads(json.dumps(FLAVOR.save(model, directory, options or {})))
    assert FolderFiles(directory).names() == ["weights.safetensors"]
    return FLAVOR.load(FolderFiles(directory), metadata, trust=False), metadata


def trained(model: nn.Module, x: np.ndarray) -> nn.Module:
    """A few optimizer steps, so that weights and batch-norm statistics are not the initial
    ones, then eval mode, the mode the loaded model predicts in."""
    torch.manual_seed(0)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    inputs = torch.from_numpy(x.astype(np.float32))
    for _ in range(20):
        optimizer.zero_grad()
        model(inputs).pow(2).mean().backward()
        optimizer.step()
    return model.eval()


def expected(model: nn.Module, x: np.ndarray) -> np.ndarray:
    with torch.no_grad():
        return model(torch.from_numpy(x)).numpy()


def test_builtin_table_names_the_flavor() -> None:
    flavor = get_flavor("pytorch")
    assert isinstance(flavor, PyTorchFlavor)
    assert (flavor.packages, flavor.extra, flavor.safe) == (("torch", "safetensors"),
                                                            "pytorch", True)


def test_init_kwargs_from_options(tmp_path: Path) -> None:
    torch.manual_seed(1)
    x = np.random.default_rng(0).normal(size=(300, 5))
    model = trained(TinyNet(in_features=5, hidden=16, out_features=2), x)
    options = {"init_kwargs": {"in_features": 5, "hidden": 16, "out_features": 2}}
    loaded, metadata = roundtrip(model, tmp_path, options)

    assert metadata == {"class": "tests.models.flavors.torch_nets:TinyNet", **options}
    assert type(loaded) is TinyNet and not loaded.training
    want = expected(model, x.astype(np.float32))
    frame = pd.DataFrame(x, columns=[f"f{i}" for i in range(5)])
    for data in (frame, x, x.astype(np.float32), torch.from_numpy(x)):
        predicted = FLAVOR.predict(loaded, data)
        assert predicted.dtype == np.float32
        np.testing.assert_array_equal(predicted, want)
    assert not FLAVOR.has_predict_proba(loaded)


def test_init_kwargs_from_get_config(tmp_path: Path) -> None:
    torch.manual_seed(2)
    x = np.random.default_rng(1).normal(size=(200, 3)).astype(np.float32)
    model = trained(ConfiguredNet(in_features=3, hidden=5), x)
    loaded, metadata = roundtrip(model, tmp_path)
    assert metadata["init_kwargs"] == {"in_features": 3, "hidden": 5, "out_features": 1}
    np.testing.assert_array_equal(FLAVOR.predict(loaded, x), expected(model, x))


def test_tied_weights_stay_tied(tmp_path: Path) -> None:
    torch.manual_seed(3)
    model = TiedNet().eval()
    loaded, metadata = roundtrip(model, tmp_path)
    assert metadata["init_kwargs"] == {}
    assert loaded.out.weight is loaded.embed.weight
    tokens = np.random.default_rng(2).integers(0, 20, size=(50, 7))
    np.testing.assert_array_equal(FLAVOR.predict(loaded, tokens), expected(model, tokens))


def test_a_model_that_cannot_be_rebuilt_is_refused(tmp_path: Path) -> None:
    with pytest.raises(InvalidValueError, match="init_kwargs") as refused:
        FLAVOR.save(TinyNet(in_features=7), tmp_path, {})
    assert refused.value.field == "model"
    assert 'flavor_options={"init_kwargs"' in refused.value.message

    # Weights converted to float64 would be loaded back as float32 into a new TinyNet.
    with pytest.raises(InvalidValueError, match="cannot be rebuilt"):
        FLAVOR.save(TinyNet().double(), tmp_path, {})


def test_classes_no_other_process_can_import_are_refused(tmp_path: Path) -> None:
    class LocalNet(TinyNet):
        pass

    main_net = type("MainNet", (TinyNet,), {"__module__": "__main__"})
    for model in (LocalNet(), main_net()):
        with pytest.raises(InvalidValueError, match="cannot be imported") as refused:
            FLAVOR.save(model, tmp_path, {})
        assert refused.value.field == "model"
    assert list(tmp_path.iterdir()) == []


def test_options_are_checked(tmp_path: Path) -> None:
    with pytest.raises(InvalidValueError) as unknown:
        FLAVOR.save(TinyNet(), tmp_path, {"init_kwargs": {}, "pickle": True})
    assert unknown.value.field == "flavor_options"
    with pytest.raises(InvalidValueError, match="JSON"):
        FLAVOR.save(TinyNet(), tmp_path, {"init_kwargs": {"in_features": object()}})
    with pytest.raises(InvalidValueError, match="dict"):
        FLAVOR.save(TinyNet(), tmp_path, {"init_kwargs": [4, 8]})


@pytest.mark.parametrize("declared", ["os:system", "builtins:eval", "os.path:join",
                                      "builtins:dict", "no_such_module_xyz:Net", "os",
                                      "tests.models.flavors.torch_nets:Missing"])
def test_crafted_metadata_never_calls_anything(tmp_path: Path, declared: str,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    directory = tmp_path / "model"
    directory.mkdir()
    FLAVOR.save(TinyNet(), directory, {})
    calls: list[Any] = []
    monkeypatch.setattr(os, "system", lambda *args, **kwargs: calls.append(args))
    with pytest.raises(TidalError) as refused:
        FLAVOR.load(FolderFiles(directory), {"class": declared, "init_kwargs": {}}, trust=True)
    assert refused.value.field == "metadata"
    assert calls == []


def test_detection() -> None:
    assert FLAVOR.handles(TinyNet()) and FLAVOR.handles(nn.Linear(2, 1))
    assert not FLAVOR.handles(np.zeros(3)) and not FLAVOR.handles(torch.zeros(3))


# -- the class a stored model names ---------------------------------------------------------------

#: A network like TinyNet(3, 4, 1), in a module planted where stored metadata could name it.
PLANTED_NET = """
from torch import nn


class Net(nn.Module):
    def __init__(self, in_features=3, hidden=4, out_features=1):
        super().__init__()
        self.layers = nn.Sequential(nn.Linear(in_features, hidden), nn.BatchNorm1d(hidden),
                                    nn.ReLU(), nn.Linear(hidden, out_features))

    def forward(self, x):
        return self.layers(x)
"""
SIZES = {"in_features": 3, "hidden": 4, "out_features": 1}


@pytest.fixture
def lib(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    with on_import_path(tmp_path / "lib", monkeypatch) as folder:
        yield folder


def registered(name: str = "net") -> Any:
    return tidal.models.register(name, TinyNet(**SIZES), flavor_options={"init_kwargs": SIZES})


def rewrite_metadata(version: Any, metadata: dict[str, Any]) -> None:
    """Change the version's flavor metadata as someone with write access to the metadata
    store could."""
    version.workspace.db.write(lambda conn: conn.execute(update(model_versions).where(
        model_versions.c.id == version.id).values(flavor_metadata=json.dumps(metadata))))
    clear_cache()


def test_metadata_rewritten_in_the_store_is_refused_before_any_import(workspace, lib,
                                                                      tmp_path):
    version = registered()
    marker = tmp_path / "pwned"
    name = plant(lib, marker, PLANTED_NET)
    rewrite_metadata(version, {"class": f"{name}:Net", "init_kwargs": SIZES})
    for trust in (False, True):
        with pytest.raises(ModuleClassError, match="changed after registration") as refused:
            tidal.models.load(version.uri, trust=trust)
        assert refused.value.field == "metadata"
        assert "tests.models.flavors.torch_nets:TinyNet" in refused.value.message
    assert not marker.exists() and name not in sys.modules

    rewrite_metadata(version, {"class": "tests.models.flavors.torch_nets:TinyNet",
                               "init_kwargs": {**SIZES, "hidden": 5}})
    with pytest.raises(ModuleClassError, match="changed after registration"):
        tidal.models.load(version.uri)


def test_both_stores_rewritten_never_import_a_module_without_that_class(workspace, lib,
                                                                        tmp_path):
    """Someone who can write blobs and metadata can make the weights' own record agree with
    the metadata; a module that does not define the class, whatever its import does, is still
    never imported."""
    version = registered()
    marker = tmp_path / "pwned"
    name = plant(lib, marker, "Net = 'not a class'\n")
    declared = f"{name}:Net"
    weights = tmp_path / "weights.safetensors"
    safetensors_torch.save_model(TinyNet(**SIZES), str(weights), metadata={
        HEADER_CLASS: declared, HEADER_INIT_KWARGS: json.dumps(SIZES, sort_keys=True,
                                                               separators=(",", ":"))})
    swap_file(version, "weights.safetensors", weights.read_bytes())
    rewrite_metadata(version, {"class": declared, "init_kwargs": SIZES})
    with pytest.raises(ModuleClassError, match="defines no class 'Net'") as refused:
        tidal.models.load(version.uri, trust=True)
    assert refused.value.field == "metadata"
    assert not marker.exists() and name not in sys.modules


def test_a_class_planted_in_the_current_directory_is_not_imported(workspace, tmp_path,
                                                                  monkeypatch):
    here = tmp_path / "here"
    marker = tmp_path / "imported"
    name = plant(here, marker, PLANTED_NET)
    monkeypatch.chdir(here)
    monkeypatch.setattr(sys, "path", ["", *sys.path])  # as `python -c` / a REPL have it
    with forgetting_planted():  # the session that registered it had imported it from here
        net = importlib.import_module(name).Net()
        version = tidal.models.register("planted", net, flavor_options={"init_kwargs": {}})
    marker.unlink()
    clear_cache()
    with pytest.raises(ModuleClassError, match="current directory") as refused:
        tidal.models.load(version.uri, trust=True)
    assert refused.value.field == "metadata"
    assert not marker.exists() and name not in sys.modules


def test_weights_that_record_no_class_load_only_with_trust(tmp_path: Path) -> None:
    directory = tmp_path / "model"
    directory.mkdir()
    metadata = FLAVOR.save(TinyNet(), directory, {})
    # the weights file as a Tidal that did not record the class in it wrote it
    safetensors_torch.save_model(TinyNet(), str(directory / "weights.safetensors"))
    with pytest.raises(ModuleClassError, match="trust=True") as refused:
        FLAVOR.load(FolderFiles(directory), metadata, trust=False)
    assert refused.value.field == "metadata"
    assert type(FLAVOR.load(FolderFiles(directory), metadata, trust=True)) is TinyNet


def test_the_weights_record_the_declared_class(tmp_path: Path) -> None:
    from safetensors import safe_open

    metadata = FLAVOR.save(TinyNet(**SIZES), tmp_path, {"init_kwargs": SIZES})
    with safe_open(str(tmp_path / "weights.safetensors"), framework="pt") as handle:
        header = handle.metadata()
    assert header[HEADER_CLASS] == metadata["class"] == "tests.models.flavors.torch_nets:TinyNet"
    assert json.loads(header[HEADER_INIT_KWARGS]) == SIZES

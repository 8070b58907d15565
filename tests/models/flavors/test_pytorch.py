"""The PyTorch flavor: safetensors weights plus a declared module, rebuilt only from a class
that is a torch Module."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import torch
from torch import nn

from tests.models.flavors.torch_nets import ConfiguredNet, TiedNet, TinyNet
from tidal.errors import InvalidValueError, TidalError
from tidal.models.flavors.base import FolderFiles
from tidal.models.flavors.pytorch import PyTorchFlavor
from tidal.models.flavors.registry import get_flavor

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

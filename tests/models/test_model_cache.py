"""A model file on local disk is never trusted as it stands.

Libraries that read weights from a path (PyTorch's safetensors) get the file on local disk,
and a remote artifact store's files are cached in the workspace to save downloads. Someone
who can write that cache (another local user) must not be able to swap a model's weights:
every load verifies the bytes against the digest in the metadata store, replaces an altered
cached copy by the store's, and refuses clearly when the store's copy is bad too.
"""

from __future__ import annotations

import json
import os
import struct
import subprocess
import sys
from pathlib import Path

import httpx
import numpy as np
import pytest

import tidal
from tests.models.flavors.torch_nets import TinyNet
from tests.serving.processes import start_server
from tidal.errors import ArtifactCorruptedError
from tidal.models.loaded import clear_cache
from tidal.serving.endpoints import deploy

REPO = Path(__file__).resolve().parents[2]
WEIGHTS = "weights.safetensors"


def register_net() -> tuple[str, np.ndarray, np.ndarray, bytes]:
    """A registered network, rows for it, its predictions there and its weights file."""
    import torch

    torch.manual_seed(0)
    rows = np.random.default_rng(0).normal(size=(4, 3)).astype(np.float32)
    version = tidal.models.register(
        "net", TinyNet(in_features=3, hidden=4, out_features=1), input_example=rows, run=False,
        flavor_options={"init_kwargs": {"in_features": 3, "hidden": 4, "out_features": 1}})
    expected = tidal.models.load(version.uri).predict(rows)
    weights = version.workspace.artifacts.get_bytes(version.files[WEIGHTS]["digest"])
    return version.uri, rows, expected, weights


def tampered(weights: bytes) -> bytes:
    """The same file with every weight multiplied by 1,000, its header (and so the class it
    declares) kept: what someone who wants other predictions would write."""
    import safetensors.torch

    size = struct.unpack("<Q", weights[:8])[0]
    header = json.loads(weights[8:8 + size]).get("__metadata__")
    tensors = {name: tensor * 1000 if tensor.is_floating_point() else tensor
               for name, tensor in safetensors.torch.load(weights).items()}
    return safetensors.torch.save(tensors, metadata=header)


def local_copies(ws, weights: bytes) -> list[Path]:
    """Every file in the workspace's folder, outside a local artifact store, holding
    ``weights``: the cached copies a local user could overwrite."""
    store = Path(ws.artifacts.url).resolve() if ws.artifacts.is_local else None
    found = []
    for folder, _, names in os.walk(ws.settings.home):
        if store is not None and Path(folder).resolve().is_relative_to(store):
            continue
        found += [Path(folder, n) for n in names if Path(folder, n).read_bytes() == weights]
    return found


def overwrite(path: Path, data: bytes) -> None:
    path.chmod(0o644)
    path.write_bytes(data)


def predict_in_a_fresh_process(uri: str, rows: np.ndarray, env: dict[str, str]) -> np.ndarray:
    code = ("import json, sys, numpy as np, tidal\n"
            f"rows = np.array({rows.tolist()!r}, dtype=np.float32)\n"
            f"print(json.dumps(tidal.models.load({uri!r}).predict(rows).tolist()))\n")
    done = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True,
                          env={**os.environ, **env, "PYTHONPATH": str(REPO)}, text=True,
                          timeout=120, check=False)
    assert done.returncode == 0, done.stderr
    return np.array(json.loads(done.stdout), dtype=np.float32)


def test_an_overwritten_cached_weights_file_never_changes_a_prediction(workspace, backend):
    uri, rows, expected, weights = register_net()
    bad = tampered(weights)
    copies = local_copies(workspace, weights)
    if not workspace.artifacts.is_local:  # a remote store's files are cached to save downloads
        assert copies, "the remote store's weights were not cached"
    for path in copies:
        overwrite(path, bad)

    clear_cache()
    np.testing.assert_array_equal(tidal.models.load(uri).predict(rows), expected)
    np.testing.assert_array_equal(predict_in_a_fresh_process(uri, rows, backend.env()),
                                  expected)
    assert not local_copies(workspace, bad)  # the altered copies were replaced by the store's
    assert bool(local_copies(workspace, weights)) == (not workspace.artifacts.is_local)
    assert not list(Path(workspace.settings.home, "tmp").glob("model-files-*"))  # cleaned up


def test_tidal_serve_never_serves_weights_overwritten_in_the_cache(workspace, backend):
    uri, rows, expected, weights = register_net()
    for path in local_copies(workspace, weights):
        overwrite(path, tampered(weights))
    deploy("net", {uri: 100})
    server = start_server(backend, "net", env_changes={"PYTHONPATH": str(REPO)})
    try:
        answer = httpx.post(f"{server.url}/predict/net", json={"instances": rows.tolist()},
                            timeout=30)
    finally:
        server.stop()
    assert answer.status_code == 200, answer.text
    np.testing.assert_allclose(np.array(answer.json()["predictions"], dtype=np.float32)
                               .reshape(expected.shape), expected, rtol=1e-6)


def test_weights_altered_in_the_store_and_the_cache_are_refused_naming_the_model():
    uri, _, _, weights = register_net()
    ws = tidal.workspace()
    assert ws.artifacts.is_local
    bad = tampered(weights)
    store_copies = [Path(folder, n) for folder, _, names in os.walk(ws.artifacts.url)
                    for n in names if Path(folder, n).read_bytes() == weights]
    assert store_copies, "the store's copy of the weights was not found"
    for path in store_copies + local_copies(ws, weights):
        overwrite(path, bad)
    clear_cache()
    with pytest.raises(ArtifactCorruptedError, match=rf"{uri}: its file '{WEIGHTS}'.*fails "
                                                     "verification"):
        tidal.models.load(uri)

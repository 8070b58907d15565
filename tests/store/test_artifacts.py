"""The content-addressed blob store on local disk and on S3."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tidal.errors import (
    ArtifactCorruptedError,
    ArtifactNotFoundError,
    ConfigError,
    InvalidArtifactNameError,
    InvalidValueError,
)
from tidal.ids import digest_bytes
from tidal.store.artifacts import ArtifactStore, clean_artifact_path


def test_put_and_get_round_trip(workspace, tmp_path):
    store = workspace.artifacts
    payload = os.urandom(3 * 1024 * 1024 + 17)  # several read chunks
    source = tmp_path / "payload.bin"
    source.write_bytes(payload)
    blob = store.put_file(source)
    assert blob.digest == digest_bytes(payload) and blob.size == len(payload)
    assert store.exists(blob.digest)
    assert store.get_bytes(blob.digest) == payload
    assert store.get_file(blob.digest, tmp_path / "copy.bin").read_bytes() == payload
    again = store.put_bytes(payload)
    assert again == blob
    store.delete(blob.digest)
    assert not store.exists(blob.digest)
    with pytest.raises(ArtifactNotFoundError, match="missing"):
        store.get_bytes(blob.digest)


def test_local_writes_leave_no_temporary_files(tmp_path):
    store = ArtifactStore(str(tmp_path / "art"))
    for i in range(5):
        store.put_bytes(f"blob {i}".encode())
    assert list((tmp_path / "art" / "tmp").iterdir()) == []
    blob_files = [p for p in (tmp_path / "art" / "blobs").rglob("*") if p.is_file()]
    assert len(blob_files) == 5


def test_a_truncated_blob_is_refused_and_no_download_appears(tmp_path):
    store = ArtifactStore(str(tmp_path / "art"))
    blob = store.put_bytes(b"x" * 1000)
    path = Path(store._blob_path(blob.digest))
    path.write_bytes(b"x" * 500)
    with pytest.raises(ArtifactCorruptedError):
        store.get_file(blob.digest, tmp_path / "out.bin")
    assert not (tmp_path / "out.bin").exists()
    assert [p.name for p in tmp_path.iterdir() if p.suffix == ".part"] == []


@pytest.mark.parametrize("digest", ["abc", "sha256:" + "0" * 64, "blake2b:" + "Z" * 64,
                                    "blake2b:../../etc/passwd" + "0" * 40])
def test_malformed_digests_never_become_paths(tmp_path, digest):
    store = ArtifactStore(str(tmp_path / "art"))
    with pytest.raises(InvalidValueError, match="digest"):
        store.get_bytes(digest)


def test_clean_artifact_path_accepts_ordinary_names():
    for name in ("model.pkl", "plots/roc curve.png", "a/b/c.d.e", "weights-v2_final.bin"):
        assert clean_artifact_path(name) == name


def test_clean_artifact_path_refuses_non_strings():
    with pytest.raises(InvalidArtifactNameError, match="must be a string"):
        clean_artifact_path(Path("a"))


def test_unknown_fsspec_scheme_gives_a_clear_error():
    with pytest.raises(ConfigError, match="nosuchproto"):
        ArtifactStore("nosuchproto://bucket/prefix")

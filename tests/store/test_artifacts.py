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


def test_plain_files_are_written_listed_and_read(workspace):
    store = workspace.artifacts
    assert store.list_files("logs") == []
    store.write_file("logs/a/1.bin", b"one")
    store.write_file("logs/a/2.bin", b"two")
    store.write_file("logs/b/c/3.bin", b"three")
    store.write_file("logsx/4.bin", b"not under logs/")
    store.write_file("logs/a/1.bin", b"one, again")  # replaces
    assert store.list_files("logs") == ["logs/a/1.bin", "logs/a/2.bin", "logs/b/c/3.bin"]
    assert store.list_files("logs/a/") == ["logs/a/1.bin", "logs/a/2.bin"]
    assert store.read_file("logs/a/1.bin") == b"one, again"
    assert store.read_file("logs/b/c/3.bin") == b"three"
    with pytest.raises(ArtifactNotFoundError, match="logs/a/9.bin"):
        store.read_file("logs/a/9.bin")


def test_folders_directly_under_a_folder_are_listed_without_their_files(workspace):
    store = workspace.artifacts
    assert store.list_folders("logs") == []
    for path in ("logs/b/1.bin", "logs/a/x/2.bin", "logs/a/3.bin", "logs/top.bin",
                 "logsx/c/4.bin"):
        store.write_file(path, b"x")
    assert store.list_folders("logs") == ["a", "b"]
    assert store.list_folders("logs/a/") == ["x"]
    assert store.list_folders("logs/b") == []
    assert store.list_folders("logs/top.bin") == []


def test_plain_files_stay_inside_the_root_and_out_of_the_blobs(tmp_path):
    store = ArtifactStore(str(tmp_path / "art"))
    for path in ("../x", "/etc/passwd", "a/../../x", "a//b", "%2e%2e/x"):
        with pytest.raises(InvalidArtifactNameError):
            store.write_file(path, b"x")
        with pytest.raises(InvalidArtifactNameError):
            store.read_file(path)
    for path in ("blobs/aa/bb/x", "tmp/x"):
        with pytest.raises(InvalidArtifactNameError, match="keeps for itself"):
            store.write_file(path, b"x")
    assert not (tmp_path / "x").exists()


def test_local_plain_file_writes_leave_no_temporary_files(tmp_path):
    store = ArtifactStore(str(tmp_path / "art"))
    for i in range(3):
        store.write_file(f"logs/{i}.bin", b"x" * i)
    assert list((tmp_path / "art" / "tmp").iterdir()) == []
    assert store.list_files("logs") == ["logs/0.bin", "logs/1.bin", "logs/2.bin"]


def test_files_added_by_another_process_are_seen_despite_kept_listings(s3_server):
    import boto3

    store = ArtifactStore(f"s3://tidal-test/{os.urandom(8).hex()}")
    store.write_file("logs/h/1.bin", b"1")
    assert store.list_files("logs") == ["logs/h/1.bin"]  # fsspec now keeps these listings
    bucket, _, prefix = store._root.partition("/")
    boto3.client("s3").put_object(Bucket=bucket, Key=f"{prefix}/logs/h/2.bin", Body=b"2")
    assert store.read_file("logs/h/2.bin") == b"2"
    assert store.list_files("logs") == ["logs/h/1.bin", "logs/h/2.bin"]

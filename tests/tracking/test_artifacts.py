"""Run artifacts: files and folders, verified reads, and names that would escape the run."""

from __future__ import annotations

import pytest

import tidal
from tidal.errors import (
    ArtifactCorruptedError,
    ArtifactNotFoundError,
    InvalidArtifactNameError,
    InvalidValueError,
)


def test_files_and_folders_round_trip(workspace, tmp_path):
    (tmp_path / "plot.png").write_bytes(b"\x89PNG fake image")
    folder = tmp_path / "model"
    (folder / "sub").mkdir(parents=True)
    (folder / "weights.bin").write_bytes(bytes(range(256)) * 1000)
    (folder / "sub" / "config.json").write_text('{"depth": 6}')
    with tidal.start_run(experiment="e") as run:
        assert run.log_artifact(tmp_path / "plot.png") == "plot.png"
        run.log_artifacts(folder, name="model")
        run.log_dict({"classes": [0, 1]}, "meta/classes.json")
        run.log_text("hello", "notes/readme.txt")
    stored = tidal.get_run(run.id)
    paths = [a.path for a in stored.artifacts()]
    assert paths == ["meta/classes.json", "model/sub/config.json", "model/weights.bin",
                     "notes/readme.txt", "plot.png"]
    assert stored.read_artifact("plot.png") == b"\x89PNG fake image"
    assert stored.read_artifact("meta/classes.json").startswith(b"{")
    out = stored.download_artifacts(tmp_path / "out", path="model")
    assert (out / "model" / "weights.bin").read_bytes() == bytes(range(256)) * 1000
    assert (out / "model" / "sub" / "config.json").read_text() == '{"depth": 6}'
    assert not (out / "plot.png").exists()


def test_identical_content_is_stored_once(workspace, tmp_path):
    (tmp_path / "a.txt").write_text("same bytes")
    (tmp_path / "b.txt").write_text("same bytes")
    with tidal.start_run(experiment="e") as run:
        run.log_artifact(tmp_path / "a.txt")
        run.log_artifact(tmp_path / "b.txt")
    digests = {a.digest for a in tidal.get_run(run.id).artifacts()}
    assert len(digests) == 1


@pytest.mark.parametrize("name", [
    "../escape.txt", "a/../../escape.txt", "/etc/passwd", "..", "a/./b", "a//b", "a/",
    "..\\windows.txt", "dir\\file", "C:/x", "s3://bucket/key", "%2e%2e/x", "a%2Fb",
    "nul\x00byte", "tab\tname", "",
])
def test_escaping_artifact_names_are_refused(workspace, tmp_path, name):
    (tmp_path / "f.txt").write_text("x")
    with tidal.start_run(experiment="e") as run:
        with pytest.raises(InvalidArtifactNameError, match="artifact name"):
            run.log_artifact(tmp_path / "f.txt", name=name)
        with pytest.raises(InvalidArtifactNameError):
            run.log_text("x", name)
    assert tidal.get_run(run.id).artifacts() == []


def test_missing_source_and_unknown_artifact_are_refused(workspace, tmp_path):
    with tidal.start_run(experiment="e") as run:
        with pytest.raises(InvalidValueError, match="does not exist"):
            run.log_artifact(tmp_path / "missing.txt")
        with pytest.raises(InvalidValueError, match="not a folder"):
            run.log_artifacts(tmp_path / "missing")
        with pytest.raises(InvalidValueError, match="JSON"):
            run.log_dict({(1, 2): "tuple keys"}, "x.json")
    with pytest.raises(ArtifactNotFoundError, match="no artifact 'nope.txt'"):
        tidal.get_run(run.id).read_artifact("nope.txt")


def test_tampered_blob_is_detected_on_read(workspace, tmp_path):
    with tidal.start_run(experiment="e") as run:
        run.log_text("original content", "a.txt")
    stored = tidal.get_run(run.id)
    digest = stored.artifacts()[0].digest
    store = workspace.artifacts
    path = store._blob_path(digest)
    if store.is_local:
        with open(path, "wb") as f:
            f.write(b"tampered")
    else:
        store._fs.pipe_file(path, b"tampered")
    with pytest.raises(ArtifactCorruptedError, match="fails verification"):
        stored.read_artifact("a.txt")
    with pytest.raises(ArtifactCorruptedError):
        stored.download_artifacts(tmp_path / "out")
    assert not (tmp_path / "out" / "a.txt").exists()

"""A model version's files in the artifact store: written once by its flavor, read back
verified.

A flavor saves into a scratch folder; each file becomes a content-addressed blob, and the
version records ``{name: {digest, size}}``. Reading a file back re-hashes it, so a blob altered
outside Tidal is refused (ArtifactCorruptedError) instead of being handed to a deserializer.
Libraries that only read from disk get a private copy, verified as it is written, from the
workspace's cache of model files (itself re-verified on every load) or the artifact store.
"""

from __future__ import annotations

import io
import json
import shutil
import tempfile
from collections.abc import Mapping
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any, Self

from tidal.errors import ArtifactCorruptedError, ArtifactNotFoundError
from tidal.ids import digest_bytes
from tidal.models.flavors.base import Flavor, ModelFiles
from tidal.store.artifacts import ArtifactStore, clean_artifact_path
from tidal.store.workspace import Workspace


class StoredFiles(ModelFiles):
    """The files of one stored version, read from the artifact store.

    Use it as a context manager: the private copies that :meth:`path` hands out are removed
    on exit."""

    def __init__(self, ws: Workspace, files: Mapping[str, Mapping[str, Any]],
                 uri: str = "the model") -> None:
        self._ws = ws
        self._files = files
        self._uri = uri
        self._private: Path | None = None

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *_: object) -> None:
        if self._private is not None:
            shutil.rmtree(self._private, ignore_errors=True)
            self._private = None

    def names(self) -> list[str]:
        return sorted(self._files)

    def _digest(self, name: str) -> str:
        entry = self._files.get(name)
        if entry is None:
            raise ArtifactNotFoundError(f"the stored model has no file {name!r}; it holds "
                                        f"{', '.join(self.names()) or 'no files'}", field="file")
        return str(entry["digest"])

    def read_bytes(self, name: str) -> bytes:
        return self._ws.artifacts.get_bytes(self._digest(name))

    def path(self, name: str) -> Path:
        """A copy of the file that only this process's user can change, written from bytes
        hashed as they were copied: from the artifact store, or, when that store is remote,
        from the workspace's cache of its model files if the cached copy verifies (else from
        the store, which then refills the cache).

        The cache is never trusted as it stands, since anyone who can write it could swap a
        model's weights; and the copy the library reads is not the cache file itself, so a
        file changed after it was checked is never the one read.
        """
        digest = self._digest(name)
        home = Path(self._ws.settings.home)
        if self._private is None:  # mkdtemp: a folder only this user can enter
            (home / "tmp").mkdir(parents=True, exist_ok=True)
            self._private = Path(tempfile.mkdtemp(dir=home / "tmp", prefix="model-files-"))
        target = self._private / clean_artifact_path(name, field="model file name")
        cache = None if self._ws.artifacts.is_local \
            else ArtifactStore(str(home / "cache" / "models"))
        if cache is not None:
            try:
                return cache.get_file(digest, target)
            except ArtifactNotFoundError:
                pass
            except ArtifactCorruptedError:
                cache.delete(digest)  # altered in place: the store's copy replaces it
        try:
            self._ws.artifacts.get_file(digest, target)
        except ArtifactCorruptedError as error:
            raise ArtifactCorruptedError(
                f"{self._uri}: its file {name!r} cannot be loaded, as the artifact store's "
                f"copy fails verification too: {error}. Register the model again from its "
                "source", field="file") from error
        if cache is not None:
            cache.put_file(target)
        return target


def save_files(ws: Workspace, flavor: Flavor, model: Any,
               options: Mapping[str, Any]) -> tuple[dict[str, Any], dict[str, dict[str, Any]]]:
    """Have the flavor save ``model`` and store each file; returns (flavor metadata, files)."""
    scratch = Path(ws.settings.home) / "tmp"
    scratch.mkdir(parents=True, exist_ok=True)
    directory = Path(tempfile.mkdtemp(dir=scratch, prefix="model-"))
    try:
        metadata = flavor.save(model, directory, options)
        files = {}
        for path in sorted(p for p in directory.rglob("*") if p.is_file()):
            blob = ws.artifacts.put_file(path)
            files[path.relative_to(directory).as_posix()] = {"digest": blob.digest,
                                                             "size": blob.size}
    finally:
        shutil.rmtree(directory, ignore_errors=True)
    return metadata, files


def content_digest(flavor: str, metadata: Mapping[str, Any],
                   files: Mapping[str, Mapping[str, Any]]) -> str:
    """One digest for what a version holds: its flavor, flavor metadata and file digests."""
    canonical = json.dumps({"flavor": flavor, "metadata": metadata,
                            "files": {k: v["digest"] for k, v in files.items()}},
                           sort_keys=True, separators=(",", ":"), default=str)
    return digest_bytes(canonical.encode())


def library_versions(flavor: Flavor) -> dict[str, str]:
    """Versions of the flavor's libraries (and Python) in this process."""
    import platform

    found = {"python": platform.python_version()}
    for package in flavor.packages:
        try:
            found[package] = version(package)
        except PackageNotFoundError:
            continue
    return found


def example_bytes(example: Any) -> bytes:
    """An input example as bytes: Parquet for tables, .npy (no pickle) for arrays."""
    import numpy as np

    if isinstance(example, np.ndarray):
        buffer = io.BytesIO()
        np.save(buffer, example, allow_pickle=False)
        return buffer.getvalue()
    import pyarrow as pa
    import pyarrow.parquet as pq

    from tidal.models.signature import to_frame

    table = pa.Table.from_pandas(to_frame(example, None), preserve_index=False)
    buffer = io.BytesIO()
    pq.write_table(table, buffer)
    return buffer.getvalue()


def example_from_bytes(data: bytes) -> Any:
    import numpy as np

    if data.startswith(b"\x93NUMPY"):
        return np.load(io.BytesIO(data), allow_pickle=False)
    import pyarrow.parquet as pq

    return pq.read_table(io.BytesIO(data)).to_pandas()

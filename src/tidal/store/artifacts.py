"""Content-addressed blob store over fsspec: local disk, S3 or any fsspec URL, one API.

A blob lives at ``blobs/<2 hex>/<2 hex>/<64 hex>`` under the store's root, named by its
BLAKE2b digest. Its path is derived from the digest alone, so no name a user gives ever becomes
part of a storage path. Writes never expose a partial blob: on local disk the bytes go to a
temporary file that is fsynced and then renamed into place; on object stores a single PUT is
already all-or-nothing. Every read re-hashes the bytes and refuses a mismatch.

Beside the blobs, plain files live at relative paths (``write_file``, ``list_files``,
``read_file``) for data that grows by appending files to folders, such as prediction logs;
they are written with the same all-or-nothing guarantee.

Storing bytes that are already stored refreshes the blob's modification time, and garbage
collection (tidal.store.gc) only removes blobs and temporary files older than its grace
period, so a blob that a writer is about to reference is never collected under it.
"""

from __future__ import annotations

import os
import re
import tempfile
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

from tidal.errors import (
    ArtifactCorruptedError,
    ArtifactNotFoundError,
    ConfigError,
    InvalidArtifactNameError,
    StoreError,
    missing_dependency,
)
from tidal.ids import digest_stream, format_digest, hasher, split_digest

_CHUNK = 1 << 20
MAX_ARTIFACT_PATH = 1024
# Percent-encoded '.', '/', '\' and NUL: the classic ways around a '..' check (CVE-2023-1177).
_ENCODED_ESCAPE = re.compile(r"%(2e|2f|5c|00)", re.IGNORECASE)
# Top-level folders of the blobs and of local temporary files: plain files may not go there.
_RESERVED = frozenset({"blobs", "tmp"})
_HEX64 = re.compile(r"[0-9a-f]{64}")


@dataclass(frozen=True)
class Blob:
    """A stored blob: its digest (its address) and its size in bytes."""

    digest: str
    size: int


@dataclass(frozen=True)
class StoredFile:
    """A blob or temporary file as listed for garbage collection: its name (a blob's digest,
    a temporary file's name under ``tmp/``), size and modification time (epoch seconds)."""

    name: str
    size: int
    modified: float


def clean_artifact_path(name: str, *, field: str = "artifact name") -> str:
    """Check an artifact name given by a user and return it normalised (POSIX, no './').

    Refused: empty names, absolute paths, drive letters and URL schemes (':'), '..' or '.'
    segments, empty segments, backslashes, NUL and other control characters, and
    percent-encoded dots or slashes.
    """
    if not isinstance(name, str):
        raise InvalidArtifactNameError(f"{field} must be a string, got {type(name).__name__}",
                                       field=field)
    problem = None
    if not name:
        problem = "is empty"
    elif len(name) > MAX_ARTIFACT_PATH:
        problem = f"is {len(name)} characters long; the limit is {MAX_ARTIFACT_PATH}"
    elif any(ord(c) < 32 or ord(c) == 127 for c in name):
        problem = "contains a NUL or other control character"
    elif "\\" in name:
        problem = "contains a backslash; use '/' between folders"
    elif name.startswith("/"):
        problem = "is an absolute path; give a path relative to the run"
    elif ":" in name:
        problem = "contains ':' (a drive letter or URL scheme); give a relative path"
    elif _ENCODED_ESCAPE.search(name):
        problem = "contains a percent-encoded '.', '/', '\\' or NUL"
    else:
        parts = name.split("/")
        if any(part in ("..", ".") for part in parts):
            problem = "contains a '..' or '.' segment; artifacts cannot leave their run"
        elif any(part == "" for part in parts):
            problem = "contains an empty segment ('//' or a trailing '/')"
    if problem:
        raise InvalidArtifactNameError(f"{field} {name!r} {problem}", field=field)
    return name


class ArtifactStore:
    """Blobs addressed by digest under one root URL (a local folder or an fsspec URL)."""

    def __init__(self, url: str, storage_options: dict[str, Any] | None = None) -> None:
        self.url = url
        if "://" in url and not url.startswith("file://"):
            import fsspec

            try:
                self._fs, root = fsspec.core.url_to_fs(url, **(storage_options or {}))
            except ImportError as error:
                scheme = url.split("://", 1)[0]
                extra = "s3" if scheme in ("s3", "s3a") else "all"
                raise missing_dependency(f"an fsspec driver for {scheme}://", extra,
                                         f"an artifact store at {url}") from error
            except (ValueError, TypeError) as error:
                raise ConfigError(f"artifact store URL {url!r}: {error}",
                                  field="artifacts") from error
            self._root = root.rstrip("/")
            self.is_local = False
        else:
            self._fs = None
            self._root = str(Path(url.removeprefix("file://")).resolve())
            self.is_local = True

    # -- paths -------------------------------------------------------------------------------

    def _blob_path(self, digest: str) -> str:
        hex_part = split_digest(digest)
        return f"{self._root}/blobs/{hex_part[:2]}/{hex_part[2:4]}/{hex_part}"

    def exists(self, digest: str) -> bool:
        path = self._blob_path(digest)
        return os.path.exists(path) if self.is_local else self._fs.exists(path)

    # -- writes ------------------------------------------------------------------------------

    def put_file(self, source: str | os.PathLike[str]) -> Blob:
        """Store a local file's bytes and return its blob; the same bytes twice are one blob."""
        if self.is_local:
            with open(source, "rb") as stream:
                return self._put_local(stream)
        with open(source, "rb") as stream:
            digest, size = digest_stream(stream)
        # uploaded even when present: one PUT is all-or-nothing and refreshes the modification
        # time that garbage collection's grace period reads (see the module docstring)
        self._fs.put_file(os.fspath(source), self._blob_path(digest))
        return Blob(digest, size)

    def put_bytes(self, data: bytes) -> Blob:
        if self.is_local:
            import io

            return self._put_local(io.BytesIO(data))
        h = hasher()
        h.update(data)
        blob = Blob(format_digest(h.hexdigest()), len(data))
        self._fs.pipe_file(self._blob_path(blob.digest), data)  # even when present: as above
        return blob

    def _put_local(self, stream: BinaryIO) -> Blob:
        tmp_dir = Path(self._root, "tmp")
        tmp_dir.mkdir(parents=True, exist_ok=True)
        h = hasher()
        size = 0
        fd, tmp_name = tempfile.mkstemp(dir=tmp_dir, suffix=".part")
        try:
            with os.fdopen(fd, "wb") as out:
                while chunk := stream.read(_CHUNK):
                    h.update(chunk)
                    out.write(chunk)
                    size += len(chunk)
                out.flush()
                os.fsync(out.fileno())
            digest = format_digest(h.hexdigest())
            final = Path(self._blob_path(digest))
            try:
                os.utime(final)  # already stored: refresh it, so gc's grace period covers it
                os.unlink(tmp_name)
            except FileNotFoundError:  # not stored, or collected just now: store it
                final.parent.mkdir(parents=True, exist_ok=True)
                os.replace(tmp_name, final)
        except BaseException:
            if os.path.exists(tmp_name):
                os.unlink(tmp_name)
            raise
        return Blob(digest, size)

    # -- reads -------------------------------------------------------------------------------

    def _open(self, digest: str) -> BinaryIO:
        path = self._blob_path(digest)
        try:
            return open(path, "rb") if self.is_local else self._fs.open(path, "rb")
        except FileNotFoundError:
            raise ArtifactNotFoundError(f"blob {digest} is missing from {self.url}") from None

    def _corrupted(self, digest: str, actual: str) -> ArtifactCorruptedError:
        return ArtifactCorruptedError(
            f"blob {digest} in {self.url} fails verification (its content hashes to {actual}); "
            "the stored file was altered or truncated outside Tidal")

    def get_bytes(self, digest: str) -> bytes:
        """The blob's bytes, verified against its digest."""
        with self._open(digest) as stream:
            data = stream.read()
        h = hasher()
        h.update(data)
        actual = format_digest(h.hexdigest())
        if actual != digest:
            raise self._corrupted(digest, actual)
        return data

    def get_file(self, digest: str, destination: str | os.PathLike[str]) -> Path:
        """Copy a blob to a local file, verified; the file appears only once it is complete."""
        destination = Path(destination)
        destination.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp_name = tempfile.mkstemp(dir=destination.parent, suffix=".part")
        try:
            h = hasher()
            with os.fdopen(fd, "wb") as out, self._open(digest) as stream:
                while chunk := stream.read(_CHUNK):
                    h.update(chunk)
                    out.write(chunk)
            actual = format_digest(h.hexdigest())
            if actual != digest:
                raise self._corrupted(digest, actual)
            os.replace(tmp_name, destination)
        finally:
            if os.path.exists(tmp_name):
                os.unlink(tmp_name)
        return destination

    # -- plain files -------------------------------------------------------------------------
    # Files at relative paths beside the blobs, for data that is appended over time and read by
    # folder (prediction logs, feedback) rather than addressed by content.

    def _file_path(self, path: str, *, writing: bool = False) -> str:
        path = clean_artifact_path(path, field="path")
        if writing and path.split("/", 1)[0] in _RESERVED:
            raise InvalidArtifactNameError(
                f"path {path!r} is inside a folder the store keeps for itself "
                f"({', '.join(sorted(_RESERVED))}); choose another top-level folder", field="path")
        return f"{self._root}/{path}"

    def write_file(self, path: str, data: bytes) -> None:
        """Write ``data`` at ``path`` (relative to the root), replacing any file there.

        Readers never see a partial file: locally the bytes go to a temporary file under
        ``tmp/`` that is fsynced and renamed into place (and the folder fsynced, so that the
        file survives a crash once this returns); on object stores one PUT is all-or-nothing.
        """
        final = self._file_path(path, writing=True)
        if not self.is_local:
            self._fs.pipe_file(final, data)
            return
        tmp_dir = Path(self._root, "tmp")
        tmp_dir.mkdir(parents=True, exist_ok=True)
        fd, tmp_name = tempfile.mkstemp(dir=tmp_dir, suffix=".part")
        try:
            with os.fdopen(fd, "wb") as out:
                out.write(data)
                out.flush()
                os.fsync(out.fileno())
            folder = os.path.dirname(final)
            created = not os.path.isdir(folder)
            os.makedirs(folder, exist_ok=True)
            os.replace(tmp_name, final)
            _fsync_dir(folder)
            while created and len(folder) > len(self._root):  # new folders: their entries too
                folder = os.path.dirname(folder)
                _fsync_dir(folder)
        except BaseException:
            if os.path.exists(tmp_name):
                os.unlink(tmp_name)
            raise

    def list_files(self, prefix: str) -> list[str]:
        """Paths (relative to the root, sorted) of every file under the folder ``prefix``;
        empty when the folder does not exist."""
        folder = self._file_path(prefix.rstrip("/"))
        start = len(self._root) + 1
        if self.is_local:
            found = [os.path.join(parent, name)[start:].replace(os.sep, "/")
                     for parent, _, names in os.walk(folder) for name in names]
        else:
            self._forget_listings(folder)
            found = [path[start:] for path in self._fs.find(folder)]
        return sorted(found)

    def list_folders(self, prefix: str) -> list[str]:
        """Names (sorted) of the folders directly under the folder ``prefix``; empty when it
        does not exist. One listing, however many files lie below: what a reader of
        partitioned files needs to pick partitions before listing their files."""
        folder = self._file_path(prefix.rstrip("/"))
        if self.is_local:
            try:
                with os.scandir(folder) as entries:
                    return sorted(entry.name for entry in entries if entry.is_dir())
            except (FileNotFoundError, NotADirectoryError):
                return []
        self._forget_listings(folder)
        try:
            entries = self._fs.ls(folder, detail=True)
        except FileNotFoundError:
            return []
        return sorted(entry["name"].rstrip("/").rsplit("/", 1)[-1] for entry in entries
                      if entry.get("type") == "directory")

    def _forget_listings(self, folder: str) -> None:
        """Drop the folder listings fsspec keeps for ``folder``, its parents and everything
        under it: other processes add files, and a kept listing that lacks one makes reading
        it fail as 'not found'."""
        self._fs.invalidate_cache(folder)
        for key in list(self._fs.dircache):
            if key.startswith(folder + "/"):
                self._fs.dircache.pop(key, None)

    def read_file(self, path: str) -> bytes:
        """The bytes of the file at ``path`` (relative to the root)."""
        full = self._file_path(path)
        try:
            if self.is_local:
                with open(full, "rb") as stream:
                    return stream.read()
            try:
                return self._fs.cat_file(full)
            except FileNotFoundError:  # perhaps only missing from a kept listing: ask again
                self._forget_listings(full.rsplit("/", 1)[0])
                return self._fs.cat_file(full)
        except FileNotFoundError:
            raise ArtifactNotFoundError(f"file {path!r} is missing from {self.url}") from None

    # -- garbage collection -------------------------------------------------------------------
    # What tidal.store.gc needs: list what is stored with its age, and remove one thing only
    # if it is still old at the moment of removal.

    def list_blobs(self) -> Iterator[StoredFile]:
        """Every stored blob (name: its digest), in no particular order."""
        folder = f"{self._root}/blobs"
        if self.is_local:
            for parent, _, names in os.walk(folder):
                for name in names:
                    if not _HEX64.fullmatch(name):
                        continue
                    try:
                        info = os.stat(os.path.join(parent, name))
                    except FileNotFoundError:  # removed since the folder was read
                        continue
                    yield StoredFile(format_digest(name), info.st_size, info.st_mtime)
            return
        self._forget_listings(folder)
        try:
            found = self._fs.find(folder, detail=True)
        except FileNotFoundError:
            return
        for path, info in found.items():
            name = path.rsplit("/", 1)[-1]
            if _HEX64.fullmatch(name) and info.get("type") != "directory":
                yield StoredFile(format_digest(name), int(info.get("size") or 0),
                                 _modified(info))

    def list_temporary(self) -> Iterator[StoredFile]:
        """Files under ``tmp/``: writes in progress, or left by writers that were killed.
        Object stores have none (a PUT is never half-visible)."""
        if not self.is_local:
            return
        folder = Path(self._root, "tmp")
        try:
            entries = list(os.scandir(folder))
        except FileNotFoundError:
            return
        for entry in entries:
            if entry.is_file(follow_symlinks=False):
                info = entry.stat(follow_symlinks=False)
                yield StoredFile(entry.name, info.st_size, info.st_mtime)

    def discard_blob(self, digest: str, older_than: float) -> bool:
        """Remove a blob unless it was modified at or after ``older_than`` (epoch seconds),
        checked at the moment of removal; True when it was removed.

        Locally the blob is first renamed away (atomic), then checked: a writer that stored
        the same bytes just before sees a fresh time and the blob is put back, one that comes
        just after finds no blob and stores it again.
        """
        path = self._blob_path(digest)
        if not self.is_local:
            try:
                if _modified(self._fs.info(path)) >= older_than:
                    return False
                self._fs.rm_file(path)
            except FileNotFoundError:
                return False
            return True
        tmp_dir = Path(self._root, "tmp")
        tmp_dir.mkdir(parents=True, exist_ok=True)
        doomed = tmp_dir / f"{split_digest(digest)}.{uuid.uuid4().hex[:8]}.gc"
        try:
            os.rename(path, doomed)
        except FileNotFoundError:
            return False
        if os.stat(doomed).st_mtime >= older_than:
            os.replace(doomed, path)  # the same bytes as anything a writer put there since
            return False
        doomed.unlink()
        return True

    def discard_temporary(self, name: str, older_than: float) -> bool:
        """Remove the file ``tmp/<name>`` unless it was modified at or after ``older_than``."""
        if not self.is_local or "/" in name or name in ("", ".", ".."):
            return False
        path = Path(self._root, "tmp", name)
        try:
            if path.stat().st_mtime >= older_than:
                return False
            path.unlink()
        except FileNotFoundError:
            return False
        return True

    def delete(self, digest: str) -> None:
        path = self._blob_path(digest)
        if self.is_local:
            Path(path).unlink(missing_ok=True)
        elif self._fs.exists(path):
            self._fs.rm_file(path)


def _modified(info: dict[str, Any]) -> float:
    """An fsspec entry's modification time in epoch seconds (S3 names it LastModified)."""
    value = info.get("LastModified", info.get("mtime", info.get("updated")))
    if value is None:
        raise StoreError(f"the artifact store lists no modification time for "
                         f"{info.get('name')!r} (only {sorted(info)}); garbage collection "
                         "needs one to leave fresh blobs alone")
    if hasattr(value, "timestamp"):
        return float(value.timestamp())
    if isinstance(value, str):
        from datetime import datetime

        return datetime.fromisoformat(value).timestamp()
    return float(value)


def _fsync_dir(folder: str) -> None:
    """Make a rename in ``folder`` durable (POSIX; folders cannot be opened on Windows)."""
    if os.name != "posix":
        return
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)

"""A prediction-log writer's local spool: what a SIGKILL of the server must not take with it.

The writer turns records into Parquet files in the artifact store about once a second (fewer,
larger files); in between, every few tens of milliseconds, it appends the records it holds to
a segment file on local disk, one ``write`` for the whole batch. A file written this way is in
the OS page cache once the call returns, so a process killed at any moment loses only the
records of its last spool interval; a machine that loses power loses the page cache too, which
is beyond what this guards.

Each writer owns, in ``<home>/spool/<digest of the artifact store URL>/``:

- ``<worker>.lock``, locked (``flock``) for the writer's life: the kernel drops the lock when
  the process dies, which is how a later process tells an orphan from a live writer;
- ``<worker>.<n>.seg``, the segments: each a sequence of frames, an 8-byte length then an
  Arrow IPC stream of records; a torn last frame (a kill inside a write) is left out on
  recovery;
- ``<worker>.seq``, memory-mapped: per endpoint, the next sequence number and the time of the
  newest record, updated on every ``log`` call with a store into shared memory (no system
  call). So even the records a kill took before they were spooled are counted: a reader sees
  them as missing sequence numbers.

Files are made with mode 0600 in a folder of mode 0700: they hold the requests' inputs.
"""

from __future__ import annotations

import fcntl
import hashlib
import logging
import mmap
import os
import struct
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import pyarrow as pa

if TYPE_CHECKING:
    from tidal.store.workspace import Workspace

logger = logging.getLogger(__name__)

SLOTS = 256
_SLOT = struct.Struct("<QqH250s")  # next sequence, newest timestamp ms, name length, name
_HEAD = struct.Struct("<Qq")
_FRAME = struct.Struct("<Q")


def spool_folder(workspace: Workspace) -> Path:
    """Where the writers of ``workspace``'s prediction log spool on this machine: under the
    workspace's home, one folder per artifact store."""
    digest = hashlib.blake2b(workspace.settings.artifacts.encode(), digest_size=8).hexdigest()
    return Path(workspace.settings.home) / "spool" / f"prediction-log-{digest}"


def _open_private(path: Path, flags: int) -> int:
    return os.open(path, flags | os.O_CLOEXEC, 0o600)


class Marks:
    """Per endpoint, the next sequence number and the newest record's time, in a memory-mapped
    file of fixed slots; ``set`` is meant for the request path."""

    def __init__(self, path: Path, *, create: bool) -> None:
        flags = os.O_RDWR | (os.O_CREAT if create else 0)
        fd = _open_private(path, flags)
        try:
            if create:
                os.ftruncate(fd, SLOTS * _SLOT.size)
            self._map = mmap.mmap(fd, SLOTS * _SLOT.size)
        finally:
            os.close(fd)
        self._slots: dict[str, int | None] = {}

    def set(self, endpoint: str, next_sequence: int, timestamp_ms: int) -> None:
        """Record that ``endpoint`` has used sequence numbers below ``next_sequence``; an
        endpoint past the file's slots goes unrecorded."""
        offset = self._slots.get(endpoint, -1)
        if offset == -1:
            offset = self._claim(endpoint)
        if offset is not None:
            _HEAD.pack_into(self._map, offset, next_sequence, timestamp_ms)

    def _claim(self, endpoint: str) -> int | None:
        name = endpoint.encode()
        used = sum(1 for offset in self._slots.values() if offset is not None)
        if not 0 < len(name) <= 250 or used >= SLOTS:
            self._slots[endpoint] = None
            return None
        offset = self._slots[endpoint] = used * _SLOT.size
        _SLOT.pack_into(self._map, offset, 0, 0, len(name), name)
        return offset

    def read(self) -> dict[str, tuple[int, int]]:
        """{endpoint: (next sequence, newest timestamp ms)} of every slot in use."""
        found = {}
        for index in range(SLOTS):
            sequence, stamp, length, name = _SLOT.unpack_from(self._map, index * _SLOT.size)
            if length == 0:
                break
            found[name[:length].decode(errors="replace")] = (sequence, stamp)
        return found

    def close(self) -> None:
        self._map.close()


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]


class Spool:
    """The spool of one live writer: its lock, its current segment and its marks."""

    def __init__(self, folder: Path, worker: str) -> None:
        folder.mkdir(mode=0o700, parents=True, exist_ok=True)
        self.folder = folder
        self.worker = worker
        self._lock = _open_private(folder / f"{worker}.lock", os.O_RDWR | os.O_CREAT)
        fcntl.flock(self._lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        self.marks = Marks(folder / f"{worker}.seq", create=True)
        self._number = 0
        self._segment: int | None = None
        self.complete = True  # every frame of the current segment reached the file

    def path(self, number: int) -> Path:
        return self.folder / f"{self.worker}.{number:08d}.seg"

    def append(self, table: pa.Table) -> None:
        """Append one frame to the current segment (one ``write``); on failure the segment is
        marked incomplete and the error logged: the records stay with the writer."""
        sink = pa.BufferOutputStream()
        with pa.ipc.new_stream(sink, table.schema) as writer:
            writer.write_table(table)
        body = sink.getvalue().to_pybytes()
        try:
            if self._segment is None:
                self._segment = _open_private(self.path(self._number),
                                              os.O_WRONLY | os.O_CREAT | os.O_APPEND)
            _write_all(self._segment, _FRAME.pack(len(body)) + body)
        except OSError as error:
            if self.complete:
                logger.warning("prediction log: cannot spool to %s (%s); records wait in "
                               "memory until written", self.folder, error)
            self.complete = False

    def rotate(self) -> tuple[Path, bool]:
        """Close the current segment and start the next: (its path, whether it is complete)."""
        path, complete = self.path(self._number), self.complete
        if self._segment is not None:
            os.close(self._segment)
            self._segment = None
        self._number += 1
        self.complete = True
        return path, complete

    def close(self) -> None:
        """Remove the spool's files (everything in them is written) and unlock."""
        if self._segment is not None:
            os.close(self._segment)
            self._segment = None
        self.marks.close()
        for path in (self.folder / f"{self.worker}.seq", self.folder / f"{self.worker}.lock"):
            path.unlink(missing_ok=True)
        os.close(self._lock)


def read_segment(path: Path) -> list[pa.Table]:
    """The frames of a segment, without a torn last one."""
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return []
    tables, offset = [], 0
    while offset + _FRAME.size <= len(data):
        (length,) = _FRAME.unpack_from(data, offset)
        start, offset = offset + _FRAME.size, offset + _FRAME.size + length
        if offset > len(data):
            break
        try:
            tables.append(pa.ipc.open_stream(pa.py_buffer(data[start:offset])).read_all())
        except pa.ArrowInvalid:
            logger.warning("prediction log: skipped an unreadable frame of %s", path)
    return tables


@dataclass
class Orphan:
    """The spool of a writer that died, locked by the recovering process."""

    folder: Path
    worker: str
    segments: list[Path]
    marks: dict[str, tuple[int, int]]
    lock: int

    def release(self) -> None:
        """Unlock it, leaving its files for a later recovery."""
        os.close(self.lock)

    def discard(self) -> None:
        """Remove its files once everything in them is written."""
        for path in self.segments:
            path.unlink(missing_ok=True)
        for suffix in ("seq", "lock"):
            (self.folder / f"{self.worker}.{suffix}").unlink(missing_ok=True)
        os.close(self.lock)


def orphans(folder: Path) -> Iterator[Orphan]:
    """The spools in ``folder`` whose writer is dead, each locked while it is handled."""
    if not folder.is_dir():
        return
    for lock_path in sorted(folder.glob("*.lock")):
        worker = lock_path.name.removesuffix(".lock")
        try:
            fd = _open_private(lock_path, os.O_RDWR)
        except FileNotFoundError:
            continue
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:  # its writer is alive
            os.close(fd)
            continue
        if os.fstat(fd).st_nlink == 0:  # another process recovered it meanwhile
            os.close(fd)
            continue
        seq = folder / f"{worker}.seq"
        marks = {}
        if seq.exists():
            mapped = Marks(seq, create=False)
            marks = mapped.read()
            mapped.close()
        segments = sorted(folder.glob(f"{worker}.*.seg"))
        yield Orphan(folder, worker, segments, marks, fd)

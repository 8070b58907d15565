"""What a server worker is running, kept where its supervisor can read it after the worker dies.

A model that segfaults takes its worker process with it, and a dead process cannot say what
killed it. So each worker keeps a small memory-mapped file of slots: before a batch goes to a
model (or a model is loaded) the thread doing it writes "predict models:/x/3" and its thread
id into a free slot, and frees the slot after. Writes to a shared mapping land in the page
cache at once, so they outlive the process; when a worker dies abnormally the supervisor reads
the slots still taken and knows which models were running at that instant. A mark costs a
lock and a few hundred bytes of memory writes, nothing on disk.

Python's ``faulthandler`` writes the crashing thread's id and stack to a second file on a
fatal signal; with the thread ids in the marks, the supervisor can tell which of several
models running at once was the one that crashed (see ``read_fault``).
"""

from __future__ import annotations

import faulthandler
import mmap
import os
import re
import struct
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import IO

SLOTS = 64
SLOT_BYTES = 512
#: state (0 free, 1 predict, 2 load), thread id, length of the model URI.
_HEADER = struct.Struct("<BQH")
_KINDS = {1: "predict", 2: "load"}
_CODES = {kind: code for code, kind in _KINDS.items()}
_CURRENT_THREAD = re.compile(r"^Current thread (0x[0-9a-fA-F]+)", re.MULTILINE)


def marks_path(runtime_dir: str | os.PathLike[str], pid: int) -> Path:
    return Path(runtime_dir) / f"marks-{pid}"


def fault_path(runtime_dir: str | os.PathLike[str], pid: int) -> Path:
    return Path(runtime_dir) / f"fault-{pid}"


@dataclass(frozen=True)
class Mark:
    """A model a worker was running: ``kind`` is predict or load."""

    kind: str
    uri: str
    thread: int


class CrashMarks:
    """The marks of one worker process, in a memory-mapped file at ``path``."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        size = SLOTS * SLOT_BYTES
        with open(path, "wb") as handle:
            handle.truncate(size)
        with open(path, "r+b") as handle:
            self._map = mmap.mmap(handle.fileno(), size)
        self._free = list(range(SLOTS - 1, -1, -1))
        self._lock = threading.Lock()

    @contextmanager
    def hold(self, kind: str, uri: str) -> Iterator[None]:
        """Mark ``uri`` as running (``kind``: predict or load) in this thread while inside."""
        with self._lock:
            slot = self._free.pop() if self._free else None
        if slot is None:  # more models running at once than slots: run unmarked
            yield
            return
        data = uri.encode()[:SLOT_BYTES - _HEADER.size]
        start = slot * SLOT_BYTES
        self._map[start + _HEADER.size:start + _HEADER.size + len(data)] = data
        # The state byte goes in with the header, after the URI: a reader never sees a taken
        # slot with a half-written URI.
        self._map[start:start + _HEADER.size] = _HEADER.pack(_CODES[kind],
                                                              threading.get_ident(), len(data))
        try:
            yield
        finally:
            self._map[start] = 0
            with self._lock:
                self._free.append(slot)


def read_marks(path: str | os.PathLike[str]) -> list[Mark]:
    """The slots still taken in a (dead) worker's marks file; none if it has no file."""
    try:
        data = Path(path).read_bytes()
    except OSError:
        return []
    found = []
    for start in range(0, min(len(data), SLOTS * SLOT_BYTES), SLOT_BYTES):
        state, thread, length = _HEADER.unpack_from(data, start)
        if state in _KINDS:
            uri = data[start + _HEADER.size:start + _HEADER.size + length]
            found.append(Mark(_KINDS[state], uri.decode(errors="replace"), thread))
    return found


def enable_fault_report(path: str | os.PathLike[str]) -> IO[str]:
    """Have a fatal signal (SIGSEGV, SIGBUS, SIGFPE, SIGILL, SIGABRT) write every thread's
    stack to ``path``, the crashing one first; the open file, to keep for the process's
    life."""
    handle = open(path, "w", encoding="utf-8")  # noqa: SIM115 - faulthandler keeps the fd
    faulthandler.enable(handle, all_threads=True)
    return handle


def read_fault(path: str | os.PathLike[str]) -> tuple[str, int | None]:
    """A dead worker's fault report and the id of the thread that crashed (None: no report)."""
    try:
        text = Path(path).read_text(encoding="utf-8", errors="replace")
    except OSError:
        return "", None
    found = _CURRENT_THREAD.search(text)
    return text, int(found.group(1), 16) if found else None


def crashed_models(marks: list[Mark], crashed_thread: int | None) -> tuple[list[Mark], bool]:
    """The marks to blame, and whether the blame is certain: the crashing thread's own mark
    when it held one (the fatal signal arose in that model's code), otherwise all of them (a
    kill from outside, or a signal sent to the process, names no thread)."""
    own = [mark for mark in marks if mark.thread == crashed_thread]
    return (own, True) if own else (marks, False)

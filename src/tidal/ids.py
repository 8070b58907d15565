"""Identifiers and content digests shared by every layer.

Digests are BLAKE2b-256 (fast in CPython's hashlib, no extra dependency), written as
``blake2b:<64 hex>`` so that the algorithm travels with the value and can change later.
"""

from __future__ import annotations

import hashlib
import re
import time
import uuid
from typing import Any, BinaryIO

from tidal.errors import InvalidValueError

DIGEST_ALGORITHM = "blake2b"
_NAME_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_-.")
_CHUNK = 1 << 20
_COUNT = re.compile(r"[0-9]{1,18}", re.ASCII)


def parse_count(text: str) -> int | None:
    """The non-negative integer ``text`` spells in ASCII digits (at most 18, so it fits an
    int64), or None for anything else. ``str.isdigit`` also accepts digits such as "²", on
    which ``int`` raises: every number read from a URI, a path or a header goes through here."""
    return int(text) if _COUNT.fullmatch(text) else None


def new_id() -> str:
    """A random 32-hex-character id (a UUID4 without dashes), like MLflow's run ids."""
    return uuid.uuid4().hex


def now_ms() -> int:
    """Wall-clock time in integer milliseconds since the epoch: the unit of every timestamp."""
    return time.time_ns() // 1_000_000


def hasher() -> hashlib._Hash:
    return hashlib.blake2b(digest_size=32)


def format_digest(hex_digest: str) -> str:
    return f"{DIGEST_ALGORITHM}:{hex_digest}"


def digest_bytes(data: bytes) -> str:
    h = hasher()
    h.update(data)
    return format_digest(h.hexdigest())


def digest_stream(stream: BinaryIO) -> tuple[str, int]:
    """Digest and byte count of everything left in a binary stream, read in 1 MiB chunks."""
    h = hasher()
    size = 0
    while chunk := stream.read(_CHUNK):
        h.update(chunk)
        size += len(chunk)
    return format_digest(h.hexdigest()), size


def check_name(name: Any, *, what: str, field: str = "name") -> str:
    """Check the name of a dataset, model or the like: it appears in URIs and CLI arguments, so
    it is limited to characters that need no quoting anywhere (and never becomes a path)."""
    if not isinstance(name, str) or not name or len(name) > 250 or set(name) - _NAME_CHARS \
            or name[0] in ".-":
        raise InvalidValueError(
            f"{what} name {name!r} is not valid; use 1-250 letters, digits, '_', '-' and '.', "
            "not starting with '.' or '-'", field=field)
    return name


def split_digest(digest: str) -> str:
    """Return the hex part of a digest, checking its form (it becomes part of a blob path)."""
    algorithm, _, hex_part = digest.partition(":")
    if (algorithm != DIGEST_ALGORITHM or len(hex_part) != 64
            or any(c not in "0123456789abcdef" for c in hex_part)):
        raise InvalidValueError(
            f"digest {digest!r} is not of the form '{DIGEST_ALGORITHM}:<64 lowercase hex>'",
            field="digest",
        )
    return hex_part

"""Garbage collection of an artifact store: blobs nothing references, and temporary files of
writers that were killed.

The store knows nothing of what refers to its blobs; the caller passes a function that
returns every referenced digest (``tidal.gc`` gathers them from every domain). The guarantee,
for a grace period G:

- a referenced blob is never removed;
- nothing modified less than G ago is removed: not a ``.part`` file being written, not a
  blob written (or stored again, which refreshes it) by a writer that has yet to record its
  reference;
- the blobs are listed *before* the references are read, so a blob whose reference was
  recorded before that read is seen as referenced; and each blob's age is checked again at
  the moment it is removed (see ``ArtifactStore.discard_blob``).

So a write is only at risk if it takes longer than G between storing its blob and recording
its reference; the default of one hour leaves a wide margin.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Collection
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

from tidal.ids import DIGEST_ALGORITHM
from tidal.store.artifacts import ArtifactStore, StoredFile

#: How old an unreferenced blob or a temporary file must be before it is collected.
DEFAULT_GRACE_SECONDS = 3600.0

Kind = Literal["blob", "temporary"]


@dataclass(frozen=True)
class Collected:
    """One blob or temporary file that was (or, in a dry run, would be) removed."""

    kind: Kind
    name: str
    size: int
    modified: float


@dataclass(frozen=True)
class GcReport:
    """What a collection removed (or would remove), and what it kept and why."""

    dry_run: bool
    grace_seconds: float
    removed: list[Collected] = field(default_factory=list)
    kept_referenced: int = 0
    kept_recent: int = 0

    @property
    def bytes_freed(self) -> int:
        """Bytes removed (or that a dry run would remove)."""
        return sum(item.size for item in self.removed)

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["bytes_freed"] = self.bytes_freed
        return data


def collect(store: ArtifactStore, referenced: Callable[[], Collection[str]], *,
            grace_seconds: float = DEFAULT_GRACE_SECONDS, dry_run: bool = False,
            now: float | None = None) -> GcReport:
    """Remove the blobs ``referenced()`` does not name and the temporary files, of those
    older than ``grace_seconds``; with ``dry_run``, only report them."""
    cutoff = (time.time() if now is None else now) - grace_seconds
    blobs = list(store.list_blobs())  # before the references: see the module docstring
    temporary = list(store.list_temporary())
    keep = set(referenced())
    removed: list[Collected] = []
    kept_referenced = kept_recent = 0

    def consider(kind: Kind, item: StoredFile, discard: Callable[[str, float], bool]) -> None:
        nonlocal kept_recent
        if item.modified >= cutoff or not (dry_run or discard(item.name, cutoff)):
            kept_recent += 1
            return
        removed.append(Collected(kind, item.name, item.size, item.modified))

    for item in blobs:
        if item.name in keep:
            kept_referenced += 1
        else:
            consider("blob", item, store.discard_blob)
    for item in temporary:
        consider("temporary", item, store.discard_temporary)
    return GcReport(dry_run, grace_seconds, removed, kept_referenced, kept_recent)


def digests_in_json(text: str | None) -> set[str]:
    """Every string in a JSON document that has the shape of a blob digest: how references
    kept inside JSON columns (a model's files, a step's outputs) are found whatever their
    layout, including layouts that plugins define."""
    if not text:
        return set()
    found: set[str] = set()
    stack: list[Any] = [json.loads(text)]
    while stack:
        value = stack.pop()
        if isinstance(value, dict):
            stack.extend(value.values())
        elif isinstance(value, list):
            stack.extend(value)
        elif isinstance(value, str) and value.startswith(f"{DIGEST_ALGORITHM}:"):
            found.add(value)
    return found

"""``tidal.gc``: free the artifact store of blobs nothing references and of temporary files
left by killed writers, never touching a referenced blob or a write in progress.

The closed loop keeps producing runs, models and step outputs; this is its housekeeping. It
sits at this layer because it composes every domain that stores blobs — tracking artifacts,
dataset versions (which also hold pipelines' table outputs and the offline data feature views
read), feature definition files, model versions, other step outputs — each of which says
which digests it references; the store layer only sweeps (tidal.store.gc, where the guarantee
is stated). Prediction logs and feedback are plain files, not blobs, and are never touched.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta

from tidal.data.references import referenced_blobs as dataset_blobs
from tidal.durations import parse_duration
from tidal.errors import InvalidValueError
from tidal.features.references import referenced_blobs as feature_blobs
from tidal.models.references import referenced_blobs as model_blobs
from tidal.pipelines.references import referenced_blobs as step_output_blobs
from tidal.store.gc import DEFAULT_GRACE_SECONDS, GcReport, collect
from tidal.store.workspace import Workspace, current_workspace
from tidal.tracking.store import artifact_digests

#: Every domain's referenced digests. A domain that starts storing blobs adds its function
#: here, or gc would take its blobs for garbage once they are older than the grace period.
REFERENCE_SOURCES: tuple[Callable[[Workspace], set[str]], ...] = (
    artifact_digests, dataset_blobs, feature_blobs, model_blobs, step_output_blobs)


def referenced_digests(ws: Workspace) -> set[str]:
    """Every digest that some record of the workspace points at."""
    found: set[str] = set()
    for source in REFERENCE_SOURCES:
        found |= source(ws)
    return found


def gc(*, dry_run: bool = False, grace: float | str | timedelta = DEFAULT_GRACE_SECONDS,
       workspace: Workspace | None = None) -> GcReport:
    """Remove unreferenced blobs and temporary files older than ``grace`` (seconds, a
    timedelta, or text such as "1h"; default one hour) from the workspace's artifact store.

    ``dry_run`` reports what would be removed and removes nothing. The grace period must be
    longer than any write takes between storing its bytes and recording them (a large
    artifact folder, a slow upload): younger files are never removed.
    """
    if not isinstance(dry_run, bool):
        raise InvalidValueError(f"dry_run must be True or False, got {dry_run!r}",
                                field="dry_run")
    if workspace is not None and not isinstance(workspace, Workspace):
        raise InvalidValueError(f"workspace must be a Workspace from tidal.workspace(), got "
                                f"{type(workspace).__name__}", field="workspace")
    grace_seconds = parse_duration(grace, field="grace").total_seconds()
    ws = workspace or current_workspace()
    return collect(ws.artifacts, lambda: referenced_digests(ws), grace_seconds=grace_seconds,
                   dry_run=dry_run)

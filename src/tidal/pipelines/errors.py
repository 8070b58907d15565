"""Errors of pipelines: each names the pipeline, the step and what was wrong."""

from __future__ import annotations

from typing import Any

from tidal.errors import InvalidValueError, TidalError


class PipelineDefinitionError(InvalidValueError):
    """A pipeline or step is defined so that it cannot run: a cycle, an unknown parameter, an
    argument that is neither a step's output nor a plain value. Raised before any step runs."""


class StepOutputError(TidalError):
    """A step returned something its annotation does not allow, or something no materializer
    can store."""

    status_code = 422


class UntrustedCodeError(TidalError):
    """A pipeline target read back from the metadata store names code that is not shown to be
    the code recorded with it: a file, a module outside the import path, a module whose source
    changed, or one that defines no such pipeline. Nothing of it was imported."""

    status_code = 403


class StepFailedError(TidalError):
    """A step raised (after its retries) or ran past its timeout; its descendants did not run.
    ``run`` is the pipeline run (its id, and what every step did) when the driver raised it."""

    status_code = 500
    run: Any = None

"""``tidal.pipelines``: typed steps, pipelines traced from calls, content-addressed caching.

``tidal.step`` and ``tidal.pipeline`` are the decorators; ``run_pipeline`` runs one with
parameters on an executor and returns what each step did.
"""

from __future__ import annotations

from tidal.pipelines.errors import (
    PipelineDefinitionError,
    StepFailedError,
    StepOutputError,
    UntrustedCodeError,
)
from tidal.pipelines.graph import Pipeline, pipeline
from tidal.pipelines.materializers import Materializer, register_materializer
from tidal.pipelines.runner import PipelineRun, run_pipeline
from tidal.pipelines.schedule import InvalidCronError
from tidal.pipelines.step import Step, step

__all__ = ["InvalidCronError", "Materializer", "Pipeline", "PipelineDefinitionError",
           "PipelineRun", "Step", "StepFailedError", "StepOutputError", "UntrustedCodeError",
           "pipeline", "register_materializer", "run_pipeline", "step"]

"""``tidal.serving``: endpoints whose routes name registry versions, the inference server that
answers with them (Open Inference Protocol v2 and a simple JSON protocol), the prediction log
and feedback it writes, and batch inference over files.

``deploy`` and ``rollback`` change an endpoint's routes (running servers follow within
seconds); ``serve`` runs the server; ``predict_batch`` scores Parquet or CSV files.
``log_gaps`` reports the records the prediction log is missing, and ``recover_prediction_log``
writes what killed servers left in their local spools.
"""

from __future__ import annotations

from tidal.serving.batch import BatchResult, predict_batch
from tidal.serving.endpoints import (
    Endpoint,
    EndpointConfig,
    EndpointNotFoundError,
    Route,
    deploy,
    endpoint_history,
    get_endpoint,
    list_endpoints,
    rollback,
)
from tidal.serving.feedback import join_feedback, read_feedback, record_feedback
from tidal.serving.log_gaps import log_gaps
from tidal.serving.prediction_log import (
    PredictionLog,
    PredictionRecord,
    read_prediction_log,
    recover_prediction_log,
)


def serve(*args: object, **kwargs: object) -> None:
    """Run the inference server (see ``tidal.serving.server.serve``); needs
    ``pip install 'tidal-mlops[serve]'``."""
    from tidal.serving.server import serve as run

    run(*args, **kwargs)  # type: ignore[arg-type]


__all__ = ["BatchResult", "Endpoint", "EndpointConfig", "EndpointNotFoundError",
           "PredictionLog", "PredictionRecord", "Route", "deploy", "endpoint_history",
           "get_endpoint", "join_feedback", "list_endpoints", "log_gaps", "predict_batch",
           "read_feedback", "read_prediction_log", "record_feedback",
           "recover_prediction_log", "rollback", "serve"]

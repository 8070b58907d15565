"""The floor of the serving benchmark: the least a Python server on Tidal's stack does per
request. A bare Starlette app that parses the JSON body with orjson, builds the model's input
from its records, calls ``model.predict`` and answers with orjson; nothing else (no
validation, metrics or logging).

    python benchmarks/serving/floor_app.py --model PATH.pkl --port PORT [--host 127.0.0.1]
                                           [--workers 2]

Runs uvicorn with uvloop and httptools in ``--workers`` forked processes sharing one
listening socket with TCP_NODELAY set (nodelay.py), as Tidal's server does.

    POST /predict   {"records": [{"f0": 0.1, ...}, ...]}  ->  {"predictions": [...]}
    GET  /health    200
"""

from __future__ import annotations

import argparse
import os
import pickle
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
import nodelay
import workload as w

MODEL_VARIABLE = "SERVING_BENCH_MODEL"


def create_app() -> Any:
    """The app, serving the pickled model named by $SERVING_BENCH_MODEL."""
    import orjson
    from starlette.applications import Starlette
    from starlette.responses import Response
    from starlette.routing import Route

    with open(os.environ[MODEL_VARIABLE], "rb") as source:
        model = pickle.load(source)

    async def predict(request: Any) -> Response:
        body = orjson.loads(await request.body())
        labels = model.predict(w.frame_from_records(body["records"]))
        return Response(orjson.dumps({"predictions": labels.tolist()}),
                        media_type="application/json")

    async def health(request: Any) -> Response:
        return Response(b"ok", media_type="text/plain")

    return Starlette(routes=[Route("/predict", predict, methods=["POST"]),
                             Route("/health", health, methods=["GET"])])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", required=True, help="the pickled model (prepare.py)")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()
    os.environ[MODEL_VARIABLE] = str(Path(args.model).resolve())
    nodelay.serve("floor_app:create_app", factory=True, host=args.host, port=args.port,
                  workers=args.workers, loop="uvloop", http="httptools")


if __name__ == "__main__":
    main()

"""The BentoML side of the serving benchmark: the same model behind a BentoML service with 2
workers, as its documentation writes one. Served from this folder with the BentoML virtual
environment's CLI:

    SERVING_BENCH_MODEL=PATH.pkl benchmarks/.venvs/bentoml/bin/bentoml serve \\
        bentoml_service:Predictor --host 127.0.0.1 --port PORT

``Predictor``: one request, one ``model.predict`` call. ``BatchPredictor``: the same API with
``batchable=True``, BentoML's adaptive batching, up to 64 rows per call. Both take
``{"records": [{"f0": 0.1, ...}, ...]}`` on POST /predict and answer the labels as a JSON
list. The model is the pickle prepare.py wrote under this interpreter.
"""

from __future__ import annotations

import os
import pickle
import sys
from pathlib import Path

import bentoml

sys.path.insert(0, str(Path(__file__).resolve().parent))
import workload as w

WORKERS = 2
MAX_BATCH_SIZE = 64


def load_model():
    with open(os.environ["SERVING_BENCH_MODEL"], "rb") as source:
        return pickle.load(source)


@bentoml.service(workers=WORKERS)
class Predictor:
    def __init__(self) -> None:
        self.model = load_model()

    @bentoml.api
    def predict(self, records: list[dict[str, float]]) -> list[int]:
        return self.model.predict(w.frame_from_records(records)).tolist()


@bentoml.service(workers=WORKERS)
class BatchPredictor:
    def __init__(self) -> None:
        self.model = load_model()

    @bentoml.api(batchable=True, max_batch_size=MAX_BATCH_SIZE)
    def predict(self, records: list[dict[str, float]]) -> list[int]:
        return self.model.predict(w.frame_from_records(records)).tolist()

"""Malformed requests get a 4xx naming the problem, never a 500, and the server keeps serving;
Schemathesis, fuzzing the server's own OpenAPI document, finds no server error."""

from __future__ import annotations

import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.checks import not_a_server_error

from tests.serving.conftest import records, register_ctr
from tidal.serving.endpoints import deploy

GOOD = {"age": 40, "income": 52000.5, "city": "lyon", "member": True}


def _tensor(name: str, kind: str, data: list, shape: list | None = None) -> dict:
    return {"name": name, "datatype": kind, "shape": shape or [len(data)], "data": data}


GOOD_TENSORS = [_tensor("age", "INT64", [40]), _tensor("income", "FP64", [52000.5]),
                _tensor("city", "BYTES", ["lyon"]), _tensor("member", "BOOL", [True])]

BINARY_HEADER = (b'{"inputs":[{"name":"age","shape":[1],"datatype":"INT64",'
                 b'"parameters":{"binary_data_size":64}}]}')
FP32_HEADER = (b'{"inputs":[{"name":"income","shape":[1],"datatype":"FP32",'
               b'"parameters":{"binary_data_size":5}}]}')
# Deeper than Python's recursion limit (about 1,000) and within orjson's (1,024).
DEEP = b"[" * 1000 + b"1" + b"]" * 1000

# (case id, method, path, request keyword arguments, expected status, words in the message)
CASES = [
    ("not json", "POST", "/predict/ctr", {"content": b"{bad"}, 400, "not valid JSON"),
    ("empty body", "POST", "/predict/ctr", {"content": b""}, 400, "not valid JSON"),
    ("array body", "POST", "/predict/ctr", {"json": []}, 400, "JSON array"),
    ("string body", "POST", "/predict/ctr", {"json": "rows"}, 400, "JSON string"),
    ("no rows field", "POST", "/predict/ctr", {"json": {}}, 400, "exactly one of"),
    ("records and columns", "POST", "/predict/ctr",
     {"json": {"records": [GOOD], "columns": {"age": [1]}}}, 400, "exactly one of"),
    ("unknown field", "POST", "/predict/ctr", {"json": {"records": [GOOD], "rows": 1}}, 400,
     "unknown field"),
    ("records not a list", "POST", "/predict/ctr", {"json": {"records": GOOD}}, 400,
     "non-empty list"),
    ("no records", "POST", "/predict/ctr", {"json": {"records": []}}, 400, "non-empty list"),
    ("record not an object", "POST", "/predict/ctr", {"json": {"records": [[1, 2]]}}, 400,
     "record 0 is array"),
    ("records differ", "POST", "/predict/ctr",
     {"json": {"records": [GOOD, {**GOOD, "zip": 1}]}}, 400, "record 1 has other columns"),
    ("missing column", "POST", "/predict/ctr",
     {"json": {"records": [{k: v for k, v in GOOD.items() if k != "city"}]}}, 422,
     "missing column 'city'"),
    ("extra column", "POST", "/predict/ctr", {"json": {"records": [{**GOOD, "zip": 75}]}},
     422, "unexpected column 'zip'"),
    ("string for float", "POST", "/predict/ctr",
     {"json": {"records": [{**GOOD, "income": "lots"}]}}, 422, "expected float64"),
    ("fraction for int", "POST", "/predict/ctr", {"json": {"records": [{**GOOD, "age": 4.5}]}},
     422, "expected int64"),
    ("bool for string", "POST", "/predict/ctr", {"json": {"records": [{**GOOD, "city": True}]}},
     422, "expected string"),
    ("null where required", "POST", "/predict/ctr",
     {"json": {"records": [{**GOOD, "income": None}]}}, 422, "null where the model"),
    ("int out of range", "POST", "/predict/ctr",
     {"json": {"records": [{**GOOD, "age": 2**70}]}}, 422, "outside int64"),
    ("object as value", "POST", "/predict/ctr",
     {"json": {"records": [{**GOOD, "member": {"yes": 1}}]}}, 422, "expected bool"),
    ("every bad column named", "POST", "/predict/ctr",
     {"json": {"records": [{"age": "x", "income": "y", "city": 1, "member": 2}]}}, 422,
     "'age'.*'income'.*'city'.*'member'"),
    ("columns of unequal length", "POST", "/predict/ctr",
     {"json": {"columns": {"age": [1, 2], "income": [1.0], "city": ["a"],
                           "member": [True]}}}, 400, "same, non-zero"),
    ("column not a list", "POST", "/predict/ctr",
     {"json": {"columns": {"age": 1, "income": 1.0}}}, 400, "list of values"),
    ("no columns", "POST", "/predict/ctr", {"json": {"columns": {}}}, 400, "non-empty object"),
    ("instances for a table model", "POST", "/predict/ctr", {"json": {"instances": [[1, 2]]}},
     400, "for tensor models"),
    ("key of wrong type", "POST", "/predict/ctr", {"json": {"records": [GOOD], "key": [1]}},
     400, "'key' must be"),
    ("bad request id", "POST", "/predict/ctr", {"json": {"records": [GOOD], "id": "../x y"}},
     400, "request id"),
    ("body over the limit", "POST", "/predict/ctr",
     {"json": {"records": [GOOD] * 2000}}, 413, "at most 65536"),
    ("not json content type", "POST", "/predict/ctr",
     {"content": b"age,income", "headers": {"content-type": "text/csv"}}, 415, "text/csv"),
    ("unknown endpoint", "POST", "/predict/nope", {"json": {"records": [GOOD]}}, 404,
     "not served here"),
    ("wrong method", "GET", "/predict/ctr", {}, 405, ""),
    ("infer: not an object", "POST", "/v2/models/ctr/infer", {"json": [1]}, 400,
     "JSON object with 'inputs'"),
    ("infer: no inputs", "POST", "/v2/models/ctr/infer", {"json": {"inputs": []}}, 400,
     "non-empty list of tensors"),
    ("infer: tensor without name", "POST", "/v2/models/ctr/infer",
     {"json": {"inputs": [{"shape": [1], "datatype": "FP64", "data": [1.0]}]}}, 400,
     "must be an object with a 'name'"),
    ("infer: bad shape", "POST", "/v2/models/ctr/infer",
     {"json": {"inputs": [_tensor("age", "INT64", [1], [-1])]}}, 400, "non-negative"),
    ("infer: unknown datatype", "POST", "/v2/models/ctr/infer",
     {"json": {"inputs": [_tensor("age", "FLOAT", [1])]}}, 400, "accepted: BOOL"),
    ("infer: data does not fit shape", "POST", "/v2/models/ctr/infer",
     {"json": {"inputs": [_tensor("age", "INT64", [1, 2], [3])]}}, 400, "needs 3"),
    ("infer: data of another type", "POST", "/v2/models/ctr/infer",
     {"json": {"inputs": [_tensor("income", "FP64", ["x"]), *GOOD_TENSORS[:1],
                          *GOOD_TENSORS[2:]]}}, 422, "declared FP64"),
    ("infer: missing column", "POST", "/v2/models/ctr/infer",
     {"json": {"inputs": GOOD_TENSORS[:3]}}, 422, "missing column 'member'"),
    ("infer: input twice", "POST", "/v2/models/ctr/infer",
     {"json": {"inputs": GOOD_TENSORS + GOOD_TENSORS[:1]}}, 400, "given twice"),
    ("infer: rows differ", "POST", "/v2/models/ctr/infer",
     {"json": {"inputs": [_tensor("age", "INT64", [1, 2]), *GOOD_TENSORS[1:]]}}, 400,
     "same number of rows"),
    ("infer: unknown output", "POST", "/v2/models/ctr/infer",
     {"json": {"inputs": GOOD_TENSORS, "outputs": [{"name": "logits"}]}}, 400,
     "unknown output"),
    ("infer: header length past the body", "POST", "/v2/models/ctr/infer",
     {"content": b'{"inputs": []}', "headers": {"inference-header-content-length": "500"}},
     400, "Inference-Header-Content-Length"),
    ("infer: binary size past the body", "POST", "/v2/models/ctr/infer",
     {"content": BINARY_HEADER + b"1234",
      "headers": {"inference-header-content-length": str(len(BINARY_HEADER))}}, 400,
     "binary_data_size"),
    ("infer: version not served", "POST", "/v2/models/ctr/versions/9/infer",
     {"json": {"inputs": GOOD_TENSORS}}, 404, "serves no version '9'"),
    ("infer: version not a number", "POST", "/v2/models/ctr/versions/abc/infer",
     {"json": {"inputs": GOOD_TENSORS}}, 404, "serves no version"),
    ("metadata: unknown model", "GET", "/v2/models/nope", {}, 404, "not served here"),
    # Numbers in paths and headers are ASCII digits: '²' passes str.isdigit() but not int().
    ("infer: a superscript version", "POST", "/v2/models/ctr/versions/%C2%B2/infer",
     {"json": {"inputs": GOOD_TENSORS}}, 404, "serves no version '²'"),
    ("infer: a superscript header length", "POST", "/v2/models/ctr/infer",
     {"content": b'{"inputs": []}', "headers": {"inference-header-content-length": b"\xb2"}},
     400, "Inference-Header-Content-Length"),
    ("records nested 1,000 deep", "POST", "/predict/ctr",
     {"content": b'{"records": [{"age": ' + DEEP
      + b', "income": 1.0, "city": "lyon", "member": true}]}'}, 422,
     "column 'age': expected int64"),
    ("infer: data nested 1,000 deep", "POST", "/v2/models/ctr/infer",
     {"content": b'{"inputs": [{"name": "age", "datatype": "INT64", "shape": [1], "data": '
      + DEEP + b"}]}"}, 422, "declared INT64"),
    ("infer: FP32 bytes not a multiple of 4", "POST", "/v2/models/ctr/infer",
     {"content": FP32_HEADER + b"12345",
      "headers": {"inference-header-content-length": str(len(FP32_HEADER))}}, 400,
     "not a whole number of FP32 values"),
    ("feedback: not a list", "POST", "/feedback/ctr", {"json": {"feedback": "yes"}}, 400,
     "feedback"),
    ("feedback: no request id", "POST", "/feedback/ctr",
     {"json": {"feedback": [{"label": 1}]}}, 400, "request_id"),
]


def _raw(url: str, request: bytes) -> bytes:
    """Send bytes no well-behaved client would (a Content-Length the body does not have)."""
    import socket

    host, port = url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=10) as conn:
        conn.sendall(request)
        return conn.recv(4096).split(b"\r\n", 1)[0]


def test_there_are_at_least_thirty_distinct_bad_requests():
    assert len({case[0] for case in CASES}) == len(CASES) >= 30


@pytest.fixture
def ctr_server(ctr, serve, workspace):
    deploy("ctr", {"models:/ctr/1": 100})
    return serve(workspace, max_body_bytes=65536)


def test_every_bad_request_gets_its_4xx_and_the_server_keeps_serving(ctr, ctr_server):
    import re

    for name, method, path, kwargs, status, words in CASES:
        response = ctr_server.client.request(method, path, **kwargs)
        assert response.status_code == status, (name, response.status_code, response.text)
        if words:
            message = response.json()["error"]
            assert re.search(words, message), (name, message)
    assert b"413" in _raw(ctr_server.url, b"POST /predict/ctr HTTP/1.1\r\nHost: x\r\n"
                          b"Content-Type: application/json\r\nContent-Length: 99999999\r\n\r\n{}")
    assert b"400" in _raw(ctr_server.url, b"POST /predict/ctr HTTP/1.1\r\nHost: x\r\n"
                          b"Content-Length: 2\r\n\r\n[}")
    good = ctr_server.post("/predict/ctr", json={"records": records(ctr["frame"].head(5))})
    assert good.status_code == 200
    assert good.json()["predictions"] == ctr["models"][1].predict(ctr["frame"].head(5)).tolist()
    metrics = ctr_server.client.get("/metrics").text
    assert 'status="5' not in metrics


def test_a_model_that_refuses_valid_input_gets_422_not_500(workspace, serve):
    import numpy as np
    import pandas as pd
    from sklearn.linear_model import LogisticRegression

    import tidal

    frame = pd.DataFrame({"x": np.linspace(0, 1, 20), "y": np.linspace(1, 0, 20)})
    model = LogisticRegression().fit(frame, (frame.x > 0.5).astype(int))
    tidal.models.register("nulls", model, signature={"inputs": {"columns": [
        {"name": "x", "type": "float64", "nullable": True},
        {"name": "y", "type": "float64", "nullable": True}]}}, run=False)
    deploy("nulls", {"models:/nulls/1": 100})
    running = serve(workspace)
    answer = running.post("/predict/nulls", json={"records": [{"x": None, "y": 1.0}]})
    assert answer.status_code == 422
    assert "could not predict on this input" in answer.json()["error"]
    assert running.post("/predict/nulls", json={"records": [{"x": 0.9, "y": 0.1}]}).is_success


def test_a_token_is_required_when_configured_and_checked(ctr, serve, workspace):
    deploy("ctr", {"models:/ctr/1": 100})
    running = serve(workspace, token="s3cret-token-0123456789")
    body = {"records": records(ctr["frame"].head(1))}
    assert running.client.get("/v2/health/live").status_code == 200  # probes need no token
    missing = running.post("/predict/ctr", json=body)
    assert missing.status_code == 401 and "Bearer" in missing.json()["error"]
    assert missing.headers["www-authenticate"] == "Bearer"
    wrong = running.post("/predict/ctr", json=body, headers={"Authorization": "Bearer nope"})
    assert wrong.status_code == 401
    assert running.client.get("/metrics").status_code == 401
    right = running.post("/predict/ctr", json=body,
                         headers={"Authorization": "Bearer s3cret-token-0123456789"})
    assert right.status_code == 200


@pytest.fixture
def api_schema(serve, tmp_path):
    """The fuzzing runs once, on the embedded backend: it exercises the app, not the store."""
    import tidal

    workspace = tidal.workspace(tmp_path / "ws")
    register_ctr()
    deploy("ctr", {"models:/ctr/1": 100}, shadow=["models:/ctr/2"])
    running = serve(workspace, max_body_bytes=65536)
    return schemathesis.openapi.from_url(f"{running.url}/openapi.json")


schema = schemathesis.pytest.from_fixture("api_schema")


@schema.parametrize()
@settings(max_examples=40, deadline=None,
          suppress_health_check=list(HealthCheck))
def test_schemathesis_finds_no_server_error(case):
    case.call_and_validate(checks=[not_a_server_error])


def test_a_value_of_an_object_column_may_nest_only_so_deep(serve, tmp_path):
    """An ``object`` column takes any value, but not one nested past what code that walks it
    (a model, NumPy, a repr) can recurse through."""
    import numpy as np
    import pandas as pd
    from sklearn.compose import ColumnTransformer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline

    import tidal
    from tidal.serving.inputs import MAX_DEPTH

    workspace = tidal.workspace(tmp_path / "ws")
    frame = pd.DataFrame({"x": np.linspace(0, 1, 20), "tags": [["a"]] * 20})
    model = make_pipeline(ColumnTransformer([("x", "passthrough", ["x"])]),
                          LogisticRegression()).fit(frame, (frame.x > 0.5).astype(int))
    tidal.models.register("tagged", model, signature={"inputs": {"columns": [
        {"name": "x", "type": "float64"}, {"name": "tags", "type": "object"}]}}, run=False)
    deploy("tagged", {"models:/tagged/1": 100})
    running = serve(workspace)

    def nested(depth: int) -> str:
        return "[" * depth + '"a"' + "]" * depth

    for depth, status in ((MAX_DEPTH, 200), (MAX_DEPTH + 1, 422), (1000, 422)):
        body = '{"records": [{"x": 0.9, "tags": ' + nested(depth) + "}]}"
        answer = running.post("/predict/tagged", content=body.encode())
        assert answer.status_code == status, (depth, answer.text)
        if status == 422:
            assert f"nested more than {MAX_DEPTH} levels" in answer.json()["error"]

"""The two protocols over real HTTP: Triton's own Open Inference Protocol client, the simple
JSON protocol, and micro-batching that never changes an answer."""

from __future__ import annotations

import asyncio

import httpx
import numpy as np
import pandas as pd
import pytest

from tests.serving.conftest import records
from tidal.serving.endpoints import deploy


@pytest.mark.parametrize("binary", [False, True], ids=["json", "binary"])
def test_tritons_client_gets_health_metadata_and_correct_answers(ctr, serve, workspace, binary):
    import tritonclient.http as triton

    deploy("ctr", {"models:/ctr/1": 100})
    running = serve(workspace)
    client = triton.InferenceServerClient(url=running.url.removeprefix("http://"))
    assert client.is_server_live() and client.is_server_ready()
    assert client.is_model_ready("ctr")
    assert client.get_server_metadata()["name"] == "tidal"
    meta = client.get_model_metadata("ctr")
    assert meta["name"] == "ctr" and meta["versions"] == ["1"]
    assert {(i["name"], i["datatype"]) for i in meta["inputs"]} == {
        ("age", "INT64"), ("income", "FP64"), ("city", "BYTES"), ("member", "BOOL")}

    frame = ctr["frame"].head(7)
    inputs = []
    for name, kind, values in [("age", "INT64", frame.age.to_numpy()),
                               ("income", "FP64", frame.income.to_numpy()),
                               ("city", "BYTES", frame.city.to_numpy(dtype=object)),
                               ("member", "BOOL", frame.member.to_numpy())]:
        tensor = triton.InferInput(name, [len(frame)], kind)
        tensor.set_data_from_numpy(values, binary_data=binary)
        inputs.append(tensor)
    outputs = [triton.InferRequestedOutput("predict", binary_data=binary),
               triton.InferRequestedOutput("predict_proba", binary_data=binary)]
    result = client.infer("ctr", inputs, outputs=outputs, request_id="abc-1")
    model = ctr["models"][1]
    np.testing.assert_array_equal(result.as_numpy("predict"), model.predict(frame))
    np.testing.assert_allclose(result.as_numpy("predict_proba"), model.predict_proba(frame),
                               rtol=0, atol=0)
    response = result.get_response()
    assert response["id"] == "abc-1" and response["model_version"] == "1"

    pinned = client.infer("ctr", inputs, model_version="1")
    np.testing.assert_array_equal(pinned.as_numpy("predict"), model.predict(frame))
    with pytest.raises(triton.InferenceServerException, match="serves no version '5'"):
        client.infer("ctr", inputs, model_version="5")
    client.close()


def test_one_row_major_tensor_maps_to_the_signature_columns(workspace, serve):
    from sklearn.linear_model import LinearRegression

    import tidal

    rng = np.random.default_rng(3)
    x = rng.normal(size=(50, 3))
    frame = pd.DataFrame(x, columns=["a", "b", "c"])
    model = LinearRegression().fit(frame, x @ [1.0, 2.0, 3.0])
    tidal.models.register("lin", model, input_example=frame.head(5), run=False)
    deploy("lin", {"models:/lin/1": 100})
    running = serve(workspace)
    body = {"inputs": [{"name": "x", "shape": [2, 3], "datatype": "FP64",
                        "data": x[:2].tolist()}]}
    answer = running.post("/v2/models/lin/infer", json=body).json()
    np.testing.assert_allclose(answer["outputs"][0]["data"], model.predict(frame.head(2)))


def test_simple_protocol_records_and_columns_answer_like_the_model(ctr, serve, workspace):
    deploy("ctr", {"models:/ctr@champion": 100})
    running = serve(workspace)
    frame = ctr["frame"].head(25)
    expected = ctr["models"][1].predict(frame).tolist()
    by_records = running.post("/predict/ctr", json={"records": records(frame)})
    assert by_records.status_code == 200
    body = by_records.json()
    assert body["predictions"] == expected
    assert body["route"] == "models:/ctr@champion" and body["model_version"] == 1
    assert body["model_uri"] == "models:/ctr/1"
    assert by_records.headers["x-request-id"] == body["request_id"]
    columns = {name: [r[name] for r in records(frame)] for name in frame.columns}
    by_columns = running.post("/predict/ctr", json={"columns": columns, "id": "req-42"}).json()
    # A client's id is echoed back as a correlation field; the request id is the server's.
    assert by_columns["predictions"] == expected and by_columns["id"] == "req-42"
    assert by_columns["request_id"] not in ("req-42", body["request_id"])
    header_id = running.post("/predict/ctr", json={"records": records(frame.head(1))},
                             headers={"X-Request-ID": "from-header"}).json()
    assert header_id["id"] == "from-header" and header_id["request_id"] != "from-header"


def test_batching_coalesces_concurrent_requests_without_changing_answers(ctr, serve, workspace):
    deploy("ctr", {"models:/ctr/1": 100}, max_batch_size=64, max_wait_ms=20)
    running = serve(workspace, log_predictions=False)
    frame = ctr["frame"]
    rows = records(frame.head(200))
    expected = ctr["models"][1].predict(frame.head(200)).tolist()

    async def send_all() -> list[int]:
        async with httpx.AsyncClient(base_url=running.url, timeout=30) as client:
            answers = await asyncio.gather(*[
                client.post("/predict/ctr", json={"records": [row]}) for row in rows])
        return [a.json()["predictions"][0] for a in answers]

    assert asyncio.run(send_all()) == expected
    metrics = running.client.get("/metrics").text
    batches = [line for line in metrics.splitlines()
               if line.startswith("tidal_batch_rows_count")]
    count = float(batches[0].rsplit(" ", 1)[1])
    assert count < len(rows), "concurrent requests were not coalesced"
    assert 'tidal_batch_rows_sum{model="ctr/1"} 200.0' in metrics


def test_metrics_count_requests_latency_values_and_load_time(ctr, serve, workspace):
    deploy("ctr", {"models:/ctr/1": 100})
    running = serve(workspace, log_predictions=False)
    frame = ctr["frame"].head(3)
    for _ in range(4):
        assert running.post("/predict/ctr", json={"records": records(frame)}).is_success
    assert running.post("/predict/ctr", json={"records": [{"age": 1}]}).status_code == 422
    text = running.client.get("/metrics").text
    assert ('tidal_requests_total{endpoint="ctr",model_version="1",route="models:/ctr/1",'
            'status="200"} 4.0') in text
    assert ('tidal_requests_total{endpoint="ctr",model_version="1",route="models:/ctr/1",'
            'status="422"} 1.0') in text
    assert 'tidal_request_duration_seconds_count{endpoint="ctr",route="models:/ctr/1"} 5.0' \
        in text
    labels = ctr["models"][1].predict(frame).tolist() * 4
    for label in set(labels):
        assert (f'tidal_predicted_labels_total{{label="{label}",model="ctr/1"}} '
                f'{float(labels.count(label))}') in text
    assert 'tidal_model_load_seconds_count{model="ctr/1"} 1.0' in text
    assert "tidal_requests_in_flight 0.0" in text
    assert "tidal_prediction_log_dropped_total 0.0" in text

"""The server's OpenAPI document, written from the endpoints it serves: each endpoint gets its
own paths, with request schemas taken from the signature of its first live route, so clients
and API fuzzers see the real shape of every request."""

from __future__ import annotations

from collections.abc import Mapping
from importlib.metadata import version
from typing import Any

from tidal.models.signature import ColumnSpec, Signature, TensorSpec
from tidal.serving.inputs import INT_RANGES
from tidal.serving.runtime import EndpointState

_ERROR = {"type": "object", "properties": {"error": {"type": "string"},
                                           "field": {"type": "string"}}, "required": ["error"]}
_ERRORS = {str(code): {"description": reason, "content": {"application/json": {
    "schema": _ERROR}}} for code, reason in [
    (400, "malformed request"), (401, "missing or wrong bearer token"),
    (404, "no such endpoint or version"),
    (413, "body over max_body_bytes, or rows over max_rows_per_request"),
    (415, "not JSON"), (422, "input does not match the model signature"),
    (503, "models not loaded yet, or the worker's max_connections reached")]}


def _value_schema(spec: ColumnSpec) -> dict[str, Any]:
    if spec.type.startswith("float"):
        schema: dict[str, Any] = {"type": "number"}
    elif spec.type in INT_RANGES:
        low, high = INT_RANGES[spec.type]
        schema = {"type": "integer", "minimum": low, "maximum": high}
    elif spec.type == "bool":
        schema = {"type": "boolean"}
    elif spec.type in ("string", "category", "datetime"):
        schema = {"type": "string"}
    else:
        schema = {}
    if spec.nullable and schema:
        schema["nullable"] = True
    return schema


def _simple_body(signature: Signature | None) -> dict[str, Any]:
    if signature is not None and isinstance(signature.inputs, TensorSpec):
        return {"type": "object", "required": ["instances"], "additionalProperties": False,
                "properties": {"instances": {"type": "array", "minItems": 1,
                                             "items": {"type": "array"}},
                               "key": {"type": "string"}, "id": {"type": "string"}}}
    record: dict[str, Any] = {"type": "object"}
    if signature is not None:
        record = {"type": "object", "additionalProperties": False,
                  "required": [c.name for c in signature.inputs],
                  "properties": {c.name: _value_schema(c) for c in signature.inputs}}
    return {"type": "object", "required": ["records"], "additionalProperties": False,
            "properties": {"records": {"type": "array", "minItems": 1, "items": record},
                           "key": {"type": "string"},
                           "id": {"type": "string", "pattern": "^[A-Za-z0-9._:-]{1,128}$"}}}


_TENSOR = {"type": "object", "required": ["name", "shape", "datatype", "data"],
           "properties": {"name": {"type": "string"},
                          "shape": {"type": "array", "items": {"type": "integer",
                                                               "minimum": 0}},
                          "datatype": {"type": "string", "enum": [
                              "BOOL", "INT8", "INT16", "INT32", "INT64", "UINT8", "UINT16",
                              "UINT32", "UINT64", "FP16", "FP32", "FP64", "BYTES"]},
                          "data": {"type": "array"}}}
_INFER = {"type": "object", "required": ["inputs"], "properties": {
    "id": {"type": "string"}, "parameters": {"type": "object"},
    "inputs": {"type": "array", "minItems": 1, "items": _TENSOR},
    "outputs": {"type": "array", "items": {"type": "object", "required": ["name"],
                                           "properties": {"name": {"type": "string"}}}}}}
_FEEDBACK = {"type": "object", "required": ["feedback"], "properties": {"feedback": {
    "type": "array", "items": {"type": "object", "required": ["request_id", "label"],
                               "properties": {"request_id": {"type": "string"},
                                              "label": {}}}}}}


def _post(summary: str, schema: dict[str, Any]) -> dict[str, Any]:
    return {"post": {"summary": summary,
                     "requestBody": {"required": True,
                                     "content": {"application/json": {"schema": schema}}},
                     "responses": {"200": {"description": "answered"}, **_ERRORS}}}


def _get(summary: str) -> dict[str, Any]:
    return {"get": {"summary": summary, "responses": {"200": {"description": "answered"},
                                                      **_ERRORS}}}


def openapi_document(states: Mapping[str, EndpointState]) -> dict[str, Any]:
    """OpenAPI 3.0 for the endpoints served now."""
    paths: dict[str, Any] = {
        "/v2/health/live": _get("liveness"),
        "/v2/health/ready": _get("readiness: every endpoint's models loaded"),
        "/v2": _get("server metadata"),
        "/metrics": _get("Prometheus metrics"),
    }
    for name, state in sorted(states.items()):
        signature = state.live[0].model.loaded.signature
        paths[f"/predict/{name}"] = _post(f"predict with endpoint {name}",
                                          _simple_body(signature))
        paths[f"/feedback/{name}"] = _post(f"ground-truth labels for {name}'s answers",
                                           _FEEDBACK)
        paths[f"/v2/models/{name}"] = _get(f"metadata of {name}")
        paths[f"/v2/models/{name}/ready"] = _get(f"readiness of {name}")
        paths[f"/v2/models/{name}/infer"] = _post(f"Open Inference Protocol inference with "
                                                  f"{name}", _INFER)
    return {"openapi": "3.0.3",
            "info": {"title": "Tidal inference server", "version": version("tidal-mlops")},
            "paths": paths}

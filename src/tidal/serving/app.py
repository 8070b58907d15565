"""The inference server's ASGI app: the Open Inference Protocol v2, a simple JSON protocol,
feedback, metrics and an OpenAPI document, over the endpoints of one workspace.

Every failure a request can cause is a ``TidalError`` answered with its 4xx status and
message; the app keeps serving whatever arrives. Models never come from a request: a request
names an endpoint, and the endpoint's routes name registry versions. Route changes are polled
from the metadata store and swapped in without stopping.
"""

from __future__ import annotations

import asyncio
import gc
import hmac
import logging
import random
import re
import time
from collections.abc import Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import orjson
from starlette.applications import Starlette
from starlette.requests import ClientDisconnect, Request
from starlette.responses import Response
from starlette.routing import Route

from tidal.errors import InvalidValueError, TidalError
from tidal.ids import now_ms, parse_count
from tidal.serving import oip
from tidal.serving.endpoints import (
    EndpointNotFoundError,
    current_revision,
    get_endpoint,
    list_endpoints,
)
from tidal.serving.feedback import record_feedback
from tidal.serving.inputs import (
    BadRequestError,
    Columns,
    PayloadTooLargeError,
    UnsupportedMediaTypeError,
    check_columns,
    parse_simple,
)
from tidal.serving.labels import LabelRule
from tidal.serving.metrics import ServingMetrics
from tidal.serving.openapi import openapi_document
from tidal.serving.prediction_log import PredictionLog, PredictionRecord
from tidal.serving.quarantine import QuarantinedError, WorkerGuard
from tidal.serving.request_ids import RequestIds
from tidal.serving.runtime import EndpointState, RouteChoice, ServedModel, build_state, resolve
from tidal.store.workspace import Workspace

log = logging.getLogger("tidal.serving")

DEFAULT_MAX_BODY_BYTES = 4 * 1024 * 1024
#: Each limit's accepted range: (low, high) in seconds, or from 1 to high for counts.
_SECONDS_LIMITS = {"header_timeout": (0.1, 3600.0), "body_timeout": (0.1, 3600.0),
                   "idle_timeout": (0.1, 3600.0)}
_COUNT_LIMITS = {"max_connections": 1_000_000, "max_rows_per_request": 100_000_000}
_REQUEST_ID = re.compile(r"[A-Za-z0-9._:-]{1,128}")
_MAX_SHADOW_TASKS = 1000
_RETIRE_AFTER_S = 30.0
_JSON = "application/json"


class UnauthorizedError(TidalError):
    """No bearer token, or the wrong one (401)."""

    status_code = 401


class ModelInputError(TidalError):
    """The model itself refused the (signature-valid) input (422)."""

    status_code = 422


class NotReadyError(TidalError):
    """The endpoint's models are not loaded yet (503)."""

    status_code = 503


class ClientGoneError(TidalError):
    """The client closed the connection (or it timed out) before its body arrived: nobody
    reads the answer, but the request ends as a refusal rather than a server error."""


@dataclass(frozen=True)
class ServerSettings:
    """How a server answers: which endpoints (None: every endpoint in the workspace, new ones
    included), the bearer token (None: no check), the body limit, how often routes are
    polled, whether pickle-based flavors may load, and whether predictions are logged.

    The limits that keep one client from holding a worker (checked here: a bad value raises
    ``InvalidValueError`` naming the field):

    - ``header_timeout``: seconds from a request's first byte to the end of its headers;
      a slower client gets 408 and is disconnected.
    - ``body_timeout``: the longest wait, in seconds, between two reads of a request's body.
    - ``idle_timeout``: seconds a connection may stay open without a request (before its
      first, or after an answer). Longer than clients keep idle connections (httpx and
      requests: 5 s), so a client never reuses one at the instant the server closes it.
    - ``max_connections``: connections one worker serves at once; while more are open, new
      requests are answered 503.
    - ``max_rows_per_request``: more rows in one request are refused with 413 before they
      are read, so that one request cannot hold a model (and the requests batched behind it)
      for seconds.
    """

    endpoints: tuple[str, ...] | None = None
    token: str | None = None
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES
    reload_interval: float = 2.0
    trust: bool = False
    log_predictions: bool = True
    trust_feature_code: bool = False
    header_timeout: float = 10.0
    body_timeout: float = 30.0
    idle_timeout: float = 75.0
    max_connections: int = 1000
    max_rows_per_request: int = 10_000

    def __post_init__(self) -> None:
        for name, (low, high) in _SECONDS_LIMITS.items():
            value = getattr(self, name)
            if type(value) not in (int, float) or not low <= value <= high:  # NaN fails too
                raise InvalidValueError(f"{name} must be a number of seconds from {low:g} to "
                                        f"{high:g}, got {value!r}", field=name)
        for name, high in _COUNT_LIMITS.items():
            value = getattr(self, name)
            if type(value) is not int or not 1 <= value <= high:
                raise InvalidValueError(f"{name} must be an integer from 1 to {high:,}, got "
                                        f"{value!r}", field=name)


def _json(data: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    return Response(orjson.dumps(data, option=orjson.OPT_SERIALIZE_NUMPY), status,
                    headers=headers, media_type=_JSON)


def _error(error: TidalError) -> Response:
    body: dict[str, Any] = {"error": str(error)}
    if error.field:
        body["field"] = error.field
    headers = {"WWW-Authenticate": "Bearer"} if error.status_code == 401 else None
    return _json(body, error.status_code, headers)


class ServingApp:
    """An ASGI app over a workspace's endpoints; one per worker process."""

    def __init__(self, workspace: Workspace, settings: ServerSettings | None = None, *,
                 guard: WorkerGuard | None = None) -> None:
        """``guard``: a supervised worker's crash marks and quarantine board."""
        self.workspace = workspace
        self.settings = settings or ServerSettings()
        self.metrics = ServingMetrics()
        self.guard = guard
        if guard is not None:
            self.metrics.registry.register(guard.collector())
        self.states: dict[str, EndpointState] = {}
        self._held: dict[tuple[str, int, float], ServedModel] = {}
        self._retiring: dict[int, ServedModel] = {}  # off every route, closed after a grace
        self._token = None if self.settings.token is None else self.settings.token.encode()
        self._shadow_tasks: set[asyncio.Task[None]] = set()
        self._ready = False
        self._feature_store: Any = None
        self._reported_drops = 0
        self.prediction_log: Any = None
        self.request_ids: RequestIds | None = None
        # Every TidalError, raised in any route, is answered with its status and message.
        self.app = Starlette(routes=self._routes(), lifespan=self._lifespan,
                             exception_handlers={TidalError: self._refused})

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        await self.app(scope, receive, send)

    def _routes(self) -> list[Route]:
        h = self._handler
        return [
            Route("/v2/health/live", h(self.live, auth=False), methods=["GET"]),
            Route("/v2/health/ready", h(self.ready, auth=False), methods=["GET"]),
            Route("/v2", h(self.server_metadata), methods=["GET"]),
            Route("/v2/models/{name}", h(self.model_metadata), methods=["GET"]),
            Route("/v2/models/{name}/versions/{version}", h(self.model_metadata),
                  methods=["GET"]),
            Route("/v2/models/{name}/ready", h(self.model_ready), methods=["GET"]),
            Route("/v2/models/{name}/versions/{version}/ready", h(self.model_ready),
                  methods=["GET"]),
            Route("/v2/models/{name}/infer", h(self.infer), methods=["POST"]),
            Route("/v2/models/{name}/versions/{version}/infer", h(self.infer),
                  methods=["POST"]),
            Route("/predict/{name}", h(self.predict), methods=["POST"]),
            Route("/feedback/{name}", h(self.feedback), methods=["POST"]),
            Route("/metrics", h(self.metrics_text), methods=["GET"]),
            Route("/openapi.json", h(self.openapi), methods=["GET"]),
        ]

    def _handler(self, handle: Callable[[Request], Awaitable[Response]], *,
                 auth: bool = True) -> Callable[[Request], Awaitable[Response]]:
        async def endpoint(request: Request) -> Response:
            if auth and self._token is not None:
                self._authorize(request)
            return await handle(request)

        return endpoint

    @staticmethod
    async def _refused(_request: Request, error: TidalError) -> Response:
        return _error(error)

    def _authorize(self, request: Request) -> None:
        header = request.headers.get("authorization", "")
        scheme, _, given = header.partition(" ")
        if scheme.lower() != "bearer" or not hmac.compare_digest(given.strip().encode(),
                                                                 self._token or b""):
            raise UnauthorizedError("this server needs 'Authorization: Bearer <token>' with "
                                    "the token it was started with", field="authorization")

    # -- lifecycle -----------------------------------------------------------------------------

    @asynccontextmanager
    async def _lifespan(self, _app: Any) -> Any:
        await asyncio.to_thread(self.load)
        # Everything loaded so far (libraries, models) lives as long as the worker: moved out
        # of the collector's reach, full collections stop walking it, which would otherwise
        # pause every request for tens of milliseconds now and then.
        gc.collect()
        gc.freeze()
        self._ready = True
        poller = asyncio.get_running_loop().create_task(self._poll_routes())
        try:
            yield
        finally:
            poller.cancel()
            await asyncio.to_thread(self.close)

    def load(self) -> None:
        """Load every served endpoint's models and start the prediction log (blocking)."""
        names = self.settings.endpoints
        endpoints = [get_endpoint(n, workspace=self.workspace) for n in names] if names \
            else list_endpoints(workspace=self.workspace)
        self.request_ids = RequestIds.for_workspace(self.workspace)
        for endpoint in endpoints:
            if not self._quarantined(endpoint.name):  # never loaded: its load may crash
                self._install(self._build(endpoint))
        if self.settings.log_predictions and self.prediction_log is None:
            self.prediction_log = PredictionLog(self.workspace)
            self.prediction_log.start()

    def close(self) -> None:
        if self.prediction_log is not None:
            self.prediction_log.close()
            self._count_drops()
        retiring, self._retiring = self._retiring, {}  # its timers may fire meanwhile
        for model in [*self._held.values(), *retiring.values()]:
            model.close()

    def _build(self, endpoint: Any) -> EndpointState:
        metrics = self.metrics
        return build_state(
            endpoint, self.workspace, trust=self.settings.trust, held=self._held,
            on_load=lambda v, s: metrics.load_seconds.labels(f"{v.name}/{v.version}").observe(s),
            on_batch=lambda v, rows: metrics.batch(f"{v.name}/{v.version}", rows),
            on_outputs=lambda v, rows: metrics.outputs(f"{v.name}/{v.version}", rows),
            marks=None if self.guard is None else self.guard.marks)

    def _quarantined(self, name: str) -> bool:
        return self.guard is not None and self.guard.quarantined(name) is not None

    def _install(self, state: EndpointState) -> None:
        """Swap in a routing table: one assignment, so a request sees the old or the new."""
        for model in state.models():
            key = (model.version.id, *model.settings)
            self._held[key] = model
        self.states[state.name] = state
        in_use = {id(m) for s in self.states.values() for m in s.models()}
        for key, model in list(self._held.items()):
            if id(model) not in in_use:  # requests routed before the swap may still use it
                del self._held[key]
                self._retire(model)

    def _retire(self, model: ServedModel) -> None:
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            model.close()
            return
        self._retiring[id(model)] = model
        loop.call_later(_RETIRE_AFTER_S, self._close_retired, model)

    def _close_retired(self, model: ServedModel) -> None:
        self._retiring.pop(id(model), None)
        model.close()

    async def _poll_routes(self) -> None:
        """Notice deploys, rollbacks and alias moves; rebuild only what changed."""
        while True:
            await asyncio.sleep(self.settings.reload_interval)
            self._count_drops()
            try:
                await self._refresh()
            except Exception as error:  # a store outage must not stop the server
                log.warning("could not refresh the routes: %s", error)

    async def _refresh(self) -> None:
        names = self.settings.endpoints
        if names is None:
            found = await asyncio.to_thread(list_endpoints, workspace=self.workspace)
            names = tuple(e.name for e in found)
        for name in names:
            if self._quarantined(name):  # until the supervisor lifts it, nothing is loaded
                continue
            state = self.states.get(name)
            revision = await asyncio.to_thread(current_revision, name, workspace=self.workspace)
            if revision is None:
                continue
            if state is not None and state.endpoint.revision == revision:
                live, shadows = await asyncio.to_thread(resolve, state.endpoint, self.workspace)
                if tuple(v.id for v in live + shadows) == state.resolved:
                    continue
            endpoint = await asyncio.to_thread(get_endpoint, name, workspace=self.workspace)
            new_state = await asyncio.to_thread(self._build, endpoint)
            self._install(new_state)
            log.info("endpoint %s now at revision %s", name, endpoint.revision)

    def _count_drops(self) -> None:
        if self.prediction_log is None:
            return
        dropped = self.prediction_log.dropped
        if dropped > self._reported_drops:
            self.metrics.log_dropped.inc(dropped - self._reported_drops)
            self._reported_drops = dropped

    # -- request helpers -----------------------------------------------------------------------

    async def _body(self, request: Request, *, binary: bool = False) -> bytes:
        limit = self.settings.max_body_bytes
        length = request.headers.get("content-length")
        if length is not None:
            size = parse_count(length)
            if size is None:
                raise BadRequestError(f"Content-Length {length!r} is not a number",
                                      field="content-length")
            if size > limit:
                raise PayloadTooLargeError(f"the body is {size} bytes; this server "
                                           f"accepts at most {limit}", field="body")
        kind = request.headers.get("content-type", _JSON).split(";", 1)[0].strip().lower()
        if not (kind.endswith("json") or kind in ("", "text/plain")
                or (binary and kind == "application/octet-stream")):
            raise UnsupportedMediaTypeError(f"content type {kind!r} is not accepted; send "
                                            "application/json", field="content-type")
        chunks, size = [], 0
        try:
            async for chunk in request.stream():
                size += len(chunk)
                if size > limit:
                    raise PayloadTooLargeError(f"the body is over {limit} bytes, the most "
                                               "this server accepts", field="body")
                chunks.append(chunk)
        except ClientDisconnect:
            raise ClientGoneError("the connection closed before the whole body arrived",
                                  field="body") from None
        return b"".join(chunks)

    async def _json_body(self, request: Request) -> Any:
        body = await self._body(request)
        try:
            return orjson.loads(body)
        except orjson.JSONDecodeError as error:
            raise BadRequestError(f"the body is not valid JSON: {error}", field="body") \
                from None

    def _state(self, name: str) -> EndpointState:
        quarantine = None if self.guard is None else self.guard.quarantined(name)
        if quarantine is not None:
            raise QuarantinedError(quarantine.message(), field="endpoint")
        state = self.states.get(name)
        if state is None:
            if not self._ready:
                raise NotReadyError("the server is still loading its models", field="endpoint")
            served = ", ".join(sorted(self.states)) or "none"
            raise EndpointNotFoundError(f"endpoint {name!r} is not served here; served: "
                                        f"{served}", field="endpoint")
        return state

    @staticmethod
    def _client_id(request: Request, given: Any) -> str | None:
        """The client's own id for a request (body ``id``, else X-Request-ID), checked: only
        echoed back and logged beside the server's id, never used as one, so no client can
        make two answers share an id."""
        candidate = given if given is not None else request.headers.get("x-request-id")
        if candidate is None:
            return None
        if not isinstance(candidate, str) or not _REQUEST_ID.fullmatch(candidate):
            raise BadRequestError("a request id is 1-128 letters, digits, '.', '_', ':' or "
                                  "'-'", field="id")
        return candidate

    def _request_id(self, state: EndpointState, columns: Columns) -> str:
        """A fresh id that any worker of the workspace can tell it issued (feedback needs
        one)."""
        if self.request_ids is None:
            raise NotReadyError("the server is still loading its models", field="endpoint")
        return self.request_ids.issue(state.name, columns.rows)

    @staticmethod
    def _pick(state: EndpointState, key: Any) -> RouteChoice:
        if key is not None and not isinstance(key, (str, int)):
            raise BadRequestError("'key' must be a string or an integer", field="key")
        if state.sticky and key is None:
            raise BadRequestError(f"endpoint {state.name!r} routes A/B by key: give 'key' "
                                  "(or the X-Tidal-Key header) so one user always gets one "
                                  "variant", field="key")
        return state.pick(None if key is None else str(key))

    async def _features(self, state: EndpointState, columns: Columns) -> Columns:
        """Request columns joined with the endpoint's feature service's online features."""
        service = state.endpoint.config.feature_service
        if service is None:
            return columns
        if self._feature_store is None:
            from tidal.features.store import FeatureStore

            self._feature_store = await asyncio.to_thread(
                FeatureStore.from_registry, workspace=self.workspace,
                trust_code=self.settings.trust_feature_code)
        data = columns.data
        rows = [{name: data[name][i] for name in data} for i in range(columns.rows)]
        found = await asyncio.to_thread(self._feature_store.get_online_features, rows,
                                        service)
        return Columns({**data, **found}, columns.rows)

    async def _run(self, state: EndpointState, choice: RouteChoice, columns: Columns,
                   method: str = "predict") -> list[Any]:
        model = choice.model
        extra = "drop" if state.endpoint.config.feature_service else "refuse"
        checked = check_columns(model.loaded.signature, columns, extra=extra)
        if method not in model.batchers:
            raise BadRequestError(f"{model.uri} has no {method}", field="outputs")
        try:
            return await model.predict(checked, method)
        except TidalError:
            raise
        except (ValueError, TypeError) as error:
            raise ModelInputError(f"{model.uri} could not predict on this input: "
                                  f"{type(error).__name__}: {error}", field="input") from None

    def _log(self, request_id: str, started_ms: int, state: EndpointState, choice: RouteChoice,
             columns: Columns, outputs: list[Any], seconds: float, shadow: bool,
             error: str | None = None, client_id: str | None = None) -> None:
        if self.prediction_log is None:
            return
        sample = state.endpoint.config.log_sample
        inputs = columns.data if sample >= 1.0 or random.random() < sample else None
        version = choice.model.version
        record = PredictionRecord(request_id, started_ms, state.name, choice.route,
                                  version.uri, version.version, shadow, inputs, outputs,
                                  seconds * 1000.0, error, client_id)
        if not self.prediction_log.log(record):
            self.metrics.log_dropped.inc()
            self._reported_drops += 1

    def _shadow(self, state: EndpointState, request_id: str, started_ms: int,
                columns: Columns) -> None:
        """Copy the request to every shadow, off the request path: nothing a shadow does can
        reach the answer."""
        for choice in state.shadows:
            if len(self._shadow_tasks) >= _MAX_SHADOW_TASKS:
                self.metrics.shadow.labels(state.name, choice.route, "dropped").inc()
                continue
            task = asyncio.get_running_loop().create_task(
                self._shadow_one(state, choice, request_id, started_ms, columns))
            self._shadow_tasks.add(task)
            task.add_done_callback(self._shadow_tasks.discard)

    async def _shadow_one(self, state: EndpointState, choice: RouteChoice, request_id: str,
                          started_ms: int, columns: Columns) -> None:
        started = time.perf_counter()
        try:
            outputs = await self._run(state, choice, columns)
        except Exception as error:
            self.metrics.shadow.labels(state.name, choice.route, "error").inc()
            log.debug("shadow %s failed: %s", choice.route, error)
            return
        self.metrics.shadow.labels(state.name, choice.route, "ok").inc()
        self._log(request_id, started_ms, state, choice, columns, outputs,
                  time.perf_counter() - started, True)

    async def _answer(self, state: EndpointState, choice: RouteChoice,
                      columns: Columns, request_id: str, started: float, started_ms: int,
                      method: str = "predict", client_id: str | None = None) -> list[Any]:
        """Predict on the chosen route, copy to shadows, log and count; errors are counted
        and raised for the caller's protocol to answer."""
        metrics = self.metrics
        version = str(choice.model.version.version)
        metrics.in_flight.inc()
        try:
            if state.endpoint.config.feature_service:
                columns = await self._features(state, columns)
            outputs = await self._run(state, choice, columns, method)
        except TidalError as error:
            seconds = time.perf_counter() - started
            metrics.request_done(state.name, choice.route, version, error.status_code, seconds)
            if isinstance(error, ModelInputError):
                self._log(request_id, started_ms, state, choice, columns, [], seconds, False,
                          error.message, client_id)
            raise
        except Exception as error:  # a model bug: answered 500, and logged for monitoring
            seconds = time.perf_counter() - started
            metrics.request_done(state.name, choice.route, version, 500, seconds)
            self._log(request_id, started_ms, state, choice, columns, [], seconds, False,
                      f"{type(error).__name__}: {error}", client_id)
            raise
        finally:
            metrics.in_flight.dec()
        if state.shadows:
            self._shadow(state, request_id, started_ms, columns)
        seconds = time.perf_counter() - started
        metrics.request_done(state.name, choice.route, version, 200, seconds)
        self._log(request_id, started_ms, state, choice, columns, outputs, seconds, False,
                  client_id=client_id)
        return outputs

    def _count_refusal(self, name: str, error: TidalError, started: float) -> None:
        self.metrics.request_done(name, "", "", error.status_code, time.perf_counter() - started)

    # -- simple JSON protocol ------------------------------------------------------------------

    async def predict(self, request: Request) -> Response:
        started = time.perf_counter()
        started_ms = now_ms()
        state = self._state(request.path_params["name"])
        try:
            body = await self._json_body(request)
            key = body.get("key", request.headers.get("x-tidal-key")) \
                if isinstance(body, dict) else None
            choice = self._pick(state, key)
            columns, _ = parse_simple(body, choice.model.loaded.signature,
                                      self.settings.max_rows_per_request)
            client_id = self._client_id(request, body.get("id"))
            request_id = self._request_id(state, columns)
        except TidalError as error:
            self._count_refusal(state.name, error, started)
            raise
        outputs = await self._answer(state, choice, columns, request_id, started,
                                     started_ms, client_id=client_id)
        version = choice.model.version
        echo = {} if client_id is None else {"id": client_id}
        return _json({"request_id": request_id, **echo, "endpoint": state.name,
                      "route": choice.route, "model_uri": version.uri,
                      "model_version": version.version, "predictions": outputs},
                     headers={"x-request-id": request_id})

    async def feedback(self, request: Request) -> Response:
        name = request.path_params["name"]
        state = self._state(name)
        body = await self._json_body(request)
        items = body.get("feedback") if isinstance(body, dict) else body
        if not isinstance(items, list):
            raise BadRequestError("send {'feedback': [{'request_id': ..., 'label': ...}, ...]}",
                                  field="feedback")
        labels = LabelRule.of(name, [model.version.signature for model in state.models()])
        count = await asyncio.to_thread(record_feedback, name, items, workspace=self.workspace,
                                        request_ids=self.request_ids, labels=labels)
        return _json({"endpoint": name, "recorded": count})

    # -- Open Inference Protocol v2 ------------------------------------------------------------

    async def live(self, _request: Request) -> Response:
        return _json({"live": True})

    async def ready(self, _request: Request) -> Response:
        if not self._ready:
            return _json({"ready": False}, 503)
        return _json({"ready": True})

    async def server_metadata(self, _request: Request) -> Response:
        from importlib.metadata import version

        return _json({"name": "tidal", "version": version("tidal-mlops"), "extensions": [
            "binary_tensor_data"]})

    def _model(self, request: Request) -> tuple[EndpointState, ServedModel | None]:
        state = self._state(request.path_params["name"])
        number = request.path_params.get("version")
        if number is None:
            return state, None
        version = parse_count(number)
        model = None if version is None else state.by_version(version)
        if model is None:
            served = ", ".join(str(m.version.version) for m in state.models())
            raise EndpointNotFoundError(f"endpoint {state.name!r} serves no version {number!r};"
                                        f" it serves {served}", field="version")
        return state, model

    async def model_metadata(self, request: Request) -> Response:
        state, pinned = self._model(request)
        model = pinned or state.live[0].model
        inputs, outputs = oip.tensor_metadata(model.loaded.signature, model.loaded.flavor.name)
        versions = sorted({str(m.version.version) for m in state.models()}, key=int)
        return _json({"name": state.name, "versions": versions,
                      "platform": f"tidal-{model.loaded.flavor.name}", "inputs": inputs,
                      "outputs": outputs})

    async def model_ready(self, request: Request) -> Response:
        self._model(request)
        return _json({"name": request.path_params["name"], "ready": True})

    async def infer(self, request: Request) -> Response:
        started = time.perf_counter()
        started_ms = now_ms()
        state, pinned = self._model(request)
        try:
            body = await self._body(request, binary=True)
            payload, binary = oip.split_body(body, request.headers.get(oip.HEADER_LENGTH))
            parameters = payload.get("parameters") if isinstance(payload, dict) else None
            key = (parameters or {}).get("key", request.headers.get("x-tidal-key")) \
                if isinstance(parameters, dict) else None
            choice = RouteChoice(pinned.uri, pinned) if pinned else self._pick(state, key)
            signature = choice.model.loaded.signature
            columns, wanted, given_id, parameters = oip.parse_infer(
                payload, binary, signature, self.settings.max_rows_per_request)
            client_id = self._client_id(request, given_id)
            request_id = self._request_id(state, columns)
            names = [o["name"] for o in wanted] or ["predict"]
            unknown = [n for n in names if n not in ("predict", "predict_proba")]
            if unknown:
                raise BadRequestError(f"unknown output(s) {unknown}; this model gives "
                                      f"{', '.join(choice.model.batchers)}", field="outputs")
        except TidalError as error:
            self._count_refusal(state.name, error, started)
            raise
        results = {}
        for position, name in enumerate(names):
            method_columns = columns
            if position:  # a second output: predicted without logging it twice
                results[name] = await self._run(state, choice, method_columns, name)
            else:
                results[name] = await self._answer(state, choice, method_columns,
                                                   request_id, started, started_ms, name,
                                                   client_id)
        binary_default = bool(parameters.get("binary_data_output"))
        tensors, blobs = [], []
        for name in names:
            asked = next((o for o in wanted if o["name"] == name), {})
            params = asked.get("parameters") or {}
            as_binary = bool(params.get("binary_data", binary_default)) \
                if isinstance(params, dict) else binary_default
            tensor, raw = oip.output_tensor(name, results[name], as_binary)
            tensors.append(tensor)
            blobs.append(raw)
        answer = orjson.dumps({"model_name": state.name,
                               "model_version": str(choice.model.version.version),
                               "id": request_id if client_id is None else client_id,
                               "parameters": {"request_id": request_id}, "outputs": tensors})
        headers = {"x-request-id": request_id}
        if any(blobs):
            headers[oip.HEADER_LENGTH] = str(len(answer))
            return Response(answer + b"".join(blobs), 200, headers=headers,
                            media_type="application/octet-stream")
        return Response(answer, 200, headers=headers, media_type=_JSON)

    # -- metrics and the API's description -----------------------------------------------------

    async def metrics_text(self, _request: Request) -> Response:
        self._count_drops()
        body, content_type = self.metrics.exposition()
        return Response(body, 200, media_type=content_type)

    async def openapi(self, _request: Request) -> Response:
        return _json(openapi_document(self.states))


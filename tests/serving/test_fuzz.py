"""Generated hostile requests, both protocols, feedback, paths and headers: none makes the
server answer 5xx or lets an exception out of the app.

The inputs are valid-shaped requests with the wrong things inside (wrong types, values nested
past Python's recursion limit, huge and non-finite numbers, text in other scripts, binary
tensors whose sizes, offsets and datatypes do not add up, odd paths and header values), not
only random bytes. Most of them run against the real app in this process, over a real
workspace with real registered models (twenty thousand and more in a minute or so); a smaller
share goes to a real ``tidal serve`` over loopback, through uvicorn's own HTTP parser.
"""

from __future__ import annotations

import asyncio
import json
import random
import socket
import urllib.parse
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Self

import httpx
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sklearn.linear_model import LogisticRegression

from tests.serving.conftest import register_ctr
from tests.serving.processes import start_server
from tidal.serving.app import ServerSettings, ServingApp
from tidal.serving.endpoints import deploy
from tidal.serving.oip import HEADER_LENGTH
from tidal.store.workspace import current_workspace

#: Inputs per part: in process (each protocol, feedback, paths and headers), then over loopback.
IN_PROCESS = {"simple": 5000, "infer": 5000, "binary": 3500, "feedback": 2500, "deep": 1500,
              "paths and headers": 2600}
OVER_LOOPBACK = 400
#: Probes built from one Hypothesis example: most of Hypothesis's time goes to each example.
BATCH = 50
MAX_ROWS = 50


@dataclass(frozen=True)
class Raw:
    """JSON text put into a document as it is: values nested deeper than Python can build
    or serialize, long arrays, and literals JSON has no word for."""

    text: str


def to_json(value: Any) -> str:
    """JSON as a careless client writes it: NaN and Infinity as bare words, integers of any
    size, and Raw fragments as given."""
    if isinstance(value, Raw):
        return value.text
    if isinstance(value, dict):
        return "{" + ",".join(f"{json.dumps(str(k))}:{to_json(v)}" for k, v in value.items()) \
            + "}"
    if isinstance(value, list):
        return "[" + ",".join(to_json(v) for v in value) + "]"
    return json.dumps(value)


def _deep(depth: int, kind: str, leaf: Any) -> Raw:
    opening, closing = ("[", "]") if kind == "[" else ('{"a":', "}")
    return Raw(opening * depth + to_json(leaf) + closing * depth)


def _long(count: int, item: Any) -> Raw:
    return Raw("[" + ",".join([to_json(item)] * count) + "]")


@dataclass(frozen=True)
class Probe:
    """One request to send."""

    method: str
    path: bytes
    headers: tuple[tuple[bytes, bytes], ...]
    body: bytes


ODD_TEXT = ["", "lyon", "²", "٣", "１", "0x10", "1e999", "NaN", "-0", "\x00", "\u202e", "é" * 40,
            "\U0001f600", "../../etc", "%00", "a" * 300]
ODD_NUMBERS = [0, -1, 2**31, 2**63 - 1, 2**63, -(2**63) - 1, 2**64 - 1, 2**64, 10**30, 2**70,
               1e308, -0.0, 5e-324, float("nan"), float("inf"), float("-inf"), 0.5]
GOOD = {"age": lambda r: r.randint(18, 90), "income": lambda r: r.uniform(0, 1e6),
        "city": lambda r: r.choice(["paris", "lyon", "nice"]),
        "member": lambda r: r.random() < 0.5}
KINDS = {"age": "INT64", "income": "FP64", "city": "BYTES", "member": "BOOL"}
DATATYPES = ["BOOL", "INT8", "INT16", "INT32", "INT64", "UINT8", "UINT16", "UINT32", "UINT64",
             "FP16", "FP32", "FP64", "BYTES"]
HEADER_VALUES = [b"\xb2", b"\xc2\xb2", b"\xd9\xa3", b"-1", b"1e3", b" 12", b"0x10", b"",
                 b"99999999999999999999999", b"9" * 5000, b"12, 12", b"application/json"]
HEADER_NAMES = [b"content-type", b"content-length", b"inference-header-content-length",
                b"x-request-id", b"x-tidal-key", b"authorization", b"accept"]
CONTENT_TYPES = [b"application/json", b"application/octet-stream", b"text/plain", b"text/csv",
                 b"application/x+json", b"APPLICATION/JSON; charset=latin-1", b""]
VERSIONS = ["1", "2", "01", "²", "٣", "１", "-1", "1e3", "0", "", "9" * 30, "1.0", " 1", "%"]
ENDPOINTS = ["ctr", "vec", "CTR", "nope", "..", "", "ctr\x00", "ç"]
PATHS = ["/v2/models/{name}/versions/{version}/infer", "/v2/models/{name}/versions/{version}",
         "/v2/models/{name}/versions/{version}/ready", "/v2/models/{name}/infer",
         "/v2/models/{name}", "/v2/models/{name}/ready", "/predict/{name}", "/feedback/{name}",
         "/v2", "/v2/health/live", "/v2/health/ready", "/metrics", "/openapi.json", "/{name}"]
RAW_PATHS = [b"/predict/%zz", b"/predict/%", b"/predict/%FF%FE", b"//predict//ctr",
             b"/v2/models/ctr/versions/%C2%B2/infer", b"/predict/ctr%00", b"/predict/ctr?x=%ff",
             b"/v2/models/ctr/versions/%2e%2e/infer", b"/predict/" + b"a" * 2000]
METHODS = ["GET", "POST", "PUT", "DELETE", "HEAD", "OPTIONS", "PATCH"]


class Hostile:
    """Requests built from a random source: valid-shaped, with hostile values in the places a
    parser looks. Hypothesis gives the seed, so a failure names the seed that repeats it; a
    seed makes BATCH requests, since most of Hypothesis's time goes to each example.
    Each method's first choices are the valid ones, so a share of requests reach the model."""

    def __init__(self, rng: random.Random) -> None:
        self.r = rng

    def _pick(self, *makers: Callable[[], Any]) -> Any:
        return self.r.choice(makers)()

    def text(self) -> str:
        r = self.r
        if r.random() < 0.5:
            return r.choice(ODD_TEXT)
        return "".join(chr(r.choice([r.randint(32, 126), r.randint(0, 0x2FFF),
                                     r.randint(0x10000, 0x10FFFF)]))
                       for _ in range(r.randint(0, 8)))

    def scalar(self) -> Any:
        r = self.r
        return self._pick(lambda: None, lambda: r.random() < 0.5, lambda: r.choice(ODD_NUMBERS),
                          lambda: r.randint(-(2**70), 2**70), lambda: r.uniform(-1e9, 1e9),
                          self.text)

    def value(self, depth: int = 3) -> Any:
        if depth == 0 or self.r.random() < 0.5:
            return self.scalar()
        size = self.r.randint(0, 3)
        if self.r.random() < 0.5:
            return [self.value(depth - 1) for _ in range(size)]
        return {self.text(): self.value(depth - 1) for _ in range(size)}

    def deep(self) -> Raw:
        """Nested past what Python's recursion allows (about 1,000), and past orjson's 1,024."""
        depth = self.r.choice([self.r.randint(1, 64), self.r.randint(900, 1100)])
        opening, closing = ("[", "]") if self.r.random() < 0.5 else ('{"a":', "}")
        return Raw(opening * depth + to_json(self.scalar()) + closing * depth)

    def long(self) -> Raw:
        return Raw("[" + ",".join([to_json(self.scalar())] * self.r.randint(
            MAX_ROWS - 2, 4 * MAX_ROWS)) + "]")

    def hostile(self) -> Any:
        return self._pick(self.scalar, self.value, self.value, self.deep, self.long)

    def good_or_hostile(self, column: str) -> Any:
        return GOOD[column](self.r) if self.r.random() < 0.85 else self.hostile()

    def name(self) -> str:
        return self.r.choice([*GOOD, "zip", "input"]) if self.r.random() < 0.7 else self.text()

    def record(self) -> Any:
        return self._pick(lambda: {k: self.good_or_hostile(k) for k in GOOD},
                          lambda: {k: self.good_or_hostile(k) for k in GOOD},
                          lambda: {self.name(): self.hostile() for _ in range(self.r.randint(0, 5))},
                          self.hostile)

    def simple_body(self) -> Any:
        r = self.r
        rows = r.randint(1, 4)
        body = self._pick(
            lambda: {"records": [self.record() for _ in range(rows)]},
            lambda: {"records": self.hostile()},
            lambda: {"columns": {k: [self.good_or_hostile(k) for _ in range(rows)]
                                 for k in GOOD}},
            lambda: {"columns": {self.name(): self._pick(self.hostile, lambda: [
                self.hostile() for _ in range(rows)]) for _ in range(r.randint(0, 4))}},
            lambda: {"instances": [[r.uniform(-5, 5) for _ in range(3)] for _ in range(rows)]},
            lambda: {"instances": self._pick(self.hostile, lambda: [
                [self.hostile() for _ in range(r.randint(0, 4))] for _ in range(rows)])},
            self.hostile)
        if isinstance(body, dict):
            for extra in ("key", "id", "rows"):
                if r.random() < 0.15:
                    body[extra] = self._pick(self.hostile, lambda: r.choice(["r-1", "../x"]))
        return body

    def shape(self) -> Any:
        r = self.r
        return self._pick(lambda: [r.randint(0, 5) for _ in range(r.randint(1, 3))],
                          lambda: [r.randint(-(2**65), 2**65) for _ in range(r.randint(0, 40))],
                          self.hostile)

    def datatype(self) -> Any:
        return self.r.choice(DATATYPES) if self.r.random() < 0.8 else self.hostile()

    def size(self) -> Any:
        r = self.r
        return self._pick(lambda: r.randint(-8, 64), lambda: r.choice([2**31, 2**63, 2**64 - 1]),
                          self.hostile)

    def tensor(self) -> dict[str, Any]:
        r = self.r
        tensor: dict[str, Any] = {}
        for key, make in (("name", lambda: self.name() if r.random() < 0.8 else self.hostile()),
                          ("datatype", self.datatype), ("shape", self.shape),
                          ("data", lambda: self._pick(
                              lambda: [self.scalar() for _ in range(r.randint(0, 6))],
                              lambda: [[self.scalar() for _ in range(3)] for _ in range(2)],
                              self.hostile)),
                          ("parameters", lambda: self._pick(
                              lambda: {"binary_data_size": self.size()}, self.hostile))):
            if r.random() < 0.85:
                tensor[key] = make()
        return tensor

    def good_tensors(self) -> list[dict[str, Any]]:
        rows = self.r.randint(1, 3)
        return [{"name": k, "datatype": KINDS[k], "shape": [rows],
                 "data": [self.good_or_hostile(k) for _ in range(rows)]} for k in GOOD]

    def outputs(self) -> Any:
        r = self.r
        return self._pick(lambda: [{"name": r.choice(["predict", "predict_proba", "logits"]),
                                    "parameters": {"binary_data": self.hostile()}}
                                   for _ in range(r.randint(0, 3))], self.hostile)

    def infer_body(self) -> Any:
        r = self.r
        body: dict[str, Any] = {"inputs": self._pick(
            self.good_tensors, self.good_tensors,
            lambda: [self.tensor() for _ in range(r.randint(0, 5))], self.hostile)}
        for key, make in (("outputs", self.outputs), ("id", self.hostile), ("parameters", lambda:
                          self._pick(lambda: {"binary_data_output": self.hostile(),
                                              "key": self.hostile()}, self.hostile))):
            if r.random() < 0.25:
                body[key] = make()
        return body

    def header_value(self) -> bytes:
        r = self.r
        if r.random() < 0.5:
            return r.choice(HEADER_VALUES)
        return bytes(c for c in r.randbytes(r.randint(0, 24)) if c not in b"\r\n\x00")

    def number_header(self) -> bytes:
        return str(self.r.randint(-5, 5000)).encode() if self.r.random() < 0.5 \
            else self.header_value()

    def feedback_body(self) -> Any:
        r = self.r
        item = lambda: {k: make() for k, make in (
            ("request_id", lambda: self._pick(self.text, self.hostile)),
            ("label", self.hostile), ("weight", self.hostile)) if r.random() < 0.8}
        return self._pick(lambda: {"feedback": [item() for _ in range(r.randint(0, 4))]},
                          lambda: {"feedback": self.hostile()},
                          lambda: [item() for _ in range(r.randint(0, 3))], self.hostile)

    def path(self) -> bytes:
        r = self.r
        if r.random() < 0.15:
            return r.choice(RAW_PATHS)

        def segment(options: list[str]) -> bytes:
            text = r.choice(options) if r.random() < 0.7 else self.text()
            return urllib.parse.quote(text, safe="").encode()

        return r.choice(PATHS).format(name="\x00N", version="\x00V").encode() \
            .replace(b"\x00N", segment(ENDPOINTS)).replace(b"\x00V", segment(VERSIONS))

    # -- whole requests, one kind per part of the fuzz ----------------------------------------

    def _json(self, path: bytes, body: Any, *headers: tuple[bytes, bytes]) -> Probe:
        return Probe("POST", path, ((b"content-type", b"application/json"), *headers),
                     to_json(body).encode())

    def simple(self) -> Probe:
        return self._json(self.r.choice([b"/predict/ctr", b"/predict/vec"]), self.simple_body())

    def infer(self) -> Probe:
        headers = [(b"x-tidal-key", self.header_value())] if self.r.random() < 0.1 else []
        return self._json(self.r.choice([b"/v2/models/ctr/infer", b"/v2/models/vec/infer",
                                         b"/v2/models/ctr/versions/2/infer"]),
                          self.infer_body(), *headers)

    def good_binary(self) -> tuple[list[dict[str, Any]], bytes]:
        """ctr's four columns as Triton's clients send them, one size now and then wrong."""
        r = self.r
        rows = r.randint(1, 3)
        cities = [GOOD["city"](r).encode() for _ in range(rows)]
        raws = {"age": np.array([GOOD["age"](r) for _ in range(rows)], "int64").tobytes(),
                "income": np.array([GOOD["income"](r) for _ in range(rows)]).tobytes(),
                "city": b"".join(len(c).to_bytes(4, "little") + c for c in cities),
                "member": np.array([GOOD["member"](r) for _ in range(rows)]).tobytes()}
        tensors = [{"name": k, "datatype": KINDS[k], "shape": [rows],
                    "parameters": {"binary_data_size": len(raws[k])}} for k in GOOD]
        if r.random() < 0.3:
            r.choice(tensors)["parameters"]["binary_data_size"] += r.randint(-9, 9)
        return tensors, b"".join(raws.values())

    def binary(self) -> Probe:
        """Triton's binary tensor extension: a JSON header whose tensors say how many of the
        bytes after it are theirs, and its length in Inference-Header-Content-Length."""
        r = self.r
        if r.random() < 0.4:
            tensors, blob = self.good_binary()
        else:
            tensors = [{"name": r.choice([*GOOD, "input", "x"]), "datatype": self.datatype(),
                        "shape": self.shape(), "parameters": {"binary_data_size": self.size()}}
                       for _ in range(r.randint(1, 4))]
            blob = self._pick(lambda: r.randbytes(r.randint(0, 80)),
                              lambda: np.arange(r.randint(0, 8), dtype="float64").tobytes())
        header: dict[str, Any] = {"inputs": tensors}
        if r.random() < 0.2:
            header["outputs"] = self.outputs()
        if r.random() < 0.2:
            header["parameters"] = {"binary_data_output": r.random() < 0.5}
        text = to_json(header).encode()
        length = str(max(0, len(text) + r.choice([0, 0, r.randint(-10, 10)]))).encode() \
            if r.random() < 0.7 else self.number_header()
        return Probe("POST", r.choice([b"/v2/models/ctr/infer", b"/v2/models/vec/infer",
                                       b"/v2/models/ctr/versions/1/infer"]),
                     ((b"content-type", r.choice([b"application/octet-stream",
                                                  b"application/json"])),
                      (HEADER_LENGTH.encode(), length)), text + blob)

    def feedback(self) -> Probe:
        return self._json(self.r.choice([b"/feedback/ctr", b"/feedback/vec"]),
                          self.feedback_body())

    def nested(self) -> Probe:
        d = self.deep()
        path, body = self.r.choice([
            (b"/predict/ctr", d), (b"/predict/ctr", {"records": [{**GOOD_ROW, "age": d}]}),
            (b"/predict/ctr", {"columns": {"age": d}}), (b"/predict/vec", {"instances": d}),
            (b"/v2/models/ctr/infer", {"inputs": [{"name": "age", "datatype": "INT64",
                                                   "shape": [1], "data": d}]}),
            (b"/v2/models/vec/infer", {"inputs": [{"name": "input", "datatype": "FP64",
                                                   "shape": [1, 3], "data": d}]}),
            (b"/feedback/ctr", {"feedback": [{"request_id": "r", "label": d}]})])
        return self._json(path, body)

    def odd(self) -> Probe:
        r = self.r
        headers = tuple((r.choice(HEADER_NAMES), r.choice(CONTENT_TYPES) if r.random() < 0.3
                         else self.header_value()) for _ in range(r.randint(0, 4)))
        body = self._pick(lambda: to_json(self.simple_body()).encode(),
                          lambda: to_json(self.infer_body()).encode(),
                          lambda: r.randbytes(r.randint(0, 64)))
        return Probe(r.choice(METHODS), self.path(), headers, body)


GOOD_ROW = {"age": 40, "income": 52000.5, "city": "lyon", "member": True}
PARTS: dict[str, Callable[[Hostile], Probe]] = {
    "simple": Hostile.simple, "infer": Hostile.infer, "binary": Hostile.binary,
    "feedback": Hostile.feedback, "deep": Hostile.nested, "paths and headers": Hostile.odd}


def probes(rng: random.Random, part: str | None = None) -> Iterator[Probe]:
    """BATCH probes of one part (or of any part) from one random source."""
    make = Hostile(rng)
    for _ in range(BATCH):
        yield PARTS[part or rng.choice(list(PARTS))](make)


class InProcess:
    """The app called as uvicorn calls it, on an event loop of the test's own: its lifespan
    (models loaded, routes polled) runs first, and an exception leaving the app is raised
    here rather than answered 500."""

    def __init__(self, app: ServingApp) -> None:
        self.app = app
        self.loop = asyncio.new_event_loop()
        self.client = httpx.AsyncClient(transport=httpx.ASGITransport(app=app),
                                        base_url="http://fuzz")
        self._events: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        self._replies: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        self._lifespan: asyncio.Task[None] | None = None

    def _lifecycle(self, event: str) -> None:
        async def step() -> None:
            if self._lifespan is None:
                self._lifespan = asyncio.create_task(self.app(
                    {"type": "lifespan", "asgi": {"version": "3.0"}, "state": {}},
                    self._events.get, self._replies.put))
            await self._events.put({"type": f"lifespan.{event}"})
            reply = await asyncio.wait_for(self._replies.get(), 120)
            assert reply["type"] == f"lifespan.{event}.complete", reply

        self.loop.run_until_complete(step())

    def __enter__(self) -> Self:
        self._lifecycle("startup")
        return self

    def __exit__(self, *exc: object) -> None:
        self.loop.run_until_complete(self.client.aclose())
        self._lifecycle("shutdown")
        self.loop.close()

    def send(self, probe: Probe) -> int:
        url = httpx.URL("http://fuzz", raw_path=probe.path)
        request = self.client.build_request(probe.method, url, headers=list(probe.headers),
                                            content=probe.body)
        return self.loop.run_until_complete(self.client.send(request)).status_code


def _register_vec() -> None:
    import tidal

    rng = np.random.default_rng(3)
    matrix = rng.normal(size=(60, 3))
    tidal.models.register("vec", LogisticRegression().fit(matrix, matrix[:, 0] > 0),
                          signature={"inputs": {"tensor": {"dtype": "float64",
                                                           "shape": [-1, 3]}}}, run=False)


@pytest.fixture
def served_models(tmp_path) -> Path:
    """A workspace with a table model (ctr, a shadow beside it) and a tensor model (vec)."""
    import tidal

    tidal.workspace(tmp_path / "ws")
    register_ctr()
    _register_vec()
    deploy("ctr", {"models:/ctr/1": 100}, shadow=["models:/ctr/2"], max_wait_ms=0)
    deploy("vec", {"models:/vec/1": 100}, max_wait_ms=0)
    return tmp_path / "ws"


@pytest.fixture
def in_process(served_models) -> Iterator[InProcess]:
    app = ServingApp(current_workspace(), ServerSettings(
        max_body_bytes=256 * 1024, max_rows_per_request=MAX_ROWS, reload_interval=0.5))
    with InProcess(app) as running:
        yield running


def _fuzz(part: str | None, inputs: int, check: Callable[[Probe], None]) -> None:
    """Run ``check`` on at least ``inputs`` probes of a part, BATCH to a Hypothesis example."""
    @settings(max_examples=-(-inputs // BATCH), deadline=None, database=None,
              suppress_health_check=list(HealthCheck))
    @given(st.integers(0, 2**64))
    def run(seed: int) -> None:
        for probe in probes(random.Random(seed), part):
            check(probe)

    run()


def test_generated_hostile_requests_never_get_a_server_error(in_process):
    seen: Counter[str] = Counter()
    statuses: Counter[int] = Counter()
    for part in PARTS:
        def check(probe: Probe, part: str = part) -> None:
            seen[part] += 1
            try:
                status = in_process.send(probe)
            except Exception as error:  # out of the app: a server error, with its input
                raise AssertionError(f"{type(error).__name__} for {probe!r}") from error
            statuses[status] += 1
            assert status < 500, (status, probe)

        _fuzz(part, IN_PROCESS[part], check)
    assert sum(seen.values()) >= 20_000, seen
    assert all(seen[part] >= IN_PROCESS[part] for part in PARTS), seen
    # Hostile, not hopeless: the generated requests reach the models as well as the checks.
    refused = sum(n for status, n in statuses.items() if 400 <= status < 500)
    assert statuses[200] >= 500 and refused >= 10_000, statuses


def _http(probe: Probe) -> bytes:
    body = probe.body
    lines = [probe.method.encode() + b" " + probe.path + b" HTTP/1.1", b"host: fuzz",
             b"connection: close", b"content-length: " + str(len(body)).encode()]
    lines += [name + b": " + value for name, value in probe.headers
              if name not in (b"content-length", b"transfer-encoding", b"expect")]
    return b"\r\n".join(lines) + b"\r\n\r\n" + body


def _status(port: int, request: bytes) -> int | None:
    """The status of the answer to raw request bytes, or None if the server closed without
    one (which it may do for bytes that are not HTTP)."""
    with socket.create_connection(("127.0.0.1", port), timeout=30) as conn:
        conn.sendall(request)
        conn.shutdown(socket.SHUT_WR)
        answer = b""
        while b"\r\n" not in answer:
            chunk = conn.recv(4096)
            if not chunk:
                break
            answer += chunk
    parts = answer.split(b" ", 2)
    return int(parts[1]) if len(parts) > 1 and parts[0].startswith(b"HTTP/") else None


MUTATIONS: list[Callable[[bytes], bytes]] = [
    lambda r: r, lambda r: r, lambda r: r,
    lambda r: r.replace(b"HTTP/1.1", b"HTTP/9.9", 1),
    lambda r: r.replace(b"host: fuzz", b"host: \xb2\xff", 1),
    lambda r: r.replace(b"\r\n", b"\n"),
    lambda r: r.replace(b"connection: close", b"x-\xb2: \xc2\xb2\r\nconnection: close", 1),
    lambda r: r.replace(b" /", b" /\xff", 1)]


def test_a_real_server_parses_generated_hostile_requests_without_a_server_error(
        served_models, tmp_path):
    served = start_server(served_models, "--max-rows-per-request", str(MAX_ROWS),
                          stderr=tmp_path / "stderr.txt")
    answered: Counter[int | None] = Counter()
    try:
        def check(probe: Probe) -> None:
            request = random.Random(len(probe.body)).choice(MUTATIONS)(_http(probe))
            status = _status(served.port, request)
            answered[status] += 1
            assert status is None or status < 500, (status, request)

        _fuzz(None, OVER_LOOPBACK, check)
        assert httpx.get(f"{served.url}/v2/health/ready", timeout=10).status_code == 200
    finally:
        served.stop()
    assert sum(answered.values()) >= OVER_LOOPBACK
    assert answered[None] < OVER_LOOPBACK // 4, answered  # nearly every request was answered
    assert "Exception in ASGI application" not in served.log()
    assert "Traceback" not in served.log()

"""The limits that keep clients from holding a server: slow headers, slow bodies and idle
connections are closed within their timeouts while other clients keep getting answers; a
worker serves at most ``max_connections`` connections; a request of more rows than
``max_rows_per_request`` is refused before it is read; and bad values of these settings are
refused by name."""

from __future__ import annotations

import math
import selectors
import socket
import threading
import time
from dataclasses import dataclass, field

import httpx
import pytest

import tidal
from tests.serving.conftest import records, register_ctr, wait_until
from tests.serving.processes import start_server
from tidal.errors import InvalidValueError
from tidal.serving.app import ServerSettings
from tidal.serving.endpoints import deploy

HEADER_S, BODY_S, IDLE_S = 2.0, 2.0, 3.0
#: A timeout fires on the server's event loop, which may be busy for a moment; and the test's
#: own loop notices the close a moment later.
MARGIN_S = 2.5
PER_KIND = 45  # 4 kinds: 180 slow connections, plus the normal client's


@pytest.fixture
def ctr_workspace(tmp_path):
    tidal.workspace(tmp_path / "ws")
    found = register_ctr()
    deploy("ctr", {"models:/ctr/1": 100})
    return tmp_path / "ws", found


@dataclass
class Slow:
    """A raw connection that misbehaves one way, and when the server closed it."""

    kind: str
    sock: socket.socket
    clock: float  # when the timeout that should close it started
    closed: float | None = None
    received: bytes = b""
    sends: list[bytes] = field(default_factory=list)  # what is still to send, one a beat


def _connect(port: int) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", port), timeout=10)
    sock.setblocking(False)
    return sock


def _open(port: int, kind: str) -> Slow:
    sock = _connect(port)
    start = time.monotonic()
    if kind == "headers":  # a header byte every half second, never the end of the headers
        sock.send(b"POST /predict/ctr HTTP/1.1\r\nhost: x\r\n")
        return Slow(kind, sock, start, sends=[b"x"] * 40)
    if kind == "body":  # the headers, part of the body, then nothing
        sock.send(b"POST /predict/ctr HTTP/1.1\r\nhost: x\r\ncontent-type: application/json"
                  b"\r\ncontent-length: 1000\r\n\r\n{\"records\": [")
        return Slow(kind, sock, start)
    if kind == "idle-after-answer":  # one request, answered, then nothing
        sock.send(b"GET /v2/health/live HTTP/1.1\r\nhost: x\r\n\r\n")
        return Slow(kind, sock, start)
    return Slow(kind, sock, start)  # idle: connected, never a byte


def _watch(slow: list[Slow], deadline: float) -> None:
    """Drive the slow clients until the server has closed them all (or the deadline)."""
    selector = selectors.DefaultSelector()
    for conn in slow:
        selector.register(conn.sock, selectors.EVENT_READ, conn)
    next_beat = time.monotonic() + 0.5
    while selector.get_map() and time.monotonic() < deadline:
        for key, _ in selector.select(timeout=0.1):
            conn: Slow = key.data
            try:
                chunk = conn.sock.recv(65536)
            except ConnectionError:
                chunk = b""
            if chunk:
                conn.received += chunk
                if conn.kind == "idle-after-answer" and conn.received.endswith(b"}"):
                    conn.clock = time.monotonic()  # idle from the end of the answer
                continue
            conn.closed = time.monotonic()
            selector.unregister(conn.sock)
            conn.sock.close()
        if time.monotonic() >= next_beat:
            next_beat += 0.5
            for conn in slow:
                if conn.closed is None and conn.sends:
                    try:
                        conn.sock.send(conn.sends.pop())
                    except OSError:
                        pass  # closed by the server: the read above records when
    for key in list(selector.get_map().values()):
        key.fileobj.close()  # type: ignore[union-attr]


class SteadyClient(threading.Thread):
    """A well-behaved client asking for predictions all along; every answer must be 200."""

    def __init__(self, url: str, body: dict) -> None:
        super().__init__(daemon=True)
        self.url, self.body = url, body
        self.statuses: list[int] = []
        self.stop = threading.Event()

    def run(self) -> None:
        with httpx.Client(base_url=self.url, timeout=10) as client:
            while not self.stop.is_set():
                try:
                    self.statuses.append(client.post("/predict/ctr", json=self.body)
                                         .status_code)
                except httpx.HTTPError as error:
                    self.statuses.append(-1)
                    print(f"the steady client failed: {error!r}")
                time.sleep(0.05)


def test_slow_and_idle_connections_are_closed_in_time_while_others_are_answered(
        ctr_workspace, tmp_path):
    path, ctr = ctr_workspace
    served = start_server(path, "--header-timeout", str(HEADER_S), "--body-timeout",
                          str(BODY_S), "--idle-timeout", str(IDLE_S),
                          stderr=tmp_path / "stderr.txt")
    steady = SteadyClient(served.url, {"records": records(ctr["frame"].head(3))})
    try:
        steady.start()
        slow = [_open(served.port, kind) for kind in ("headers", "body", "idle",
                                                      "idle-after-answer")
                for _ in range(PER_KIND)]
        started = time.monotonic()
        _watch(slow, started + 25)
        steady.stop.set()
        steady.join(15)
    finally:
        served.stop()
    limits = {"headers": HEADER_S, "body": BODY_S, "idle": IDLE_S, "idle-after-answer": IDLE_S}
    for conn in slow:
        assert conn.closed is not None, f"a {conn.kind} connection was never closed"
        held = conn.closed - conn.clock
        assert limits[conn.kind] - 0.5 <= held <= limits[conn.kind] + MARGIN_S, (
            conn.kind, held)
    late_headers = [c for c in slow if c.kind == "headers"]
    assert all(c.received.startswith(b"HTTP/1.1 408") for c in late_headers)
    assert all(b"200 OK" in c.received for c in slow if c.kind == "idle-after-answer")
    assert len(steady.statuses) >= 20 and set(steady.statuses) == {200}, steady.statuses
    assert "Exception in ASGI application" not in served.log()  # a cut body is no crash


def test_a_body_that_keeps_coming_is_not_cut_by_the_body_timeout(ctr_workspace, tmp_path):
    """The body timeout is between pieces of the body, not for all of it."""
    path, ctr = ctr_workspace
    served = start_server(path, "--body-timeout", "1", stderr=tmp_path / "stderr.txt")
    body = httpx.Request("POST", "/", json={"records": records(ctr["frame"].head(2))}).content
    try:
        with socket.create_connection(("127.0.0.1", served.port), timeout=10) as sock:
            sock.sendall(b"POST /predict/ctr HTTP/1.1\r\nhost: x\r\ncontent-type: "
                         b"application/json\r\ncontent-length: %d\r\n\r\n" % len(body))
            pieces = 4
            for i in range(pieces):  # 2.4 s in all, 0.6 s apart
                time.sleep(0.6)
                sock.sendall(body[i * len(body) // pieces:(i + 1) * len(body) // pieces])
            answer = sock.recv(65536)
    finally:
        served.stop()
    assert answer.startswith(b"HTTP/1.1 200"), answer


def test_a_worker_serves_at_most_max_connections(ctr_workspace, tmp_path):
    path, _ = ctr_workspace
    served = start_server(path, "--max-connections", "20", stderr=tmp_path / "stderr.txt")
    held: list[socket.socket] = []
    try:
        held = [socket.create_connection(("127.0.0.1", served.port)) for _ in range(19)]
        assert httpx.get(f"{served.url}/v2/health/live").status_code == 200  # the 20th
        held.append(socket.create_connection(("127.0.0.1", served.port)))
        refused = httpx.get(f"{served.url}/v2/health/live")
        assert refused.status_code == 503, refused.text  # the 21st
        for sock in held[:5]:
            sock.close()
        wait_until(lambda: httpx.get(f"{served.url}/v2/health/live").status_code == 200,
                   what="room for a connection again")
    finally:
        for sock in held:
            sock.close()
        served.stop()


def test_requests_over_max_rows_are_refused_before_they_are_read(ctr_workspace, serve):
    path, ctr = ctr_workspace
    running = serve(tidal.workspace(path), max_rows_per_request=100,
                    max_body_bytes=8 * 1024 * 1024)
    rows = records(ctr["frame"].head(1)) * 101
    over = running.post("/predict/ctr", json={"records": rows})
    assert over.status_code == 413
    assert "101 rows" in over.json()["error"] and "max_rows_per_request" in \
        over.json()["error"]
    assert running.post("/predict/ctr", json={"records": rows[:100]}).status_code == 200
    huge = running.post("/predict/ctr", json={"columns": {"age": [40] * 500_000}})
    assert huge.status_code == 413 and "500000 rows" in huge.json()["error"]
    tensors = [{"name": "age", "datatype": "INT64", "shape": [101], "data": [40] * 101}]
    infer = running.post("/v2/models/ctr/infer", json={"inputs": tensors})
    assert infer.status_code == 413 and "max_rows_per_request" in infer.json()["error"]
    assert infer.json()["field"] == "inputs"


@pytest.mark.parametrize(("name", "bad"), [
    ("header_timeout", 0), ("header_timeout", -1.0), ("header_timeout", math.nan),
    ("header_timeout", "10"), ("body_timeout", 0.0), ("body_timeout", math.inf),
    ("idle_timeout", 0), ("idle_timeout", True), ("max_connections", 0),
    ("max_connections", 2.5), ("max_connections", True), ("max_rows_per_request", 0),
    ("max_rows_per_request", -5), ("max_rows_per_request", 10**12),
])
def test_bad_limit_values_are_refused_naming_the_setting(name, bad):
    with pytest.raises(InvalidValueError, match=name) as caught:
        ServerSettings(**{name: bad})
    assert caught.value.field == name


def test_the_defaults_are_sane():
    settings = ServerSettings()
    assert 1 <= settings.header_timeout <= 60 and 1 <= settings.body_timeout <= 120
    assert 5 < settings.idle_timeout <= 300  # longer than clients keep idle connections
    assert 100 <= settings.max_connections <= 100_000
    assert settings.max_rows_per_request == 10_000

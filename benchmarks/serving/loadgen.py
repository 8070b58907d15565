"""A fixed-rate HTTP load generator for the serving benchmark, in the manner of wrk2 (which
Debian does not package): it POSTs one JSON body at a constant rate over keep-alive
connections and measures each response's latency from the time the request was due, not
from the time it was sent, so a slow server cannot hide its queueing by slowing the load
down (no coordinated omission).

    python benchmarks/serving/loadgen.py --url http://127.0.0.1:PORT/PATH --body FILE \\
        --rate 1000 [--connections 16] [--duration 15] [--warmup 3] [--timeout 2]

Each of the ``--connections`` connections sends every ``connections / rate`` seconds, the
connections' schedules evenly interleaved; a connection has one request in flight at most,
so when a response comes late its next request goes as soon as the response is in, and its
latency still counts from when it was due. Requests due in the first ``--warmup`` seconds
are sent but not counted. Prints one JSON object: the achieved rate, the latency
percentiles (from the due time, and from the send time), how late the requests were sent
(all of them, and those due while their connection was idle, whose lateness is the
generator's own), errors (non-2xx answers, socket errors, timeouts) and the CPU this process
used, which show whether the generator kept up.

Runs on uvloop where it is installed, plain asyncio otherwise; 127.0.0.1 only in this
benchmark.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import re
import resource
import sys
import time
from typing import Any
from urllib.parse import urlsplit

CONTENT_LENGTH = re.compile(rb"\r\ncontent-length:[ \t]*(\d+)", re.IGNORECASE)
CHUNKED = re.compile(rb"\r\ntransfer-encoding:[^\r\n]*chunked", re.IGNORECASE)


class Connection(asyncio.Protocol):
    """One keep-alive HTTP/1.1 connection with at most one request in flight."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.buffer = bytearray()
        self.waiter: asyncio.Future[tuple[int, float]] | None = None
        self.closed = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        if self.waiter is None or self.waiter.done():
            return
        status = self._complete()
        if status is not None:
            self.waiter.set_result((status, time.perf_counter()))

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        if self.waiter is not None and not self.waiter.done():
            self.waiter.set_exception(ConnectionError("connection closed by the server"))

    def _complete(self) -> int | None:
        """The status of the response in the buffer once it is whole (and drop it)."""
        end = self.buffer.find(b"\r\n\r\n")
        if end < 0:
            return None
        head = bytes(self.buffer[:end + 2])
        match = CONTENT_LENGTH.search(head)
        if match is not None:
            total = end + 4 + int(match.group(1))
        elif CHUNKED.search(head):
            last = self.buffer.find(b"0\r\n\r\n", end + 4)
            if last < 0:
                return None
            total = last + 5
        else:
            raise ValueError("response without Content-Length or chunked encoding")
        if len(self.buffer) < total:
            return None
        del self.buffer[:total]
        return int(head[9:12])

    def request(self, payload: bytes) -> asyncio.Future[tuple[int, float]]:
        assert self.transport is not None
        self.waiter = asyncio.get_running_loop().create_future()
        self.transport.write(payload)
        return self.waiter


def percentile(values: list[float], q: float) -> float:
    """The q-th percentile (nearest rank) of sorted ``values``."""
    if not values:
        return math.nan
    rank = max(1, math.ceil(q / 100 * len(values)))
    return values[min(rank, len(values)) - 1]


async def run(args: argparse.Namespace, payload: bytes) -> dict[str, Any]:
    loop = asyncio.get_running_loop()
    parts = urlsplit(args.url)
    host, port = parts.hostname or "127.0.0.1", parts.port or 80
    interval = 1.0 / args.rate
    period = args.connections * interval
    total = args.warmup + args.duration
    due_latency: list[float] = []
    sent_latency: list[float] = []
    lag: list[float] = []
    own_lag: list[float] = []  # requests due while their connection was idle: the generator's
    errors = {"non2xx": 0, "socket": 0, "timeout": 0}
    statuses: dict[int, int] = {}
    counted = 0

    async def connect() -> Connection:
        _, protocol = await loop.create_connection(Connection, host, port)
        return protocol  # type: ignore[return-value]

    connections = [await connect() for _ in range(args.connections)]
    # perf_counter, not loop.time(): uvloop's clock ticks in whole milliseconds.
    start = time.perf_counter() + 0.05
    cpu_start = time.process_time()

    async def drive(index: int) -> None:
        nonlocal counted
        connection = connections[index]
        free_since = 0.0  # when this connection's last response came in
        for k in range(math.ceil(total / period) + 1):
            due = start + index * interval + k * period
            if due >= start + total:
                return
            delay = due - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            if connection.closed:
                try:
                    connection = await connect()
                except OSError:
                    if due >= start + args.warmup:
                        errors["socket"] += 1
                    continue
            sent = time.perf_counter()
            try:
                status, done = await asyncio.wait_for(connection.request(payload),
                                                      args.timeout)
            except asyncio.TimeoutError:
                if due >= start + args.warmup:
                    errors["timeout"] += 1
                connection.closed = True
                if connection.transport is not None:
                    connection.transport.abort()
                free_since = time.perf_counter()
                continue
            except (ConnectionError, OSError, ValueError):
                if due >= start + args.warmup:
                    errors["socket"] += 1
                connection.closed = True
                free_since = time.perf_counter()
                continue
            idle = free_since <= due
            free_since = done
            if due < start + args.warmup:
                continue
            counted += 1
            if idle:
                own_lag.append(sent - due)
            statuses[status] = statuses.get(status, 0) + 1
            if not 200 <= status < 300:
                errors["non2xx"] += 1
            due_latency.append(done - due)
            sent_latency.append(done - sent)
            lag.append(sent - due)

    await asyncio.gather(*(drive(index) for index in range(args.connections)))
    wall = time.perf_counter() - start
    cpu = time.process_time() - cpu_start
    for connection in connections:
        if connection.transport is not None:
            connection.transport.close()
    due_latency.sort()
    sent_latency.sort()
    lag.sort()
    own_lag.sort()
    return {
        "rate": args.rate, "connections": args.connections, "duration_s": args.duration,
        "warmup_s": args.warmup, "requests": counted,
        "achieved_rate": counted / args.duration,
        "latency_s": {f"p{q:g}": percentile(due_latency, q) for q in (50, 90, 99, 99.9)}
        | {"max": due_latency[-1] if due_latency else math.nan},
        "service_latency_s": {f"p{q:g}": percentile(sent_latency, q) for q in (50, 99)},
        "send_lag_s": {f"p{q:g}": percentile(lag, q) for q in (50, 99)}
        | {"max": lag[-1] if lag else math.nan},
        "own_send_lag_s": {f"p{q:g}": percentile(own_lag, q) for q in (50, 99)}
        | {"max": own_lag[-1] if own_lag else math.nan, "requests": len(own_lag)},
        "errors": errors, "statuses": {str(k): v for k, v in sorted(statuses.items())},
        "cpu_share": cpu / wall if wall > 0 else math.nan,
        "max_rss_kib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss,
        "loop": type(loop).__module__.split(".")[0],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--url", required=True)
    parser.add_argument("--body", required=True, help="file holding the JSON body to POST")
    parser.add_argument("--rate", type=float, required=True, help="requests per second")
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--duration", type=float, default=15.0,
                        help="seconds measured, after the warm-up")
    parser.add_argument("--warmup", type=float, default=3.0)
    parser.add_argument("--timeout", type=float, default=2.0,
                        help="seconds a request may take before it counts as a timeout")
    args = parser.parse_args()
    if args.rate <= 0 or args.connections <= 0 or args.duration <= 0:
        parser.error("--rate, --connections and --duration must be positive")
    with open(args.body, "rb") as source:
        body = source.read()
    parts = urlsplit(args.url)
    path = parts.path or "/"
    payload = (f"POST {path} HTTP/1.1\r\nHost: {parts.netloc}\r\n"
               f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
               ).encode("ascii") + body
    try:
        import uvloop

        runner = uvloop.run
    except ImportError:
        runner = asyncio.run
    result = runner(run(args, payload))
    print(json.dumps(result))


if __name__ == "__main__":
    sys.exit(main())

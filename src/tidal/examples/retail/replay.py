"""Replaying the generated retail stream against a running server, as a shop's front end and
click tracker would: impressions are sent to ``POST /predict/ENDPOINT`` a few records a
request, several requests at once, and whether each was clicked comes back afterwards through
``POST /feedback/ENDPOINT``. The stream is synthetic (``tidal.examples.retail.stream``).

``tidal demo`` replays it against a server in its own process; by hand, against ``tidal
serve``::

    python -m tidal.examples.retail.replay --url http://127.0.0.1:8080 --hours 8
"""

from __future__ import annotations

import argparse
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from tidal.examples.retail.stream import LABEL, REQUEST_COLUMNS, START, generate

#: Requests in flight at once: enough for the server to batch them into one predict call.
CONCURRENCY = 8


class ReplayError(RuntimeError):
    """The server refused the replayed traffic or its feedback."""


@dataclass
class Traffic:
    """What a stretch of replayed traffic got back: requests and rows sent, requests that
    failed, and for each model version the rows it answered and how many it got right."""

    requests: int = 0
    rows: int = 0
    failed: int = 0
    by_version: dict[int, list[int]] = field(default_factory=dict)  # version -> [rows, right]

    @property
    def answered(self) -> int:
        return sum(rows for rows, _ in self.by_version.values())

    @property
    def accuracy(self) -> float:
        right = sum(r for _, r in self.by_version.values())
        return right / self.answered if self.answered else float("nan")

    def version_accuracy(self, version: int) -> float:
        rows, right = self.by_version.get(version, (0, 0))
        return right / rows if rows else float("nan")

    def add(self, other: Traffic) -> None:
        self.requests += other.requests
        self.rows += other.rows
        self.failed += other.failed
        for version, (rows, right) in other.by_version.items():
            mine = self.by_version.setdefault(version, [0, 0])
            mine[0] += rows
            mine[1] += right


def hour_of(frame: Any) -> Any:
    """Each row's hour since the stream's start (0, 1, ...), as a NumPy array."""
    import pandas as pd

    since = frame["timestamp"] - pd.Timestamp(START)
    return (since.dt.total_seconds() // 3600).astype("int64").to_numpy()


def send(client: Any, endpoint: str, frame: Any, *, rows_per_request: int = 8,
         pool: ThreadPoolExecutor | None = None) -> Traffic:
    """Send ``frame``'s impressions to ``endpoint`` through ``client`` (an ``httpx.Client``
    with the server's base URL), ``rows_per_request`` records a request, then whether each
    was clicked as feedback (one list of labels per request). A record holds what the shop's
    front end knows (``REQUEST_COLUMNS``: the shopper's and product's keys and the
    impression); the endpoint's feature service adds the stored features."""
    records = frame[REQUEST_COLUMNS].to_dict("records")
    labels = [int(v) for v in frame[LABEL]]
    chunks = [(records[i:i + rows_per_request], labels[i:i + rows_per_request])
              for i in range(0, len(records), rows_per_request)]
    path = f"/predict/{endpoint}"

    def post(chunk: tuple[list[dict[str, Any]], list[int]]) -> tuple[Any, list[int]]:
        return client.post(path, json={"records": chunk[0]}), chunk[1]

    own = pool is None
    pool = pool or ThreadPoolExecutor(CONCURRENCY)
    traffic, feedback = Traffic(), []
    try:
        for response, truth in pool.map(post, chunks):
            traffic.requests += 1
            traffic.rows += len(truth)
            if response.status_code != 200:
                traffic.failed += 1
                continue
            body = response.json()
            right = sum(int(p == t) for p, t in zip(body["predictions"], truth, strict=True))
            tally = traffic.by_version.setdefault(int(body["model_version"]), [0, 0])
            tally[0] += len(truth)
            tally[1] += right
            feedback.append({"request_id": body["request_id"],
                             "label": truth if len(truth) > 1 else truth[0]})
    finally:
        if own:
            pool.shutdown()
    for start in range(0, len(feedback), 10_000):  # the server takes 10,000 items a call
        response = client.post(f"/feedback/{endpoint}",
                               json={"feedback": feedback[start:start + 10_000]})
        if response.status_code != 200:
            raise ReplayError(f"the server refused the feedback ({response.status_code}): "
                              f"{response.text}")
    return traffic


def shares(traffic: Traffic) -> str:
    """``v1 90% (0.645) · v2 10% (0.830)``: each version's share of the rows and accuracy."""
    total = traffic.answered or 1
    return " · ".join(f"v{v} {rows / total:.0%} ({traffic.version_accuracy(v):.3f})"
                      for v, (rows, _) in sorted(traffic.by_version.items()))


def main(argv: list[str] | None = None) -> int:
    import httpx

    parser = argparse.ArgumentParser(
        prog="python -m tidal.examples.retail.replay",
        description="Replay the generated (synthetic) retail click stream against a Tidal "
                    "server, hour by hour, with the clicks sent back as feedback.")
    parser.add_argument("--url", default="http://127.0.0.1:8080", help="the server's URL")
    parser.add_argument("--endpoint", default="retail", help="the endpoint to call")
    parser.add_argument("--hours", type=int, default=8, help="hours of traffic to send")
    parser.add_argument("--drift-hour", default="2", help=(
        "the hour of the replay from which shoppers behave differently; 'none' for never, "
        "0 for the changed behaviour from the start"))
    parser.add_argument("--rows-per-hour", type=int, default=1200)
    parser.add_argument("--rows-per-request", type=int, default=8)
    parser.add_argument("--pause", type=float, default=3.0,
                        help="seconds between hours, for a running loop controller to tick")
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args(argv)
    drift_hour = None if args.drift_hour.lower() == "none" else int(args.drift_hour)
    if args.hours < 1 or args.rows_per_hour < 1 or args.rows_per_request < 1:
        parser.error("--hours, --rows-per-hour and --rows-per-request must be at least 1")

    stream = generate(hours=args.hours, rows_per_hour=args.rows_per_hour,
                      drift_hour=drift_hour, seed=args.seed)
    hours = hour_of(stream)
    print(f"replaying {len(stream):,} generated impressions (synthetic data) to "
          f"{args.url}/predict/{args.endpoint}", flush=True)
    with httpx.Client(base_url=args.url, timeout=60) as client, \
            ThreadPoolExecutor(CONCURRENCY) as pool:
        for hour in range(args.hours):
            if hour and args.pause > 0:
                time.sleep(args.pause)
            changed = drift_hour is not None and hour >= drift_hour
            try:
                traffic = send(client, args.endpoint, stream[hours == hour],
                               rows_per_request=args.rows_per_request, pool=pool)
            except (httpx.HTTPError, ReplayError) as error:
                print(f"error: {error}", file=sys.stderr)
                return 1
            print(f"hour {hour}{' (changed behaviour)' if changed else ''}: "
                  f"{traffic.requests} requests, {traffic.rows} rows, accuracy "
                  f"{traffic.accuracy:.3f}; {shares(traffic)}"
                  + (f"; {traffic.failed} failed" if traffic.failed else ""), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())

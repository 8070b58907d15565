"""Servers for the serving tests: the real app under uvicorn on a loopback port, in a thread of
the test process (so tests can reach its state), and models registered to serve."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import numpy as np
import pandas as pd
import pytest

from tidal.serving.app import ServerSettings, ServingApp
from tidal.serving.server import _uvicorn_config, bind_socket
from tidal.store.workspace import Workspace

FEATURES = ["age", "income", "city", "member"]


@dataclass
class Running:
    app: ServingApp
    url: str
    client: httpx.Client
    server: Any
    thread: threading.Thread

    def post(self, path: str, **kwargs: Any) -> httpx.Response:
        return self.client.post(path, **kwargs)

    def stop(self) -> None:
        """Shut the server down as a signal would (its lifespan's shutdown runs)."""
        self.server.should_exit = True
        self.thread.join(30)
        assert not self.thread.is_alive(), "the server did not stop"


def wait_until(condition: Callable[[], Any], timeout: float = 20.0, what: str = "") -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what or condition}")


@pytest.fixture
def serve() -> Iterator[Callable[..., Running]]:
    """Start the app on 127.0.0.1 (a free port) and stop it after the test."""
    import uvicorn

    started: list[tuple[Any, threading.Thread, httpx.Client]] = []

    def start(workspace: Workspace, **settings: Any) -> Running:
        settings.setdefault("reload_interval", 0.2)
        app = ServingApp(workspace, ServerSettings(**settings))
        sock = bind_socket("127.0.0.1", 0)
        port = sock.getsockname()[1]
        server = uvicorn.Server(_uvicorn_config(app, "warning"))
        thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
        thread.start()
        client = httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=30)
        started.append((server, thread, client))

        def ready() -> bool:
            try:
                return client.get("/v2/health/ready").status_code == 200
            except httpx.HTTPError:
                return False

        wait_until(ready, what="the server to be ready")
        return Running(app, f"http://127.0.0.1:{port}", client, server, thread)

    yield start
    for server, thread, client in started:
        client.close()
        server.should_exit = True
        thread.join(30)


def training_frame(rows: int = 300, seed: int = 0) -> tuple[pd.DataFrame, pd.Series]:
    rng = np.random.default_rng(seed)
    frame = pd.DataFrame({
        "age": rng.integers(18, 90, rows).astype("int64"),
        "income": rng.normal(50_000, 15_000, rows),
        "city": pd.Series(rng.choice(["paris", "lyon", "nice"], rows), dtype=object),
        "member": rng.random(rows) > 0.5,
    })
    label = ((frame.income > 50_000) ^ frame.member).astype("int64")
    return frame, label


def fit_model(seed: int = 0, c: float = 1.0) -> Any:
    from sklearn.compose import ColumnTransformer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import OneHotEncoder, StandardScaler

    frame, label = training_frame(seed=seed)
    prep = ColumnTransformer([("num", StandardScaler(), ["age", "income"]),
                              ("cat", OneHotEncoder(handle_unknown="ignore"), ["city"]),
                              ("flag", "passthrough", ["member"])])
    return make_pipeline(prep, LogisticRegression(C=c, max_iter=500)).fit(frame, label)


@pytest.fixture
def ctr(workspace: Workspace) -> dict[str, Any]:
    """Two versions of a classifier, models:/ctr/1 (alias champion) and /2 (challenger)."""
    return register_ctr()


def register_ctr() -> dict[str, Any]:
    import tidal

    frame, _ = training_frame()
    first, second = fit_model(0, 1.0), fit_model(1, 0.01)
    v1 = tidal.models.register("ctr", first, input_example=frame.head(20), run=False)
    v2 = tidal.models.register("ctr", second, input_example=frame.head(20), run=False)
    tidal.models.set_alias("ctr", "champion", 1)
    tidal.models.set_alias("ctr", "challenger", 2)
    return {"frame": frame, "models": {1: first, 2: second}, "versions": (v1, v2)}


def records(frame: pd.DataFrame) -> list[dict[str, Any]]:
    """Rows as JSON-ready dicts (Python scalars, as a client would send)."""
    return [{k: (v.item() if hasattr(v, "item") else v) for k, v in row.items()}
            for row in frame.to_dict("records")]


@pytest.fixture
def fast(workspace: Workspace) -> dict[str, Any]:
    """Two versions of a cheap numeric classifier, models:/fast/1 (champion) and /2
    (challenger): for tests that send thousands of requests."""
    from sklearn.linear_model import LogisticRegression

    import tidal

    rng = np.random.default_rng(5)
    frame = pd.DataFrame(rng.normal(size=(200, 3)), columns=["x", "y", "z"])
    label = (frame.x + frame.y > 0).astype("int64")
    models = {1: LogisticRegression().fit(frame, label),
              2: LogisticRegression(C=0.001).fit(frame, label)}
    for number, model in models.items():
        tidal.models.register("fast", model, input_example=frame.head(10), run=False)
    tidal.models.set_alias("fast", "champion", 1)
    tidal.models.set_alias("fast", "challenger", 2)
    return {"frame": frame, "models": models}

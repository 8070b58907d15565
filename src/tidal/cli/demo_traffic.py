"""The server of ``tidal demo``: the inference server in a thread of the demo's own process,
on 127.0.0.1 and a free port, with a client that replays the generated stream to it
(``tidal.examples.retail.replay``)."""

from __future__ import annotations

import gc
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any

from tidal.errors import TidalError

if TYPE_CHECKING:
    import pandas as pd

    from tidal.examples.retail.replay import Traffic
    from tidal.store.workspace import Workspace

#: The longest the demo waits for its server to start or to follow a change of routes.
WAIT_S = 60.0


class DemoServerError(TidalError):
    """The demo's local server did not start, or did not follow its endpoint's routes."""


def _wait(condition: Callable[[], bool], timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.05)
    return False


class LocalServer:
    """``with LocalServer(ws, "retail") as server:`` serves one endpoint of the workspace on
    127.0.0.1 (a free port) in a daemon thread; leaving the block stops it, which flushes the
    prediction log."""

    def __init__(self, workspace: Workspace, endpoint: str, *,
                 reload_interval: float = 0.2) -> None:
        self.workspace = workspace
        self.endpoint = endpoint
        self.reload_interval = reload_interval
        self.url = ""
        self.app: Any = None
        self._server: Any = None
        self._thread: threading.Thread | None = None
        self._client: Any = None
        self._pool: ThreadPoolExecutor | None = None

    def __enter__(self) -> LocalServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def start(self) -> LocalServer:
        """Start serving; returns once the server answers ready."""
        import httpx
        import uvicorn

        from tidal.examples.retail.replay import CONCURRENCY
        from tidal.serving.app import ServerSettings, ServingApp
        from tidal.serving.server import _uvicorn_config, bind_socket

        self.app = ServingApp(self.workspace, ServerSettings(
            endpoints=(self.endpoint,), reload_interval=self.reload_interval))
        sock = bind_socket("127.0.0.1", 0)
        self.url = f"http://127.0.0.1:{sock.getsockname()[1]}"
        self._server = uvicorn.Server(_uvicorn_config(self.app, "error"))
        self._thread = threading.Thread(target=self._server.run, kwargs={"sockets": [sock]},
                                        name="tidal-demo-server", daemon=True)
        self._thread.start()
        self._client = httpx.Client(base_url=self.url, timeout=60)
        self._pool = ThreadPoolExecutor(CONCURRENCY, thread_name_prefix="tidal-demo-client")

        def ready() -> bool:
            if self._thread is None or not self._thread.is_alive():
                raise DemoServerError(f"the demo's server on {self.url} stopped while "
                                      "starting")
            try:
                return self._client.get("/v2/health/ready").status_code == 200
            except httpx.HTTPError:
                return False

        try:
            if not _wait(ready, WAIT_S):
                raise DemoServerError(f"the demo's server on {self.url} was not ready within "
                                      f"{WAIT_S:g} s")
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        """Stop serving (idempotent); the app's shutdown flushes the prediction log."""
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
            self._pool = None
        if self._client is not None:
            self._client.close()
            self._client = None
        if self._server is not None:
            self._server.should_exit = True
        if self._thread is not None:
            self._thread.join(30)
            self._thread = None
            # The app froze the heap out of the collector's reach, as a server worker should;
            # this process goes on (and exits cleanly only if its objects can be freed).
            gc.unfreeze()

    def replay(self, frame: pd.DataFrame, rows_per_request: int) -> Traffic:
        """Send ``frame`` to the endpoint with its labels as feedback, then flush the
        prediction log so that the loop sees all of it."""
        from tidal.examples.retail.replay import send

        assert self._client is not None and self._pool is not None
        traffic = send(self._client, self.endpoint, frame, rows_per_request=rows_per_request,
                       pool=self._pool)
        self.app.prediction_log.flush()
        return traffic

    def served_versions(self) -> set[int]:
        """The model versions the server's routing table answers with now."""
        state = self.app.states.get(self.endpoint)
        return set() if state is None else {c.model.version.version for c in state.live}

    def follow(self, versions: set[int]) -> None:
        """Wait until the server serves exactly ``versions`` (it polls the endpoint's routes
        every ``reload_interval``)."""
        if not _wait(lambda: self.served_versions() == versions, WAIT_S):
            raise DemoServerError(f"the demo's server still serves versions "
                                  f"{sorted(self.served_versions())}, not {sorted(versions)}, "
                                  f"{WAIT_S:g} s after the routes changed")

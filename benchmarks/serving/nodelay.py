"""Run an ASGI app under uvicorn in N worker processes that share one listening socket with
TCP_NODELAY set.

    python benchmarks/serving/nodelay.py MODULE:ATTRIBUTE --port PORT [--factory]
        [--host 127.0.0.1] [--workers 2] [--loop auto|uvloop|asyncio]
        [--http auto|httptools|h11]

``uvicorn --workers N`` binds the shared socket itself without IPPROTO_TCP, so the sockets it
accepts never get TCP_NODELAY (uvicorn issue 3149): every keep-alive response written in two
parts then waits for the client's delayed ACK, about 40 ms on Linux. Here the listener is
created with IPPROTO_TCP and TCP_NODELAY (which accepted sockets inherit on Linux), then each
worker is forked and runs ``uvicorn.Server.run(sockets=[listener])``. SIGTERM or SIGINT stops
the workers, then this process. Needs only uvicorn, so it runs in any of the benchmark's
interpreters.
"""

from __future__ import annotations

import argparse
import os
import signal
import socket
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))


def listening_socket(host: str, port: int) -> socket.socket:
    """The shared listener: IPPROTO_TCP and TCP_NODELAY set, inheritable by the workers."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    sock.bind((host, port))
    sock.listen(2048)
    sock.set_inheritable(True)
    return sock


def worker(sock: socket.socket, app: str, factory: bool, loop: str, http: str) -> None:
    import uvicorn

    config = uvicorn.Config(app, factory=factory, loop=loop, http=http, lifespan="auto",
                            access_log=False, log_level="warning", timeout_keep_alive=75)
    uvicorn.Server(config).run(sockets=[sock])


def serve(app: str, *, port: int, host: str = "127.0.0.1", workers: int = 2,
          factory: bool = False, loop: str = "auto", http: str = "auto") -> None:
    sock = listening_socket(host, port)
    children: list[int] = []
    for _ in range(workers):
        pid = os.fork()
        if pid == 0:
            signal.signal(signal.SIGINT, signal.SIG_DFL)
            signal.signal(signal.SIGTERM, signal.SIG_DFL)
            code = 1
            try:
                worker(sock, app, factory, loop, http)
                code = 0
            finally:
                os._exit(code)
        children.append(pid)

    def stop(signum: int, frame: Any) -> None:
        for pid in children:
            try:
                os.kill(pid, signal.SIGTERM)
            except ProcessLookupError:
                pass

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    # One wait per worker: this process ends when they all have.
    for _ in children:
        try:
            os.wait()
        except ChildProcessError:
            break
    sock.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("app", help="the ASGI app as MODULE:ATTRIBUTE")
    parser.add_argument("--factory", action="store_true",
                        help="ATTRIBUTE is a function that returns the app")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--loop", default="auto")
    parser.add_argument("--http", default="auto")
    args = parser.parse_args()
    serve(args.app, port=args.port, host=args.host, workers=args.workers,
          factory=args.factory, loop=args.loop, http=args.http)


if __name__ == "__main__":
    main()

"""The HTTP/1.1 protocol ``tidal serve`` speaks: uvicorn's httptools protocol with read
deadlines, so that slow or silent clients cannot hold a worker's connections.

uvicorn closes a connection left idle after an answer (``timeout_keep_alive``) and answers
503 beyond ``limit_concurrency`` connections, but it waits without end for a new connection's
first request, for a request's headers and for its body: a client that opens connections and
sends a byte now and then (slowloris) keeps them all. Here a connection has at most one timer,
armed only while the server waits on the client:

- before its first request, the idle timeout (uvicorn's keep-alive timer, which uvicorn
  itself arms only after an answer);
- from a request's first byte to the end of its headers, ``header_timeout``: a deadline that
  more bytes do not extend, so trickling a header byte at a time does not help; the client
  gets 408 and the connection closes;
- between two reads of a request's body, ``body_timeout``: the connection closes, which the
  app sees as a disconnect. Pauses of the server's own making (flow control, a pipelined
  request waiting its turn) do not count.

A request that arrives in one piece, the usual case, arms no timer at all.
"""

from __future__ import annotations

import asyncio
from typing import Any

from tidal.errors import missing_dependency

try:
    from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol
except ImportError as error:  # httptools comes with the serve extra (uvicorn[standard])
    raise missing_dependency("httptools", "serve", "tidal serve") from error

_IDLE, _HEADERS, _BODY = "idle", "headers", "body"  # what the connection waits for
_LATE = b"the request's headers did not arrive within the server's header timeout"
_TIMED_OUT = (b"HTTP/1.1 408 Request Timeout\r\ncontent-type: text/plain; charset=utf-8\r\n"
              b"content-length: %d\r\nconnection: close\r\n\r\n%s" % (len(_LATE), _LATE))


class DeadlineProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol with header and body read deadlines; made for a server's
    settings by :func:`protocol_class`."""

    header_timeout: float
    body_timeout: float

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._waiting = _IDLE
        self._deadline: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self.timeout_keep_alive_task = self.loop.call_later(
            self.timeout_keep_alive, self.timeout_keep_alive_handler)

    def connection_lost(self, exc: Exception | None) -> None:
        self._cancel()
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        super().data_received(data)
        if self._waiting == _HEADERS:
            if self._deadline is None:
                self._deadline = self.loop.call_later(self.header_timeout, self._expired)
        elif self._waiting == _BODY:
            self._cancel()
            self._deadline = self.loop.call_later(self.body_timeout, self._expired)
        elif self._deadline is not None:
            self._cancel()

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._cancel()  # each request has a header deadline of its own
        self._waiting = _HEADERS

    def on_headers_complete(self) -> None:
        super().on_headers_complete()
        self._waiting = _BODY

    def on_message_complete(self) -> None:
        super().on_message_complete()
        self._waiting = _IDLE

    def _cancel(self) -> None:
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None

    def _expired(self) -> None:
        self._deadline = None
        if self.transport.is_closing():
            return
        if self.flow.read_paused:  # the server stopped reading, not the client sending
            self._deadline = self.loop.call_later(self.body_timeout, self._expired)
            return
        answering = self.cycle is not None and not self.cycle.response_complete
        if self._waiting == _HEADERS and not answering:
            self.transport.write(_TIMED_OUT)
        self.transport.close()


def protocol_class(header_timeout: float, body_timeout: float) -> type[asyncio.Protocol]:
    """The protocol for uvicorn's ``Config(http=...)`` with these deadlines, in seconds."""
    return type("DeadlineProtocol", (DeadlineProtocol,),
                {"header_timeout": header_timeout, "body_timeout": body_timeout})

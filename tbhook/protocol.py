"""uvicorn's HTTP protocols, with the limits uvicorn does not have.

uvicorn closes a kept-alive connection after ``timeout_keep_alive``, but it has no deadline
for a connection that never sends a request, none for a request that trickles in (headers or
a body shorter than its Content-Length), httptools enforces no header size or count, and h11
enforces its size only while headers arrive in pieces. A receiver on the internet needs all
four, so each is added here, for httptools and for h11 (the single-file build's fallback),
and nothing else changes.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from typing import Any

import h11

REQUEST_DEADLINE_SECONDS = 10.0  # to receive one whole request, headers and body
MAX_HEADERS = 100
MAX_HEADER_BYTES = 16 * 1024  # request line and headers together

_REASONS = {400: b"Bad Request", 408: b"Request Timeout", 431: b"Request Header Fields Too Large"}


class _Guard:
    """Deadlines and the JSON answer for a request refused at the protocol level."""

    transport: asyncio.Transport
    loop: asyncio.AbstractEventLoop
    cycle: Any
    timeout_keep_alive: float
    timeout_keep_alive_task: asyncio.TimerHandle | None
    timeout_keep_alive_handler: Callable[[], None]  # uvicorn's, on the protocol classes below

    def _guard_start(self) -> None:
        self._deadline: asyncio.TimerHandle | None = None
        self._rejected = False
        # A connection that never sends a request is as idle as a kept-alive one.
        self.timeout_keep_alive_task = self.loop.call_later(
            self.timeout_keep_alive, self.timeout_keep_alive_handler
        )

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)  # type: ignore[misc]

    def _arm(self) -> None:
        self._disarm()
        self._deadline = self.loop.call_later(REQUEST_DEADLINE_SECONDS, self._deadline_passed)

    def _disarm(self) -> None:
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None

    def _deadline_passed(self) -> None:
        self._deadline = None
        if self.cycle is not None and self.cycle.response_started:
            self.transport.close()
        else:
            self._reject(408, f"request not received within {REQUEST_DEADLINE_SECONDS:g} s")

    def _reject(self, status: int, message: str) -> None:
        """Answer with a JSON error and close: the rest of this connection is not read."""
        self._rejected = True
        self._disarm()
        if self.transport.is_closing():
            return
        body = json.dumps({"ok": False, "error": message}).encode()
        head = b"HTTP/1.1 %d %s\r\n" % (status, _REASONS[status])
        headers = b"content-type: application/json\r\ncontent-length: %d\r\nconnection: close\r\n"
        self.transport.write(head + headers % len(body) + b"\r\n" + body)
        self.transport.close()

    def send_400_response(self, msg: str) -> None:
        """A malformed request (bad Content-Length, broken framing): a JSON error like ours."""
        self._reject(400, "invalid HTTP request")


from uvicorn.protocols.http.h11_impl import H11Protocol  # noqa: E402

try:
    from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

    HTTPTOOLS = True
except ImportError:  # pragma: no cover - the single-file build has no compiled httptools
    HttpToolsProtocol = H11Protocol  # type: ignore[assignment, misc]  # a stand-in, never served
    HTTPTOOLS = False


class GuardedHttpToolsProtocol(_Guard, HttpToolsProtocol):  # type: ignore[misc, valid-type]
    """One connection: uvicorn's parsing and ASGI cycle, plus deadlines and header limits."""

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._in_headers = False
        self._header_bytes = 0
        self._header_count = 0
        self._guard_start()

    def data_received(self, data: bytes) -> None:
        if self._rejected:
            return
        super().data_received(data)
        if self._in_headers:
            # Everything fed since the request began is still header: a header that never
            # ends must not grow without bound.
            self._header_bytes += len(data)
            if self._header_bytes > MAX_HEADER_BYTES:
                self._reject(431, "request headers too large")

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._in_headers = True
        self._header_bytes = 0
        self._header_count = 0
        self._arm()

    def on_url(self, url: bytes) -> None:
        self._header_bytes += len(url)
        super().on_url(url)

    def on_header(self, name: bytes, value: bytes) -> None:
        self._header_count += 1
        self._header_bytes += len(name) + len(value)
        super().on_header(name, value)

    def on_headers_complete(self) -> None:
        self._in_headers = False
        if self._header_count > MAX_HEADERS:
            self._reject(431, f"more than {MAX_HEADERS} headers")
        elif self._header_bytes > MAX_HEADER_BYTES:
            self._reject(431, "request headers too large")
        else:
            super().on_headers_complete()

    def on_body(self, body: bytes) -> None:
        if not self._rejected:
            super().on_body(body)

    def on_message_complete(self) -> None:
        self._disarm()
        if not self._rejected:
            super().on_message_complete()


class GuardedH11Protocol(_Guard, H11Protocol):  # type: ignore[misc]
    """The same limits on uvicorn's pure-Python protocol, from h11's connection state."""

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._head = b""
        self._guard_start()

    def data_received(self, data: bytes) -> None:
        if self._rejected:
            return
        if self.conn.their_state is h11.IDLE:  # a request is starting or its headers arriving
            if self._deadline is None:
                self._arm()
            head = self._head + data
            end = head.find(b"\r\n\r\n")
            section = head if end < 0 else head[:end]
            if len(section) > MAX_HEADER_BYTES:
                self._reject(431, "request headers too large")
                return
            if section.count(b"\n") > MAX_HEADERS:
                self._reject(431, f"more than {MAX_HEADERS} headers")
                return
            self._head = b"" if end >= 0 else head
        super().data_received(data)
        if self.conn.their_state not in (h11.IDLE, h11.SEND_BODY):  # the request is all in
            self._disarm()

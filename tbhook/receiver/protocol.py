"""uvicorn's HTTP protocols, with the limits uvicorn does not have.

uvicorn closes a kept-alive connection after ``timeout_keep_alive``, but it has no deadline
for a connection that never sends a request, none for a request that trickles in (headers or
a body shorter than its Content-Length), httptools enforces no header size or count, and h11
enforces its size only while headers arrive in pieces. Its ``limit_concurrency`` answers a
complete request ``503`` while thousands of slow connections that never finish a request keep
their places. A receiver on the internet needs better, so each is added here, for httptools and
for h11 (the single-file build's fallback):

- deadlines for a silent connection and for one whole request (408);
- header count and size limits (431);
- ``Connections``: past the connection limit, the oldest connection that has not sent a complete
  request is shed first, so a complete request is refused (503) only when there is nothing left
  to shed;
- at shutdown, a request still arriving is answered 503 with ``Retry-After`` at once, rather
  than holding the shutdown until the graceful timeout cancels it.

These override uvicorn internals, so ``check_uvicorn`` refuses a version they were not tested on.
"""

from __future__ import annotations

import asyncio
import html
import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import h11
import uvicorn

from tbhook.errors import TbhookError
from tbhook.receiver.log import Log, Throttled
from tbhook.receiver.metrics import Counts

REQUEST_DEADLINE_SECONDS = 10.0  # to receive one whole request, headers and body
MAX_HEADERS = 100
MAX_HEADER_BYTES = 16 * 1024  # request line and headers together
RETRY_AFTER_SECONDS = 5
PAUSE_ABOVE_BYTES = 64 * 1024  # a body larger than this is not read ahead of the app
# uvicorn minor versions whose internals the guards below were tested on (see pyproject.toml).
TESTED_UVICORN = ("0.54",)

_REASONS = {
    400: b"Bad Request",
    408: b"Request Timeout",
    431: b"Request Header Fields Too Large",
    503: b"Service Unavailable",
}


@dataclass(frozen=True)
class Limits:
    """One server's limits (None: the module's constant, read when used). The receiver keeps
    the defaults; the console refuses an absolute-form target too, answers in a page, and logs
    each refusal (its clients are people, and a refusal there is worth a line)."""

    request_deadline: float | None = None
    max_headers: int | None = None
    max_header_bytes: int | None = None
    # ``GET http://evil.example/ HTTP/1.1``: httptools keeps only the path of it, so the app
    # would never see that the request named another host. Refused here when set.
    origin_form_only: bool = False
    html: bool = False  # a refusal as a page in words rather than JSON
    log_refusals: bool = False

    def deadline(self) -> float:
        return self.request_deadline or REQUEST_DEADLINE_SECONDS

    def headers(self) -> int:
        return self.max_headers or MAX_HEADERS

    def header_bytes(self) -> int:
        return self.max_header_bytes or MAX_HEADER_BYTES


class Connections:
    """Every open connection of one server, and which of them may be shed: those that have not
    sent a complete request (new, idle between requests, or still sending one), oldest first."""

    def __init__(self, limit: int, log: Log | None = None, counts: Counts | None = None):
        self.limit = limit
        self.log = Throttled(log)
        self.counts = counts or Counts()
        self._open: set[Any] = set()
        self._closing: set[Any] = set()
        self._sheddable: dict[Any, None] = {}  # insertion order: the oldest first
        self.shed = 0
        self.refused = 0

    def __len__(self) -> int:
        return len(self._open) - len(self._closing)

    def opened(self, conn: Any) -> None:
        self._open.add(conn)
        self._sheddable[conn] = None
        if len(self) > self.limit:
            self._make_room(conn)

    def closed(self, conn: Any) -> None:
        self._open.discard(conn)
        self._closing.discard(conn)
        self._sheddable.pop(conn, None)

    def busy(self, conn: Any) -> None:
        """``conn`` sent a complete request: it is being answered and is never shed."""
        self._sheddable.pop(conn, None)

    def idle(self, conn: Any) -> None:
        """``conn`` was answered and waits for its next request: the newest to be shed."""
        if conn in self._open and conn not in self._closing:
            self._sheddable.pop(conn, None)
            self._sheddable[conn] = None

    def _make_room(self, newcomer: Any) -> None:
        victim = next((c for c in self._sheddable if c is not newcomer), None)
        if victim is not None:
            self._drop(victim)
            victim.shed_now()
            self.shed += 1
            self.log(
                "shed",
                f"at the limit of {self.limit} connections: closed the oldest connection "
                "that had not sent a complete request",
                limit=self.limit,
            )
            return
        # Every other connection is being answered: this one gets a 503 before it asks.
        self._drop(newcomer)
        self.refused += 1
        newcomer.refuse()
        self.log(
            "refused",
            f"503 (Retry-After {RETRY_AFTER_SECONDS} s) to a new connection: all "
            f"{self.limit} connections are busy with complete requests",
            status=503,
            limit=self.limit,
        )

    def _drop(self, conn: Any) -> None:
        self._sheddable.pop(conn, None)
        self._closing.add(conn)


class _Guard:
    """Deadlines, shedding, and the JSON answer for a request refused at the protocol level."""

    # tbhook's table (uvicorn's own ``self.connections`` is a plain set); one per server.
    table: Connections = Connections(4096)
    limits: Limits = Limits()
    transport: asyncio.Transport
    loop: asyncio.AbstractEventLoop
    cycle: Any
    timeout_keep_alive: float
    timeout_keep_alive_task: asyncio.TimerHandle | None
    timeout_keep_alive_handler: Callable[[], None]  # uvicorn's, on the protocol classes below

    @classmethod
    def bound_to(cls, connections: Connections, limits: Limits | None = None) -> type:
        """This protocol class, sharing one server's connection table (and its limits)."""
        return type(cls.__name__, (cls,), {"table": connections, "limits": limits or Limits()})

    def _guard_start(self) -> None:
        self._deadline: asyncio.TimerHandle | None = None
        self._rejected = False
        self._receiving = False  # part of a request has arrived, not all of it
        # A connection that never sends a request is as idle as a kept-alive one.
        self.timeout_keep_alive_task = self.loop.call_later(
            self.timeout_keep_alive, self.timeout_keep_alive_handler
        )
        self.table.opened(self)

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        self.table.closed(self)
        super().connection_lost(exc)  # type: ignore[misc]

    def _request_started(self) -> None:
        self._receiving = True
        self._arm()

    def _request_complete(self) -> None:
        self._receiving = False
        self._disarm()
        self.table.busy(self)

    def on_response_complete(self) -> None:
        super().on_response_complete()  # type: ignore[misc]
        if not self.transport.is_closing():
            self.table.idle(self)

    def _arm(self) -> None:
        self._disarm()
        self._deadline = self.loop.call_later(self.limits.deadline(), self._deadline_passed)

    def _disarm(self) -> None:
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None

    def _deadline_passed(self) -> None:
        self._deadline = None
        if self.cycle is not None and self.cycle.response_started:
            self.transport.close()
        else:
            self._reject(408, f"request not received within {self.limits.deadline():g} s")

    def _answering(self) -> bool:
        return self.cycle is not None and self.cycle.response_started

    def shed_now(self) -> None:
        """Close to make room: a request half sent is told to come back (503)."""
        if self._receiving and not self._answering():
            self._reject(503, "too many connections; try again", "connections")
        else:
            self.transport.close()

    def refuse(self) -> None:
        """A new connection with no room for it: 503 before it asks, and close."""
        self._reject(503, "too many connections; try again", "connections")

    def shutdown(self) -> None:
        """The server stops: a request still arriving is answered 503 now (it is not stored,
        and the sender will retry); a complete one is answered once committed."""
        if self._receiving and not self._answering():
            self._reject(503, "shutting down; try again", "shutdown")
            self.table.log(
                "shutdown",
                f"answered 503 (Retry-After {RETRY_AFTER_SECONDS} s) to a request still "
                "arriving at shutdown",
                status=503,
            )
        else:
            super().shutdown()  # type: ignore[misc]

    def _reject(self, status: int, message: str, unavailable: str = "") -> None:
        """Answer with a JSON error and close: the rest of this connection is not read. A 503
        says why (``unavailable``: "connections", "shutdown") and when to come back."""
        self._rejected = True
        self._receiving = False
        self._disarm()
        if self.transport.is_closing():
            return
        self.table.counts.refused(status, unavailable)
        if self.limits.log_refusals and status != 503:  # a 503's line is the table's own
            self.table.log(f"refused {status}", f"answered {status} and closed: {message}")
        retry_after = status == 503
        if self.limits.html:
            words = html.escape(message[:1].upper() + message[1:])
            page = f"<!doctype html><meta charset=utf-8><title>tbhook</title><p>{words}.</p>"
            body, kind = page.encode(), b"text/html; charset=utf-8"
        else:
            body = json.dumps({"ok": False, "error": message}).encode()
            kind = b"application/json"
        head = b"HTTP/1.1 %d %s\r\n" % (status, _REASONS[status])
        headers = b"content-type: " + kind + b"\r\ncontent-length: %d\r\nconnection: close\r\n"
        if retry_after:
            headers += b"retry-after: %d\r\n" % RETRY_AFTER_SECONDS
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
            if self._header_bytes > self.limits.header_bytes():
                self._reject(431, "request headers too large")

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._in_headers = True
        self._header_bytes = 0
        self._header_count = 0
        self._url_begun = False
        self._request_started()

    def on_url(self, url: bytes) -> None:
        if self.limits.origin_form_only and not self._url_begun and not url.startswith(b"/"):
            self._reject(400, "the request target must be a path (/...), not a URL")
        self._url_begun = True
        self._header_bytes += len(url)
        super().on_url(url)

    def on_header(self, name: bytes, value: bytes) -> None:
        self._header_count += 1
        self._header_bytes += len(name) + len(value)
        super().on_header(name, value)

    def on_headers_complete(self) -> None:
        self._in_headers = False
        if self._rejected:  # refused earlier in this very read (the target)
            return
        if self._header_count > self.limits.headers():
            self._reject(431, f"more than {self.limits.headers()} headers")
        elif self._header_bytes > self.limits.header_bytes():
            self._reject(431, "request headers too large")
        else:
            super().on_headers_complete()
            self.cycle.transport = _Corked(self.transport)
            # Read a large body only when the app asks for it (uvicorn resumes reading in
            # receive()): a request refused before its body (413, a full body budget) costs
            # no read-ahead buffer. Small bodies came with the headers: no pause for them.
            if self._declared_length() > PAUSE_ABOVE_BYTES and not self.transport.is_closing():
                self.flow.pause_reading()

    def _declared_length(self) -> int:
        for name, value in self.headers:
            if name == b"content-length":
                return int(value) if value.isdigit() else 0
        return 0

    def on_body(self, body: bytes) -> None:
        if not self._rejected:
            super().on_body(body)

    def on_response_complete(self) -> None:
        if self.cycle is not None and isinstance(self.cycle.transport, _Corked):
            self.cycle.transport.flush()  # a response with no body (HEAD) is complete too
        super().on_response_complete()

    def on_message_complete(self) -> None:
        if not self._rejected:
            self._request_complete()
            super().on_message_complete()


class _Corked:
    """The transport as one response writes it: the status line and headers wait for the
    body, so a receipt goes out in one write (one system call, one TCP segment) instead of
    two, about a quarter of the receiver's time at 64 connections. A 100 Continue goes out at
    once, as anything does after the first write."""

    __slots__ = ("_transport", "_head", "_first")

    def __init__(self, transport: Any):
        self._transport = transport
        self._head: bytes | None = None
        self._first = True

    def write(self, data: bytes) -> None:
        if self._first and not data.startswith(b"HTTP/1.1 100 "):
            self._first = False
            self._head = data
            return
        if self._head is not None:
            data, self._head = self._head + data, None
        self._transport.write(data)

    def flush(self) -> None:
        """Send headers still waiting: the response had no body after them."""
        if self._head is not None:
            self._transport.write(self._head)
            self._head = None

    def close(self) -> None:
        self.flush()
        self._transport.close()

    def is_closing(self) -> bool:
        return self._transport.is_closing()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._transport, name)


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
            if not self._receiving and data:
                self._request_started()
            head = self._head + data
            end = head.find(b"\r\n\r\n")
            section = head if end < 0 else head[:end]
            if len(section) > self.limits.header_bytes():
                self._reject(431, "request headers too large")
                return
            if section.count(b"\n") > self.limits.headers():
                self._reject(431, f"more than {self.limits.headers()} headers")
                return
            self._head = b"" if end >= 0 else head
        super().data_received(data)
        if self._receiving and self.conn.their_state not in (h11.IDLE, h11.SEND_BODY):
            self._request_complete()  # the request is all in


# The uvicorn methods the guards above override or call: if one disappears or is renamed,
# a guard would silently stop guarding.
_HOOKS = {
    HttpToolsProtocol: (
        "connection_made",
        "connection_lost",
        "data_received",
        "on_message_begin",
        "on_url",
        "on_header",
        "on_headers_complete",
        "on_body",
        "on_message_complete",
        "on_response_complete",
        "shutdown",
        "send_400_response",
        "timeout_keep_alive_handler",
    ),
    H11Protocol: (
        "connection_made",
        "connection_lost",
        "data_received",
        "on_response_complete",
        "shutdown",
        "send_400_response",
        "timeout_keep_alive_handler",
    ),
}


def check_uvicorn(version: str | None = None) -> None:
    """Refuse to serve on a uvicorn whose internals the guards were not tested on."""
    version = version or uvicorn.__version__
    wanted = ", ".join(f"{v}.x" for v in TESTED_UVICORN)
    if ".".join(version.split(".")[:2]) not in TESTED_UVICORN:
        raise TbhookError(
            f"uvicorn {version} is installed, but tbhook's connection guards (deadlines, header "
            f"limits, shedding) were tested on uvicorn {wanted} only; install that with "
            f"pip install 'uvicorn>={TESTED_UVICORN[0]},<{_next_minor(TESTED_UVICORN[-1])}'"
        )
    missing = [
        f"{cls.__name__}.{name}"
        for cls, names in _HOOKS.items()
        for name in names
        if not callable(getattr(cls, name, None))
    ]
    if missing:
        raise TbhookError(
            f"uvicorn {version} lacks {', '.join(missing)}, which tbhook's connection guards "
            "override"
        )


def _next_minor(version: str) -> str:
    major, minor = version.split(".")[:2]
    return f"{major}.{int(minor) + 1}"

"""The receiver: a raw ASGI app built from a store, served by uvicorn. Imports no typer."""

from __future__ import annotations

import contextlib
import hmac
import ipaddress
import json
import signal
import socket
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import uvicorn

from tbhook.errors import StoreUnavailable, TbhookError
from tbhook.events import parse
from tbhook.output import clean, describe_parsed
from tbhook.store import Delivery, EventStore, Stored
from tbhook.writer import BatchWriter

DEFAULT_MAX_BODY = 1024 * 1024
RETRY_AFTER_SECONDS = 5
GRACEFUL_SHUTDOWN_SECONDS = 8
KEEP_ALIVE_SECONDS = 5  # idle connections, used or not, are closed after this
MAX_CONNECTIONS = 4096  # past this uvicorn answers 503 instead of exhausting the process
ALLOW = b"GET, HEAD, POST"

Log = Callable[[str], None]


@dataclass(frozen=True)
class Auth:
    """The custom header Tracebuzz sends: its name (any case) and its secret value."""

    name: str
    value: str

    def accepts(self, headers: list[tuple[bytes, bytes]]) -> bool:
        wanted = self.name.lower().encode("latin-1")
        sent = next((value for key, value in headers if key == wanted), b"")
        return hmac.compare_digest(sent, self.value.encode("utf-8"))


class Receiver:
    """The ASGI app Tracebuzz posts to. A 200 goes out only after the event's batch commits."""

    def __init__(
        self,
        writer: BatchWriter,
        *,
        auth: Auth | None = None,
        max_body: int = DEFAULT_MAX_BODY,
        log: Log | None = None,
    ):
        self.writer = writer
        self.auth = auth
        self.max_body = max_body
        self.log = log

    async def __call__(self, scope: dict, receive: Callable, send: Callable) -> None:
        if scope["type"] != "http":
            return
        method = scope["method"]
        if method in ("GET", "HEAD"):
            # Tracebuzz tests the URL when a webhook is saved; a health check needs no secret.
            await _respond(send, 200, {"status": "ok"}, head=method == "HEAD")
        elif method != "POST":
            await _respond(send, 405, _error(f"method {method} not allowed"), allow=True)
        elif self.auth and not self.auth.accepts(scope["headers"]):
            self._log(f"rejected: missing or wrong {self.auth.name} header{_client(scope)}")
            await _respond(send, 401, _error(f"missing or wrong {self.auth.name} header"))
        else:
            await self._receive_post(scope, receive, send)

    async def _receive_post(self, scope: dict, receive: Callable, send: Callable) -> None:
        too_large = _error(f"body larger than {self.max_body} bytes")
        if _declared_length(scope["headers"]) > self.max_body:
            await _respond(send, 413, too_large)
            return
        try:
            body = await _read_body(receive, self.max_body)
        except _Disconnected:
            return
        if body is None:
            await _respond(send, 413, too_large)
            return
        delivery = Delivery(body, parse(body), path=_safe_path(scope["path"]))
        try:
            stored = await self.writer.write(delivery)
        except StoreUnavailable as exc:
            self._log(f"NOT STORED, answered 503: {clean(exc)}")
            await _respond(send, 503, _error(str(exc)), retry_after=True)
            return
        await _respond(send, 200, _receipt(delivery, stored))
        if self.log:
            self._log(_delivery_line(delivery, stored))

    def _log(self, line: str) -> None:
        if self.log:
            self.log(time.strftime("%H:%M:%S ") + line)


def _receipt(delivery: Delivery, stored: Stored) -> dict[str, Any]:
    receipt: dict[str, Any] = {"ok": True, "id": stored.id, "duplicate": stored.duplicate}
    if stored.quarantined:
        receipt["quarantined"] = True
        receipt["reason"] = getattr(delivery.parsed, "reason", "")
    return receipt


def _delivery_line(delivery: Delivery, stored: Stored) -> str:
    line = describe_parsed(delivery.parsed, delivery.path)
    if stored.quarantined:
        line = f"quarantined #{stored.id}, " + line
    if stored.duplicate:
        line += f" [retry: delivery {stored.deliveries} of #{stored.id}]"
    return line


class _Disconnected(Exception):
    pass


async def _read_body(receive: Callable, limit: int) -> bytes | None:
    """The whole request body, or None as soon as it grows past ``limit``."""
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise _Disconnected
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            return None
        chunks.append(chunk)
        if not message.get("more_body", False):
            return b"".join(chunks)


def _declared_length(headers: list[tuple[bytes, bytes]]) -> int:
    for key, value in headers:
        if key == b"content-length" and value.isdigit():
            return int(value)
    return 0


def _safe_path(path: str) -> str:
    # A percent-encoded lone surrogate must not make the row unstorable.
    return path.encode("utf-8", "backslashreplace").decode("utf-8")


def _client(scope: dict) -> str:
    client = scope.get("client")
    return f" from {client[0]}" if client else ""


def _error(message: str) -> dict[str, Any]:
    return {"ok": False, "error": message}


async def _respond(
    send: Callable,
    status: int,
    payload: dict[str, Any],
    *,
    head: bool = False,
    allow: bool = False,
    retry_after: bool = False,
) -> None:
    body = json.dumps(payload).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", b"%d" % len(body))]
    if allow:
        headers.append((b"allow", ALLOW))
    if retry_after:
        headers.append((b"retry-after", b"%d" % RETRY_AFTER_SECONDS))
    if status in (401, 413):
        # The body may not have been read; do not try to reuse this connection.
        headers.append((b"connection", b"close"))
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": b"" if head else body})


# -- running it ------------------------------------------------------------------------


class _Server(uvicorn.Server):
    """uvicorn's server, but a drained SIGINT/SIGTERM ends with exit code 0.

    Recent uvicorn re-raises the captured signal after a graceful shutdown, which
    would kill the process with that signal instead of returning. ``serve`` installs
    the handlers itself, before it announces readiness, so no signal is missed.
    """

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield

    @contextlib.contextmanager
    def draining_signals(self) -> Iterator[None]:
        handled = (signal.SIGINT, signal.SIGTERM)
        previous = {sig: signal.signal(sig, self.handle_exit) for sig in handled}
        try:
            yield
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)


def uvicorn_config(app: Callable) -> uvicorn.Config:
    """How tbhook runs uvicorn; the benchmark's no-op ceiling uses the very same settings."""
    return uvicorn.Config(
        app,
        http=_http_protocol(),
        lifespan="off",
        ws="none",
        access_log=False,
        log_level="warning",
        server_header=False,
        timeout_keep_alive=KEEP_ALIVE_SECONDS,
        limit_concurrency=MAX_CONNECTIONS,
        timeout_graceful_shutdown=GRACEFUL_SHUTDOWN_SECONDS,
    )


def _http_protocol() -> Any:
    """httptools with tbhook's deadlines and header limits; h11, with the same, without it."""
    from tbhook.protocol import HTTPTOOLS, GuardedH11Protocol, GuardedHttpToolsProtocol

    return GuardedHttpToolsProtocol if HTTPTOOLS else GuardedH11Protocol


def bind(host: str, port: int) -> socket.socket:
    """Listen on host:port (port 0 picks a free one)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    try:
        return socket.create_server((host, port), family=family, backlog=2048)
    except OSError as exc:
        raise TbhookError(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from exc


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _stderr_line(line: str) -> None:
    sys.stderr.write(line + "\n")
    sys.stderr.flush()


def serve(
    store: EventStore,
    sock: socket.socket,
    *,
    auth: Auth | None = None,
    max_body: int = DEFAULT_MAX_BODY,
    quiet: bool = False,
    on_ready: Callable[[], None] | None = None,
    forward_to: str | None = None,
    retry_scale: float = 1.0,
) -> None:
    """Receive on an already bound socket until SIGINT or SIGTERM, then drain and return.

    ``on_ready`` runs once the stop signals are handled, just before serving starts.
    """
    log = None if quiet else _stderr_line
    writer = BatchWriter(store, forward_to=forward_to)
    forwarder = None
    if forward_to:
        from tbhook.forwarder import Forwarder

        headers = {auth.name: auth.value} if auth else {}
        reader = EventStore.open_readonly(store.path)
        forwarder = Forwarder(writer, reader, forward_to, headers, retry_scale, log)
        writer.on_commit = forwarder.wake
    app = Receiver(writer, auth=auth, max_body=max_body, log=log)
    uvicorn_server = _Server(uvicorn_config(app))
    if forwarder:
        forwarder.start()
    try:
        with uvicorn_server.draining_signals():
            if on_ready:
                on_ready()
            uvicorn_server.run(sockets=[sock])
    finally:
        if forwarder:
            forwarder.close()
        writer.close()

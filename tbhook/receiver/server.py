"""Serving the app with uvicorn: tbhook's settings, its signal handling, the listening socket
and the open-file limit. Imports no typer."""

from __future__ import annotations

import contextlib
import errno
import ipaddress
import os
import signal
import socket
from collections.abc import Callable, Iterator
from typing import Any

import uvicorn

from tbhook.errors import TbhookError
from tbhook.receiver import protocol
from tbhook.receiver.protocol import (
    HTTPTOOLS,
    Connections,
    GuardedH11Protocol,
    GuardedHttpToolsProtocol,
    Limits,
)

GRACEFUL_SHUTDOWN_SECONDS = 8
KEEP_ALIVE_SECONDS = 5  # idle connections, used or not, are closed after this
MAX_CONNECTIONS = 4096  # past this the oldest connection without a complete request is shed
FD_RESERVE = 100  # open files kept free of connections: the database, its WAL, threads, pipes


class Server(uvicorn.Server):
    """uvicorn's server, but a drained SIGINT/SIGTERM ends with exit code 0.

    Recent uvicorn re-raises the captured signal after a graceful shutdown, which
    would kill the process with that signal instead of returning. ``serve`` installs
    the handlers itself, before it announces readiness, so no signal is missed.
    """

    drained: Callable[[], None] | None = None  # run on the loop once requests are drained

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        await super().shutdown(sockets)
        if self.drained:
            self.drained()

    @contextlib.contextmanager
    def draining_signals(self) -> Iterator[None]:
        handled = (signal.SIGINT, signal.SIGTERM)
        previous = {sig: signal.signal(sig, self.handle_exit) for sig in handled}
        try:
            yield
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)


def uvicorn_config(
    app: Callable,
    connections: Connections | None = None,
    limits: Limits | None = None,
    graceful: int = GRACEFUL_SHUTDOWN_SECONDS,
) -> uvicorn.Config:
    """How tbhook runs uvicorn (the receiver, the console); the benchmark's no-op ceiling uses
    the very same settings.

    ``connections`` replaces uvicorn's ``limit_concurrency`` (which answers a complete request
    503 while slow connections hold every place) with shedding, oldest first; ``limits`` are
    the deadlines and header limits (the receiver's by default).
    """
    protocol.check_uvicorn()
    if connections is None:
        connections = Connections(MAX_CONNECTIONS)
    return uvicorn.Config(
        app,
        http=_http_protocol().bound_to(connections, limits),
        lifespan="off",
        ws="none",
        access_log=False,
        log_level="warning",
        server_header=False,
        timeout_keep_alive=KEEP_ALIVE_SECONDS,
        timeout_graceful_shutdown=graceful,
    )


def _http_protocol() -> Any:
    """httptools with tbhook's deadlines and header limits; h11, with the same, without it."""
    return GuardedHttpToolsProtocol if HTTPTOOLS else GuardedH11Protocol


def check_http_stack() -> None:
    """Fail loudly, before listening, on a uvicorn the connection guards were not tested on."""
    protocol.check_uvicorn()


def raise_open_file_limit() -> int:
    """Raise the soft open-file limit to the hard one (each connection is a file); return the
    soft limit now in force."""
    try:
        import resource  # Unix only
    except ImportError:  # pragma: no cover - not a Unix
        return MAX_CONNECTIONS + FD_RESERVE
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = hard if hard != resource.RLIM_INFINITY else max(soft, 1 << 20)
    if soft != resource.RLIM_INFINITY and soft < wanted:
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, hard))
    soft = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
    return soft if soft != resource.RLIM_INFINITY else 1 << 20


def connection_limit(wanted: int = MAX_CONNECTIONS) -> tuple[int, int]:
    """How many connections fit under the open-file limit (raised first), and that limit."""
    files = raise_open_file_limit()
    return max(8, min(wanted, files - FD_RESERVE)), files


def bind(host: str, port: int) -> socket.socket:
    """Listen on host:port (port 0 picks a free one)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    try:
        return socket.create_server((host, port), family=family, backlog=2048)
    except OSError as exc:
        if exc.errno is not None and exc.errno < 0:  # getaddrinfo's: no such address or name
            raise TbhookError(
                f"cannot listen on {host}:{port}: {host} is neither an IP address nor a host "
                "name this machine can resolve"
            ) from exc
        reason = os.strerror(exc.errno) if exc.errno else str(exc)
        if exc.errno == errno.EADDRNOTAVAIL:
            reason += f" ({host} is not an address of this machine)"
        raise TbhookError(f"cannot listen on {host}:{port}: {reason}") from exc


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False

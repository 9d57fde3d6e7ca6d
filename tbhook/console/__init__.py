"""`tbhook ui`: the console, a web page to watch deliveries arrive, open any event in full,
follow people and cases, and chart the team's numbers.

A reader on its own port (never the receiver's, so a receiver exposed to Tracebuzz never
exposes it): ``app`` (the routes), ``site`` (what every page shares), ``views/`` (the pages,
one module per family), ``query`` (the query string read), ``guard`` (Host, token, CSRF, headers),
``charts`` (SVG), ``templates/`` and ``static/`` (shipped in the package: no CDN, works
offline). Loopback only unless it has a token.
"""

from __future__ import annotations

import socket
from dataclasses import dataclass, field
from datetime import tzinfo
from typing import Any

from tbhook.errors import TbhookError


@dataclass(frozen=True)
class Settings:
    """How a console is to run: what `tbhook ui` (or `serve --ui`) was told."""

    db: str
    host: str = "127.0.0.1"
    port: int = 8081
    token: str | None = None
    allowed_hosts: tuple[str, ...] = ()
    zone: tzinfo | None = None
    receiver: str = "http://127.0.0.1:8080/"
    fd: int | None = None  # a socket bound by `serve --ui`, inherited
    extra: dict[str, Any] = field(default_factory=dict)

    def check(self) -> None:
        """Refuse what would expose the log: a non-loopback address without a token."""
        from tbhook.console.guard import is_loopback

        if self.token is None and not is_loopback(self.host):
            raise TbhookError(
                f"the console on {self.host} would show the log to anyone who can reach it: "
                "give it a --token (or TBHOOK_UI_TOKEN), or keep it on 127.0.0.1 and reach "
                "it through an SSH tunnel"
            )
        if self.token is not None and len(self.token) < 12:
            raise TbhookError("a --token shorter than 12 characters is guessable; use a longer one")


def build(settings: Settings) -> Any:
    """The console's ASGI app, behind its guard."""
    from tbhook.console import app
    from tbhook.console.guard import Guard
    from tbhook.console.site import Site

    site = Site(settings.db, settings.zone, settings.receiver)
    guard = Guard(
        app.build(site), settings.host, settings.port, settings.token, settings.allowed_hosts
    )  # type: ignore[arg-type]  # noqa: E501 - an ASGI app either way
    site.guard = guard
    return guard


def listen(settings: Settings) -> socket.socket:
    """The console's socket: inherited from `serve --ui`, or bound here."""
    if settings.fd is not None:
        return socket.socket(fileno=settings.fd)
    from tbhook.receiver.server import bind

    return bind(settings.host, settings.port)


def run(settings: Settings, announce: Any = None) -> None:
    """Serve until SIGINT or SIGTERM."""
    import uvicorn

    settings.check()
    sock = listen(settings)
    host, port = sock.getsockname()[:2]
    app = build(Settings(**{**settings.__dict__, "port": port}))
    if announce is not None:
        announce(f"http://{f'[{host}]' if ':' in host else host}:{port}/")
    config = uvicorn.Config(
        app,
        log_level="warning",
        access_log=False,
        server_header=False,
        date_header=False,
        timeout_graceful_shutdown=1,
    )
    uvicorn.Server(config).run(sockets=[sock])

"""`tbhook ui`: the console, a web page to watch deliveries arrive, open any event in full,
follow people and cases, and chart the team's numbers.

A reader on its own port (never the receiver's, so a receiver exposed to Tracebuzz never
exposes it): ``app`` (the routes), ``site`` (what every page shares), ``views/`` (the pages,
one module per family), ``query`` (the query string read), ``guard`` (Host, token, origin,
CSRF, headers), ``sessions`` (sign-ins, their expiry, notices), ``charts`` (SVG),
``templates/`` and ``static/`` (shipped in the package: no CDN, works offline). Served by the
receiver's guarded HTTP protocol (deadlines, header limits, shedding). Loopback only unless
it has a token.
"""

from __future__ import annotations

import socket
from dataclasses import dataclass, field
from datetime import tzinfo
from typing import Any

from tbhook.errors import TbhookError

MIN_TOKEN = 16
MAX_CONNECTIONS = 1024  # past this the oldest connection without a complete request is shed
SHUTDOWN_SECONDS = 1  # live pages never end by themselves: a stop does not wait for them


class SettingError(TbhookError):
    """A setting the console cannot run with; ``option`` names the one to change."""

    def __init__(self, message: str, option: str) -> None:
        super().__init__(message)
        self.option = option


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
    https: bool = False  # reached over HTTPS only (a proxy in front): Secure cookies
    proxies: tuple[str, ...] = ()  # --trusted-proxy: its X-Forwarded-For names the client
    max_connections: int = MAX_CONNECTIONS
    max_streams: int = 500
    session_idle: float = 30 * 60
    session_lifetime: float = 12 * 3600
    log_format: str = "human"
    extra: dict[str, Any] = field(default_factory=dict)

    def check(self) -> None:
        """Refuse what would expose the log (a non-loopback address without a token), a
        token that is no secret, and limits that leave no room for pages."""
        from tbhook.console.guard import is_loopback

        if self.token is None and not is_loopback(self.host):
            raise SettingError(
                f"the console on {self.host} would show the log to anyone who can reach it: "
                "give it a --token (or TBHOOK_UI_TOKEN), or keep it on 127.0.0.1 and reach "
                "it through an SSH tunnel",
                "'--host' / '--token'",
            )
        if self.token is None and (self.allowed_hosts or self.https or self.proxies):
            given = next(
                name
                for name, value in (("--allow-host", self.allowed_hosts), ("--https", self.https),
                                    ("--trusted-proxy", self.proxies))
                if value
            )  # fmt: skip
            raise SettingError(
                f"{given} means browsers elsewhere reach the console through a proxy, which "
                "would show them the log without a token: give it a --token (or "
                "TBHOOK_UI_TOKEN)",
                f"'{given}' / '--token'",
            )
        if self.token is not None:
            problem = token_problem(self.token)
            if problem:
                raise SettingError(problem, "'--token'")
        if self.max_streams >= self.max_connections:
            raise SettingError(
                f"--max-streams {self.max_streams} leaves no connection for pages under "
                f"--max-connections {self.max_connections}: each live page holds one",
                "'--max-streams'",
            )


def token_problem(token: str) -> str | None:
    """Why ``token`` cannot be the console's secret, or None. The form and a Bearer header
    must accept the same tokens, and a header carries printable ASCII only."""
    make = "python3 -c 'import secrets; print(secrets.token_urlsafe(24))' makes one"
    if not token:
        return (
            "the token is empty (--token '' or TBHOOK_UI_TOKEN set to nothing), and no "
            f"console runs with an empty secret: give one ({make}), or neither for a "
            "console on 127.0.0.1 without one"
        )
    if not token.strip():
        return f"the token is blank; {make}"
    if any(c.isspace() for c in token):
        return f"the token contains whitespace, which a Bearer header cannot carry; {make}"
    odd = next((c for c in token if not (c.isascii() and c.isprintable())), None)
    if odd is not None:
        return (
            f"the token contains {odd!r}, which is not printable ASCII: a browser's form could "
            f"send it but an Authorization: Bearer header cannot; {make}"
        )
    if len(token) < MIN_TOKEN:
        return (
            f"the token is {len(token)} characters; a secret needs at least {MIN_TOKEN}, "
            f"or it is guessable; {make}"
        )
    return None


def build(settings: Settings, log: Any = None) -> Any:
    """The console's ASGI app, behind its guard."""
    from tbhook.console import app
    from tbhook.console.guard import Guard
    from tbhook.console.sessions import Sessions
    from tbhook.console.site import Site
    from tbhook.receiver.log import Throttled

    site = Site(settings.db, settings.zone, settings.receiver)
    guard = Guard(
        app.build(site),  # type: ignore[arg-type]  # an ASGI app either way
        settings.host,
        settings.port,
        settings.token,
        settings.allowed_hosts,
        https=settings.https,
        sessions=Sessions(settings.session_idle, settings.session_lifetime),
        max_streams=settings.max_streams,
        proxies=settings.proxies,
        log=Throttled(log),
    )
    site.guard = guard
    return guard


def listen(settings: Settings) -> socket.socket:
    """The console's socket: inherited from `serve --ui`, or bound here."""
    if settings.fd is not None:
        return socket.socket(fileno=settings.fd)
    from tbhook.receiver.server import bind

    return bind(settings.host, settings.port)


def console_log(fmt: str) -> Any:
    """The console's lines on stderr, in the receiver's format (under `serve --ui` they are
    in the receiver's log), each saying it is the console's."""
    from tbhook.receiver.log import Log

    class ConsoleLog(Log):
        def _write(self, level: str, message: str, facts: dict[str, Any]) -> None:
            super()._write(level, f"console: {message}", {"source": "console", **facts})

    return ConsoleLog(fmt)


def run(settings: Settings, announce: Any = None) -> None:
    """Serve until SIGINT or SIGTERM, behind the receiver's connection guards with the
    console's own limits."""
    import uvicorn

    from tbhook.receiver import server
    from tbhook.receiver.log import Handler
    from tbhook.receiver.protocol import Connections, Limits

    settings.check()
    server.check_http_stack()
    log = console_log(settings.log_format)
    sock = listen(settings)
    host, port = sock.getsockname()[:2]
    limit, files = server.connection_limit(settings.max_connections)
    app = build(Settings(**{**settings.__dict__, "port": port}), log)
    if announce is not None:
        announce(f"http://{f'[{host}]' if ':' in host else host}:{port}/")
    if limit < settings.max_connections:
        log.warning(
            f"the open-file limit ({files}) leaves room for {limit} connections; raise it "
            "(LimitNOFILE= in the systemd unit, or ulimit -n) for more"
        )
    connections = Connections(limit, log)
    limits = Limits(origin_form_only=True, html=True, log_refusals=True)
    config = server.uvicorn_config(app, connections, limits, graceful=SHUTDOWN_SECONDS)
    config.date_header = False
    # uvicorn would take X-Forwarded-For from any loopback peer as the client's address:
    # anyone could pick one per try past the sign-in limit, or lock out someone else's.
    # The guard reads it from a --trusted-proxy only.
    config.proxy_headers = False
    Handler(log).install()  # uvicorn's own warnings as lines of the same log
    try:
        uvicorn.Server(config).run(sockets=[sock])
    finally:
        connections.log.flush()
        app.log.flush()

"""What stands between the console and everyone else: an ASGI middleware that refuses a
request whose Host is not exactly one host[:port] of the console's own (a page elsewhere
reaching it through DNS rebinding, or what a proxy passed along), asks for the token when
there is one (``Authorization: Bearer``, or a signed-in session), refuses every POST from
another origin and every POST without the CSRF value of its session, caps the open
``/stream`` clients, and sets the headers that keep a page from being framed, sniffed or
running anything but the console's own script."""

from __future__ import annotations

import asyncio
import hmac
import ipaddress
import re
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from html import escape
from typing import Any
from urllib.parse import parse_qs

from tbhook.console.sessions import Sessions, SignIns, new_id, well_formed
from tbhook.receiver.log import Throttled

Scope = dict[str, Any]
Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

# The session cookie. Over HTTPS it carries the __Host- prefix: a browser accepts such a
# cookie only from a secure page of this very host with Path=/, so no plain-http page on
# another port (nor a sibling domain) can plant one.
COOKIE = "tbhook_session"
SECURE_COOKIE = "__Host-tbhook_session"
MAX_STREAMS = 500  # open /stream clients (a tab each); past it a 503
STREAMS = ("/stream", "/queue/stream")  # the live pages' server-sent events
HEADERS = [
    (
        b"content-security-policy",
        b"default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
        b"connect-src 'self'; font-src 'self'; form-action 'self'; frame-ancestors 'none'; "
        b"base-uri 'none'",
    ),
    (b"x-content-type-options", b"nosniff"),
    (b"x-frame-options", b"DENY"),
    # No URL of the console leaves it; and its own forms carry their Origin (with
    # no-referrer, a browser sends "Origin: null" even to the same origin).
    (b"referrer-policy", b"same-origin"),
    (b"cross-origin-opener-policy", b"same-origin"),
    (b"cross-origin-resource-policy", b"same-origin"),
]
# Reachable without the token: the form, its style, the icon a browser asks for.
OPEN_PATHS = ("/login", "/static/", "/favicon.ico")
# host[:port] and nothing else: no userinfo (127.0.0.1:1@evil), no path, no second port.
HOST = re.compile(
    r"(?:\[(?P<v6>[0-9A-Fa-f:.]+)\]|(?P<name>[A-Za-z0-9](?:[A-Za-z0-9.-]*[A-Za-z0-9])?))"
    r"(?::(?P<port>[0-9]{1,5}))?"
)


def same_secret(given: str, secret: str) -> bool:
    """Compared in constant time, as bytes: what a client sends may be any text (as str,
    compare_digest refuses anything but ASCII, and that would be a 500)."""
    return hmac.compare_digest(
        given.encode("utf-8", "surrogateescape"), secret.encode("utf-8", "surrogateescape")
    )


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def is_wildcard(host: str) -> bool:
    return host.strip("[]") in ("0.0.0.0", "::", "")


def host_name(header: str) -> str | None:
    """The name in a Host header that is exactly host[:port]; None for anything else."""
    found = HOST.fullmatch(header)
    if found is None:
        return None
    return (found["v6"] or found["name"]).lower()


@dataclass
class Door:
    """One request as the guard reads it."""

    scope: Scope
    headers: dict[str, str]
    hosts: list[str]
    cookies: list[tuple[str, str]]

    @classmethod
    def of(cls, scope: Scope) -> Door:
        headers: dict[str, str] = {}
        hosts: list[str] = []
        for key, value in scope["headers"]:
            name, text = key.decode("latin-1").lower(), value.decode("latin-1")
            if name == "host":
                hosts.append(text)
            elif name == "cookie" and "cookie" in headers:
                text = headers["cookie"] + "; " + text  # HTTP/2 proxies split it
            elif name == "x-forwarded-for" and name in headers:
                text = headers[name] + ", " + text  # one list, in the order they came
            headers[name] = text
        return cls(scope, headers, hosts, _cookies(headers.get("cookie", "")))

    @property
    def peer(self) -> str:
        """The address of the socket's other end (uvicorn's proxy headers are off)."""
        client = self.scope.get("client")
        return str(client[0]) if client else ""

    def address(self, proxies: frozenset[str]) -> str:
        """Who is asking: the peer, or, when the peer is a --trusted-proxy, the address that
        proxy added last to X-Forwarded-For (the client it saw; whatever the client sent
        itself comes before). Always an IP address as ``ipaddress`` writes it, never text
        from a header."""
        peer = self.peer
        if _ip(peer) not in proxies:
            return peer
        forwarded = self.headers.get("x-forwarded-for", "").split(",")[-1].strip()
        return _ip(forwarded) or peer

    def cookie(self, name: str) -> list[str]:
        """Every value the Cookie header gives ``name`` (a page may have planted one more)."""
        return [value for key, value in self.cookies if key == name]


@dataclass
class Guard:
    """The console's doors. ``host``/``port`` is where it listens; ``allowed`` more names it
    may be reached by (a proxy's); ``token`` the secret, or None on loopback; ``https``: it
    is reached over HTTPS only (a proxy in front says so)."""

    app: ASGIApp
    host: str
    port: int
    token: str | None = None
    allowed: Iterable[str] = ()
    https: bool = False
    sessions: Sessions = field(default_factory=Sessions)
    signins: SignIns = field(default_factory=SignIns)
    max_streams: int = MAX_STREAMS
    proxies: Iterable[str] = ()  # --trusted-proxy: their X-Forwarded-For names the client
    log: Throttled = field(default_factory=lambda: Throttled(None))
    streams: int = field(init=False, default=0)
    _loop: asyncio.AbstractEventLoop | None = field(init=False, default=None)
    _hosts: set[str] = field(init=False)
    _proxied: set[str] = field(init=False)
    _proxies: frozenset[str] = field(init=False)

    def __post_init__(self) -> None:
        self._proxied = {name.lower() for name in self.allowed}
        self._proxies = frozenset(_ip(address) for address in self.proxies)
        names = {self.host.strip("[]").lower()}
        if is_loopback(self.host):
            names |= {"127.0.0.1", "localhost", "::1"}
        self._hosts = names | self._proxied

    def host_ok(self, name: str) -> bool:
        if is_wildcard(self.host) and self.token is not None:
            return True  # any name of this machine; the token is what guards it
        return name in self._hosts

    def secure(self, name: str, headers: dict[str, str]) -> bool:
        """Reached over HTTPS: ``--https``, or a proxy in front of an --allow-host name says
        so (X-Forwarded-Proto, the value the nearest proxy added: the last)."""
        if self.https:
            return True
        forwarded = headers.get("x-forwarded-proto", "").split(",")[-1].strip().lower()
        return name in self._proxied and forwarded == "https"

    def own_url(self, name: str, secure: bool) -> str:
        """The console's address for a command to copy (copy as curl): an --allow-host name
        the request came by, else where the console listens; never the request's own Host
        (a page elsewhere could pick it, and a Bearer token would follow it there)."""
        if name in self._proxied:
            return f"{'https' if secure else 'http'}://{name}"
        host = self.host.strip("[]")
        if is_wildcard(self.host):
            host = "::1" if ":" in host else "127.0.0.1"  # any address: this machine's own
        shown = f"[{host}]" if ":" in host else host
        return f"{'https' if self.https else 'http'}://{shown}:{self.port}"

    def same_origin(self, door: Door, name: str, secure: bool) -> bool:
        """A POST comes from a page of this console: its Origin is the console's own (scheme,
        host and port as the browser sees them, or an --allow-host name behind a proxy); with
        no Origin, Sec-Fetch-Site says same-origin or none (a client that sends neither, as
        curl, is judged by its CSRF value or token)."""
        site = door.headers.get("sec-fetch-site")
        if site is not None and site not in ("same-origin", "none"):
            return False
        origin = door.headers.get("origin")
        if origin is None:
            return True
        schemes: tuple[str, ...] = ("https",) if secure else ("http",)
        proxy_schemes = ("https",) if self.https else ("http", "https")
        if name in self._proxied:
            schemes = proxy_schemes
        own = {f"{scheme}://{door.hosts[0].lower()}" for scheme in schemes}
        own |= {f"{scheme}://{proxied}" for proxied in self._proxied for scheme in proxy_schemes}
        return origin.lower() in own

    def cookie(self, sid: str, secure: bool, max_age: int | None = None) -> bytes:
        """The session cookie: HttpOnly (no script reads it), SameSite=Lax (a link from
        elsewhere arrives signed in; a form from elsewhere does not carry it), Secure over
        HTTPS."""
        name = SECURE_COOKIE if secure else COOKIE
        flags = "; Path=/; SameSite=Lax; HttpOnly"
        if secure:
            flags += "; Secure"
        if max_age is not None:
            flags += f"; Max-Age={max_age}"
        return f"{name}={sid}{flags}".encode()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        self._loop = self._loop or asyncio.get_running_loop()
        door = Door.of(scope)
        name = host_name(door.hosts[0]) if len(door.hosts) == 1 else None
        if door.hosts in ([], [""]):
            name = ""  # no name at all: not this console's (421 below)
        if name is None or not scope.get("raw_path", b"/").startswith(b"/"):
            self.log("host", "refused a request with a malformed Host or target (400)")
            await _refuse(send, 400, "This console takes one Host header, host[:port], and a "
                          "path, not a URL.")  # fmt: skip
            return
        if not name or not self.host_ok(name):
            self.log("host", "refused a request for another host name (421)")
            await _refuse(send, 421, "This console answers only to its own address.")
            return
        secure = self.secure(name, door.headers)
        given = door.cookie(SECURE_COOKIE if secure else COOKIE)
        signed = next((sid for sid in given if self.sessions.signed_in(sid, secure)), None)
        sid = signed or next((sid for sid in given if well_formed(sid)), None)
        fresh = sid is None
        sid = sid or new_id()
        address = door.address(self._proxies)
        state = scope.setdefault("state", {})
        state.update(csrf=self.sessions.csrf(sid), session=sid, signed_in=signed is not None)
        state.update(secure=secure, address=address, host=name)
        bearer = await self._bearer(door, address, send)
        if bearer is None:
            return  # refused
        path = scope["path"]
        if self.token is not None and not path.startswith(OPEN_PATHS) and not (bearer or signed):
            if path.endswith((".json", ".csv")) or path in STREAMS:
                await _refuse(send, 401, "This console needs its token.", json=True)
            else:
                await _redirect(send, "/login")
            return
        if scope["method"] not in ("GET", "HEAD"):  # a POST (nothing else is routed)
            replayed = await self._post(door, name, secure, sid, bearer, receive, send)
            if replayed is None:
                return
            receive = replayed

        async def with_headers(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.start":
                own = list(message.get("headers", []))
                sets = any(k == b"set-cookie" and COOKIE.encode() in v for k, v in own)
                if fresh and not sets:
                    own.append((b"set-cookie", self.cookie(sid, secure)))
                message["headers"] = [*own, *HEADERS]
            await send(message)

        if path not in STREAMS:
            await self.app(scope, receive, with_headers)
        elif self.streams >= self.max_streams:
            self.log(
                "streams",
                f"{self.max_streams} live pages are open already (--max-streams); "
                "answered 503 to one more",
                status=503,
            )
            await _refuse(send, 503, f"This console already feeds {self.max_streams} live "
                          "pages; reload later.", retry_after=30)  # fmt: skip
        else:
            # A page that came in by its session is fed only while the session lasts.
            state["stream_session"] = signed if self.token is not None and not bearer else None
            await self._stream(scope, receive, with_headers, signed)

    async def _bearer(self, door: Door, address: str, send: Send) -> bool | None:
        """Whether a right Bearer token came; None when the request was refused for a
        wrong one (401) or for too many wrong ones from its ``address`` (429)."""
        header = door.headers.get("authorization", "")
        if self.token is None or not header.lower().startswith("bearer "):
            return False
        wait = self.signins.wait(address)
        if wait:
            await _too_many(send, wait)
            return None
        if same_secret(header[7:].strip(), self.token):
            return True
        wait = self.signins.failed(address)
        if wait:
            self.locked_out(address, wait)
            await _too_many(send, wait)
        else:
            await _refuse(send, 401, "This console needs its token.", json=True)
        return None

    def locked_out(self, address: str, wait: int) -> None:
        """Say that ``address`` is refused for ``wait`` s (from a view's worker thread too:
        the log is the event loop's)."""
        try:
            asyncio.get_running_loop()
        except RuntimeError:
            if self._loop is not None:
                self._loop.call_soon_threadsafe(self.locked_out, address, wait)
            return
        self.log(
            "sign-in",
            f"{self.signins.failures} wrong tokens from {address} within "
            f"{self.signins.window / 60:g} min; its sign-ins are refused (429) for {wait} s",
            address=address,
            status=429,
        )

    async def _post(
        self, door: Door, name: str, secure: bool, sid: str, bearer: bool,
        receive: Receive, send: Send,
    ) -> Receive | None:  # fmt: skip
        """The body of a POST from this console's own page (or a client with the token), to
        be read again by the view; None when refused (403, 429)."""
        if not self.same_origin(door, name, secure):
            self.log("origin", "refused a POST from another origin (403)")
            await _refuse(send, 403, "This form came from another site: nothing was done.")
            return None
        body = await _body(receive)
        if body is None:
            return None  # the client left, or the protocol answered 408: nothing to say
        sent = parse_qs(body.decode("utf-8", "replace")).get("csrf", [""])[0]
        if not bearer and not self.sessions.csrf_ok(sid, sent):
            self.log("csrf", "refused a POST without its session's CSRF value (403)")
            await _refuse(send, 403, "This form is stale or came from elsewhere: reload the "
                          "page and send it again. Nothing was done.")  # fmt: skip
            return None
        if door.scope["path"] == "/login":
            wait = self.signins.wait(door.scope["state"]["address"])
            if wait:
                await _too_many(send, wait)
                return None
        return _replay(body)

    async def _stream(self, scope: Scope, receive: Receive, send: Send, sid: str | None) -> None:
        """One more live page, counted while it is open (its session is not idle meanwhile)."""
        self.streams += 1
        if sid is not None:
            self.sessions.streaming(sid, +1)
        try:
            await self.app(scope, receive, send)
        finally:
            self.streams -= 1
            if sid is not None:
                self.sessions.streaming(sid, -1)


def _ip(text: str) -> str:
    """``text`` as ``ipaddress`` writes the address it is (an IPv4 address inside IPv6 as
    IPv4), or "" when it is none."""
    try:
        ip = ipaddress.ip_address(text.strip().strip("[]"))
    except ValueError:
        return ""
    mapped = getattr(ip, "ipv4_mapped", None)
    return str(mapped or ip)


def _cookies(header: str) -> list[tuple[str, str]]:
    """Every name=value pair, in order, duplicates kept (http.cookies keeps only the last)."""
    pairs = []
    for part in header.split(";"):
        key, sep, value = part.strip().partition("=")
        if sep:
            pairs.append((key.strip(), value.strip().strip('"')))
    return pairs


async def _body(receive: Receive) -> bytes | None:
    """The request's body (its first 64 KiB); None when it never came whole."""
    chunks = []
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            return None
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > 64 * 1024:  # a form here is a few fields
            break
        chunks.append(chunk)
        if not message.get("more_body"):
            break
    return b"".join(chunks)


def _replay(body: bytes) -> Receive:
    sent = False

    async def receive() -> dict[str, Any]:
        nonlocal sent
        if sent:
            return {"type": "http.disconnect"}
        sent = True
        return {"type": "http.request", "body": body, "more_body": False}

    return receive


def too_many(wait: int) -> str:
    """What a client refused for ``wait`` seconds after too many wrong tokens is told."""
    minutes = max(1, (wait + 59) // 60)
    return (
        f"Too many wrong tokens from your address: try again in {minutes} "
        f"minute{'s' if minutes > 1 else ''}."
    )


async def _too_many(send: Send, wait: int) -> None:
    await _refuse(send, 429, too_many(wait), retry_after=wait)


async def _refuse(
    send: Send, status: int, text: str, json: bool = False, retry_after: int | None = None
) -> None:
    if json:
        import json as _json

        body = _json.dumps({"error": text}).encode()
        kind = b"application/json"
    else:
        body = (
            f"<!doctype html><meta charset=utf-8><title>tbhook console</title><p>{escape(text)}</p>"
        ).encode()
        kind = b"text/html; charset=utf-8"
    extra = [(b"retry-after", str(retry_after).encode())] if retry_after else []
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", kind),
                (b"content-length", str(len(body)).encode()),
                *extra,
                *HEADERS,
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})


async def _redirect(send: Send, to: str) -> None:
    await send(
        {
            "type": "http.response.start",
            "status": 303,
            "headers": [(b"location", to.encode()), (b"content-length", b"0"), *HEADERS],
        }
    )
    await send({"type": "http.response.body", "body": b""})

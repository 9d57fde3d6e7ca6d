"""What stands between the console and everyone else: an ASGI middleware that refuses a
request whose Host is not the console's own (a page elsewhere reaching it through DNS
rebinding), asks for the token when there is one (``Authorization: Bearer``, or the cookie
the login form sets), checks every POST's CSRF token, and sets the headers that keep a page
from being framed, sniffed or running anything but the console's own script."""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import secrets
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from http.cookies import SimpleCookie
from typing import Any
from urllib.parse import parse_qs

Scope = dict[str, Any]
Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

SESSION = "tbhook_console"  # the cookie that proves the token was given
CSRF = "tbhook_csrf"  # the cookie whose value every form sends back
HEADERS = [
    (
        b"content-security-policy",
        b"default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
        b"connect-src 'self'; font-src 'self'; form-action 'self'; frame-ancestors 'none'; "
        b"base-uri 'none'",
    ),
    (b"x-content-type-options", b"nosniff"),
    (b"x-frame-options", b"DENY"),
    (b"referrer-policy", b"no-referrer"),
    (b"cross-origin-opener-policy", b"same-origin"),
    (b"cross-origin-resource-policy", b"same-origin"),
]
OPEN_PATHS = ("/login", "/static/")  # reachable without the token (the form, its style)


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


@dataclass
class Guard:
    """The console's doors. ``host``/``port`` is where it listens; ``allowed`` more names it
    may be reached by (a proxy's); ``token`` the secret, or None on loopback."""

    app: ASGIApp
    host: str
    port: int
    token: str | None = None
    allowed: Iterable[str] = ()
    _hosts: set[str] = field(init=False)

    def __post_init__(self) -> None:
        names = {self.host.strip("[]")}
        if is_loopback(self.host):
            names |= {"127.0.0.1", "localhost", "::1"}
        names |= {name.lower() for name in self.allowed}
        self._hosts = {name.lower() for name in names}

    def session_value(self) -> str:
        """What the session cookie holds: a keyed hash of the token, never the token."""
        assert self.token is not None
        return hmac.new(self.token.encode(), b"tbhook console session", hashlib.sha256).hexdigest()

    def host_ok(self, header: str) -> bool:
        if is_wildcard(self.host) and self.token is not None:
            return True  # any name of this machine; the token is what guards it
        name = header.rsplit(":", 1)[0] if not header.endswith("]") else header
        if header.startswith("["):
            name = header[1:].split("]", 1)[0]
        return name.lower() in self._hosts

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
        path = scope["path"]
        if not self.host_ok(headers.get("host", "")):
            await _refuse(send, 421, "This console answers only to its own address.")
            return
        cookies = _cookies(headers.get("cookie", ""))
        scope.setdefault("state", {})
        if self.token is not None and not path.startswith(OPEN_PATHS):
            bearer = headers.get("authorization", "")
            given = bearer[7:] if bearer.lower().startswith("bearer ") else None
            signed = cookies.get(SESSION)
            if not (
                (given is not None and same_secret(given, self.token))
                or (signed is not None and same_secret(signed, self.session_value()))
            ):
                if path.endswith((".json", ".csv")) or path == "/stream" or given is not None:
                    await _refuse(send, 401, "This console needs its token.", json=True)
                else:
                    await _redirect(send, "/login")
                return
        csrf = cookies.get(CSRF) or secrets.token_urlsafe(24)
        scope["state"]["csrf"] = csrf
        if scope["method"] == "POST":
            body = await _body(receive)
            sent = parse_qs(body.decode("utf-8", "replace")).get("csrf", [""])[0]
            if not (cookies.get(CSRF) and same_secret(sent, cookies[CSRF])):
                await _refuse(send, 403, "This form is stale or came from elsewhere: reload it.")
                return
            receive = _replay(body)

        async def with_headers(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [
                    *message.get("headers", []),
                    *HEADERS,
                    *(
                        []
                        if CSRF in cookies
                        else [(b"set-cookie", _cookie(CSRF, csrf, http_only=True))]
                    ),
                ]
            await send(message)

        await self.app(scope, receive, with_headers)


def _cookie(name: str, value: str, http_only: bool = True) -> bytes:
    flags = "; Path=/; SameSite=Strict" + ("; HttpOnly" if http_only else "")
    return f"{name}={value}{flags}".encode()


def session_cookie(guard: Guard) -> bytes:
    return _cookie(SESSION, guard.session_value())


def _cookies(header: str) -> dict[str, str]:
    jar: SimpleCookie = SimpleCookie()
    try:
        jar.load(header)
    except Exception:  # noqa: BLE001 - a malformed cookie header is no cookie
        return {}
    return {key: morsel.value for key, morsel in jar.items()}


async def _body(receive: Receive) -> bytes:
    chunks = []
    size = 0
    while True:
        message = await receive()
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


async def _refuse(send: Send, status: int, text: str, json: bool = False) -> None:
    if json:
        import json as _json

        body = _json.dumps({"error": text}).encode()
        kind = b"application/json"
    else:
        body = (
            f"<!doctype html><meta charset=utf-8><title>tbhook console</title><p>{text}</p>"
        ).encode()
        kind = b"text/html; charset=utf-8"
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", kind),
                (b"content-length", str(len(body)).encode()),
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

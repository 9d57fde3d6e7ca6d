"""A small keep-alive HTTP client for `send`, `replay` and forwarding. Imports no typer."""

from __future__ import annotations

import http.client
import json
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from tbhook.errors import TbhookError
from tbhook.model.text import quoted

DEFAULT_TIMEOUT = 10.0


@dataclass(frozen=True)
class Reply:
    status: int
    body: bytes

    @property
    def ok(self) -> bool:
        return self.status == 200

    def json(self) -> Any:
        try:
            return json.loads(self.body)
        except ValueError:
            return None


class PostFailed(TbhookError):
    """No HTTP answer at all: refused, reset, timed out."""


class Poster:
    """POSTs bodies to one URL, reusing the connection between requests."""

    def __init__(
        self, url: str, headers: dict[str, str] | None = None, timeout: float = DEFAULT_TIMEOUT
    ):
        try:
            parts = urlsplit(url)
            port = parts.port  # reading it checks it: 'http://h:99999/' is no URL
        except ValueError as exc:
            raise TbhookError(f"{quoted(url)} is not a URL to post to: {exc}") from None
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise TbhookError(f"{quoted(url)} is not an http:// or https:// URL")
        if any(c.isspace() or not c.isprintable() for c in parts.hostname):
            raise TbhookError(f"{quoted(url)} has a space or a control character in its host")
        self.url = url
        self._https = parts.scheme == "https"
        self._host = parts.hostname
        self._port = port
        self._target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        self._headers = {"Content-Type": "application/json", **(headers or {})}
        self._timeout = timeout
        self._conn: http.client.HTTPConnection | None = None

    def post(self, body: bytes) -> Reply:
        """POST one body. A stale kept-alive connection is retried once on a fresh one."""
        for attempt in (1, 2):
            conn = self._connection()
            try:
                conn.request("POST", self._target, body=body, headers=self._headers)
                response = conn.getresponse()
                reply = Reply(response.status, response.read())
                if response.will_close:
                    self.close()
                return reply
            except (http.client.RemoteDisconnected, ConnectionResetError, BrokenPipeError):
                self.close()
                if attempt == 2:
                    raise PostFailed(f"{self.url}: connection closed without an answer") from None
            except (OSError, http.client.HTTPException, UnicodeError) as exc:  # a name too long
                self.close()
                reason = getattr(exc, "strerror", None) or str(exc) or type(exc).__name__
                raise PostFailed(f"{self.url}: {reason}") from exc
        raise AssertionError("unreachable")

    def _connection(self) -> http.client.HTTPConnection:
        if self._conn is None:
            cls = http.client.HTTPSConnection if self._https else http.client.HTTPConnection
            self._conn = cls(self._host, self._port, timeout=self._timeout)
        return self._conn

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None


def auth_headers(name: str | None, value: str | None) -> dict[str, str]:
    return {name: value} if name and value else {}

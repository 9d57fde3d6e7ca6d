"""What ``--db`` names: a SQLite file, or a PostgreSQL URL (checked, and shown without its
password). Light: every command asks, before it knows which backend to load."""

from __future__ import annotations

import re
from urllib.parse import urlsplit, urlunsplit

from tbhook.errors import TbhookError


def is_url(target: str) -> bool:
    return target.startswith(("postgresql://", "postgres://"))


def check_url(url: str) -> None:
    """Raise TbhookError, in words and without the password, when ``url`` cannot be a
    PostgreSQL URL (a port that is not a number or out of range, an unclosed IPv6 bracket)."""
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        reason = str(exc)
        if "cast to integer" in reason:
            reason = "its port is not a number"
        elif "out of range" in reason:
            reason = "its port is not between 1 and 65535"
        elif "IPv6" in reason:
            reason = "its IPv6 address lacks a bracket (write postgresql://[::1]:5432/tbhook)"
        raise TbhookError(f"{_masked(url)} is not a valid PostgreSQL URL: {reason}") from None
    if port == 0:
        raise TbhookError(
            f"{_masked(url)} is not a valid PostgreSQL URL: its port is not between 1 and 65535"
        )


def _masked(url: str) -> str:
    """The URL with any password replaced, without parsing it (it may not parse)."""
    return re.sub(r"^([a-z]+://[^:/@]*):[^@/]*@", r"\1:***@", url)


def shown(url: str) -> str:
    """The URL without its password: safe for a banner, a report or an error."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.hostname or ""
    if parts.username:
        netloc = f"{parts.username}@{netloc}"
    if parts.port:
        netloc += f":{parts.port}"
    return urlunsplit(parts._replace(netloc=netloc))

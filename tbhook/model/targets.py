"""What ``--db`` names: a SQLite file, or a PostgreSQL URL (checked, and shown without its
password). Light: every command asks, before it knows which backend to load."""

from __future__ import annotations

import re
from urllib.parse import urlsplit, urlunsplit

from tbhook.errors import TbhookError
from tbhook.model.text import quoted

SCHEMES = ("postgresql://", "postgres://")
# A scheme as RFC 3986 writes one; two letters at least, so a drive letter (C:) is not one.
_SCHEME = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]+):")


def is_url(target: str) -> bool:
    return target.startswith(SCHEMES)


def check_target(target: str) -> None:
    """Raise TbhookError, in words, when ``target`` (what --db names) is neither a file name
    nor a PostgreSQL URL tbhook can use: another scheme (``mysql://``), or a PostgreSQL one
    written amiss (``postgresql:/host/db``), or no file's name at all: blank, ``-`` (a
    database is opened by name again and again, never stdin or stdout), a name that begins
    with ``-`` (an option where the name was missing) or has spaces around it. A file whose
    name has a colon is ``./NAME``."""
    name_problem = _name_problem(target)
    if name_problem:
        raise TbhookError(name_problem)
    if is_url(target):
        check_url(target)
        return
    scheme = _SCHEME.match(target)
    if scheme is None:
        return
    name = scheme[1]
    if name.lower() in ("postgresql", "postgres"):
        raise TbhookError(
            f"{_masked(target)} is not a valid PostgreSQL URL: it must begin with "
            "postgresql:// or postgres:// (in lower case, two slashes), such as "
            "postgresql://localhost/tbhook"
        )
    slashes = target[len(scheme[0]) :].startswith("//")
    file = "" if slashes else f"; for a file whose name has a colon, write ./{target}"
    raise TbhookError(
        f"{_masked(target)}: tbhook does not speak {name}:{'//' if slashes else ''}, only "
        f"SQLite files and PostgreSQL ({' or '.join(SCHEMES)}){file}"
    )


def _name_problem(target: str) -> str | None:
    if not target.strip():
        return (
            f"{target!r} is no file name: give a database file (tbhook.db) or a postgresql:// URL"
        )
    if target == "-":
        return (
            "'-' is not a database: tbhook opens its database by name, again and again, so it "
            "cannot be stdin or stdout; give a file name (./- for a file named -)"
        )
    if target.startswith("-"):
        return (
            f"{quoted(target)} looks like an option, not a file name (was the database's name "
            f"left out?); for a file whose name begins with -, write ./{target}"
        )
    if target != target.strip():
        return (
            f"{quoted(target)} begins or ends with white space (a slip when it was typed or "
            "pasted): give the name without it"
        )
    return None


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
    return re.sub(r"^([A-Za-z][A-Za-z0-9+.-]*://[^:/@]*):[^@/]*@", r"\1:***@", url)


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

"""The filters every read command shares, and parsing of their values. Pure, no I/O."""

from __future__ import annotations

import re
from dataclasses import dataclass

SENDERS = {"customer": 0, "agent": 1}


@dataclass(frozen=True)
class Filters:
    """Which events a read command looks at. ``since``/``until`` are Unix seconds on
    ``timestamp``: since is inclusive, until is exclusive."""

    events: tuple[str, ...] = ()
    case: int | None = None
    person: int | None = None
    search_id: int | None = None
    source: int | None = None
    sender: int | None = None
    since: int | None = None
    until: int | None = None
    path: str | None = None  # the URL path a receiver was posted to (one per Tracebuzz profile)
    text: str | None = None  # found in the raw body, byte for byte (UTF-8)


def parse_path(text: str) -> str:
    """A receiver's URL path as stored: it begins with a slash (``profile-a`` is
    ``/profile-a``); an import's path is ``import:FILE``."""
    text = text.strip()
    if not text:
        raise ValueError("an empty path (the root is /)")
    if text.startswith(("/", "import:")):
        return text
    return "/" + text


def parse_sender(text: str) -> int:
    try:
        return SENDERS[text.strip().lower()]
    except KeyError:
        raise ValueError(f"{text!r} is not customer or agent") from None


def fits_int64(value: int) -> bool:
    """Whether ``value`` can be an ID: Tracebuzz's IDs and tbhook's are 64-bit integers (as
    SQLite and PostgreSQL keep them; a larger one cannot even be asked for)."""
    return -(2**63) <= value < 2**63


# Written in ASCII digits only, on the command line and in the console: int() and str.isdigit
# also take '٣' or '１' (other scripts' digits), which no one types for an id on purpose.
_ID = re.compile(r"-?[0-9]+")


def whole(text: str) -> int:
    """ASCII digits (checked by the caller) as an int; past 30 digits, a stand-in as far
    out of any range (int() refuses 4,300 digits in words no one should read)."""
    if len(text) > 30:
        return -(10**30) if text.startswith("-") else 10**30
    return int(text)


def parse_id(text: str, what: str = "a number") -> int:
    """An id as people write it (``--case 12``, ``?case=12``): ASCII digits, 64-bit;
    ``what`` names it in the error (``a quarantine id``)."""
    text = text.strip()
    if not _ID.fullmatch(text):
        raise ValueError(f"{text[:40]!r} is not {what} (written in the digits 0-9)")
    value = whole(text)
    if not fits_int64(value):
        named = "" if what == "a number" else f" is not {what}: it"
        raise ValueError(f"{text[:40]}{named} does not fit in a 64-bit integer")
    return value


def parse_count(text: str, low: int, high: int | None = None) -> int:
    """A count or a size as people write it (``-n 20``, ``?limit=20``): ASCII digits, from
    ``low`` (to ``high``)."""
    text = text.strip()
    if not _ID.fullmatch(text):
        raise ValueError(f"{text[:40]!r} is not a number (written in the digits 0-9)")
    value = whole(text)
    if value < low or (high is not None and value > high):
        bound = f"from {low} to {high}" if high is not None else f"at least {low}"
        raise ValueError(f"{text[:40]} is not a number {bound}")
    return value

"""The filters every read command shares, and parsing of their values. Pure, no I/O."""

from __future__ import annotations

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


def parse_id(text: str) -> int:
    """An ID as people type it: ASCII digits, a minus sign allowed, 64 bits at most."""
    text = text.strip()
    digits = text.removeprefix("-")
    if not (digits.isascii() and digits.isdigit()):
        raise ValueError(f"{text!r} is not a number")
    if not fits_int64(int(text)):
        raise ValueError(f"{text} does not fit in a 64-bit integer")
    return int(text)


def fits_int64(value: int) -> bool:
    """Whether ``value`` can be an ID: Tracebuzz's IDs and tbhook's are 64-bit integers (as
    SQLite and PostgreSQL keep them; a larger one cannot even be asked for)."""
    return -(2**63) <= value < 2**63

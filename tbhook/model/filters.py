"""The filters every read command shares: each field is one filter, with the parameter that
sets it (its option and query key, how its value is read, its help, what it says when it
matches nothing). A new filter is one field here and one clause in ``tbhook.store.sql``.
Pure, no I/O."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import tzinfo
from typing import Any

from tbhook.model.params import as_given, filter_field, plain
from tbhook.model.text import clean, quoted
from tbhook.model.times import parse_when, said, whole

SENDERS = {"customer": 0, "agent": 1}


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
        raise ValueError(f"{quoted(text)} is not customer or agent") from None


def fits_int64(value: int) -> bool:
    """Whether ``value`` can be an ID: Tracebuzz's IDs and tbhook's are 64-bit integers (as
    SQLite and PostgreSQL keep them; a larger one cannot even be asked for)."""
    return -(2**63) <= value < 2**63


# Written in ASCII digits only, on the command line and in the console: int() and str.isdigit
# also take '٣' or '１' (other scripts' digits), which no one types for an id on purpose.
_ID = re.compile(r"-?[0-9]+")


def parse_id(text: str, what: str = "a number") -> int:
    """An id as people write it (``--case 12``, ``?case=12``): ASCII digits, 64-bit;
    ``what`` names it in the error (``a quarantine id``)."""
    text = text.strip()
    if not _ID.fullmatch(text):
        raise ValueError(f"{quoted(text)} is not {what} (written in the digits 0-9)")
    value = whole(text)
    if not fits_int64(value):
        named = "" if what == "a number" else f" is not {what}: it"
        raise ValueError(f"{_digits(text)}{named} does not fit in a 64-bit integer")
    return value


def parse_count(text: str, low: int, high: int | None = None) -> int:
    """A count or a size as people write it (``-n 20``, ``?limit=20``): ASCII digits, from
    ``low`` (to ``high``)."""
    text = text.strip()
    if not _ID.fullmatch(text):
        raise ValueError(f"{quoted(text)} is not a number (written in the digits 0-9)")
    value = whole(text)
    if value < low or (high is not None and value > high):
        bound = f"from {low} to {high}" if high is not None else f"at least {low}"
        raise ValueError(f"{_digits(text)} is not a number {bound}")
    return value


_DECIMAL = re.compile(r"[0-9]+(?:\.[0-9]+)?|\.[0-9]+")


def parse_decimal(text: str, what: str = "a number") -> float:
    """A number with a fraction as people write it (``0.5``, ``20``): ASCII digits only, as
    every number read from a person (float() would take '٣' and 'inf')."""
    text = text.strip()
    if not _DECIMAL.fullmatch(text):
        raise ValueError(f"{quoted(text)} is not {what} (written in the digits 0-9, like 0.5)")
    return float(text)


def _digits(text: str) -> str:
    """Digits read as a number, shown as given: cut after 40 (a number that long is no id)."""
    return text[:40] + ("..." if len(text) > 40 else "")


def _id(text: str, _zone: tzinfo) -> int:
    return parse_id(text)


def _since(text: str, zone: tzinfo) -> int:
    return parse_when(text, zone=zone)


def _until(text: str, zone: tzinfo) -> int:
    return parse_when(text, until=True, zone=zone)


def _has(column: str) -> Any:
    return lambda value: f"no event has {column} {value}"


@dataclass(frozen=True)
class Filters:
    """Which events a read command looks at. ``since``/``until`` are Unix seconds on
    ``timestamp``: since is inclusive, until is exclusive."""

    # fmt: off
    events: tuple[str, ...] = filter_field(
        "event", as_given, "NAME", "Only this event name (repeatable).", many=True, default=(),
        nothing=lambda name: f'no event named "{clean(name)}"')
    case: int | None = filter_field(
        "case", _id, "ID", "Only this caseId.", nothing=_has("caseId"))
    person: int | None = filter_field(
        "person", _id, "ID", "Only this personId and everyone merged with it.",
        nothing=lambda value: f"no event names person {value} or anyone merged with them")
    search_id: int | None = filter_field(
        "search-id", _id, "ID", "Only this searchId.", nothing=_has("searchId"))
    source: int | None = filter_field(
        "source", _id, "ID", "Only this sourceId.", nothing=_has("sourceId"))
    sender: int | None = filter_field(
        "sender", plain(parse_sender), "customer|agent",
        "Only messages from the customer or an agent.",
        nothing=lambda own: f"no message from {'an agent' if own else 'the customer'}")
    since: int | None = filter_field(
        "since", _since, "WHEN", "From this moment: 2024-05-01, 2024-05-01T09:30+02:00, Unix "
        "seconds (1663831826; 13 digits: milliseconds), an age: 30m, 2h, 7d, or now. Without "
        "an offset, in --tz (UTC).", moment=True,
        nothing=lambda value: f"no event has a timestamp from {said(value)}")
    until: int | None = filter_field(
        "until", _until, "WHEN", "Up to this moment, included (a bare date includes that day).",
        moment=True,  # exclusive: its last second included is the one before
        nothing=lambda value: f"no event has a timestamp up to {said(value - 1)}")
    # The URL path a receiver was posted to (one per Tracebuzz profile).
    path: str | None = filter_field(
        "path", plain(parse_path), "PATH", "Only what was posted to this path (one receiver, "
        "several Tracebuzz profiles: /profile-a, /profile-b).",
        nothing=lambda value: f"no event was posted to {clean(value)}")
    # Found in the raw body, byte for byte (UTF-8), as it was given (spaces kept).
    text: str | None = filter_field(
        "text", as_given, "TEXT", "Only events whose raw body contains TEXT (as it was sent: a "
        'JSON body holds "Müller" as the customer typed it, or escaped as \\u00fc).',
        verbatim=True,
        nothing=lambda value: f'no raw body contains "{clean(value)}" (byte for byte, as sent)')
    # fmt: on

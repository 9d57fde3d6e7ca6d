"""Moments and durations: read from what people type, written for people and machines.
Pure, no I/O."""

from __future__ import annotations

import contextlib
import os
import re
import time
from datetime import date, datetime, timedelta, timezone, tzinfo

from tbhook.model.text import quoted

_AGE = re.compile(r"^([0-9]+)\s*([smhdw])$")
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}


# What tbhook can place: the years 1 to 9999 (in UTC), as datetime and both databases do.
EARLIEST = -62135596800  # 0001-01-01T00:00:00Z
LATEST = 253402300800  # 10000-01-01T00:00:00Z, the end of 9999-12-31 (exclusive)
PLACEABLE = "from 0001-01-01 to 9999-12-31"
# A bare number is a Unix time of this century: seconds, or milliseconds (13 digits).
CENTURY = (946684800, 4102444800)  # 2000-01-01T00:00:00Z, 2100-01-01T00:00:00Z
ZONE_SLACK = 2 * 86400  # a date's midnight in a zone far from UTC, at either end


def whole(text: str) -> int:
    """ASCII digits (checked by the caller) as an int, leading zeros and all; past 30
    significant digits, a stand-in as far out of any range (int() refuses 4,300 digits in
    words no one should read)."""
    if len(text.lstrip("-").lstrip("0")) > 30:
        return -(10**30) if text.startswith("-") else 10**30
    return int(text)


def parse_when(
    text: str, *, until: bool = False, now: datetime | None = None, zone: tzinfo = timezone.utc
) -> int:
    """An ISO date or datetime (in ``zone``, UTC by default, unless an offset is given), a
    Unix time of this century as Tracebuzz stamps its events (``1663831826``; 13 digits are
    milliseconds, see ``when_note``), ``@SECONDS`` for any second, an age such as 30m, 2h,
    7d, or ``now``, as Unix seconds. As an ``until`` bound (exclusive), a bare date means the
    end of that day and a moment includes its own second.

    Raises ValueError with a message fit for the user, naming the range it accepts.
    """
    text = text.strip()
    if text.startswith("@") and _SIGNED.fullmatch(text[1:]):
        return _placed(whole(text[1:]) + (1 if until else 0), text)
    if _SIGNED.fullmatch(text):
        return _unix(text, until)
    now = now or datetime.now(timezone.utc)
    if text.lower() == "now":  # what a default of now is called in the help and the pages
        return int(now.timestamp()) + (1 if until else 0)
    age = _AGE.match(text)
    if age:
        seconds = whole(age[1]) * _UNITS[age[2]]
        return _placed(int(now.timestamp()) - min(seconds, 2**62), text)
    try:
        day = date.fromisoformat(text)
    except ValueError:
        pass
    else:
        if until and day == date.max:  # its end is past what datetime holds: no DST then
            return _midnight(day, zone) + 86400
        return _midnight(day + timedelta(days=1) if until else day, zone)
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00").replace("z", "+00:00"))
    except ValueError:
        if re.match(r"^[+-]?[0-9]{5,}-[0-9]{2}-[0-9]{2}|^0000-[0-9]{2}-[0-9]{2}", text):
            raise _outside(text) from None  # a date of a year before 1 or after 9999
        raise ValueError(
            f"{quoted(text)} is not a date, a datetime, Unix seconds, an age or now "
            "(try 2024-05-01, 2024-05-01T09:30, 2024-05-01T09:30+02:00, 1663831826, 30m, 2h, "
            "7d or now)"
        ) from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=zone)
    return _placed(int(moment.timestamp()) + (1 if until else 0), text)


_SIGNED = re.compile(r"-?[0-9]+")  # ASCII digits only: int() would read '٣' as 3


def _midnight(day: date, zone: tzinfo) -> int:
    return int(datetime(day.year, day.month, day.day, tzinfo=zone).timestamp())


def _unix(text: str, until: bool) -> int:
    """A bare number: Unix seconds of this century, or 13 digits of milliseconds."""
    value = whole(text)
    if len(text) == 13 and CENTURY[0] * 1000 <= value < CENTURY[1] * 1000:
        return value // 1000 + (1 if until else 0)
    if CENTURY[0] <= value < CENTURY[1]:
        return value + (1 if until else 0)
    raise ValueError(
        f"{quoted(text)} is not a Unix time of this century (seconds from {CENTURY[0]} to "
        f"{CENTURY[1] - 1}, or 13 digits of milliseconds){_did_you_mean(text)}"
    )


def _did_you_mean(text: str) -> str:
    """A hint for a number that is more likely a date than a Unix time."""
    guess = None
    if len(text) == 4 and text[0] != "0":
        guess = f"{text}-01-01"
    elif len(text) == 8:
        with contextlib.suppress(ValueError):
            guess = date(int(text[:4]), int(text[4:6]), int(text[6:])).isoformat()
    if guess:
        return f": did you mean {guess}?"
    if EARLIEST <= whole(text) < LATEST:
        return f"; write @{text} for that exact second, or a date such as 2024-05-01"
    return f"; tbhook places moments {PLACEABLE}"


def _placed(value: int, text: str) -> int:
    if not EARLIEST - ZONE_SLACK <= value <= LATEST + ZONE_SLACK:
        raise _outside(text)
    return value


def _outside(text: str) -> ValueError:
    return ValueError(f"{quoted(text)} is outside the moments tbhook can place ({PLACEABLE})")


def when_note(text: str) -> str | None:
    """What a reader should be told about how ``text`` was read (13 digits: milliseconds),
    or None. Call after ``parse_when`` accepted it."""
    text = text.strip()
    if len(text) == 13 and text.isascii() and text.isdigit():
        return f"{text} read as milliseconds: {said(int(text) // 1000)}"
    return None


def parse_zone(text: str) -> tzinfo:
    """An IANA time zone (``Europe/Amsterdam``, ``UTC``), or ``local`` for this machine's."""
    from zoneinfo import ZoneInfo, ZoneInfoNotFoundError  # 4 ms: only when a zone is named

    name = text.strip()
    if name.lower() == "local":
        return local_zone()
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError, OSError):  # OSError: too long, a directory
        raise ValueError(
            f"{quoted(text)} is not a time zone (an IANA name such as Europe/Amsterdam, or UTC)"
        ) from None


def local_zone() -> tzinfo:
    """This machine's time zone, with its daylight-saving rules where they can be found
    (``TZ``, /etc/localtime); otherwise its current UTC offset."""
    from zoneinfo import ZoneInfo, ZoneInfoNotFoundError  # see parse_zone

    target = os.path.realpath("/etc/localtime")
    candidates = [os.environ.get("TZ", "").lstrip(":"), target.partition("zoneinfo/")[2]]
    for name in candidates:
        if name:
            try:
                return ZoneInfo(name)
            except (ZoneInfoNotFoundError, ValueError):
                continue
    return datetime.now().astimezone().tzinfo or timezone.utc


def iso_time(timestamp: int | None) -> str | None:
    """Unix seconds as ISO-8601 UTC (``2022-09-22T07:30:26Z``); None when out of range."""
    if timestamp is None:
        return None
    try:
        moment = datetime.fromtimestamp(timestamp, tz=timezone.utc)
    except (OverflowError, OSError, ValueError):
        return None
    return moment.isoformat()[:19] + "Z"  # 2022-09-22T07:30:26+00:00: strftime takes 2x


def said(timestamp: int) -> str:
    """A moment in words for a message: ISO-8601 UTC, or the Unix second itself when it is
    outside the years 1 to 9999 (never "None")."""
    return iso_time(timestamp) or f"Unix second {timestamp} (outside the years 1 to 9999)"


def utc_now() -> str:
    """The current UTC time as ISO-8601 with milliseconds, the format of receivedAt
    (``2026-11-25T10:00:00.123Z``). The receiver stamps every delivery: the formatted second
    is kept, so most calls only add the milliseconds."""
    ms = time.time_ns() // 1_000_000
    second, rest = divmod(ms, 1000)
    if second != _STAMP[0]:
        _STAMP[:] = [second, time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(second))]
    return f"{_STAMP[1]}.{rest:03d}Z"


_STAMP: list = [None, ""]  # the last second formatted, and its text


def empty_range(since: int | None, until: int | None, names: tuple[str, str]) -> str | None:
    """Why ``since``/``until`` can match nothing (``names``: how the user wrote them), or
    None."""
    if since is None or until is None or since < until:
        return None
    return (
        f"{names[0]} ({said(since)}) is not before {names[1]} ({said(until - 1)}), "
        "so nothing could match"
    )


def duration(seconds: int | None) -> str:
    """Seconds for people, rounded to the last unit shown (half up): 90s, 57m (3,419 s),
    3h05m, 2d04h. Every table, page and chart writes durations with this one."""
    if seconds is None:
        return ""
    if seconds < 0:
        return "-" + duration(-seconds)
    if seconds < 120:
        return f"{seconds}s"
    minutes = (seconds + 30) // 60
    if minutes < 120:
        return f"{minutes}m"
    if minutes < 48 * 60:
        return f"{minutes // 60}h{minutes % 60:02d}m"
    hours = (seconds + 1800) // 3600
    return f"{hours // 24}d{hours % 24:02d}h"


_DURATION = re.compile(r"(?:[0-9]{1,9}[smhdw])+")  # ASCII digits: \d would take '٣'


def parse_duration(text: str) -> int:
    """A length of time people write: ``90s``, ``30m``, ``4h``, ``1h30m``, ``2d``, ``1w``, as
    seconds. Raises ValueError with a message fit for the user."""
    compact = text.strip().lower().replace(" ", "")
    if not _DURATION.fullmatch(compact):
        raise ValueError(
            f"{quoted(text.strip())} is not a duration (like 90s, 30m, 4h, 1h30m, 2d or 2w; "
            "months and years are not taken: write 30d, 365d)"
        )
    return sum(int(n) * _UNITS[unit] for n, unit in re.findall(r"([0-9]+)([smhdw])", compact))

"""Moments and durations: read from what people type, written for people and machines.
Pure, no I/O."""

from __future__ import annotations

import os
import re
import time
from datetime import date, datetime, timedelta, timezone, tzinfo

_AGE = re.compile(r"^(\d+)\s*([smhdw])$")
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}


def parse_when(
    text: str, *, until: bool = False, now: datetime | None = None, zone: tzinfo = timezone.utc
) -> int:
    """An ISO date or datetime (in ``zone``, UTC by default, unless an offset is given), Unix
    seconds as Tracebuzz
    stamps its events (``1663831826``, or ``@1663831826``), or an age such as 30m, 2h, 7d, as
    Unix seconds. As an ``until`` bound (exclusive), a bare date means the end of that day and
    a moment includes its own second.

    Raises ValueError with a message fit for the user.
    """
    text = text.strip()
    seconds = text.removeprefix("@")
    if seconds.removeprefix("-").isdigit():
        value = int(seconds) + (1 if until else 0)
        if not -(2**62) < value < 2**62:
            raise ValueError(f"{text!r} is too far from now to be a Unix timestamp")
        return value
    now = now or datetime.now(timezone.utc)
    age = _AGE.match(text)
    if age:
        return int((now - timedelta(seconds=int(age[1]) * _UNITS[age[2]])).timestamp())
    try:
        day = date.fromisoformat(text)
    except ValueError:
        pass
    else:
        if until:
            day += timedelta(days=1)
        return int(datetime(day.year, day.month, day.day, tzinfo=zone).timestamp())
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00").replace("z", "+00:00"))
    except ValueError:
        raise ValueError(
            f"{text!r} is not a date, a datetime, Unix seconds or an age "
            "(try 2024-05-01, 2024-05-01T09:30, 2024-05-01T09:30+02:00, 1663831826, 30m, 2h "
            "or 7d)"
        ) from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=zone)
    return int(moment.timestamp()) + (1 if until else 0)


def parse_zone(text: str) -> tzinfo:
    """An IANA time zone (``Europe/Amsterdam``, ``UTC``), or ``local`` for this machine's."""
    from zoneinfo import ZoneInfo, ZoneInfoNotFoundError  # 4 ms: only when a zone is named

    name = text.strip()
    if name.lower() == "local":
        return local_zone()
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(
            f"{text!r} is not a time zone (an IANA name such as Europe/Amsterdam, or UTC)"
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
        f"{names[0]} ({iso_time(since)}) is not before {names[1]} ({iso_time(until - 1)}), "
        "so nothing could match"
    )


def duration(seconds: int | None) -> str:
    """Seconds for people: 90s, 10m, 3h05m, 2d04h."""
    if seconds is None:
        return ""
    if seconds < 0:
        return "-" + duration(-seconds)
    if seconds < 120:
        return f"{seconds}s"
    if seconds < 7200:
        return f"{seconds // 60}m"
    if seconds < 172800:
        return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"
    return f"{seconds // 86400}d{seconds % 86400 // 3600:02d}h"


_DURATION = re.compile(r"(?:\d{1,9}[smhdw])+")


def parse_duration(text: str) -> int:
    """A length of time people write: ``90s``, ``30m``, ``4h``, ``1h30m``, ``2d``, ``1w``, as
    seconds. Raises ValueError with a message fit for the user."""
    compact = text.strip().lower().replace(" ", "")
    if not _DURATION.fullmatch(compact):
        raise ValueError(f"'{text.strip()}' is not a duration (like 90s, 30m, 4h, 1h30m or 2d)")
    return sum(int(n) * _UNITS[unit] for n, unit in re.findall(r"(\d+)([smhdw])", compact))

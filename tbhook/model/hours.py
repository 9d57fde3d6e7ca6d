"""Business hours: which seconds of a duration count, for `report --hours` and `cases --hours`.

A spec names the open hours of each weekday in a zone, ``"mon-fri 08:30-12:00,13:00-17:30;
sat 10:00-14:00"``; closed days (a country's public holidays, from the ``holidays`` package,
or a team's own file of dates) have none. A ``Clock`` turns the spec into the open intervals
as Unix seconds, each wall-clock time placed in the zone by zoneinfo (so a day of a
daylight-saving change opens and closes at the right instant), and answers how many open
seconds lie between two moments with two binary searches. Pure but for reading a dates file.
"""

from __future__ import annotations

import bisect
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta, timezone, tzinfo
from pathlib import Path

from tbhook.model.text import quoted

DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
DAY_NAMES = ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")
_TIME = re.compile(r"^([0-9]{1,2}):([0-9]{2})$")  # ASCII digits, as every number read

# Business time is counted between these moments; a timestamp outside counts as the nearer
# end (a sender's timestamp of year 9999 must not make a report walk eight thousand years).
EARLIEST, LATEST = 0, 2**32  # 1970-01-01 .. 2106-02-07


class SpecError(ValueError):
    """A part of an --hours spec or a --holidays value that could not be read."""


@dataclass(frozen=True)
class Hours:
    """Open hours per weekday (0 = Monday): sorted, non-overlapping (start, end) pairs in
    seconds after local midnight, end at most 86400."""

    week: tuple[tuple[tuple[int, int], ...], ...]
    spec: str = ""


def parse_hours(spec: str) -> Hours:
    """``"mon-fri 09:00-17:30"``; groups separated by ``;``, each days (``mon``, ``mon-fri``,
    ``mon,wed,fri``) then ranges (``08:30-12:00,13:00-17:30``, ``24:00`` for midnight). Hours
    named twice for a day are joined. A ``SpecError`` quotes the part it could not read."""
    week: list[list[tuple[int, int]]] = [[] for _ in DAYS]
    groups = [group.strip() for group in spec.split(";")]
    if not any(groups):
        raise SpecError("it is empty; give days and hours, like 'mon-fri 09:00-17:30'")
    for group in groups:
        if not group:
            continue
        digit = re.search(r"\d", group)  # any script's: its time is refused in words
        if digit is None:
            raise SpecError(
                f"{quoted(group)} has no hours; give them after the days, like 09:00-17:30"
            )
        days_text, ranges_text = group[: digit.start()].strip(), group[digit.start() :]
        if not days_text:
            raise SpecError(f"{quoted(group)} names no days; begin with them, like 'mon-fri'")
        days = _days(days_text)
        for piece in ranges_text.split(","):
            if not piece.strip():
                raise SpecError(f"{quoted(group)} has an empty range between commas")
            span = _range(piece.strip())
            for day in days:
                week[day].append(span)
    return Hours(tuple(tuple(_joined(day)) for day in week), spec)


def _days(text: str) -> list[int]:
    days: list[int] = []
    for part in re.split(r"\s*,\s*", text.lower()):
        first, dash, last = (piece.strip() for piece in part.partition("-"))
        start = _day(first)
        end = _day(last) if dash else start
        span = (end - start) % 7 + 1  # sat-mon wraps over the weekend
        days += [(start + i) % 7 for i in range(span)]
    return days


def _day(name: str) -> int:
    for i, (short, full) in enumerate(zip(DAYS, DAY_NAMES, strict=True)):
        if name in (short, full):
            return i
    raise SpecError(f"{quoted(name)} is not a day; use mon, tue, wed, thu, fri, sat or sun")


def _range(text: str) -> tuple[int, int]:
    start_text, dash, end_text = text.partition("-")
    if not dash:
        raise SpecError(f"{quoted(text)} is not a range of hours; write it like 09:00-17:30")
    start, end = _clock(start_text.strip()), _clock(end_text.strip())
    if end <= start:
        raise SpecError(
            f"{quoted(text)} ends before it starts; split hours across midnight in two, "
            "like 'mon 22:00-24:00; tue 00:00-06:00'"
        )
    return start, end


def _clock(text: str) -> int:
    match = _TIME.match(text)
    if match:
        hour, minute = int(match[1]), int(match[2])
        if (hour < 24 and minute < 60) or (hour, minute) == (24, 0):
            return hour * 3600 + minute * 60
    raise SpecError(f"{quoted(text)} is not a time of day; write it like 09:00 (00:00 to 24:00)")


def _joined(spans: list[tuple[int, int]]) -> list[tuple[int, int]]:
    joined: list[tuple[int, int]] = []
    for start, end in sorted(spans):
        if joined and start <= joined[-1][1]:
            joined[-1] = (joined[-1][0], max(end, joined[-1][1]))
        else:
            joined.append((start, end))
    return joined


# -- closed days ---------------------------------------------------------------------------


@dataclass
class ClosedDays:
    """Days with no open hours: dates from files, and the public holidays of countries (the
    ``holidays`` package knows them, year by year, as asked)."""

    dates: set[date] = field(default_factory=set)
    calendars: list = field(default_factory=list)  # holidays.HolidayBase, one per country

    def __contains__(self, day: date) -> bool:
        return day in self.dates or any(day in calendar for calendar in self.calendars)

    def add(self, value: str) -> None:
        """A file of dates (one ``YYYY-MM-DD`` a line, ``#`` comments) when ``value`` names a
        file, else a country code (``NL``, or ``US-CA`` for a subdivision)."""
        path = Path(value)
        try:
            is_file = path.is_file()
        except OSError:  # a name too long to be a file's: then it is no country either
            is_file = False
        if is_file:
            self.dates |= read_dates(path)
        elif names_a_file(value):
            raise SpecError(
                f"{quoted(value)} is no file (and no country code): give a file of dates, one "
                "YYYY-MM-DD a line, or a country code like NL"
            )
        else:
            self.calendars.append(country(value))


def names_a_file(value: str) -> bool:
    """Whether ``value`` is written as a file's name (a country code has no ``/`` or ``.``)."""
    return any(mark in value for mark in "/\\.~")


COUNTRIES = (
    "the holidays package knows (ISO 3166 codes like NL, DE, US; or US-CA for a subdivision)"
)


def read_dates(path: Path) -> set[date]:
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise SpecError(f"cannot read {path}: {getattr(exc, 'strerror', None) or exc}") from None
    dates = set()
    for number, line in enumerate(lines, 1):
        text = line.split("#", 1)[0].strip()
        if not text:
            continue
        try:
            dates.add(date.fromisoformat(text))
        except ValueError:
            raise SpecError(
                f"{path}, line {number}: '{text[:40]}' is not a date; write one a line, "
                "like 2024-12-25"
            ) from None
    return dates


def country(code: str):
    """The public holidays of a country the ``holidays`` package knows (``NL``; ``US-CA``)."""
    import holidays  # 80 ms to load: only for a report that asks for holidays

    name, _, subdivision = code.strip().partition("-")
    supported = holidays.list_supported_countries()
    if name.upper() not in supported:
        raise SpecError(f"{quoted(code)} is not a country code {COUNTRIES}")
    if subdivision and subdivision.upper() not in supported[name.upper()]:
        known = ", ".join(supported[name.upper()][:12]) or "none"
        raise SpecError(
            f"{quoted(code)}: {name.upper()} has no subdivision {quoted(subdivision)} ({known})"
        )
    return holidays.country_holidays(name.upper(), subdiv=subdivision.upper() or None)


# -- the clock -------------------------------------------------------------------------------


class Clock:
    """Open seconds between moments, for ``hours`` in ``zone``, closed on ``closed`` days.

    The open intervals are laid out as Unix seconds for the local dates asked about (grown
    as needed), with the open seconds before each: ``open_until(t)`` is then one binary
    search, and a duration the difference of two."""

    def __init__(
        self, hours: Hours, zone: tzinfo = timezone.utc, closed: Iterable[date] | ClosedDays = ()
    ):
        self.hours = hours
        self.zone = zone
        self.closed = closed if isinstance(closed, ClosedDays) else ClosedDays(set(closed))
        self._first: date | None = None  # the local dates laid out: _first .. _last
        self._last: date | None = None
        self._opens: list[int] = []
        self._closes: list[int] = []
        self._before: list[int] = []  # open seconds before each interval, from _first
        self._low = self._high = 0  # the laid-out dates as Unix seconds: _low <= t < _high

    def between(self, start: int, end: int) -> int:
        """The open seconds from ``start`` to ``end`` (0 when end is not after start)."""
        if end <= start:
            return 0
        start, end = min(max(start, EARLIEST), LATEST), min(max(end, EARLIEST), LATEST)
        if not self._low <= start < self._high or not self._low <= end < self._high:
            self._cover(start, end)
        return self._open_until(end) - self._open_until(start)

    def state(self, moment: int) -> tuple[bool, int | None]:
        """Whether the clock runs at ``moment``, and the next moment it stops or starts
        (None: not within a month)."""
        moment = min(max(moment, EARLIEST), LATEST)
        if not self._low <= moment < self._high - 31 * 86400:
            self._cover(moment, moment + 31 * 86400)
        k = bisect.bisect_right(self._opens, moment) - 1
        if k >= 0 and moment < self._closes[k]:
            return True, self._closes[k]
        return False, self._opens[k + 1] if k + 1 < len(self._opens) else None

    def _open_until(self, moment: int) -> int:
        """Open seconds from the first laid-out date to ``moment``."""
        k = bisect.bisect_right(self._opens, moment) - 1
        if k < 0:
            return 0
        return self._before[k] + min(moment, self._closes[k]) - self._opens[k]

    def _cover(self, *moments: int) -> None:
        days = [datetime.fromtimestamp(moment, self.zone).date() for moment in moments]
        if self._first is not None and self._last is not None:
            days += [self._first, self._last]
        # Room either side, so the moments of a log (mostly near each other) lay out once.
        self._layout(min(days) - timedelta(days=31), max(days) + timedelta(days=31))

    def _layout(self, first: date, last: date) -> None:
        opens: list[int] = []
        closes: list[int] = []
        day = first
        while day <= last:
            if day not in self.closed:
                for start, end in self.hours.week[day.weekday()]:
                    a, b = self._instant(day, start), self._instant(day, end)
                    if opens and a < closes[-1]:  # a wall clock turned back: never twice
                        a = closes[-1]
                    if b > a:
                        opens.append(a)
                        closes.append(b)
            day += timedelta(days=1)
        before, total = [], 0
        for a, b in zip(opens, closes, strict=True):
            before.append(total)
            total += b - a
        self._first, self._last = first, last
        self._low, self._high = self._instant(first, 0), self._instant(last, 86400)
        self._opens, self._closes, self._before = opens, closes, before

    def _instant(self, day: date, seconds: int) -> int:
        """Unix seconds of a wall-clock time on a local date (``86400``: the next midnight)."""
        if seconds >= 86400:
            day, seconds = day + timedelta(days=1), seconds - 86400
        hour, rest = divmod(seconds, 3600)
        local = datetime(day.year, day.month, day.day, hour, rest // 60, tzinfo=self.zone)
        return int(local.timestamp())


def duration(clock: Clock | None) -> Callable[[int, int], int]:
    """How a duration is counted: wall-clock seconds, or a clock's open seconds."""
    if clock is None:
        return lambda start, end: end - start
    return clock.between

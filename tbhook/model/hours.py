"""Business hours: which seconds of a duration count, for `report --hours` and `cases --hours`.

A spec names the open hours of each weekday in a zone, ``"mon-fri 08:30-12:00,13:00-17:30;
sat 10:00-14:00"`` (at most ``RANGES`` ranges a day); closed days (a country's public
holidays, from the ``holidays`` package, or a team's own file of dates) have none. A
``Clock`` places each wall-clock time in the zone by zoneinfo (so a day of a daylight-saving
change opens and closes at the right instant) and counts the open seconds between two
moments by years, weekdays and the few days that differ, so a span of centuries costs
little. Pure but for reading a dates file.
"""

from __future__ import annotations

import bisect
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta, timezone, tzinfo
from functools import lru_cache
from pathlib import Path

from tbhook.model.text import quoted

DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
DAY_NAMES = ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")
_TIME = re.compile(r"^([0-9]{1,2}):([0-9]{2})$")  # ASCII digits, as every number read

# Business time is counted from this moment (1970-01-01) to the end of the year 9999; a
# timestamp outside counts as the nearer end.
EARLIEST = 0
# The ranges of open hours a day can have: more is no team's hours, and each costs every
# duration counted (a day of minute-long ranges made one page take minutes).
RANGES = 12


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
    joined = tuple(tuple(_joined(day)) for day in week)
    for name, ranges in zip(DAY_NAMES, joined, strict=True):
        if len(ranges) > RANGES:
            raise SpecError(
                f"it opens {len(ranges)} times on {name}; a day has at most {RANGES} ranges "
                "of open hours"
            )
    return Hours(joined, spec)


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
    _sorted: list[date] = field(default_factory=list, repr=False)  # all known, for within
    _size: int = field(default=-1, repr=False)

    def __contains__(self, day: date) -> bool:
        return day in self.dates or any(day in calendar for calendar in self.calendars)

    def within(self, first: date, last: date) -> list[date]:
        """The closed days from ``first`` to ``last`` (a year's, as a clock asks), sorted."""
        for calendar in self.calendars:
            for year in range(first.year, last.year + 1):
                _ = date(year, 1, 1) in calendar  # the package works out a year when asked
        size = len(self.dates) + sum(len(calendar) for calendar in self.calendars)
        if size != self._size:
            self._sorted = sorted(self.dates.union(*(set(c) for c in self.calendars)))
            self._size = size
        found = self._sorted
        return found[bisect.bisect_left(found, first) : bisect.bisect_right(found, last)]

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

    Counted, never laid out day by day: a moment's open seconds since 1969 are those of the
    whole years before it (each year its days by weekday, corrected on its closed days and
    the days its zone changes offset on), of the whole days before it in its year (the same
    way), and of its own day up to it. So a span of years costs a sum per year, never its
    days times its ranges; a duration is the difference of two such counts."""

    def __init__(
        self, hours: Hours, zone: tzinfo = timezone.utc, closed: Iterable[date] | ClosedDays = ()
    ):
        self.hours = hours
        self.zone = zone
        self.closed = closed if isinstance(closed, ClosedDays) else ClosedDays(set(closed))
        self._open = [sum(end - start for start, end in day) for day in hours.week]
        # _rest[w][n]: the open seconds of n days from weekday w on (n < 7)
        self._rest = [
            [sum(self._open[(w + i) % 7] for i in range(n)) for n in range(7)] for w in range(7)
        ]
        self._years: dict[int, _Year] = {}
        self._sums = [0]  # the open seconds of the years from ANCHOR to ANCHOR + i
        self._days: dict[int, tuple[tuple[tuple[int, int], ...], int]] = {}  # by ordinal
        # The last second of 9999-12-31 in the zone: the last a date can be placed at.
        self._latest = self._instant(date.max, 0) + 86399

    def between(self, start: int, end: int) -> int:
        """The open seconds from ``start`` to ``end`` (0 when end is not after start)."""
        start, end = self._placed(start), self._placed(end)
        if end <= start:
            return 0
        return self._open_until(end) - self._open_until(start)

    def state(self, moment: int) -> tuple[bool, int | None]:
        """Whether the clock runs at ``moment``, and the next moment it stops or starts
        (None: not within a month)."""
        moment = self._placed(moment)
        day = self._date(moment)
        for ordinal in range(day.toordinal(), min(day.toordinal() + 32, MAX_ORDINAL + 1)):
            for opens, closes in self._day(ordinal)[0]:
                if moment < opens:
                    return False, opens
                if moment < closes:
                    return True, closes
        return False, None

    def _placed(self, moment: int) -> int:
        # A timestamp outside counts as the nearer end: 1970, or the end of the year 9999.
        return min(max(moment, EARLIEST), self._latest)

    def _date(self, moment: int) -> date:
        return datetime.fromtimestamp(moment, self.zone).date()

    def _open_until(self, moment: int) -> int:
        """The open seconds from the start of the year ANCHOR to ``moment``."""
        ranges, before = self._day(self._date(moment).toordinal())
        for opens, closes in ranges:
            if moment <= opens:
                break
            before += min(moment, closes) - opens
        return before

    def _day(self, ordinal: int) -> tuple[tuple[tuple[int, int], ...], int]:
        """A local date's open intervals as Unix seconds, and the open seconds before it
        from the start of the year ANCHOR."""
        found = self._days.get(ordinal)
        if found is None:
            day = date.fromordinal(ordinal)
            ranges = () if day in self.closed else self._ranges(day)
            before = self._before(day.year) + self._whole_days(date(day.year, 1, 1), day)
            if len(self._days) >= DAYS_KEPT:  # a log's days lie close: a few are asked
                self._days.clear()
            found = self._days[ordinal] = (ranges, before)
        return found

    def _ranges(self, day: date) -> tuple[tuple[int, int], ...]:
        """The open intervals of a local date as Unix seconds, closed or not."""
        ranges: list[tuple[int, int]] = []
        # Within the day's own seconds: a date a zone skips (Apia's 2011-12-30) has none.
        low, high = self._instant(day, 0), self._instant(day, 86400)
        for start, end in self.hours.week[day.weekday()]:
            a, b = self._instant(day, start), self._instant(day, end)
            a, b = max(a, low, ranges[-1][1] if ranges else low), min(b, high)
            if b > a:  # max: a wall clock turned back counts its hour once
                ranges.append((a, b))
        return tuple(ranges)

    def _before(self, year: int) -> int:
        """The open seconds of the years from ANCHOR to ``year`` (not included)."""
        while len(self._sums) <= year - ANCHOR:
            self._sums.append(self._sums[-1] + self._year(ANCHOR + len(self._sums) - 1).total)
        return self._sums[year - ANCHOR]

    def _whole_days(self, first: date, end: date) -> int:
        """The open seconds of the local dates from ``first`` to before ``end``, in one year."""
        year = self._year(first.year)
        low, high = bisect.bisect_left(year.odd, first), bisect.bisect_left(year.odd, end)
        return self._usual(first, (end - first).days) + sum(
            year.seconds[day] - self._open[day.weekday()] for day in year.odd[low:high]
        )

    def _usual(self, first: date, days: int) -> int:
        """The open seconds of ``days`` days from ``first`` on, each with its weekday's."""
        weeks, rest = divmod(days, 7)
        return weeks * sum(self._open) + self._rest[first.weekday()][rest]

    def _year(self, number: int) -> _Year:
        """What makes a year's days other than usual: the days its zone changes offset on,
        with their open seconds; its closed days; and its open seconds in all."""
        found = self._years.get(number)
        if found is None:
            if number >= RULED + 400:  # as 400 years before: the same days, the same rules
                shifted = {
                    day.replace(year=number): seconds
                    for day, seconds in self._year(number - 400).shifted.items()
                }
            else:
                shifted = {
                    day: sum(b - a for a, b in self._ranges(day))
                    for day in shifts(self.zone, number)
                }
            first, last = date(number, 1, 1), date(number, 12, 31)
            seconds = {**shifted, **dict.fromkeys(self.closed.within(first, last), 0)}
            odd = sorted(day for day in seconds if seconds[day] != self._open[day.weekday()])
            total = self._usual(first, (last - first).days + 1) + sum(
                seconds[day] - self._open[day.weekday()] for day in odd
            )
            found = self._years[number] = _Year(odd, seconds, total, shifted)
        return found

    def _instant(self, day: date, seconds: int) -> int:
        """Unix seconds of a wall-clock time on a local date (``86400``: the next midnight)."""
        if seconds >= 86400:
            if day == date.max:  # no next date to place: the last day is a whole one
                return self._instant(day, 0) + seconds
            day, seconds = day + timedelta(days=1), seconds - 86400
        hour, rest = divmod(seconds, 3600)
        local = datetime(day.year, day.month, day.day, hour, rest // 60, tzinfo=self.zone)
        return int(local.timestamp())


ANCHOR = 1969  # the first year counted: 1970-01-01 is still 1969 west of UTC
MAX_ORDINAL = date.max.toordinal()
DAYS_KEPT = 4096  # the open intervals of this many local dates are kept


@dataclass(frozen=True)
class _Year:
    odd: list[date]  # sorted: the days whose open seconds are not their weekday's
    seconds: dict[date, int]  # their open seconds
    total: int  # the open seconds of the whole year
    shifted: dict[date, int]  # the open seconds of the days the offset changes on, if open


@lru_cache(maxsize=20_000)
def shifts(zone: tzinfo, year: int) -> tuple[date, ...]:
    """The local dates of ``year`` whose midnight and next midnight are at different UTC
    offsets in ``zone`` (a daylight-saving change within the day), and the day after each.
    The offset is looked at on the first of each month, then the day found between two
    that differ (a zone changing twice within a calendar month is not seen)."""
    if isinstance(zone, timezone):  # a fixed offset: it never changes
        return ()
    if year >= RULED + 400:  # the calendar repeats every 400 years, and so do the rules
        return tuple(day.replace(year=year) for day in shifts(zone, year - 400))
    days = [date(year, month, 1) for month in range(1, 13)]
    days.append(date(year + 1, 1, 1) if year < date.max.year else date.max)
    found: list[date] = []
    for low, high in zip(days, days[1:], strict=False):
        if _offset(zone, low) == _offset(zone, high):
            continue
        while (high - low).days > 1:  # the offset differs at low and high: find where
            middle = low + (high - low) // 2
            if _offset(zone, middle) == _offset(zone, low):
                low = middle
            else:
                high = middle
        found += [day for day in (low, high) if day.year == year]
    return tuple(found)


# The zone database lists each change up to here at the latest (Morocco's to 2087); after,
# every zone follows a yearly rule.
RULED = 2200


def _offset(zone: tzinfo, day: date) -> timedelta | None:
    return datetime(day.year, day.month, day.day, tzinfo=zone).utcoffset()


def duration(clock: Clock | None) -> Callable[[int, int], int]:
    """How a duration is counted: wall-clock seconds, or a clock's open seconds."""
    if clock is None:
        return lambda start, end: end - start
    return clock.between

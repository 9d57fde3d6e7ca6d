"""Periods: days, ISO weeks and months in a zone, and the range of them a report counts.
Pure. A range longer than MAX_PERIODS is refused (``TooManyPeriods``), naming what stretches
it and the options of a report that fits, counted here so the advice works. A moment no
calendar holds (an event stamped in the year 9999, or 2**62) never breaks a range: it
bounds one as it is."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime, timedelta, tzinfo

from tbhook.model.times import said

BY_TIME = ("day", "week", "month")
MAX_PERIODS = 10_000  # rows of a report by time: more is a mistake (a 1970 timestamp)


class TooManyPeriods(ValueError):
    """A report by time that would print more than MAX_PERIODS rows: the range and, once
    ``explain`` was told the events at its ends, which of them stretch it and the options of
    a report that fits (``fix``: since and until as dates, or a coarser by)."""

    def __init__(self, first: int, last: int, by: str, zone: tzinfo):
        self.first, self.last, self.by, self.zone = first, last, by, zone
        self.stretching: list[tuple[int, int]] = []  # (event id, timestamp)
        self.fix: dict[str, str] = {}
        super().__init__(self._words())

    def _words(self) -> str:
        start, end = (_label(m, self.by, self.zone) for m in (self.first, self.last))
        words = f"from {start} to {end} is more than {MAX_PERIODS:,} {self.by}s"
        if self.stretching:
            shown = ", ".join(f"#{i} at {said(t)}" for i, t in self.stretching)
            many = "events" if len(self.stretching) > 1 else "event"
            words += f", stretched by {many} {shown}, far from the others"
        return words

    def explain(self, earliest: list[tuple[int, int]], latest: list[tuple[int, int]]) -> None:
        """Find what stretches the range among the events at its ends (``earliest`` in time
        order, ``latest`` from the last back: (id, timestamp) each), and a report that fits."""
        self.stretching, self.fix = _fitting(self.by, self.zone, earliest, latest)
        self.args = (self._words(),)


def period_start(moment: int, by: str, zone: tzinfo) -> date:
    """The local date on which ``moment``'s period (day, ISO week, month) begins."""
    day = datetime.fromtimestamp(moment, zone).date()
    if by == "week":
        return day - timedelta(days=day.weekday())
    if by == "month":
        return day.replace(day=1)
    return day


def next_period(start: date, by: str) -> date:
    if by == "day":
        return start + timedelta(days=1)
    if by == "week":
        return start + timedelta(days=7)
    return (start.replace(day=28) + timedelta(days=4)).replace(day=1)


def label(start: date, by: str) -> str:
    if by == "week":
        year, week, _ = start.isocalendar()
        return f"{year:04d}-W{week:02d}"
    if by == "month":
        return f"{start.year:04d}-{start.month:02d}"  # %Y writes the year 1 as 1
    return start.isoformat()


def midnight(day: date, zone: tzinfo) -> int:
    """Unix seconds of a local date's first moment."""
    return int(datetime(day.year, day.month, day.day, tzinfo=zone).timestamp())


@dataclass
class Periods:
    """The periods from the one holding ``first`` to the one holding ``last`` (Unix seconds):
    their labels and their bounds, ``bounds[i] <= t < bounds[i + 1]`` for period ``i``."""

    by: str
    zone: tzinfo
    labels: list[str] = field(default_factory=list)
    bounds: list[int] = field(default_factory=list)

    @classmethod
    def spanning(cls, first: int, last: int, by: str, zone: tzinfo) -> Periods:
        periods = cls(by, zone)
        day = period_start(_in_range(first), by, zone)
        end = period_start(_in_range(last), by, zone)
        while True:
            periods.labels.append(label(day, by))
            periods.bounds.append(midnight(day, zone))
            if len(periods.labels) > MAX_PERIODS:
                raise TooManyPeriods(first, last, by, zone)
            if day >= end:
                break
            day = next_period(day, by)
        periods.bounds.append(midnight(next_period(day, by), zone))
        return periods

    @property
    def start(self) -> int:
        return self.bounds[0]

    @property
    def end(self) -> int:
        return self.bounds[-1]


# A report by day asked for no range: its cases' days, at most the last this many (all
# history by day is mostly empty rows). The same default for the command and the console.
DEFAULT_DAYS = 30


def default_range(span: tuple[int, int], now: int) -> tuple[int, int] | None:
    """Since and until for a report by day asked for neither: from the first entry of
    ``span`` (the cases' first and last moments) to the last, at most the last DEFAULT_DAYS
    days. None when a clock stamped the last in the future: the whole span, whose report
    names that event when it is too long."""
    first, last = span
    if last > now:
        return None
    return max(first, last - (DEFAULT_DAYS - 1) * 86400), last + 1


def period_bounds(
    since: int | None, until: int | None, now: int, by: str, zone: tzinfo
) -> tuple[int | None, int | None]:
    """The range a report counts, from ``--since`` and ``--until``: from the start of the
    period holding since to the end of the one holding until (or now, with since alone);
    None for an end the data decides. Days bound a report by source or agent (however many:
    it has no rows by time); a moment no calendar holds bounds it as it is."""
    if since is None and until is None:
        return None, None
    unit = by if by in BY_TIME else "day"
    last = (until if until is not None else max(now, (since or 0) + 1)) - 1
    end = _end_of(last, unit, zone)
    if since is None:
        return None, end
    return _start_of(since, unit, zone), end


def _start_of(moment: int, unit: str, zone: tzinfo) -> int:
    """The first moment of the period holding ``moment``; itself when no calendar holds it."""
    return midnight(period_start(moment, unit, zone), zone) if _placeable(moment) else moment


def _end_of(moment: int, unit: str, zone: tzinfo) -> int:
    """The end (exclusive) of the period holding ``moment``; just after it when no calendar
    holds it."""
    if not _placeable(moment):
        return moment + 1
    return midnight(next_period(period_start(moment, unit, zone), unit), zone)


# Moments whose period, and the next, datetime can place in any zone (years 1 to 9999).
_SAFE = (-62135596800 + 86400 * 2, 253402300799 - 86400 * 40)


def _in_range(moment: int) -> int:
    """A moment datetime can place (years 1 to 9999)."""
    return min(max(moment, _SAFE[0]), _SAFE[1])


def _label(moment: int, by: str, zone: tzinfo) -> str:
    """The period holding a moment, for a message: the nearest datetime can place."""
    try:
        return label(period_start(moment, by, zone), by)
    except (OverflowError, ValueError, OSError):
        return label(period_start(_in_range(moment), by, zone), by)


def _placeable(moment: int) -> bool:
    return _SAFE[0] <= moment <= _SAFE[1]


def _count(first: int, last: int, by: str, zone: tzinfo) -> int | None:
    """How many periods a report from ``first`` to ``last`` shows; None when no calendar holds
    one of them."""
    if not (_placeable(first) and _placeable(last)) or last < first:
        return None
    a, b = period_start(first, by, zone), period_start(last, by, zone)
    if by == "month":
        return (b.year - a.year) * 12 + b.month - a.month + 1
    return (b - a).days // (7 if by == "week" else 1) + 1


def _fitting(
    by: str, zone: tzinfo, earliest: list[tuple[int, int]], latest: list[tuple[int, int]]
) -> tuple[list[tuple[int, int]], dict[str, str]]:
    """Which of the events at the ends stretch a report past MAX_PERIODS, and the options of
    one that fits: since and until around the others (the fewest left out); else a coarser
    by; else the last MAX_PERIODS periods. Each is counted here, so the advice works."""
    if not earliest or not latest:
        return [], {}
    for dropped in range(len(earliest) + len(latest) - 1):
        for low in range(min(dropped, len(earliest) - 1) + 1):
            high = dropped - low
            if high >= len(latest):
                continue
            first, last = earliest[low][1], latest[high][1]
            periods = _count(first, last, by, zone)
            if periods is not None and periods <= MAX_PERIODS:
                stretching = {i: t for i, t in earliest[:low] + latest[:high]}
                fix = {"since": _day(first, zone), "until": _day(last, zone)}
                return sorted(stretching.items(), key=lambda e: e[1]), fix
    first, last = earliest[0][1], latest[0][1]
    for coarser in BY_TIME[BY_TIME.index(by) + 1 :]:
        periods = _count(first, last, coarser, zone)
        if periods is not None and periods <= MAX_PERIODS:
            return [], {"by": coarser}
    if not _placeable(last):
        return [], {}
    day = period_start(last, by, zone)  # back to the first of the last MAX_PERIODS periods
    try:
        if by == "month":
            months = day.year * 12 + day.month - 1 - (MAX_PERIODS - 1)
            day = date(months // 12, months % 12 + 1, 1)
        else:
            day -= timedelta(days=(7 if by == "week" else 1) * (MAX_PERIODS - 1))
    except (ValueError, OverflowError):  # before the year 1: the whole range fits
        return [], {}
    return [], {"since": day.isoformat(), "until": _day(last, zone)}


def _day(moment: int, zone: tzinfo) -> str:
    return datetime.fromtimestamp(moment, zone).date().isoformat()


def report_range(
    by: str,
    zone: tzinfo,
    since: int | None,
    until: int | None,
    now: int,
    span: tuple[int, int] | None,
) -> Periods | None:
    """The periods a report counts (one, "all", by source or agent), or None when there is
    nothing to count. With ``since``/``until`` (Unix seconds; until defaults to ``now``), the
    periods holding them and those between; without either, those from the first entry to
    the last (``span``: the first and last moments of the cases, None when there are none)."""
    if since is None and until is None:  # from the first entry to the last
        first, last = span if span is not None else (None, None)
    elif since is None and until is not None:
        first, last = (span[0] if span is not None else until), until - 1
    else:
        first, last = since, (until if until is not None else now) - 1
    if first is None or last is None or last < first:
        return None
    if by in BY_TIME:
        return Periods.spanning(first, last, by, zone)
    # One row per source or agent: whole days, however many (an event in the year 9999 too).
    return Periods(by, zone, ["all"], [_start_of(first, "day", zone), _end_of(last, "day", zone)])

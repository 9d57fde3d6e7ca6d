"""`tbhook report`: the support team's numbers, per day, ISO week or month (in a zone), per
source or per agent, from case summaries (``tbhook.model.cases``). Pure: the store gives the
summaries, this counts them.

Every duration goes through one function, wall-clock or business seconds (``tbhook.model.hours``);
medians and 90th percentiles interpolate between the closest ranks (PostgreSQL's
``percentile_cont``), rounded half up to whole seconds; a total's median is computed over the
whole range, never from the periods' medians.
"""

from __future__ import annotations

import bisect
import math
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import timezone, tzinfo
from typing import Any

from tbhook.model.cases import CLOSE, KIND_BITS, Timeline, parse_entries
from tbhook.model.periods import BY_TIME, Periods, report_range

BY = (*BY_TIME, "source", "agent")
_NEVER = 2**63  # after every moment

FIELDS = (
    "newCases",
    "closedCases",
    "openAtEnd",
    "customerMessages",
    "agentMessages",
    "firstResponseMedian",
    "firstResponseP90",
    "replies",
    "replyMedian",
    "replyP90",
    "unanswered",
    "resolutionMedian",
    "resolutionP90",
    "reopenRate",
    "oneTouchRate",
)
# With --sla: the share of first responses, and of later replies, within their target.
SLA_FIELDS = ("firstWithinSla", "repliesWithinSla")
# By agent (the one who first closed each case), only what closes say has a value.
AGENT_FIELDS = frozenset(
    {"closedCases", "resolutionMedian", "resolutionP90", "reopenRate", "oneTouchRate"}
)


# -- statistics ------------------------------------------------------------------------------


def percentile(values: list[int], fraction: float) -> int | None:
    """Linear interpolation between the closest ranks (``percentile_cont``), rounded half up
    to a whole number; None for no values. ``values`` must be sorted."""
    if not values:
        return None
    position = (len(values) - 1) * fraction
    low = math.floor(position)
    high = min(low + 1, len(values) - 1)
    exact = values[low] + (values[high] - values[low]) * (position - low)
    return math.floor(exact + 0.5)


def rate(count: int, total: int) -> float | None:
    """A fraction 0..1 with three decimals (half up), or None of nothing."""
    if not total:
        return None
    return math.floor(count * 1000 / total + 0.5) / 1000


def within(values: list[int], target: int | None) -> float | None:
    """The share of ``values`` (sorted) at most ``target``; None without a target or values."""
    if target is None:
        return None
    return rate(bisect.bisect_right(values, target), len(values))


class Tally:
    """What one row of the report counts, before it is a row."""

    __slots__ = (
        "agent",
        "closed",
        "customer",
        "first_closed",
        "first_responses",
        "new",
        "later",
        "one_touch",
        "open",
        "reopened",
        "replies",
        "resolutions",
        "unanswered",
    )

    def __init__(self) -> None:
        self.new = self.closed = self.customer = self.agent = self.unanswered = 0
        self.first_closed = self.reopened = self.one_touch = self.open = 0
        self.first_responses: list[int] = []
        self.replies: list[int] = []
        self.later: list[int] = []  # with an SLA: the replies to waits after a case's first
        self.resolutions: list[int] = []

    def record(self, only: frozenset[str] | None = None, sla: Any = None) -> dict[str, Any]:
        """The row's values (FIELDS; SLA_FIELDS too with ``sla``, a ``queue.Sla``)."""
        for values in (self.first_responses, self.replies, self.later, self.resolutions):
            values.sort()
        record = {
            "newCases": self.new,
            "closedCases": self.closed,
            "openAtEnd": self.open,
            "customerMessages": self.customer,
            "agentMessages": self.agent,
            "firstResponseMedian": percentile(self.first_responses, 0.5),
            "firstResponseP90": percentile(self.first_responses, 0.9),
            "replies": len(self.replies),
            "replyMedian": percentile(self.replies, 0.5),
            "replyP90": percentile(self.replies, 0.9),
            "unanswered": self.unanswered,
            "resolutionMedian": percentile(self.resolutions, 0.5),
            "resolutionP90": percentile(self.resolutions, 0.9),
            "reopenRate": rate(self.reopened, self.first_closed),
            "oneTouchRate": rate(self.one_touch, self.first_closed),
        }
        if sla is not None:
            record["firstWithinSla"] = within(self.first_responses, sla.first)
            record["repliesWithinSla"] = within(self.later, sla.reply)
        if only is not None:
            record = {key: (value if key in only else None) for key, value in record.items()}
        return record


# -- the report ------------------------------------------------------------------------------


@dataclass
class Report:
    """The rows (one per period, source or agent) and the totals of the whole range."""

    key: str  # "period", "source" or "agent"
    rows: list[dict[str, Any]]
    totals: dict[str, Any]
    start: int | None = None  # the range counted, Unix seconds
    end: int | None = None
    sla: bool = False  # the rows carry SLA_FIELDS

    @property
    def fields(self) -> tuple[str, ...]:
        return (self.key, *FIELDS, *(SLA_FIELDS if self.sla else ()))

    def records(self, total: bool = True) -> list[dict[str, Any]]:
        """The rows, then (``total``, when there are rows) the whole range's, its key
        ``total``: its medians cannot be computed from the rows above it."""
        if not total or not self.rows:
            return self.rows
        return [*self.rows, {**self.totals, self.key: "total"}]


def empty(by: str, sla: Any = None) -> Report:
    """A report of nothing."""
    key = "period" if by in BY_TIME else by
    return Report(key, [], Tally().record(sla=sla), None, None, sla is not None)


def report(
    cases: Iterable[Sequence[Any]],
    by: str = "day",
    zone: tzinfo = timezone.utc,
    duration: Callable[[int, int], int] | None = None,
    since: int | None = None,
    until: int | None = None,
    open_before: Callable[[int], dict[Any, int]] | None = None,
    now: int = 0,
    span: tuple[int, int] | None = None,
    sla: Any = None,
) -> Report:
    """Count ``cases`` (rows of BRIEF_COLUMNS: caseId, sourceId, closedBy, entries; streamed,
    one case in memory at a time) into a report of the periods ``report_range`` gives.

    ``open_before(t)`` says how many cases not among ``cases`` (their last entry before t)
    are open, per group (one key, None, by time): they count in openAtEnd only. With ``sla``
    (a ``queue.Sla``), the rows carry SLA_FIELDS.
    """
    duration = duration or (lambda start, end: end - start)
    periods = report_range(by, zone, since, until, now, span)
    if periods is None:
        return empty(by, sla)
    start, end = periods.start, periods.end
    bounds = periods.bounds
    count = len(periods.labels)
    right = bisect.bisect_right

    def where(moment: int) -> int:
        """The period holding a moment: 0..count-1, or -1 before, count after."""
        if moment < start:
            return -1
        if moment >= end:
            return count
        return right(bounds, moment) - 1

    groups: dict[Any, list[Tally]] = {}
    totals = Tally()
    changes: dict[Any, list[int]] = {}  # per group: open changes per period (+1 slot: before)
    for _case, source, closer, packed in cases:
        if not packed:
            continue
        entries = parse_entries(packed)
        key = source if by == "source" else closer if by == "agent" else None
        tallies = groups.get(key)
        if tallies is None:
            tallies = groups[key] = [Tally() for _ in range(count)]
            changes[key] = [0] * (count + 1)
        change = changes[key]

        # One pass over the entries: messages, closes and the case's openings, by the period
        # each falls in; the period index moves forward with them (they are in time order).
        i = where(entries[0] >> KIND_BITS)
        high = bounds[i + 1] if 0 <= i < count else (start if i < 0 else _NEVER)
        closed_at = -1  # the last period a close (after a message) fell in
        is_open = seen_message = False
        for value in entries:
            moment = value >> KIND_BITS
            if moment >= high:
                i = where(moment)
                high = bounds[i + 1] if i < count else _NEVER
            kind = value & 7
            if kind == CLOSE:
                if seen_message and i != closed_at and 0 <= i < count:
                    tallies[i].closed += 1
                    if closed_at < 0:
                        totals.closed += 1  # once a case, however often it closed
                    closed_at = i
                if is_open:
                    is_open = False
                    if i < count:
                        change[i + 1] -= 1
                continue
            seen_message = True
            if not is_open:
                is_open = True
                if i < count:
                    change[i + 1] += 1
            if 0 <= i < count:
                if kind == 0 or kind == 2:  # customers' messages, their system messages too
                    tallies[i].customer += 1
                    totals.customer += 1
                elif kind == 1 or kind == 3:  # agents'
                    tallies[i].agent += 1
                    totals.agent += 1

        # Then what the timeline says: the first response (in the period of the first
        # message), each wait (in the period it began), the resolution, reopens and one
        # touch (in the period of the first close).
        timeline = Timeline(entries)
        first_message = timeline.first_message
        if first_message is None:
            continue
        i = where(first_message)
        if 0 <= i < count:
            tallies[i].new += 1
            totals.new += 1
            response = timeline.first_response
            if response is not None:
                seconds = duration(*response)
                tallies[i].first_responses.append(seconds)
                totals.first_responses.append(seconds)
        for n, (wait_start, answered) in enumerate(timeline.waits):
            i = where(wait_start)
            if 0 <= i < count:
                if answered is None:
                    tallies[i].unanswered += 1
                    totals.unanswered += 1
                else:
                    seconds = duration(wait_start, answered)
                    tallies[i].replies.append(seconds)
                    totals.replies.append(seconds)
                    if sla is not None and n:
                        tallies[i].later.append(seconds)
                        totals.later.append(seconds)
        resolved = timeline.first_close
        if resolved is not None:
            i = where(resolved)
            if 0 <= i < count:
                seconds = duration(first_message, resolved)
                reopened = timeline.reopens > 0
                one_touch = timeline.one_touch
                for tally in (tallies[i], totals):
                    tally.first_closed += 1
                    tally.resolutions.append(seconds)
                    tally.reopened += reopened
                    tally.one_touch += one_touch

    if open_before is not None:
        for key, already in open_before(start).items():
            if key not in groups:
                groups[key] = [Tally() for _ in range(count)]
                changes[key] = [0] * (count + 1)
            changes[key][0] += already
    for key, tallies in groups.items():
        running = changes[key][0]  # open when the range begins
        for i, tally in enumerate(tallies):
            running += changes[key][i + 1]
            tally.open = running
        totals.open += running
    return rows_of(periods, groups, totals, by, sla)


def rows_of(
    periods: Periods, groups: dict[Any, list[Tally]], totals: Tally, by: str, sla: Any = None
) -> Report:
    """The report of what was counted: a row per period (by time) or per group."""
    only = AGENT_FIELDS if by == "agent" else None
    start, end, with_sla = periods.start, periods.end, sla is not None
    if by in BY_TIME:
        tallies = groups.get(None) or [Tally() for _ in periods.labels]
        rows = [
            {"period": name, **tally.record(sla=sla)}
            for name, tally in zip(periods.labels, tallies, strict=True)
        ]
        return Report("period", rows, totals.record(sla=sla), start, end, with_sla)
    keys = sorted(groups, key=lambda key: (key is None, key if key is not None else 0))
    shown = _closes if by == "agent" else _counts
    rows = [{by: key, **groups[key][0].record(only, sla)} for key in keys if shown(groups[key][0])]
    return Report(by, rows, totals.record(only, sla), start, end, with_sla)


def _counts(tally: Tally) -> bool:
    """Whether a group has anything to show (a group of cases only open before the range does
    when it still has open cases)."""
    return bool(
        tally.new or tally.closed or tally.open or tally.customer or tally.agent
        or tally.replies or tally.unanswered or tally.first_closed
    )  # fmt: skip


def _closes(tally: Tally) -> bool:
    return bool(tally.closed or tally.first_closed)

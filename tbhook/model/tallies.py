"""Tallies: what `report` counts, kept per quarter-hour and source, so the report of recent
days reads a few thousand tally rows instead of every case active in them. Pure, no I/O.

Each case contributes to the quarter-hours its entries fall in, exactly what ``report``
counts of it in the period holding that moment: its messages, its openings and closes, its
first message (a new case, with its first response), each wait by its start (a reply, or
unanswered), its first close (resolution, reopened, one touch). Durations are kept whole (a
median needs every value), sorted, as packed 64-bit integers. A close after the case's first
keeps the moment of the close before it: a case closed twice in one period counts once there,
and whether two closes share a period depends on the period (``closedCases``).

Quarter-hours serve every zone (each UTC offset in use is a whole number of them), so days,
weeks and months in any zone are whole quarter-hours; a report whose periods are not, or that
counts business hours (a duration needs its moments), or filters on what the tallies do not
key on, counts the case summaries instead (``tbhook.model.report``). The two give the same
report byte for byte (tests/test_tallies.py).
"""

from __future__ import annotations

import bisect
import sys
from array import array
from collections import Counter
from collections.abc import Iterable, Sequence
from typing import Any

from tbhook.model.cases import (
    AGENT_MESSAGE,
    CLOSE,
    CUSTOMER_MESSAGE,
    KIND_BITS,
    SYSTEM_AGENT,
    SYSTEM_CUSTOMER,
    Timeline,
    parse_entries,
)
from tbhook.model.report import BY_TIME, Periods, Report, Tally, rows_of

BUCKET = 900  # seconds: a quarter-hour
COUNTS = (
    "newCases",
    "customerMessages",
    "agentMessages",
    "opened",  # openings less closes of open cases: summed up to a moment, the cases open
    "resolved",  # first closes
    "reopened",  # of those, the cases that opened again later
    "oneTouch",
    "unanswered",
)
LISTS = (
    "firstResponses",  # by the case's first message
    "firstReplies",  # the answer to a case's first wait, by the wait's start
    "laterReplies",  # to its later waits
    "resolutions",  # by the first close
    "recloses",  # for each later close: the moment of the close before it
)
COLUMNS = (*COUNTS, *LISTS)
NEW, CUSTOMER, AGENT, OPENED, RESOLVED, REOPENED, ONE_TOUCH, UNANSWERED = range(len(COUNTS))
FIRST_RESPONSES, FIRST_REPLIES, LATER_REPLIES, RESOLUTIONS, RECLOSES = range(
    len(COUNTS), len(COLUMNS)
)
# The filters tallies answer (an allowlist, as for the per-day event counts: a filter added
# later is never ignored, the report counts the summaries instead).
TALLIED = frozenset({"source", "since", "until"})
_BIG_ENDIAN = sys.byteorder == "big"

Part = list  # a quarter-hour's contribution: COUNTS ints, then LISTS lists


def new_part() -> Part:
    return [0] * len(COUNTS) + [[] for _ in LISTS]


def contribution(packed: bytes) -> dict[int, Part]:
    """A case's contribution (its packed entries), by quarter-hour (Unix seconds // BUCKET)."""
    parts: dict[int, Part] = {}

    def part(moment: int) -> Part:
        bucket = moment // BUCKET
        found = parts.get(bucket)
        if found is None:
            found = parts[bucket] = new_part()
        return found

    entries = parse_entries(packed)
    is_open = seen_message = False
    last_close = None  # the last close after a message
    for value in entries:
        moment, kind = value >> KIND_BITS, value & 7
        if kind == CLOSE:
            if seen_message:
                if last_close is not None:
                    part(moment)[RECLOSES].append(last_close)
                last_close = moment
            if is_open:
                is_open = False
                part(moment)[OPENED] -= 1
            continue
        seen_message = True
        here = part(moment)
        if not is_open:
            is_open = True
            here[OPENED] += 1
        if kind in (CUSTOMER_MESSAGE, SYSTEM_CUSTOMER):
            here[CUSTOMER] += 1
        elif kind in (AGENT_MESSAGE, SYSTEM_AGENT):
            here[AGENT] += 1
    timeline = Timeline(entries)
    first = timeline.first_message
    if first is None:
        return parts
    here = part(first)
    here[NEW] += 1
    response = timeline.first_response
    if response is not None:
        here[FIRST_RESPONSES].append(response[1] - response[0])
    for n, (start, answered) in enumerate(timeline.waits):
        if answered is None:
            part(start)[UNANSWERED] += 1
        else:
            part(start)[LATER_REPLIES if n else FIRST_REPLIES].append(answered - start)
    resolved = timeline.first_close
    if resolved is not None:
        here = part(resolved)
        here[RESOLVED] += 1
        here[REOPENED] += timeline.reopens > 0
        here[ONE_TOUCH] += timeline.one_touch
        here[RESOLUTIONS].append(resolved - first)
    return parts


# -- what a write changes -------------------------------------------------------------------

Key = tuple  # (bucket, sourceId); bucket None: the source's running total of ``opened``


class Changes:
    """What some cases' new summaries change in the tallies: per key, the counts to add, and
    the values to take out of and put into each list."""

    def __init__(self) -> None:
        self.counts: dict[Key, list[int]] = {}
        self.out: dict[Key, list[list[int]]] = {}
        self.into: dict[Key, list[list[int]]] = {}

    def case(self, before: tuple[Any, bytes] | None, after: tuple[Any, bytes] | None) -> None:
        """One case, from ``(sourceId, entries)`` before to after (None: no such case)."""
        old = contribution(before[1]) if before else {}
        new = contribution(after[1]) if after else {}
        if before and after and before[0] == after[0]:
            source = after[0]
            for bucket in old.keys() | new.keys():
                self._part((bucket, source), old.get(bucket), new.get(bucket))
        else:
            for bucket, part in old.items():
                self._part((bucket, before[0]), part, None)  # type: ignore[index]
            for bucket, part in new.items():
                self._part((bucket, after[0]), None, part)  # type: ignore[index]
        for side, parts, sign in ((before, old, -1), (after, new, 1)):
            opened = sum(part[OPENED] for part in parts.values())
            if side and opened:
                self._count((None, side[0]), OPENED, sign * opened)

    def _part(self, key: Key, old: Part | None, new: Part | None) -> None:
        if old == new:
            return
        if old is None or new is None:  # a case new here, or gone: no need to compare
            sign, part = (1, new) if old is None else (-1, old)
            for i in range(len(COUNTS)):
                if part[i]:  # type: ignore[index]
                    self._count(key, i, sign * part[i])  # type: ignore[index]
            where = self.into if old is None else self.out
            for j, i in enumerate(range(len(COUNTS), len(COLUMNS))):
                if part[i]:  # type: ignore[index]
                    self._lists(where, key, j).extend(part[i])  # type: ignore[index]
            return
        for i in range(len(COUNTS)):
            change = new[i] - old[i]
            if change:
                self._count(key, i, change)
        for j, i in enumerate(range(len(COUNTS), len(COLUMNS))):
            was, now = old[i], new[i]
            if was == now:
                continue
            gone, came = Counter(was), Counter(now)
            self._lists(self.out, key, j).extend((gone - came).elements())
            self._lists(self.into, key, j).extend((came - gone).elements())

    def _count(self, key: Key, i: int, change: int) -> None:
        counts = self.counts.get(key)
        if counts is None:
            counts = self.counts[key] = [0] * len(COUNTS)
        counts[i] += change

    @staticmethod
    def _lists(where: dict[Key, list[list[int]]], key: Key, j: int) -> list[int]:
        lists = where.get(key)
        if lists is None:
            lists = where[key] = [[] for _ in LISTS]
        return lists[j]

    def ordered(self) -> list[Key]:
        """Every key changed, in one order (PostgreSQL's writers lock them in it)."""
        return sorted(
            self.counts.keys() | self.out.keys() | self.into.keys(), key=lambda k: key_text(*k)
        )

    def applied(self, key: Key, row: Sequence[Any] | None) -> list[Any]:
        """A stored row's COLUMNS (None: none yet) with this key's changes: counts as ints,
        lists as packed sorted values."""
        counts = list(row[: len(COUNTS)]) if row else [0] * len(COUNTS)
        for i, change in enumerate(self.counts.get(key) or ()):
            counts[i] += change
        out, into = self.out.get(key), self.into.get(key)
        lists = []
        for j in range(len(LISTS)):
            packed = bytes(row[len(COUNTS) + j]) if row else b""
            if (out is None or not out[j]) and (into is None or not into[j]):
                lists.append(packed)
                continue
            if out is None or not out[j]:  # only added (events that came in order)
                lists.append(pack(sorted([*unpack(packed), *into[j]])))  # type: ignore[index]
                continue
            counted = Counter(unpack(packed))
            # Each value taken out is there (the rows are what the summaries say); one that
            # is not must never stop a write: the count is simply not below zero.
            counted.subtract(out[j] if out else ())
            counted.update(into[j] if into else ())
            lists.append(pack(sorted((counted + Counter()).elements())))
        return counts + lists


def key_text(bucket: int | None, source: int | None) -> str:
    """A tally row's key: ``96000,14``, ``96000,NULL``; ``NULL,14`` for a source's total."""
    return f"{'NULL' if bucket is None else bucket},{'NULL' if source is None else source}"


def is_empty(values: Sequence[Any]) -> bool:
    """Whether a row of COLUMNS holds nothing (it is taken out of the table)."""
    return not any(values)


def pack(values: Iterable[int]) -> bytes:
    packed = array("q", values)
    if _BIG_ENDIAN:
        packed.byteswap()
    return packed.tobytes()


def unpack(packed: bytes) -> array:
    return parse_entries(packed)  # the same packing as a case's entries


def tallies_of(summaries: Iterable[tuple[Any, bytes]]) -> dict[Key, list[Any]]:
    """The rows of COLUMNS for some cases (``(sourceId, entries)`` each), from nothing: a
    rebuild's part, or a test's recount."""
    changes = Changes()
    for summary in summaries:
        changes.case(None, summary)
    return {key: changes.applied(key, None) for key in changes.ordered()}


# -- the report --------------------------------------------------------------------------


def aligned(periods: Periods) -> bool:
    """Whether every period is whole quarter-hours (else the summaries must count it)."""
    return all(bound % BUCKET == 0 for bound in periods.bounds)


def report(
    periods: Periods,
    by: str,
    rows: Iterable[Sequence[Any]],
    open_at_start: dict[Any, int],
    sla: Any = None,
) -> Report:
    """The report of ``periods`` from tally ``rows`` (bucket, sourceId, then COLUMNS) of the
    quarter-hours they span; ``open_at_start``: per source, the cases open when they begin.
    The same report ``tbhook.model.report.report`` counts from the summaries."""
    bounds, start = periods.bounds, periods.start
    count = len(periods.labels)
    groups: dict[Any, list[Tally]] = {}
    opened: dict[Any, list[int]] = {}
    totals = Tally()
    later = sla is not None
    for row in rows:
        bucket, source = row[0], row[1]
        key = source if by == "source" else None
        tallies = groups.get(key)
        if tallies is None:
            tallies = groups[key] = [Tally() for _ in range(count)]
            opened[key] = [0] * count
        i = bisect.bisect_right(bounds, bucket * BUCKET) - 1
        tally = tallies[i]
        (new, customer, agent, change, resolved, reopened, one_touch, unanswered) = row[2:10]
        firsts, first_replies, later_replies, resolutions, recloses = (
            unpack(packed) if packed else () for packed in row[10:15]
        )
        opened[key][i] += change
        closed = resolved + sum(1 for before in recloses if before < bounds[i])
        for t in (tally, totals):
            t.new += new
            t.customer += customer
            t.agent += agent
            t.first_closed += resolved
            t.reopened += reopened
            t.one_touch += one_touch
            t.unanswered += unanswered
            t.first_responses += firsts
            t.replies += first_replies
            t.replies += later_replies
            t.resolutions += resolutions
            if later:
                t.later += later_replies
        tally.closed += closed
        totals.closed += resolved + sum(1 for before in recloses if before < start)
    for key in open_at_start:
        group = key if by == "source" else None
        if group not in groups:
            groups[group] = [Tally() for _ in range(count)]
            opened[group] = [0] * count
    for key, tallies in groups.items():
        running = sum(
            already for source, already in open_at_start.items()
            if (source if by == "source" else None) == key
        )  # fmt: skip
        for i, tally in enumerate(tallies):
            running += opened[key][i]
            tally.open = running
        totals.open += running
    return rows_of(periods, groups, totals, by, sla)


def answers(by: str, filters: Any, clock: Any) -> bool:
    """Whether tallies can answer a report: by time or source, wall-clock durations, and
    only the filters they key on."""
    from dataclasses import fields

    if clock is not None or (by not in BY_TIME and by != "source"):
        return False
    return all(
        getattr(filters, field.name) in (None, ()) or field.name in TALLIED
        for field in fields(filters)
    )

"""Tallies: what `report` counts, kept per quarter-hour and source, so the report of recent
days reads a few thousand tally rows instead of every case active in them. Pure, no I/O.

Each case contributes to the quarter-hours its entries fall in, exactly what ``report``
counts of it in the period holding that moment: its messages, its openings and closes, its
first message (a new case, with its first response), each wait by its start (a reply, or
unanswered), its first close (resolution, reopened, one touch). Durations are kept whole (a
median needs every value), as packed 64-bit integers, in the order they came. A close after
the case's first keeps the moment of the close before it: a case closed twice in one period
counts once there, and whether two closes share a period depends on the period
(``closedCases``).

Quarter-hours serve every zone (each UTC offset in use is a whole number of them), so days,
weeks and months in any zone are whole quarter-hours; a report whose periods are not, or that
counts business hours (a duration needs its moments), or filters on what the tallies do not
key on, counts the case summaries instead (``tbhook.model.report``). The two give the same
report byte for byte (tests/test_tallies.py).
"""

from __future__ import annotations

import bisect
import contextlib
import sys
from array import array
from collections import Counter, OrderedDict
from collections.abc import Iterable, Sequence
from typing import Any

from tbhook.model.cases import (
    AGENT_MESSAGE,
    CLOSE,
    CUSTOMER_MESSAGE,
    KIND_BITS,
    SYSTEM_AGENT,
    SYSTEM_CUSTOMER,
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

Part = list  # a quarter-hour's contribution: COUNTS ints, then LISTS (0 until a value comes)
WIDTH = len(COLUMNS)
_COUNTED = range(len(COUNTS))
_LISTED = tuple(enumerate(range(len(COUNTS), WIDTH)))


# Where a pass over a case's entries stands, what the next entry needs to be counted:
# (first message, first close, closed now, open now, last close after a message, reopens,
# agent messages before the first close, the open wait's start, waits begun).
State = tuple
START_STATE: State = (None, None, False, False, None, 0, 0, None, 0)


def _part(parts: dict[int, Part], moment: int) -> Part:
    found = parts.get(moment // BUCKET)
    if found is None:
        found = parts[moment // BUCKET] = [0] * WIDTH
    return found


def _add(parts: dict[int, Part], moment: int, i: int, value: int) -> None:
    found = _part(parts, moment)
    if found[i]:
        found[i].append(value)
    else:
        found[i] = [value]


def _fold(entries: Iterable[int], state: State, parts: dict[int, Part]) -> State:
    """Count entries (in order, after those ``state`` has seen) into ``parts``, as
    ``Timeline`` and ``report`` count them, all but what only the last entry settles; where
    the count stands after them."""
    first, first_close, is_closed, is_open, last_close, reopens, touches, wait, waits = state
    get = parts.get
    for value in entries:
        moment, kind = value >> KIND_BITS, value & 7
        bucket = moment // BUCKET
        here = get(bucket)
        if here is None:
            here = parts[bucket] = [0] * WIDTH
        if kind == CLOSE:
            if first is not None:
                if last_close is None:
                    first_close = moment
                elif here[RECLOSES]:
                    here[RECLOSES].append(last_close)
                else:
                    here[RECLOSES] = [last_close]
                last_close = moment
                is_closed = True
            if is_open:
                is_open = False
                here[OPENED] -= 1
            continue
        if first is None:
            first = moment
            here[NEW] += 1
        if is_closed:
            reopens += 1
            is_closed = False
        if not is_open:
            is_open = True
            here[OPENED] += 1
        if kind == CUSTOMER_MESSAGE:
            here[CUSTOMER] += 1
            if wait is None:
                wait = moment
                waits += 1
        elif kind == AGENT_MESSAGE:
            here[AGENT] += 1
            if first_close is None:
                touches += 1
            if wait is not None:
                if waits == 1:
                    _add(parts, wait, FIRST_REPLIES, moment - wait)
                    _add(parts, first, FIRST_RESPONSES, moment - wait)
                else:
                    _add(parts, wait, LATER_REPLIES, moment - wait)
                wait = None
        elif kind == SYSTEM_CUSTOMER:
            here[CUSTOMER] += 1
        elif kind == SYSTEM_AGENT:
            here[AGENT] += 1
    return first, first_close, is_closed, is_open, last_close, reopens, touches, wait, waits


def _finish(state: State) -> dict[int, Part]:
    """What the entries seen so far settle only at their end: the wait left unanswered (at
    most the last), and the first close's resolution, reopen and one touch."""
    first, resolved, _closed, _open, _last, reopens, touches, wait, _waits = state
    parts: dict[int, Part] = {}
    if wait is not None:
        _part(parts, wait)[UNANSWERED] += 1
    if first is not None and resolved is not None:
        here = _part(parts, resolved)
        here[RESOLVED] += 1
        here[REOPENED] += reopens > 0
        here[ONE_TOUCH] += touches == 1
        here[RESOLUTIONS] = [resolved - first]
    return parts


# The state at the end of a case's entries, as the last write left it: the next write to
# the case counts only its new entries (a busy receiver's open cases are written often).
_ENDS: OrderedDict[bytes, State] = OrderedDict()
_ENDS_KEPT = 8192


def _end(packed: bytes) -> State:
    state = _ENDS.get(packed)
    if state is None:
        state = _fold(parse_entries(packed), START_STATE, {})
        _remember(packed, state)
    return state


def _remember(packed: bytes, state: State) -> None:
    _ENDS[packed] = state
    _ENDS.move_to_end(packed)
    if len(_ENDS) > _ENDS_KEPT:
        _ENDS.popitem(last=False)


def contribution(packed: bytes) -> dict[int, Part]:
    """A case's contribution (its packed entries), by quarter-hour (Unix seconds // BUCKET)."""
    parts: dict[int, Part] = {}
    state = _fold(parse_entries(packed), START_STATE, parts)
    for bucket, settled in _finish(state).items():
        _merge(parts.setdefault(bucket, [0] * WIDTH), settled)
    return parts


def _merge(part: Part, other: Part) -> None:
    for i in range(len(COUNTS)):
        part[i] += other[i]
    for i in range(len(COUNTS), WIDTH):
        if other[i]:
            part[i] = [*(part[i] or ()), *other[i]]


# -- what a write changes -------------------------------------------------------------------

Key = tuple  # (bucket, sourceId); bucket None: the source's running total of ``opened``


class Changes:
    """What some cases' new summaries change in the tallies: per key, the counts to add, and
    the values to put into and (only when a case is counted again) take out of each list."""

    def __init__(self) -> None:
        self.counts: dict[Key, list[int]] = {}
        self.out: dict[Key, list[list[int]]] = {}
        self.into: dict[Key, list[list[int]]] = {}

    def case(self, before: tuple[Any, bytes] | None, after: tuple[Any, bytes] | None) -> None:
        """One case, from ``(sourceId, entries)`` before to after (None: no such case)."""
        if before and after and before[0] == after[0] and after[1].startswith(before[1]):
            self._appended(after[0], before[1], after[1])
            return
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
        if after:
            self._remembered(after[1])

    def _appended(self, source: Any, before: bytes, after: bytes) -> None:
        """Entries added after a case's last: only they are counted, from where its last
        entry left the count; and what the end settles, before and after."""
        state = _end(before)
        added: dict[int, Part] = {}
        now = _fold(parse_entries(after[len(before) :]), state, added)
        opened = 0
        for bucket, part in added.items():
            self._part((bucket, source), None, part)
            opened += part[OPENED]
        if opened:
            self._count((None, source), OPENED, opened)
        old, new = _finish(state), _finish(now)
        for bucket in old.keys() | new.keys():
            self._part((bucket, source), old.get(bucket), new.get(bucket))
        _remember(after, now)

    @staticmethod
    def _remembered(packed: bytes) -> None:
        if packed not in _ENDS:
            _end(packed)

    def _part(self, key: Key, old: Part | None, new: Part | None) -> None:
        if old == new:
            return
        if old is None or new is None:  # a case new here, or gone: no need to compare
            sign, part = (1, new) if old is None else (-1, old)
            counts = self.counts.get(key)
            if counts is None:
                counts = self.counts[key] = [0] * len(COUNTS)
            for i in _COUNTED:
                if part[i]:  # type: ignore[index]
                    counts[i] += sign * part[i]  # type: ignore[index]
            where = self.into if old is None else self.out
            for j, i in _LISTED:
                if part[i]:  # type: ignore[index]
                    self._lists(where, key, j).extend(part[i])  # type: ignore[index]
            return
        for i in _COUNTED:
            change = new[i] - old[i]
            if change:
                self._count(key, i, change)
        for j, i in _LISTED:
            was, now = old[i], new[i]
            if was == now:
                continue
            gone, came = Counter(was or ()), Counter(now or ())
            if gone - came:
                self._lists(self.out, key, j).extend((gone - came).elements())
            if came - gone:
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

    @property
    def takes_out(self) -> bool:
        """Whether any value leaves a list (a case counted again): the rows must be read."""
        return bool(self.out)

    def added(self, key: Key) -> list[Any]:
        """What this key's row gains: counts (less where negative), lists' values packed."""
        counts = self.counts.get(key) or [0] * len(COUNTS)
        into = self.into.get(key)
        return [*counts, *(pack(into[j]) if into else b"" for j in range(len(LISTS)))]

    def applied(self, key: Key, row: Sequence[Any] | None) -> list[Any]:
        """A stored row's COLUMNS (None: none yet) with this key's changes: each value taken
        out where it first stands, each value put in at the end."""
        counts = list(row[: len(COUNTS)]) if row else [0] * len(COUNTS)
        for i, change in enumerate(self.counts.get(key) or ()):
            counts[i] += change
        out, into = self.out.get(key), self.into.get(key)
        lists = []
        for j in range(len(LISTS)):
            packed = bytes(row[len(COUNTS) + j]) if row else b""
            gone, came = (out[j] if out else ()), (into[j] if into else ())
            if not gone and not came:
                lists.append(packed)
                continue
            values = list(unpack(packed))
            for value in gone:
                # Each value taken out is there (the rows are what the summaries say); one
                # that is not must never stop a write.
                with contextlib.suppress(ValueError):
                    values.remove(value)
            lists.append(pack([*values, *came]))
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
        tally.closed += resolved + sum(1 for before in recloses if before < bounds[i])
        tally.first_responses += firsts
        tally.replies += first_replies
        tally.replies += later_replies
        tally.resolutions += resolutions
        if later:
            tally.later += later_replies
        for t in (tally, totals):
            t.new += new
            t.customer += customer
            t.agent += agent
            t.first_closed += resolved
            t.reopened += reopened
            t.one_touch += one_touch
            t.unanswered += unanswered
        totals.closed += resolved + sum(1 for before in recloses if before < start)
    # The whole range's values, each period's sorted first: the total's sort merges runs.
    for tallies in groups.values():
        for tally in tallies:
            for name in ("first_responses", "replies", "later", "resolutions"):
                values = getattr(tally, name)
                values.sort()
                getattr(totals, name).extend(values)
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

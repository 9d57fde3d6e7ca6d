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
from tbhook.model.periods import BY_TIME, Periods
from tbhook.model.report import Report, Tally, rows_of

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
_NOTHING: Part = [0] * WIDTH


# Where a pass over a case's entries stands, what the next entry needs to be counted:
# (first message, first close, closed now, open now, last close after a message, reopens,
# agent messages before the first close, the open wait's start, waits begun).
State = tuple
START_STATE: State = (None, None, False, False, None, 0, 0, None, 0)


Key = tuple  # (bucket, sourceId); bucket None: the source's running total of ``opened``
Parts = dict  # Key -> Part


def _part(parts: Parts, moment: int, source: Any) -> Part:
    key = (moment // BUCKET, source)
    found = parts.get(key)
    if found is None:
        found = parts[key] = [0] * WIDTH
    return found


def _add(parts: Parts, moment: int, source: Any, i: int, value: int) -> None:
    found = _part(parts, moment, source)
    if found[i]:
        found[i].append(value)
    else:
        found[i] = [value]


def _fold(entries: Iterable[int], state: State, parts: Parts, source: Any) -> tuple[State, int]:
    """Count entries (in order, after those ``state`` has seen) of a case of ``source`` into
    ``parts``, as ``Timeline`` and ``report`` count them, all but what only the last entry
    settles; where the count stands after them, and how many more cases they leave open."""
    first, first_close, is_closed, is_open, last_close, reopens, touches, wait, waits = state
    get = parts.get
    opened = 0
    for value in entries:
        moment, kind = value >> KIND_BITS, value & 7
        key = (moment // BUCKET, source)
        here = get(key)
        if here is None:
            here = parts[key] = [0] * WIDTH
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
                opened -= 1
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
            opened += 1
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
                    _add(parts, wait, source, FIRST_REPLIES, moment - wait)
                    _add(parts, first, source, FIRST_RESPONSES, moment - wait)
                else:
                    _add(parts, wait, source, LATER_REPLIES, moment - wait)
                wait = None
        elif kind == SYSTEM_CUSTOMER:
            here[CUSTOMER] += 1
        elif kind == SYSTEM_AGENT:
            here[AGENT] += 1
    state = (first, first_close, is_closed, is_open, last_close, reopens, touches, wait, waits)
    return state, opened


def _finish(state: State, source: Any) -> Parts:
    """What the entries seen so far settle only at their end: the wait left unanswered (at
    most the last), and the first close's resolution, reopen and one touch."""
    first, resolved, _closed, _open, _last, reopens, touches, wait, _waits = state
    parts: Parts = {}
    if wait is not None:
        _part(parts, wait, source)[UNANSWERED] += 1
    if first is not None and resolved is not None:
        here = _part(parts, resolved, source)
        here[RESOLVED] += 1
        here[REOPENED] += reopens > 0
        here[ONE_TOUCH] += touches == 1
        here[RESOLUTIONS] = [resolved - first]
    return parts


def _settles(state: State) -> tuple:
    """What of a state ``_finish`` reads: equal, and the two settle the same."""
    first, resolved, _closed, _open, _last, reopens, touches, wait, _waits = state
    return first, resolved, reopens > 0, touches == 1, wait


# The state at the end of a case's entries, as the last write left it: the next write to
# the case counts only its new entries (a busy receiver's open cases are written often).
_ENDS: OrderedDict[bytes, State] = OrderedDict()
_ENDS_KEPT = 8192


def _end(packed: bytes) -> State:
    state = _ENDS.get(packed)
    if state is None:
        state = _fold(parse_entries(packed), START_STATE, {}, None)[0]
        _remember(packed, state)
    return state


def _remember(packed: bytes, state: State) -> None:
    _ENDS[packed] = state
    _ENDS.move_to_end(packed)
    if len(_ENDS) > _ENDS_KEPT:
        _ENDS.popitem(last=False)


def contribution(packed: bytes, source: Any = None) -> Parts:
    """A case's contribution (its packed entries), by quarter-hour (Unix seconds // BUCKET)
    and ``source``."""
    parts: Parts = {}
    state, _opened = _fold(parse_entries(packed), START_STATE, parts, source)
    for key, settled in _finish(state, source).items():
        _merge(parts.setdefault(key, [0] * WIDTH), settled)
    return parts


def _merge(part: Part, other: Part) -> None:
    for i in _COUNTED:
        part[i] += other[i]
    for _j, i in _LISTED:
        if other[i]:
            part[i] = [*(part[i] or ()), *other[i]]


# -- what a write changes -------------------------------------------------------------------


class Changes:
    """What some cases' new summaries change in the tallies: per key, the counts to add and
    the values to put into each list (``parts``), and the values to take out of them
    (``out``: only when a case is counted again)."""

    def __init__(self) -> None:
        self.parts: Parts = {}
        self.out: dict[Key, list[list[int]]] = {}

    def case(self, before: tuple[Any, bytes] | None, after: tuple[Any, bytes] | None) -> None:
        """One case, from ``(sourceId, entries)`` before to after (None: no such case)."""
        if before is None and after is not None:  # a new case: counted as it is
            self._counted(after[0], START_STATE, after[1], after[1])
            return
        if before and after and before[0] == after[0] and after[1].startswith(before[1]):
            self._counted(after[0], _end(before[1]), after[1][len(before[1]) :], after[1])
            return
        old = contribution(before[1], before[0]) if before else {}
        new = contribution(after[1], after[0]) if after else {}
        for key in old.keys() | new.keys():
            self._diff(key, old.get(key), new.get(key))
        for side, parts, sign in ((before, old, -1), (after, new, 1)):
            opened = sum(part[OPENED] for part in parts.values())
            if side and opened:
                self._total(side[0], sign * opened)
        if after and after[1] not in _ENDS:
            _end(after[1])

    def _counted(self, source: Any, state: State, added: bytes, after: bytes) -> None:
        """Entries ``added`` after those ``state`` has seen (all of them, for a new case),
        counted straight into the changes; and what the end settles, before and after."""
        now, opened = _fold(parse_entries(added), state, self.parts, source)
        if opened:
            self._total(source, opened)
        if _settles(state) == _settles(now):
            _remember(after, now)
            return
        old, new = _finish(state, source), _finish(now, source)
        if old != new:
            for key in old.keys() | new.keys():
                self._diff(key, old.get(key), new.get(key))
        _remember(after, now)

    def _total(self, source: Any, opened: int) -> None:
        key = (None, source)
        found = self.parts.get(key)
        if found is None:
            found = self.parts[key] = [0] * WIDTH
        found[OPENED] += opened

    def _diff(self, key: Key, old: Part | None, new: Part | None) -> None:
        """What changes from one part of a case's contribution to another (None: none)."""
        if old == new:
            return
        here = self.parts.get(key)
        if here is None:
            here = self.parts[key] = [0] * WIDTH
        old, new = old or _NOTHING, new or _NOTHING
        for i in _COUNTED:
            here[i] += new[i] - old[i]
        for j, i in _LISTED:
            if old[i] == new[i]:
                continue
            was: list[int] = list(old[i] or ())
            now: list[int] = list(new[i] or ())
            if was and now:  # only what differs (a recount changes few of a case's values)
                gone, came = Counter(was), Counter(now)
                was, now = list((gone - came).elements()), list((came - gone).elements())
            if was:
                self._out(key, j).extend(was)
            if now:
                here[i] = [*(here[i] or ()), *now]

    def _out(self, key: Key, j: int) -> list[int]:
        lists = self.out.get(key)
        if lists is None:
            lists = self.out[key] = [[] for _ in LISTS]
        return lists[j]

    def ordered(self) -> list[tuple[str, Key]]:
        """Every key changed, with its text, in one order (PostgreSQL's writers lock them in
        it)."""
        return sorted((key_text(*key), key) for key in self.parts.keys() | self.out.keys())

    @property
    def takes_out(self) -> bool:
        """Whether any value leaves a list (a case counted again): the rows must be read."""
        return bool(self.out)

    def added(self, key: Key) -> list[Any]:
        """What this key's row gains: counts (less where negative), lists' values packed."""
        part = self.parts.get(key)
        if part is None:
            return [0] * len(COUNTS) + [b""] * len(LISTS)
        return [*part[: len(COUNTS)], *(pack(part[i]) if part[i] else b"" for _j, i in _LISTED)]

    def applied(self, key: Key, row: Sequence[Any] | None) -> list[Any]:
        """A stored row's COLUMNS (None: none yet) with this key's changes: each value taken
        out where it first stands, each value put in at the end."""
        counts = list(row[: len(COUNTS)]) if row else [0] * len(COUNTS)
        part = self.parts.get(key)
        if part is not None:
            for i in _COUNTED:
                counts[i] += part[i]
        out = self.out.get(key)
        lists = []
        for j, i in _LISTED:
            packed = bytes(row[i]) if row else b""
            gone, came = (out[j] if out else ()), ((part[i] or ()) if part else ())
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
    return {key: changes.applied(key, None) for _text, key in changes.ordered()}


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
    later = sla is not None
    # The rows by group and period first; then each period's counts summed column by column
    # and its lists unpacked in one piece (a month of rows is some 15,000 at 10M events).
    found: dict[Any, list[list]] = {}
    for row in rows:
        key = row[1] if by == "source" else None
        periods_of = found.get(key)
        if periods_of is None:
            periods_of = found[key] = [[] for _ in range(count)]
        periods_of[bisect.bisect_right(bounds, row[0] * BUCKET) - 1].append(row)
    groups: dict[Any, list[Tally]] = {}
    opened: dict[Any, list[int]] = {}
    totals = Tally()
    for key, periods_of in found.items():
        tallies = groups[key] = [Tally() for _ in range(count)]
        opened[key] = [0] * count
        for i, (tally, those) in enumerate(zip(tallies, periods_of, strict=True)):
            if not those:
                continue
            (new, customer, agent, change, resolved, reopened, one_touch, unanswered) = (
                sum(column) for column in zip(*(row[2:10] for row in those), strict=True)
            )
            firsts, first_replies, later_replies, resolutions, recloses = (
                unpack(b"".join(row[j] for row in those)) for j in range(10, 15)
            )
            opened[key][i] = change
            tally.closed = resolved + sum(1 for before in recloses if before < bounds[i])
            totals.closed += resolved + sum(1 for before in recloses if before < start)
            tally.new, tally.customer, tally.agent = new, customer, agent
            tally.first_closed, tally.reopened = resolved, reopened
            tally.one_touch, tally.unanswered = one_touch, unanswered
            tally.first_responses = sorted(firsts)
            tally.replies = sorted([*first_replies, *later_replies])
            tally.resolutions = sorted(resolutions)
            if later:
                tally.later = sorted(later_replies)
            totals.new += new
            totals.customer += customer
            totals.agent += agent
            totals.first_closed += resolved
            totals.reopened += reopened
            totals.one_touch += one_touch
            totals.unanswered += unanswered
            # The whole range's values, each period's sorted already: the total's sort merges
            # runs.
            totals.first_responses += tally.first_responses
            totals.replies += tally.replies
            totals.resolutions += tally.resolutions
            totals.later += tally.later
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

"""Cases: a case's timeline, what it says (waits, replies, closes, reopens), and the summary
kept of it as events arrive. Pure, no I/O: `cases`, `case`, `report` and the store's
``case_timelines`` all count with the functions here, so every number means one thing.

One case is the ``newResult`` and ``caseClosed`` events with its caseId, in (timestamp, id)
order. Each becomes an *entry*, one integer: ``timestamp * 8 + kind``; a case's entries are
kept as 64-bit little-endian integers, one after the other (a million read in milliseconds).

- A customer message (own 0) opens a wait when none is open; the next agent message (own 1)
  answers it. System messages (typeId 6) are messages everywhere else but never open or answer
  a wait, and are not a touch of one-touch resolution. A close does not end a wait.
- The first message starts the case; a close before it is ignored; the first close after it
  resolves the case; each message after a close reopens it.
- A case is open at a moment when its last entry at or before that moment is a message.
- The queue (`tbhook queue`): a case *waits* from a customer message (own 0, not a system
  message) until an agent message (own 1, not a system message) or a close; further customer
  messages meanwhile belong to the same wait. A customer message after a close starts a new
  wait, counted from that message (the close said the team was done; the customer's new
  message is a new request, as a helpdesk's reply-time target restarts on a reopened ticket).
  This is the queue's wait: the report's waits (above) are not ended by a close. A wait is
  ``first`` until an agent message has followed the case's first customer message (the
  report's first response), ``reply`` after.
"""

from __future__ import annotations

import struct
import sys
from array import array
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from itertools import groupby
from operator import itemgetter
from typing import Any

from tbhook.model.times import iso_time

CUSTOMER, AGENT = 0, 1  # own
SYSTEM_TYPE = 6  # typeId of a system message

# Entry kinds: the three low bits of an entry.
CUSTOMER_MESSAGE, AGENT_MESSAGE, SYSTEM_CUSTOMER, SYSTEM_AGENT, OTHER_MESSAGE, CLOSE = range(6)
KIND_BITS = 3
CLOSES = frozenset({CLOSE})
# A timestamp is kept within +-2**59 seconds in an entry (a sender's absurd 2**63 must not
# overflow the 64-bit integer it is packed into; no real moment is anywhere near).
ENTRY_LIMIT = 2**59 - 1

# What a case's metrics need of each event, in this order: the rows ``Reads.case_events``
# gives and the summary folds.
CASE_COLUMNS = (
    "caseId",
    "event",
    "timestamp",
    "id",
    "personId",
    "own",
    "typeId",
    "sourceId",
    "agentId",
    "searchId",
    "path",
)

METRICS = (
    "caseId",
    "personId",
    "canonicalPersonId",
    "source",
    "messages",
    "customerMessages",
    "agentMessages",
    "firstMessageAt",
    "firstResponseSeconds",
    "replies",
    "unanswered",
    "firstClosedAt",
    "closedBy",
    "resolutionSeconds",
    "closedAt",
    "secondsToClose",
    "reopens",
    "closed",
    "reopened",
)
# With --hours, the same durations counted in business time.
BUSINESS_METRICS = ("firstResponseBusinessSeconds", "resolutionBusinessSeconds")


def kind_of(event: str, own: int | None, type_id: int | None) -> int | None:
    """An event's entry kind, or None for an event that is not part of a case's timeline."""
    if event == "caseClosed":
        return CLOSE
    if event != "newResult":
        return None
    if own == CUSTOMER:
        return SYSTEM_CUSTOMER if type_id == SYSTEM_TYPE else CUSTOMER_MESSAGE
    if own == AGENT:
        return SYSTEM_AGENT if type_id == SYSTEM_TYPE else AGENT_MESSAGE
    return OTHER_MESSAGE


def entry(timestamp: int, kind: int) -> int:
    return (min(max(timestamp, -ENTRY_LIMIT), ENTRY_LIMIT) << KIND_BITS) | kind


_PACK = struct.Struct("<q").pack


_BIG_ENDIAN = sys.byteorder == "big"


def parse_entries(packed: bytes) -> array:
    """A case's entries from how they are kept."""
    values = array("q", packed if type(packed) is bytes else bytes(packed))
    if _BIG_ENDIAN:
        values.byteswap()
    return values


class Timeline:
    """What a case's entries (in order) say, counted in one pass."""

    __slots__ = (
        "agent_messages",
        "closed",
        "customer_messages",
        "first_close",
        "first_message",
        "last_close",
        "messages",
        "reopens",
        "touches",
        "waits",
    )

    def __init__(self, entries: Sequence[int]):
        customers = agents = messages = reopens = touches = 0
        first_message = first_close = last_close = wait = None
        waits: list[list[Any]] = []  # [start, answered at or None]
        is_closed = False  # the last entry is a close (after the first message)
        for value in entries:
            kind = value & 7
            moment = value >> KIND_BITS
            if kind == CLOSE:
                last_close = moment
                if first_message is not None:
                    if first_close is None:
                        first_close = moment
                    is_closed = True
                continue
            messages += 1
            if first_message is None:
                first_message = moment
            if is_closed:
                reopens += 1
                is_closed = False
            if kind == CUSTOMER_MESSAGE:
                customers += 1
                if wait is None:
                    wait = [moment, None]
                    waits.append(wait)
            elif kind == AGENT_MESSAGE:
                agents += 1
                if first_close is None:
                    touches += 1
                if wait is not None:
                    wait[1] = moment
                    wait = None
            elif kind == SYSTEM_CUSTOMER:
                customers += 1
            elif kind == SYSTEM_AGENT:
                agents += 1
        self.customer_messages, self.agent_messages, self.messages = customers, agents, messages
        self.first_message, self.first_close, self.last_close = (
            first_message,
            first_close,
            last_close,
        )
        self.reopens, self.touches, self.waits = reopens, touches, waits
        self.closed = bool(entries) and entries[-1] & 7 == CLOSE

    @property
    def first_response(self) -> tuple[int, int] | None:
        """(start, end) of the first wait, when it was answered."""
        if self.waits and self.waits[0][1] is not None:
            return self.waits[0][0], self.waits[0][1]
        return None

    @property
    def one_touch(self) -> bool:
        return self.first_close is not None and self.touches == 1


# -- the summary kept as events arrive ----------------------------------------------------

# ``case_timelines``' columns, in this order (both backends; what ``Summary.row`` gives).
SUMMARY_COLUMNS = (
    "caseId",
    "startAt",
    "lastAt",
    "lastId",
    "firstAt",
    "firstClosedAt",
    "closedBy",
    "openNow",
    "sourceId",
    "searchId",
    "path",
    "personId",
    "entries",
    "waitAt",
    "waitKind",
    "waitMessages",
    "waitSourceId",
    "waitPath",
    "firstAskedAt",
    "firstAnsweredAt",
)
FIRST, REPLY = "first", "reply"  # the kinds of a wait


# What a report needs of a case's summary, in this order (``Timelines.read``).
BRIEF_COLUMNS = ("caseId", "sourceId", "closedBy", "entries")


@dataclass
class Summary:
    """A case's summary row, folded one event at a time in (timestamp, id) order: from
    nothing (a recomputation) or from the stored row (events that arrive in order, the usual
    case). ``entries`` is the packed entries (``parse_entries``), appended to."""

    caseId: int
    startAt: int | None = None
    lastAt: int | None = None
    lastId: int | None = None
    firstAt: int | None = None
    firstClosedAt: int | None = None
    closedBy: int | None = None
    openNow: int = 0
    sourceId: int | None = None
    searchId: int | None = None
    path: str | None = None
    personId: int | None = None
    entries: bytes = b""
    waitAt: int | None = None
    waitKind: str | None = None
    waitMessages: int = 0
    waitSourceId: int | None = None
    waitPath: str | None = None
    firstAskedAt: int | None = None  # the first customer message
    firstAnsweredAt: int | None = None  # the first agent message after it

    @classmethod
    def of(cls, row: Sequence[Any]) -> Summary:
        return cls(*row)

    def row(self) -> tuple:
        return (
            self.caseId,
            self.startAt,
            self.lastAt,
            self.lastId,
            self.firstAt,
            self.firstClosedAt,
            self.closedBy,
            self.openNow,
            self.sourceId,
            self.searchId,
            self.path,
            self.personId,
            self.entries,
            self.waitAt,
            self.waitKind,
            self.waitMessages,
            self.waitSourceId,
            self.waitPath,
            self.firstAskedAt,
            self.firstAnsweredAt,
        )

    def brief(self) -> tuple:
        """The row of BRIEF_COLUMNS."""
        return self.caseId, self.sourceId, self.closedBy, self.entries

    def follows(self, timestamp: int, event_id: int) -> bool:
        """Whether an event comes after everything folded so far (it can be appended)."""
        if self.lastAt is None or self.lastId is None:
            return True
        return (timestamp, event_id) > (self.lastAt, self.lastId)

    def add(self, row: Sequence[Any]) -> None:
        """Fold one event, a row of CASE_COLUMNS."""
        _case, event, timestamp, event_id, person, own, type_id, source, agent, search, path = row
        kind = kind_of(event, own, type_id)
        if kind is None or timestamp is None:  # no place in time (only a hand-made row)
            return
        value = entry(timestamp, kind)
        moment = value >> KIND_BITS
        self.entries += _PACK(value)
        if self.startAt is None:  # the case's attributes, until its first message has them
            self.startAt, self.personId, self.searchId, self.path = moment, person, search, path
        self.lastAt, self.lastId = timestamp, event_id
        if kind == CLOSE:
            self.openNow = 0
            if self.firstAt is not None and self.firstClosedAt is None:
                self.firstClosedAt, self.closedBy = moment, agent
            self._answered()
            return
        self.openNow = 1
        if self.firstAt is None:
            self.firstAt, self.sourceId = moment, source
            self.personId, self.searchId, self.path = person, search, path
        if kind == CUSTOMER_MESSAGE:
            if self.firstAskedAt is None:
                self.firstAskedAt = moment
            if self.waitAt is None:
                self.waitAt, self.waitMessages = moment, 0
                self.waitKind = REPLY if self.firstAnsweredAt is not None else FIRST
            self.waitMessages += 1
            self.waitSourceId, self.waitPath = source, path
        elif kind == AGENT_MESSAGE:
            if self.firstAskedAt is not None and self.firstAnsweredAt is None:
                self.firstAnsweredAt = moment
            self._answered()

    def _answered(self) -> None:
        """The case waits for nobody (an agent answered, or it was closed)."""
        self.waitAt = self.waitKind = self.waitSourceId = self.waitPath = None
        self.waitMessages = 0


def summaries(rows: Iterable[Sequence[Any]]) -> Iterator[Summary]:
    """Summaries recomputed from rows of CASE_COLUMNS ordered by caseId, timestamp, id."""
    for case_id, events in groupby(rows, key=itemgetter(0)):
        summary = Summary(case_id)
        for row in events:
            summary.add(row)
        if summary.entries:
            yield summary


# -- `cases` and `case`: one record per case ------------------------------------------------


def summarize(
    summary: Summary,
    canonical: Callable[[int | None], int | None],
    duration: Callable[[int, int], int] | None = None,
) -> dict[str, Any]:
    """The metrics of one case (METRICS, and BUSINESS_METRICS when ``duration`` counts
    business time)."""
    timeline = Timeline(parse_entries(summary.entries))
    first, resolved = timeline.first_message, timeline.first_close
    response = timeline.first_response
    last_close = timeline.last_close
    record = {
        "caseId": summary.caseId,
        "personId": summary.personId,
        "canonicalPersonId": canonical(summary.personId),
        "source": summary.sourceId,
        "messages": timeline.messages,
        "customerMessages": timeline.customer_messages,
        "agentMessages": timeline.agent_messages,
        "firstMessageAt": iso_time(first),
        "firstResponseSeconds": response[1] - response[0] if response else None,
        "replies": sum(1 for _start, end in timeline.waits if end is not None),
        "unanswered": sum(1 for _start, end in timeline.waits if end is None),
        "firstClosedAt": iso_time(resolved),
        "closedBy": summary.closedBy,
        "resolutionSeconds": resolved - first
        if first is not None and resolved is not None
        else None,
        "closedAt": iso_time(last_close),
        "secondsToClose": (
            last_close - first
            if first is not None and last_close is not None and last_close >= first
            else None
        ),
        "reopens": timeline.reopens,
        "closed": timeline.closed,
        "reopened": timeline.reopens > 0,
    }
    if duration is not None:
        record["firstResponseBusinessSeconds"] = duration(*response) if response else None
        record["resolutionBusinessSeconds"] = (
            duration(first, resolved) if first is not None and resolved is not None else None
        )
    return record


def summarize_all(
    rows: Iterable[Sequence[Any]],
    canonical: Callable[[int | None], int | None],
    duration: Callable[[int, int], int] | None = None,
) -> Iterator[dict[str, Any]]:
    """One record per case, from rows of CASE_COLUMNS ordered by caseId, timestamp, id
    (streamed). A caseId seen only on undocumented events is not a case."""
    for summary in summaries(rows):
        yield summarize(summary, canonical, duration)

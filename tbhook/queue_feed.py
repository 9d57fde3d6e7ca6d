"""The queue as a topic of the one feed (``tbhook.feed``): `queue --follow` and every open
``/queue`` page follow it, and equal questions share one answer.

It asks the queue again when the feed brings an event that can start, end or change a wait
(a message, a close, a merge); when time alone changes what a follower sees: a row crossing
its target, or into the last quarter of it (the rows are moved on in memory every ``TICK``
seconds to see that), the business clock stopping or starting; and every ``REFRESH``
seconds (the counts of the waits past the rows shown, events a prune deleted). Its
followers are given an answer only when it differs from the last one they were given.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from tbhook.model.filters import Filters
from tbhook.model.query import Asked
from tbhook.model.queue import Waiting, at_risk, changes

# What can start, end or change a wait: a message, a close, a merge (another person).
EVENTS = Filters(events=("newResult", "caseClosed", "profileMerged"))
TICK = 1.0  # seconds: how often the rows shown are moved on, to see one cross a line
REFRESH = 10.0  # seconds: how often the whole queue is asked again, whatever happened


@dataclass(frozen=True)
class Asking:
    """What a follower asks: which waits, how many rows (None: all), the clock they are
    counted on (None: wall-clock), the targets (None: none)."""

    waiting: Waiting = Waiting()
    limit: int | None = None
    clock: Any = None
    sla: Any = None


@dataclass(frozen=True)
class Snapshot:
    """The queue as a follower is given it: the answer (``questions.QueueAnswer``), and the
    business clock at its moment: whether it runs, and when it next stops or starts (a
    page's countdown stands still while the clock does)."""

    answer: Any
    running: bool = True
    change: int | None = None


def asking_of(asked: Asked) -> Asking:
    """What the command's options or the page's query string ask (``model.query.Asked``)."""
    waiting = Waiting(asked.sources, asked.filters.path, asked.at)
    return Asking(waiting, asked.limit or None, asked.clock, asked.sla)


def snapshot(store: Any, asking: Asking, now: int) -> Snapshot:
    """The queue now, as ``asking`` asks it."""
    from tbhook import questions

    answer = questions.queue(
        store, asking.waiting, asking.limit, now=now, clock=asking.clock, sla=asking.sla
    )
    running, change = asking.clock.state(now) if asking.clock else (True, None)
    return Snapshot(answer, running, change)


def differs(before: Snapshot, after: Snapshot) -> bool:
    """Whether a follower would see anything new: a row came, went or changed (a breach
    among them), the counts of the whole queue, the clock."""
    old, new = before.answer.standing, after.answer.standing
    return (
        bool(changes(before.answer.records, after.answer.records))
        or (old.waiting, old.breached, old.at_risk) != (new.waiting, new.breached, new.at_risk)
        or before.running != after.running
    )


def crossed(last: Snapshot, now: int) -> bool:
    """Whether time alone has moved a row of ``last`` over a line by ``now`` (breached, at
    risk), or the clock has stopped or started."""
    if last.change is not None and now >= last.change:
        return True
    moved = last.answer.later(now).records
    return [_marks(row) for row in last.answer.records] != [_marks(row) for row in moved]


def _marks(row: dict[str, Any]) -> tuple[bool, bool]:
    return bool(row.get("breached")), at_risk(row)


@dataclass
class _Seen:
    given: Snapshot | None = None  # the last snapshot given to the followers
    asked: float = 0.0  # when the store was last asked
    looked: float = 0.0  # when the rows were last moved on


@dataclass(frozen=True)
class Queue:
    """A topic of the feed: the queue as ``asking`` asks it. Equal ``key``s (a page's query,
    read) share one topic; what it last gave is its own (``seen``)."""

    key: tuple
    asking: Asking = field(compare=False)
    clock: Callable[[], float] = field(default=time.time, compare=False, repr=False)
    seen: _Seen = field(default_factory=_Seen, compare=False, repr=False)

    def history(self, store: Any, cursor: Any, after: int, first: int) -> list[dict]:
        """For one who joins: the queue now."""
        found = self._ask(store)
        self.seen.given = self.seen.given or found
        return [{"snapshot": found}]

    def window(self, store: Any, cursor: Any, upto: Any) -> list[dict]:
        """The queue again when the window brought what can change it, or time did; given
        only when it differs from what was given last."""
        moved = bool(store.tail.window(EVENTS, cursor, upto))
        if not moved and not self._due():
            return []
        found = self._ask(store)
        last, self.seen.given = self.seen.given, found
        if last is not None and not differs(last, found):
            return []
        return [{"snapshot": found}]

    def _due(self) -> bool:
        now = self.clock()
        seen = self.seen
        if seen.given is None or now - seen.asked >= REFRESH:
            return True
        if now - seen.looked < TICK:
            return False
        seen.looked = now
        return crossed(seen.given, int(now))

    def _ask(self, store: Any) -> Snapshot:
        now = self.clock()
        self.seen.asked = self.seen.looked = now
        return snapshot(store, self.asking, int(now))


def followed(store: Any, asking: Asking, poll: float | None = None) -> Iterator[Snapshot | None]:
    """`queue --follow`: the queue now, then each snapshot that differs as the feed steps
    (on this thread, as `tail` steps it), and None at every step between (a terminal moves
    its rows on). Ends with ``follow.Stopped`` at Ctrl-C or SIGTERM."""
    from tbhook.feed import POLL_SECONDS, Feed
    from tbhook.follow import stopping

    feed = Feed(store, poll or POLL_SECONDS)
    with feed.subscribe(Queue(("queue",), asking), after=0, bound=None) as subscription:
        while True:
            stopping()
            feed.step()
            found = subscription.take()
            yield found[-1]["snapshot"] if found else None
            feed.wait()

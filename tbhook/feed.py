"""One feed of new events per process: `tail` and every ``/stream`` client of a console
subscribe to it, and it asks the store once per interval for all of them (or wakes on
PostgreSQL's NOTIFY), then hands each subscriber what matches its filters.

Subscribers with the same filters share one read: the store's own SQL (the compiler in
``tbhook.store.sql``) decides what matches, once per interval and set of filters, never a
second matcher here. A cursor says where the feed is (``store.tail``): what came before it
is history, read once for a subscriber that joins (the last N for `tail`, what a
reconnecting browser missed); each window after it is given to every subscriber once.

Two ways to drive it: `tail` steps it on its own thread (``step``, then ``take``); the
console runs it on a thread of its own (``Feed.opened``), started by the first subscriber
and stopped when the last one leaves. A subscriber that falls too far behind is dropped
(``Subscription.dropped``): a browser reconnects with Last-Event-ID and gets what it missed.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any, Protocol

from tbhook.model.filters import Filters
from tbhook.model.persons import person_of
from tbhook.output.describe import event_record
from tbhook.store import Store

POLL_SECONDS = 0.1  # SQLite: one indexed max(id) per interval; PostgreSQL waits on NOTIFY
MISSED = 500  # what a reconnecting subscriber is sent of what it missed, at most
BEHIND = 5000  # records waiting for one subscriber before it is dropped


class Topic(Protocol):
    """What subscribers follow; equal topics share one read per interval. ``Events`` is the
    one there is; another kind of news (the forward queue's) is another Topic."""

    def __hash__(self) -> int: ...

    def history(self, store: Store, cursor: Any, after: int, first: int) -> list[dict]:
        """What came before ``cursor`` after ``after`` (at most ``first``): for one that
        joins with a Last-Event-ID."""
        ...

    def window(self, store: Store, cursor: Any, upto: Any) -> list[dict]:
        """What the interval from ``cursor`` to ``upto`` brought."""
        ...


@dataclass(frozen=True)
class Events:
    """New events matching ``filters``, as the read commands show them."""

    filters: Filters = Filters()

    def history(self, store: Store, cursor: Any, after: int, first: int) -> list[dict]:
        rows = store.tail.history(self.filters, cursor, after_id=after, first=first)
        return records(store, list(rows))

    def window(self, store: Store, cursor: Any, upto: Any) -> list[dict]:
        return records(store, store.tail.window(self.filters, cursor, upto))


def records(store: Store, rows: Iterable[dict], each: bool = False) -> Any:
    """Event rows as records (``event_record`` and the path), persons resolved now: a merge
    since the last interval counts. A list; with ``each``, streamed (a backlog of any
    length), persons looked up one by one."""
    if each:
        canonical = store.persons.lookup()
        return (_record(row, canonical) for row in rows)
    rows = list(rows)
    if not rows:
        return []
    canonical = store.persons.for_persons(person_of(row) for row in rows)
    return [_record(row, canonical) for row in rows]


def _record(row: dict, canonical: Callable[[Any], Any]) -> dict[str, Any]:
    return {**event_record(row, canonical), "path": row["path"]}


class Subscription:
    """One subscriber's records, in the order they came, each once. ``take`` (the thread
    that steps the feed) or ``wait`` (a coroutine) gives what has come since."""

    def __init__(self, feed: Feed, topic: Topic, after: int | None, bound: int | None):
        self.feed, self.topic, self.after = feed, topic, after
        self.dropped: str | None = None  # why the feed let go of it
        self.closed = False
        self._pending: deque[dict] = deque()
        self._bound = bound
        self._loop: asyncio.AbstractEventLoop | None = None
        self._ready: asyncio.Event | None = None
        try:
            self._loop = asyncio.get_running_loop()
            self._ready = asyncio.Event()
        except RuntimeError:
            pass

    def take(self) -> list[dict]:
        """What has come since the last take."""
        with self.feed.lock:
            found = list(self._pending)
            self._pending.clear()
        return found

    async def wait(self, timeout: float) -> list[dict]:
        """What has come, as soon as anything has, or [] after ``timeout`` seconds (or when
        dropped: see ``dropped``)."""
        assert self._ready is not None, "subscribe from a coroutine to wait in one"
        found = self.take()
        if found or self.dropped:
            return found
        self._ready.clear()
        found = self.take()  # what came between the first take and the clear
        if found:
            return found
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(self._ready.wait(), timeout)
        return self.take()

    def close(self) -> None:
        """Leave the feed."""
        self.feed.leave(self)

    def wake(self) -> None:
        """Have ``wait`` return now, from any thread: its owner has something else to look
        at (the console: a page's session ended)."""
        self._wake()

    def __enter__(self) -> Subscription:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    # -- the feed's side (under its lock) --------------------------------------------------

    def _give(self, found: list[dict]) -> None:
        if self.dropped or not found:
            return
        self._pending.extend(found)
        if self._bound is not None and len(self._pending) > self._bound:
            self._drop(f"more than {self._bound} events behind")
        self._wake()

    def _drop(self, why: str) -> None:
        self.dropped = why
        self._pending.clear()
        self._wake()

    def _wake(self) -> None:
        if self._loop is not None and self._ready is not None:
            with contextlib.suppress(RuntimeError):  # its loop closed: nobody waits any more
                self._loop.call_soon_threadsafe(self._ready.set)


class Feed:
    """New events for every subscriber of this process, one read per interval and topic.
    Built on a store (``Feed(store)``, stepped by its owner), or on a way to open one
    (``Feed.opened(open)``, which runs on a thread of its own while anyone subscribes)."""

    def __init__(self, store: Store | None = None, poll: float = POLL_SECONDS):
        self.store = store
        self.poll = poll
        self.lock = threading.Lock()
        self.cursor: Any = None
        self._joining: list[Subscription] = []
        self._topics: dict[Topic, list[Subscription]] = {}
        self._open: Callable[[], Store] | None = None
        self._thread: threading.Thread | None = None

    @classmethod
    def opened(cls, open_store: Callable[[], Store], poll: float = POLL_SECONDS) -> Feed:
        """A feed with a thread of its own, which opens the store with ``open_store`` when the
        first subscriber comes and closes it when the last one has gone."""
        feed = cls(None, poll)
        feed._open = open_store
        return feed

    def start(self) -> Any:
        """Where following begins (``step`` gives what comes after): now, unless begun."""
        assert self.store is not None
        if self.cursor is None:
            self.cursor = self.store.tail.start()
        return self.cursor

    def history(self, filters: Filters, last: int = 0) -> Iterator[dict]:
        """The last ``last`` matching events before the cursor (0: all of them, streamed),
        as records: `tail`'s backlog."""
        assert self.store is not None
        rows = self.store.tail.history(filters, self.start(), last=last)
        return records(self.store, rows, each=not last or last > 1000)

    def subscribe(
        self, topic: Topic, *, after: int | None = None, bound: int | None = BEHIND
    ) -> Subscription:
        """Follow ``topic`` (``Events(filters)``) from the next interval on; with ``after``,
        first what came after that id and before (up to ``MISSED``). ``bound``: how many
        records may wait before the subscriber is dropped (None: any number)."""
        subscription = Subscription(self, topic, after, bound)
        with self.lock:
            self._joining.append(subscription)
            if self._open is not None and self._thread is None:
                self._thread = threading.Thread(target=self._run, name="tbhook feed", daemon=True)
                self._thread.start()
        return subscription

    def leave(self, subscription: Subscription) -> None:
        with self.lock:
            subscription.closed = True  # one joining now is not added after all (_step)
            if subscription in self._joining:
                self._joining.remove(subscription)
            group = self._topics.get(subscription.topic, [])
            if subscription in group:
                group.remove(subscription)
                if not group:
                    del self._topics[subscription.topic]

    @property
    def subscribers(self) -> int:
        with self.lock:
            return len(self._joining) + sum(len(group) for group in self._topics.values())

    def step(self) -> None:
        """One interval, on the store this feed was built on."""
        assert self.store is not None
        self.cursor = self._step(self.store, self.start())

    def _step(self, store: Store, cursor: Any) -> Any:
        """What those joining missed, then what each topic's window brought, each topic read
        once for all its subscribers; the cursor after it."""
        with self.lock:
            joining, self._joining = self._joining, []
        for subscription in joining:
            found: list[dict] = []
            if subscription.after is not None:
                found = subscription.topic.history(store, cursor, subscription.after, MISSED)
            with self.lock:
                if subscription.closed:
                    continue
                subscription._give(found)
                self._topics.setdefault(subscription.topic, []).append(subscription)
        upto = store.tail.advance(cursor)
        with self.lock:
            topics = {topic: list(group) for topic, group in self._topics.items()}
        for topic, group in topics.items():
            found = topic.window(store, cursor, upto)
            if found:
                with self.lock:
                    for subscription in group:
                        subscription._give(found)
        return upto

    def wait(self) -> None:
        """Until the store says something may have come (PostgreSQL's NOTIFY), or an
        interval."""
        assert self.store is not None
        self.store.tail.wait(self.poll)

    def _run(self) -> None:
        """The feed's thread, with a store of its own: step while anyone subscribes; on an
        error, drop them all (a browser reconnects and resumes) and stop, so the next
        subscriber begins afresh."""
        assert self._open is not None
        store = None
        try:
            store = self._open()
            cursor = store.tail.start()
            while True:
                with self.lock:
                    if not self._joining and not self._topics:
                        self._thread = None
                        return
                cursor = self._step(store, cursor)
                store.tail.wait(self.poll)
        except Exception as exc:  # noqa: BLE001 - the store failed: every subscriber is told
            with self.lock:
                everyone = [*self._joining, *(s for g in self._topics.values() for s in g)]
                for subscription in everyone:
                    subscription._drop(f"the store failed: {exc}")
                self._joining, self._topics, self._thread = [], {}, None
        finally:
            if store is not None:
                with contextlib.suppress(Exception):  # closing what failed may fail too
                    store.tail.close()
                    store.close()

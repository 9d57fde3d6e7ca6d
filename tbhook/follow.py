"""`tbhook tail`: print the last matching events, then follow new ones as they commit, and
(when asked) redeliveries and quarantined deliveries, as the receiver's log shows them."""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta, tzinfo
from typing import Any

from tbhook.errors import ForeignDatabase, NoDatabase, NotReady, StoreUnavailable, TbhookError
from tbhook.feed import POLL_SECONDS, Events, Feed
from tbhook.model.events import Unreadable
from tbhook.model.filters import Filters
from tbhook.model.words import describe, describe_parsed
from tbhook.output.describe import event_record, event_style, shown_time
from tbhook.output.formats import Answer, write
from tbhook.processes import stop_signals
from tbhook.store import Store, open_reader

# Redeliveries and quarantined deliveries are followed by their receive time, which the
# receiver stamps as a request arrives: one that commits up to this long after it was stamped
# (a slow batch, another receiver's clock) is still shown, once.
LOOKBACK = timedelta(seconds=60)
TIME_WIDTH, LOCAL_TIME_WIDTH = len("2024-01-01T00:00:00Z"), len("2024-01-01 00:00:00 CEST")


@dataclass(frozen=True)
class Following:
    """What tail follows: matching events (after a backlog of the last ``backlog``, 0 for
    all, None for none), and optionally redeliveries and quarantined deliveries."""

    filters: Filters = Filters()
    backlog: int | None = 10
    retries: bool = False
    quarantine: bool = False


def follow_events(
    store: Store,
    feed: Following,
    follow: bool,
    fmt: str,
    poll: float = POLL_SECONDS,
    zone: tzinfo | None = None,
) -> None:
    """Write the feed in ``fmt`` (text or ndjson, through the format registry) until Ctrl-C,
    or after the backlog when not following."""
    width = TIME_WIDTH if zone is None else LOCAL_TIME_WIDTH
    write(
        Answer(
            records=_records(store, feed, follow, poll),
            line=lambda record: _line(record, zone, width),
            live=True,
            hanging=width + 9,  # where the description starts, past the time and the id
        ),
        fmt,
    )


def _records(store: Store, feed: Following, follow: bool, poll: float) -> Iterator[dict[str, Any]]:
    """The backlog and then each interval's new events, from the feed every follower shares
    (``tbhook.feed``), stepped here; the redeliveries and quarantined deliveries are
    tail's own."""
    events = Feed(store, poll)
    first_new = store.reads.max_id()
    redeliveries = (
        _Redeliveries(store, feed, first_new) if feed.retries or feed.quarantine else None
    )
    backlog: Iterable[dict] = []
    if feed.backlog is not None:
        backlog = events.history(feed.filters, feed.backlog)
        if feed.quarantine:
            backlog = _with_quarantined(store, list(backlog), feed.backlog)
    with events.subscribe(Events(feed.filters), bound=None) as subscription:
        for record in backlog:
            yield _quarantined(record) if "reason" in record else {"kind": "event", **record}
        while follow:
            stopping()
            events.wait()
            events.step()
            for record in subscription.take():
                yield {"kind": "event", **record}
            if redeliveries:
                yield from redeliveries.more(store.persons.lookup())


class _Redeliveries:
    """Bodies delivered again (and quarantined deliveries) since tail started, each shown
    once per delivery: followed by receive time, with what was already shown remembered."""

    def __init__(self, store: Store, feed: Following, first_new: int):
        self.store, self.feed = store, feed
        # Rows above these ids are new since tail started: every delivery of theirs is news.
        self.newest = {"event": first_new, "quarantine": store.reads.max_id("quarantine")}
        self.mark = store.tail.last_redelivery()
        self.shown: dict[tuple[str, int], tuple[int, str]] = {}
        for key, row in self._recent():  # already there: not news
            self.shown[key] = (row["deliveries"], row["lastReceivedAt"])

    def _recent(self) -> Iterator[tuple[tuple[str, int], dict]]:
        since = _minus(self.mark, LOOKBACK)
        if self.feed.retries:
            for row in self.store.tail.redelivered_since(self.feed.filters, since):
                yield ("event", row["id"]), row
        if self.feed.quarantine:
            for row in self.store.tail.quarantined_since(since):
                yield ("quarantine", row["id"]), row

    def more(self, canonical: Any) -> Iterator[dict[str, Any]]:
        found = sorted(self._recent(), key=lambda item: (item[1]["lastReceivedAt"], item[0]))
        for key, row in found:
            count = row["deliveries"]
            before = self.shown.get(key)
            if before is not None and before[0] >= count:
                continue
            self.shown[key] = (count, row["lastReceivedAt"])
            if self.mark is None or row["lastReceivedAt"] > self.mark:
                self.mark = row["lastReceivedAt"]
            # Every delivery not shown yet: of a row new since tail started, all after the
            # first; of an older row not seen yet, the latest (the earlier were before).
            if before is not None:
                first = before[0] + 1
            else:
                first = 2 if row["id"] > self.newest[key[0]] else count
            if key[0] == "quarantine":
                if before is None and row["id"] > self.newest["quarantine"]:
                    yield _quarantined(row)
                if self.feed.retries:
                    yield from (_quarantined(row, n) for n in range(first, count + 1))
                continue
            record = event_record(row, canonical)
            for n in range(first, count + 1):
                yield _event_retry(record, row, n)
        floor = _minus(self.mark, LOOKBACK)
        if floor is not None:
            self.shown = {k: v for k, v in self.shown.items() if v[1] >= floor}


def _minus(stamp: str | None, delta: timedelta) -> str | None:
    """A receivedAt stamp (``2026-11-25T10:00:00.123Z``) moved back by ``delta``."""
    if stamp is None:
        return None
    try:
        moment = datetime.fromisoformat(stamp.replace("Z", "+00:00"))
    except ValueError:
        return None
    return (moment - delta).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _with_quarantined(store: Store, backlog: list[dict], lines: int) -> list[dict]:
    """The backlog with the quarantined deliveries among it, by receive time: the last
    ``lines`` of both (all when 0)."""
    kept = list(store.reads.quarantined(lines or None, descending=True))
    merged = sorted([*backlog, *kept], key=lambda row: (row["receivedAt"], "reason" in row))
    return merged[-lines:] if lines else merged


def _event_retry(record: dict, row: dict, delivery: int) -> dict[str, Any]:
    return {
        "kind": "retry",
        **record,
        "path": row["path"],
        "delivery": delivery,
        "lastReceivedAt": row["lastReceivedAt"],
    }


def _quarantined(row: dict, delivery: int | None = None) -> dict[str, Any]:
    record = {
        "kind": "quarantined" if delivery is None else "retry",
        "quarantineId": row["id"],
        "receivedAt": row["receivedAt"],
        "lastReceivedAt": row["lastReceivedAt"],
        "deliveries": row["deliveries"],
        "path": row["path"],
        "reason": row["reason"],
        "bodySize": row.get("bodySize"),
    }
    if delivery is not None:
        record["delivery"] = delivery
    return record


def _line(record: Mapping[str, Any], zone: tzinfo | None, width: int) -> tuple[str, str]:
    """One record as the receiver's log says it (what ndjson carries, for people), and the
    style to show it in."""
    retry = f" [retry: delivery {record['delivery']} of #" if "delivery" in record else None
    if "quarantineId" in record:
        stamp = record["receivedAt"] or ""
        received = shown_time(stamp, zone) if zone else stamp[:19] + "Z"
        text = f"{received:{width}} {'':7} quarantined #{record['quarantineId']}, " + (
            describe_parsed(Unreadable(record["reason"]), record["path"])
        )
        if retry:
            text += f"{retry}{record['quarantineId']}]"
        return text, "red"
    when = shown_time(record["time"], zone) or "-"
    text = f"{when:{width}} #{record['id']:<6} {describe(record)}"
    if retry:
        return f"{text}{retry}{record['id']}]", "dim"
    return text, event_style(record)


class Stopped(BaseException):
    """Ctrl-C or SIGTERM asked tail to stop."""


# The signals received: where the exception raised for one is swallowed (a weakref callback
# of the import system prints "Exception ignored"), the follow loop sees this instead.
_STOPPING: list[int] = []


def stopping() -> None:
    """Raise Stopped when a stop signal came (a follow loop asks at each step)."""
    if _STOPPING:
        raise Stopped


@contextlib.contextmanager
def stopped_by_signals() -> Iterator[None]:
    """Ctrl-C and SIGTERM end the command (as ``Stopped``), even when the parent started it
    with SIGINT ignored, as test runners and some shells do. Not as KeyboardInterrupt: one
    raised inside code that ``exec`` runs (a dataclass being made by an import) marks the
    interpreter to kill itself with SIGINT at exit, whatever the command returns (CPython
    3.11)."""

    def stop(signum: int, frame: object) -> None:
        _STOPPING.append(signum)
        raise Stopped

    _STOPPING.clear()
    with stop_signals(stop):
        yield


def open_when_ready(
    db: str, wait: bool, notice: Callable[[str], None], poll: float = POLL_SECONDS
) -> Store:
    """Open the database read-only; when following, wait (saying why, once) until `serve` has
    created it. What waiting cannot mend (no such directory, someone else's database, not a
    database file) is an error at once."""
    said = None
    while True:
        try:
            store = open_reader(db)
            try:
                store.reads.max_id()  # the schema may not be there yet in a database being created
            except StoreUnavailable as exc:
                store.close()
                raise NotReady(f"{db} is being created") from exc
            return store
        except NoDatabase:
            if not wait:
                raise
            folder = os.path.dirname(os.path.abspath(db))
            if not os.path.isdir(folder):
                raise TbhookError(
                    f"no directory {folder}: `tbhook serve --db {db}` could not create the "
                    "database there"
                ) from None
            why = f"Waiting for {db} to appear (start `tbhook serve --db {db}`)..."
        except ForeignDatabase:
            raise
        except NotReady as exc:
            if not wait:
                raise
            why = f"Waiting: {exc}..."
        if why != said:
            notice(why)
            said = why
        time.sleep(poll * 2)

"""`tbhook tail`: print the last matching events, then follow new ones as they commit."""

from __future__ import annotations

import contextlib
import json
import signal
import sqlite3
import sys
import time
from collections.abc import Iterator
from pathlib import Path

from tbhook.errors import NoDatabase, NotReady
from tbhook.filters import Filters
from tbhook.output import describe, event_record, event_style
from tbhook.store import EventStore

POLL_SECONDS = 0.1  # the id is a cursor: one cheap indexed query per poll


def follow_events(
    db: Path, filters: Filters, lines: int, follow: bool, fmt: str, console, poll=POLL_SECONDS
) -> None:  # noqa: ANN001 - a rich Console
    """Print the last ``lines`` matching events, then (with ``follow``) new ones until Ctrl-C."""
    store = _open_when_ready(db, follow, poll)
    try:
        canonical = store.canonical_lookup()
        cursor = store.max_id()
        backlog = (
            store.events(filters, order_by="arrival", descending=True, limit=lines, upto_id=cursor)
            if lines
            else []
        )
        for row in reversed(list(backlog)):
            _print(row, canonical, fmt, console)
        while follow:
            time.sleep(poll)
            newest = store.max_id()
            if newest <= cursor:
                continue
            rows = list(store.events(filters, order_by="arrival", after_id=cursor, upto_id=newest))
            if any(row["event"] == "profileMerged" for row in rows):
                canonical = store.canonical_lookup()  # merges change who is who
            for row in rows:
                _print(row, canonical, fmt, console)
            cursor = newest
    finally:
        store.close()


@contextlib.contextmanager
def stopped_by_signals() -> Iterator[None]:
    """Ctrl-C and SIGTERM end the command (as KeyboardInterrupt), even when the parent started
    it with SIGINT ignored, as test runners and some shells do."""

    def stop(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    previous = {sig: signal.signal(sig, stop) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def _print(row: dict, canonical, fmt: str, console) -> None:  # noqa: ANN001
    record = event_record(row, canonical)
    if fmt == "ndjson":
        sys.stdout.write(json.dumps(record) + "\n")
        sys.stdout.flush()
        return
    from rich.text import Text

    line = f"{record['time'] or '-':20} #{row['id']:<6} {describe(row)}"
    console.print(Text(line, style=event_style(row)), soft_wrap=True)


def _open_when_ready(db: Path, wait: bool, poll: float) -> EventStore:
    """Open the database read-only, waiting (when following) until `serve` has created it."""
    while True:
        try:
            store = EventStore.open_readonly(db)
            store.max_id()  # the schema may not be there yet in a database being created
            return store
        except (NoDatabase, NotReady):  # not there yet, or `serve` is still creating it
            if not wait:
                raise
        except sqlite3.OperationalError:
            store.close()
            if not wait:
                raise
        time.sleep(poll * 2)

"""`tbhook tail`: print the last matching events, then follow new ones as they commit."""

from __future__ import annotations

import contextlib
import json
import signal
import sqlite3
import sys
import time
from collections.abc import Iterator

from tbhook.errors import NoDatabase, NotReady
from tbhook.filters import Filters
from tbhook.output import describe, event_record, event_style
from tbhook.store import Store, open_reader

POLL_SECONDS = 0.1  # the id is a cursor: one cheap indexed query per poll


def follow_events(
    db: str, filters: Filters, lines: int, follow: bool, fmt: str, console, poll=POLL_SECONDS
) -> None:  # noqa: ANN001 - a rich Console
    """Print the last ``lines`` matching events, then (with ``follow``) new ones until Ctrl-C.
    The store says what "new" is: on SQLite the next ids, on PostgreSQL the transactions that
    have finished (a lower id can commit after a higher one there)."""
    store = _open_when_ready(db, follow, poll)
    try:
        canonical = store.canonical_lookup()
        backlog, cursor = store.tail_begin(filters, lines)
        for row in backlog:
            _print(row, canonical, fmt, console)
        while follow:
            store.tail_wait(poll)
            rows, cursor = store.tail_more(filters, cursor)
            if any(row["event"] == "profileMerged" for row in rows):
                canonical = store.canonical_lookup()  # merges change who is who
            for row in rows:
                _print(row, canonical, fmt, console)
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


def _open_when_ready(db: str, wait: bool, poll: float) -> Store:
    """Open the database read-only, waiting (when following) until `serve` has created it."""
    while True:
        try:
            store = open_reader(db)
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

"""Following on PostgreSQL goes by transactions, not ids: a lower id can commit after a higher
one, so the feed gives the events of transactions older than the oldest one still in flight
(``events.txid``), each exactly once, and wakes on ``NOTIFY tbhook_events``."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

from tbhook.store.postgres.driver import CHANNEL, psycopg
from tbhook.store.tail import Tail


class PostgresTail(Tail):
    """The cursor is a transaction id: every transaction below it has finished, so the
    events it stored are final; ``window`` gives those of the transactions that finished
    since. Each event belongs to one window, so it is given exactly once."""

    WINDOW = "events e"  # by txid: its planner weighs the indexes with the table's statistics

    def start(self) -> int:
        with self._snapshot() as horizon:
            return horizon

    def advance(self, cursor: int) -> int:
        with self._snapshot() as horizon:
            return max(cursor, horizon)

    def before(self, cursor: int) -> tuple[str, list]:
        return "e.txid < ?::text::xid8", [str(cursor)]

    def between(self, cursor: int, upto: int) -> tuple[str, list]:
        return "e.txid >= ?::text::xid8 AND e.txid < ?::text::xid8", [str(cursor), str(upto)]

    @contextlib.contextmanager
    def _snapshot(self) -> Iterator[int]:
        """A REPEATABLE READ transaction, and its snapshot's xmin: every transaction below it
        has finished, and those that committed are visible in this snapshot."""
        conn = self.store.connection()
        with self.store._errors("cannot read"), conn.transaction():
            conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
            yield int(
                conn.execute("SELECT pg_snapshot_xmin(pg_current_snapshot())::text").fetchone()[0]
            )

    def close(self) -> None:
        listener = getattr(self, "_listener", None)
        if listener is not None:
            with contextlib.suppress(Exception):
                listener.close()

    def wait(self, seconds: float) -> None:
        """Sleep until a receiver commits (NOTIFY), or a second at most: a window can also
        open when another transaction ends, which sends nothing."""
        seconds = max(seconds, 1.0)
        listener = getattr(self, "_listener", None)
        if listener is None:
            driver = psycopg()
            listener = driver.connect(
                self.store.url, autocommit=True, connect_timeout=5, application_name="tbhook tail"
            )
            listener.execute(f"LISTEN {CHANNEL}")
            self._listener = listener
        for _ in listener.notifies(timeout=seconds, stop_after=1):
            break

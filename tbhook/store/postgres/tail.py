"""Following on PostgreSQL goes by transactions, not ids: a lower id can commit after a higher
one, so the feed gives the events of transactions older than the oldest one still in flight
(``events.txid``), each exactly once, and wakes on ``NOTIFY tbhook_events``."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

from tbhook.model.filters import Filters
from tbhook.store.postgres.driver import CHANNEL, pg, psycopg
from tbhook.store.rows import READ_COLUMNS
from tbhook.store.sql import q
from tbhook.store.tail import Tail


class PostgresTail(Tail):
    """The cursor is a transaction id: every transaction below it has finished, so the
    events it stored are final; ``window`` gives those of the transactions that finished
    since. Each event belongs to one window, so it is given exactly once."""

    def start(self) -> int:
        with self._snapshot() as horizon:
            return horizon

    def advance(self, cursor: int) -> int:
        with self._snapshot() as horizon:
            return max(cursor, horizon)

    def window(self, filters: Filters, cursor: int, upto: int) -> list[dict]:
        if upto == cursor:
            return []
        return self._rows(
            filters,
            "e.txid >= ?::text::xid8 AND e.txid < ?::text::xid8",
            [str(cursor), str(upto)],
            "ORDER BY e.id",
        )

    def history(
        self,
        filters: Filters,
        cursor: int,
        *,
        after_id: int = 0,
        first: int | None = None,
        last: int | None = None,
    ) -> list[dict]:
        """Events of the transactions before the cursor (``window`` gives the rest), after
        ``after_id``: the ``first`` of them, or the ``last`` (0: all)."""
        bounds = "e.id > ? AND e.txid < ?::text::xid8"
        if last:
            order = f"ORDER BY e.id DESC LIMIT {int(last)}"
            return self._rows(filters, bounds, [after_id, str(cursor)], order)[::-1]
        limit = f"LIMIT {int(first)}" if first else ""
        return self._rows(filters, bounds, [after_id, str(cursor)], f"ORDER BY e.id {limit}")

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

    def _rows(self, filters: Filters, window: str, bounds: list, order: str) -> list[dict]:
        from psycopg.rows import dict_row

        where, params = self.where(filters)
        columns = ", ".join(f"e.{q(c)}" for c in READ_COLUMNS)
        with self.store.connection().cursor(row_factory=dict_row) as cursor:
            cursor.execute(
                pg(f"SELECT {columns} FROM events e WHERE {window} AND {where} {order}"),
                [*bounds, *params],
            )
            return cursor.fetchall()

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

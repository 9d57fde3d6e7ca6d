"""`tail` on PostgreSQL follows transactions, not ids: a lower id can commit after a higher
one, so it shows the events of transactions older than the oldest one still in flight
(``events.txid``), each exactly once, and wakes on ``NOTIFY tbhook_events``."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

from tbhook.model.filters import Filters
from tbhook.store.postgres.driver import CHANNEL, pg, psycopg
from tbhook.store.rows import READ_COLUMNS
from tbhook.store.sql import q
from tbhook.store.tail import Tail


class PostgresTail(Tail):
    def begin(self, filters: Filters, lines: int | None) -> tuple[list[dict], Any]:
        """The last ``lines`` matching events (0: all, None: none), and where following
        starts: the oldest transaction in flight now. Backlog rows from newer transactions
        are remembered, so the windows that follow do not show them again."""
        limit = f"LIMIT {int(lines)}" if lines else ""
        with self._snapshot() as horizon:
            backlog = (
                self._rows_with_txid(filters, "TRUE", [], f"ORDER BY e.id DESC {limit}")
                if lines is not None
                else []
            )
        backlog.reverse()
        shown = {row["id"]: row["txid"] for row in backlog if row["txid"] >= horizon}
        return [_strip(row) for row in backlog], (horizon, shown)

    def more(self, filters: Filters, cursor: Any) -> tuple[list[dict], Any]:
        """Events of the transactions that finished since the last call: every transaction
        older than the oldest one still in flight, which no later commit can add to. Each
        event belongs to one such window, so it is shown exactly once."""
        boundary, shown = cursor
        with self._snapshot() as horizon:
            rows = self._rows_with_txid(
                filters,
                "e.txid >= ?::text::xid8 AND e.txid < ?::text::xid8",
                [str(boundary), str(horizon)],
                "ORDER BY e.id",
            )
        fresh = [_strip(row) for row in rows if row["id"] not in shown]
        shown = {i: txid for i, txid in shown.items() if txid >= horizon}
        return fresh, (max(boundary, horizon), shown)

    def missed(self, filters: Filters, after_id: int, cursor: Any, limit: int) -> list[dict]:
        """Events after ``after_id`` of the transactions before the cursor's window: ``more``
        sends those of the window and after."""
        boundary, _shown = cursor
        rows = self._rows_with_txid(
            filters,
            "e.id > ? AND e.txid < ?::text::xid8",
            [after_id, str(boundary)],
            f"ORDER BY e.id LIMIT {int(limit)}",
        )
        return [_strip(row) for row in rows]

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

    def _rows_with_txid(self, filters: Filters, window: str, bounds: list, order: str) -> list:
        from psycopg.rows import dict_row

        where, params = self.where(filters)
        columns = ", ".join(f"e.{q(c)}" for c in READ_COLUMNS)
        with self.store.connection().cursor(row_factory=dict_row) as cursor:
            cursor.execute(
                pg(
                    f"SELECT {columns}, e.txid::text::bigint AS txid FROM events e "
                    f"WHERE {window} AND {where} {order}"
                ),
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


def _strip(row: dict) -> dict:
    row.pop("txid", None)
    return row

"""`tbhook tail`: the backlog, then what commits next, and the redeliveries and quarantined
deliveries as they come. With one writer at a time (SQLite) ids commit in order, so the
highest id is the cursor; PostgreSQL follows transactions instead (``postgres.tail``)."""

from __future__ import annotations

import time
from collections.abc import Iterable
from typing import Any

from tbhook.model.filters import Filters
from tbhook.store.job import Job
from tbhook.store.rows import READ_COLUMNS
from tbhook.store.sql import q


class Tail(Job):
    """Following the log, by id."""

    def close(self) -> None:
        """Let go of what following holds (PostgreSQL's listening session); nothing here."""

    def begin(self, filters: Filters, lines: int | None) -> tuple[Iterable[dict], Any]:
        """The last ``lines`` matching events in arrival order (0: all of them, streamed;
        None: none), and a cursor for ``tail_more``. With one writer at a time (SQLite), ids
        commit in order: the highest id is the cursor."""
        cursor = self.store.reads.max_id()
        if lines is None:
            return [], cursor
        after = 0
        if lines:  # streamed from the lines-th matching event from the end
            where, params = self.where(filters)
            found = list(
                self.query(
                    f"SELECT e.id FROM events e WHERE e.id <= ? AND {where} "
                    f"ORDER BY e.id DESC LIMIT 1 OFFSET {int(lines) - 1}",
                    [cursor, *params],
                )
            )
            after = found[0][0] - 1 if found else 0
        return self.store.reads.events(
            filters, order_by="arrival", after_id=after, upto_id=cursor
        ), cursor

    def more(self, filters: Filters, cursor: Any) -> tuple[list[dict], Any]:
        """Matching events committed since ``cursor``, and the next cursor."""
        newest = self.store.reads.max_id()
        if newest <= cursor:
            return [], cursor
        rows = self.store.reads.events(filters, order_by="arrival", after_id=cursor, upto_id=newest)
        return list(rows), newest

    def missed(self, filters: Filters, after_id: int, cursor: Any, limit: int) -> list[dict]:
        """Matching events after ``after_id`` that ``more`` from ``cursor`` will not send (what
        a reconnecting follower missed), oldest first, at most ``limit``."""
        return list(
            self.store.reads.events(
                filters, order_by="arrival", after_id=after_id, upto_id=cursor, limit=limit
            )
        )

    def wait(self, seconds: float) -> None:
        """Wait for new events, or ``seconds``."""
        time.sleep(seconds)

    def quarantined_since(self, since: str | None) -> list[dict]:
        """Quarantined deliveries (new or delivered again) whose last delivery was at or after
        ``since`` (a receivedAt), oldest first: what `tail --quarantine` follows."""
        return list(
            self.query_dicts(
                'SELECT id, "receivedAt", "lastReceivedAt", deliveries, path, reason, '
                'length(body) AS "bodySize" FROM quarantine WHERE "lastReceivedAt" >= ? '
                'ORDER BY "lastReceivedAt", id',
                [since or ""],
            )
        )

    def redelivered_since(self, filters: Filters, since: str | None) -> list[dict]:
        """Matching events delivered more than once whose last delivery was at or after
        ``since``, oldest first: what `tail --retries` follows (a partial index holds only
        redelivered events, so this stays cheap in a big log)."""
        where, params = self.where(filters)
        columns = ", ".join(f"e.{q(c)}" for c in READ_COLUMNS)
        return list(
            self.query_dicts(
                f'SELECT {columns} FROM events e WHERE e.deliveries > 1 AND e."lastReceivedAt" '
                f'>= ? AND {where} ORDER BY e."lastReceivedAt", e.id',
                [since or "", *params],
            )
        )

    def last_redelivery(self) -> str | None:
        """The latest time a stored body (event or quarantined) was delivered again or
        quarantined: where `tail --retries/--quarantine` starts following."""
        return self.one(
            'SELECT max(t) FROM (SELECT max("lastReceivedAt") AS t FROM events '
            'WHERE deliveries > 1 UNION ALL SELECT max("lastReceivedAt") FROM quarantine) m'
        )[0]

"""Following the log (``tbhook.follow``'s feed, for `tail` and the console's ``/stream``):
what came before a cursor, then what commits next, and the redeliveries and quarantined
deliveries as they come. With one writer at a time (SQLite) ids commit in order, so the
highest id is the cursor; PostgreSQL follows transactions instead (``postgres.tail``)."""

from __future__ import annotations

import time
from collections.abc import Iterable, Iterator
from typing import Any

from tbhook.model.filters import Filters
from tbhook.store.job import Job
from tbhook.store.rows import READ_COLUMNS
from tbhook.store.sql import q


class Tail(Job):
    """Following the log, by id. A cursor says where following is: what came before it is
    history, what ``window`` gives from it is new."""

    # A window is a few ids: read by the primary key, never through another index (SQLite
    # took the event-name index for `--event X`, reading every such event: 1 s at 10M).
    WINDOW = "events e NOT INDEXED"

    def close(self) -> None:
        """Let go of what following holds (PostgreSQL's listening session); nothing here."""

    def start(self) -> Any:
        """Where following begins: now. With one writer at a time (SQLite), ids commit in
        order: the highest id is the cursor."""
        return self.store.reads.max_id()

    def advance(self, cursor: Any) -> Any:
        """The cursor past what has committed since ``cursor`` (the same when nothing has)."""
        return max(cursor, self.store.reads.max_id())

    def before(self, cursor: Any) -> tuple[str, list]:
        """The events before ``cursor``, as SQL over ``events e``."""
        return "e.id <= ?", [cursor]

    def between(self, cursor: Any, upto: Any) -> tuple[str, list]:
        """The events from ``cursor`` to ``upto``, as SQL over ``events e``."""
        return "e.id > ? AND e.id <= ?", [cursor, upto]

    def window(self, filters: Filters, cursor: Any, upto: Any) -> list[dict]:
        """Matching events committed after ``cursor``, up to ``upto`` (from ``advance``),
        in arrival order."""
        if upto == cursor:
            return []
        return list(self._rows(filters, self.between(cursor, upto), "ORDER BY e.id", self.WINDOW))

    def history(
        self,
        filters: Filters,
        cursor: Any,
        *,
        after_id: int = 0,
        first: int | None = None,
        last: int | None = None,
    ) -> Iterable[dict]:
        """Matching events before ``cursor`` (which ``window`` will not give), in arrival
        order: those after ``after_id``, at most the ``first`` of them (what a reconnecting
        follower missed), or the ``last`` (0: all of them), streamed."""
        bound, bounds = self.before(cursor)
        if last:  # from the last-th matching event from the end
            where, params = self.where(filters)
            found = list(
                self.query(
                    f"SELECT e.id FROM events e WHERE e.id > ? AND {bound} AND {where} "
                    f"ORDER BY e.id DESC LIMIT 1 OFFSET {int(last) - 1}",
                    [after_id, *bounds, *params],
                )
            )
            after_id = found[0][0] - 1 if found else after_id
        limit = f" LIMIT {int(first)}" if first else ""
        return self._rows(
            filters, (f"e.id > ? AND {bound}", [after_id, *bounds]), "ORDER BY e.id" + limit
        )

    def _rows(
        self, filters: Filters, window: tuple[str, list], order: str, table: str = "events e"
    ) -> Iterator[dict]:
        where, params = self.where(filters)
        columns = ", ".join(f"e.{q(c)}" for c in READ_COLUMNS)
        return self.query_dicts(
            f"SELECT {columns} FROM {table} WHERE {window[0]} AND {where} {order}",
            [*window[1], *params],
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

"""`serve --forward-to`'s queue: each new event queued in the transaction that stores it,
then attempted, retried on Tracebuzz's schedule and recorded."""

from __future__ import annotations

import time
from typing import Any

from tbhook.model.times import utc_now
from tbhook.store.job import Job
from tbhook.store.rows import ForwardOutcome, Stored


class Forwards(Job):
    """The forward queue."""

    def queue(self, conn: Any, stored: list[Stored], target: str) -> None:
        """Queue new events for forwarding, inside the batch's transaction."""
        new = [(s.id, target, time.time()) for s in stored if not s.quarantined and not s.duplicate]
        if new:
            conn.executemany(
                self.store.insert_ignore(
                    "forwards",
                    ("eventId", "target", "state", "nextAttemptAt"),
                    "?, ?, 'pending', ?",
                ),
                new,
            )

    def due(self, now: float, limit: int = 100) -> list[dict]:
        """Pending forwards whose next attempt is due, oldest due first, with their bodies."""
        return [
            {**row, "body": bytes(row["body"])}
            for row in self.query_dicts(
                'SELECT f."eventId", f.attempts, e.body FROM forwards f '
                'JOIN events e ON e.id = f."eventId" '
                "WHERE f.state = 'pending' AND f.\"nextAttemptAt\" <= ? "
                'ORDER BY f."nextAttemptAt", f."eventId" LIMIT ?',
                [now, limit],
            )
        ]

    def pending(self) -> int:
        """Forwards still to be delivered (the forward queue's length)."""
        return self.one("SELECT count(*) FROM forwards WHERE state = 'pending'")[0]

    def next_at(self) -> float | None:
        """When the next pending forward is due, or None when nothing is pending."""
        return self.one("SELECT min(\"nextAttemptAt\") FROM forwards WHERE state = 'pending'")[0]

    def record(self, outcome: ForwardOutcome) -> None:
        """Store the result of one forward attempt."""
        with self.writing() as conn:
            conn.execute(
                'UPDATE forwards SET target = ?, attempts = ?, state = ?, "lastStatus" = ?, '
                '"lastError" = ?, "lastAttemptAt" = ?, "nextAttemptAt" = ? WHERE "eventId" = ?',
                (
                    outcome.target,
                    outcome.attempts,
                    outcome.state,
                    outcome.status,
                    outcome.error,
                    utc_now(),
                    outcome.next_at,
                    outcome.event_id,
                ),
            )

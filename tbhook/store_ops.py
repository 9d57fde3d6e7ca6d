"""The store's operations SQL: health, backup, merge, prune, forwarding. A part of EventStore
(its base class), kept apart so that store.py stays readable; the rule is unchanged: all SQL
lives in the store."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import AbstractContextManager as ContextManager
from dataclasses import dataclass
from typing import TYPE_CHECKING

from sqlite_utils import Database

from tbhook.events import COLUMNS
from tbhook.filters import utc_now
from tbhook.migrations import migrations

if TYPE_CHECKING:
    import sqlite3

    from tbhook.persons import Resolver

# `merge`: every column but the id, which the receiving database assigns.
_MERGE_COLUMNS = (
    "receivedAt",
    "lastReceivedAt",
    "deliveries",
    "path",
    "event",
    *COLUMNS,
    "body",
    "bodySha256",
)
_MERGE_QUARANTINE = (
    "receivedAt",
    "lastReceivedAt",
    "deliveries",
    "path",
    "reason",
    "body",
    "bodySha256",
    "line",
)
_SUM_DELIVERIES = (
    "deliveries = deliveries + excluded.deliveries, "
    "receivedAt = min(receivedAt, excluded.receivedAt), "
    "lastReceivedAt = max(lastReceivedAt, excluded.lastReceivedAt)"
)


@dataclass(frozen=True)
class ForwardOutcome:
    """One forward attempt: delivered, pending a retry at ``next_at``, or failed for good."""

    event_id: int
    target: str
    attempts: int
    state: str
    status: int | None = None
    error: str | None = None
    next_at: float | None = None


class Operations:
    """Health, backup, merge, prune and forwarding, as methods of EventStore."""

    db: Database

    if TYPE_CHECKING:  # provided by EventStore

        def _errors(self) -> ContextManager[None]: ...

        def _writing(self, commit: bool = True) -> ContextManager[sqlite3.Connection]: ...

        def count(self, table: str = "events") -> int: ...

        def resolver(self) -> Resolver: ...

    def integrity(self, quick: bool = False) -> list[str]:
        """``PRAGMA integrity_check`` (or ``quick_check``): ``["ok"]`` when all is well."""
        pragma = "quick_check" if quick else "integrity_check"
        return [row[0] for row in self.db.execute(f"PRAGMA {pragma}")]

    def schema(self) -> tuple[list[str], list[str]]:
        """Applied and pending migration names."""
        applied = [m.name for m in migrations.applied(self.db)]
        return applied, [m.name for m in migrations.pending(self.db)]

    def health(self, lag_seconds: int) -> dict:
        """Counts for a health report, in one scan of the events table."""
        lag = "(julianday(receivedAt) - 2440587.5) * 86400 - timestamp"
        row = self.db.execute(
            "SELECT count(*), coalesce(sum(deliveries > 1), 0), "
            "coalesce(sum(deliveries - 1), 0), "
            f"coalesce(sum({lag} > ?), 0), max({lag}), max(lastReceivedAt) FROM events",
            [lag_seconds],
        ).fetchone()
        by_event = dict(self.db.execute("SELECT event, count(*) FROM events GROUP BY event"))
        return {
            "events": row[0],
            "byEvent": by_event,
            "retriedEvents": row[1],
            "extraDeliveries": row[2],
            "lateDeliveries": row[3],
            "maxLagSeconds": None if row[4] is None else round(row[4]),
            "lastReceivedAt": row[5],
            "quarantined": self.count("quarantine"),
        }

    def backup(self, dest: str) -> None:
        """A consistent copy of the live database (``VACUUM INTO``), safe while `serve` writes."""
        with self._errors():
            self.db.conn.execute("VACUUM INTO ?", [dest])

    def merge_from(self, other: str) -> dict[str, int]:
        """Fold another tbhook database into this one, in its arrival order: a body already
        here gains the other's deliveries; quarantine comes along the same way."""
        names = ", ".join(f'"{c}"' for c in _MERGE_COLUMNS)
        quarantine = ", ".join(f'"{c}"' for c in _MERGE_QUARANTINE)
        with self._errors():
            self.db.conn.execute("ATTACH DATABASE ? AS other", [other])
        try:
            with self._writing() as conn:
                before = self.count(), self.count("quarantine")
                conn.execute(
                    f"INSERT INTO events ({names}) SELECT {names} FROM other.events "
                    "WHERE true ORDER BY id ON CONFLICT(bodySha256) DO UPDATE SET "
                    f"{_SUM_DELIVERIES}"
                )
                conn.execute(
                    f"INSERT INTO quarantine ({quarantine}) SELECT {quarantine} "
                    "FROM other.quarantine WHERE true ORDER BY id ON CONFLICT(bodySha256) "
                    f"DO UPDATE SET {_SUM_DELIVERIES}"
                )
                theirs = conn.execute("SELECT count(*) FROM other.events").fetchone()[0]
                after = self.count(), self.count("quarantine")
        finally:
            self.db.conn.execute("DETACH DATABASE other")
        added = after[0] - before[0]
        return {"added": added, "alreadyHere": theirs - added, "quarantine": after[1] - before[1]}

    def prune_plan(self, before: int) -> tuple[list[int], int]:
        """Ids of events whose timestamp is before ``before`` that can go, and how many old
        merges must stay because a remaining event's person resolves through them."""
        old = [
            row[0]
            for row in self.db.execute(
                "SELECT id FROM events WHERE timestamp < ? AND event != 'profileMerged'", [before]
            )
        ]
        resolver = self.resolver()
        remaining = {
            resolver.root(row[0])
            for row in self.db.execute(
                "SELECT personId FROM events WHERE timestamp >= ? OR timestamp IS NULL "
                "UNION SELECT oldPersonId FROM events WHERE event = 'profileMerged' "
                "AND timestamp >= ? UNION SELECT newPersonId FROM events "
                "WHERE event = 'profileMerged' AND timestamp >= ?",
                [before, before, before],
            )
            if row[0] is not None
        }
        kept = 0
        for merge_id, old_person in self.db.execute(
            "SELECT id, oldPersonId FROM events WHERE event = 'profileMerged' AND timestamp < ?",
            [before],
        ):
            if resolver.root(old_person) in remaining:
                kept += 1
            else:
                old.append(merge_id)
        return sorted(old), kept

    def archive_bodies(self, ids: Sequence[int]) -> Iterator[bytes]:
        """The raw bodies of ``ids`` in arrival order, for a prune archive."""
        for chunk in range(0, len(ids), 500):
            part = ids[chunk : chunk + 500]
            marks = ", ".join("?" for _ in part)
            for (body,) in self.db.execute(
                f"SELECT body FROM events WHERE id IN ({marks}) ORDER BY id", part
            ):
                yield body

    def delete_events(self, ids: Sequence[int]) -> None:
        """Delete events (and their forward records) in one transaction."""
        with self._writing() as conn:
            for chunk in range(0, len(ids), 500):
                part = list(ids[chunk : chunk + 500])
                marks = ", ".join("?" for _ in part)
                conn.execute(f"DELETE FROM forwards WHERE eventId IN ({marks})", part)
                conn.execute(f"DELETE FROM events WHERE id IN ({marks})", part)

    # -- forwarding ------------------------------------------------------------------

    def due_forwards(self, now: float, limit: int = 100) -> list[dict]:
        """Pending forwards whose next attempt is due, oldest due first, with their bodies."""
        return list(
            self.db.query(
                "SELECT f.eventId, f.attempts, e.body FROM forwards f "
                "JOIN events e ON e.id = f.eventId "
                "WHERE f.state = 'pending' AND f.nextAttemptAt <= ? "
                "ORDER BY f.nextAttemptAt, f.eventId LIMIT ?",
                [now, limit],
            )
        )

    def next_forward_at(self) -> float | None:
        """When the next pending forward is due, or None when nothing is pending."""
        return self.db.execute(
            "SELECT min(nextAttemptAt) FROM forwards WHERE state = 'pending'"
        ).fetchone()[0]

    def record_forward(self, outcome: ForwardOutcome) -> None:
        """Store the result of one forward attempt."""
        with self._writing() as conn:
            conn.execute(
                "UPDATE forwards SET target = ?, attempts = ?, state = ?, lastStatus = ?, "
                "lastError = ?, lastAttemptAt = ?, nextAttemptAt = ? WHERE eventId = ?",
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

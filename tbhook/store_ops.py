"""The store's operations SQL: health, backup, merge, prune, forwarding. A part of EventStore
(its base class), kept apart so that store.py stays readable; the rule is unchanged: all SQL
lives in the store."""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import AbstractContextManager as ContextManager
from dataclasses import dataclass
from typing import TYPE_CHECKING

from sqlite_utils import Database

from tbhook.errors import NotReady, StoreUnavailable, damaged
from tbhook.events import COLUMNS, ENUMERATED
from tbhook.filters import utc_now
from tbhook.migrations import migrations

if TYPE_CHECKING:
    from tbhook.persons import Resolver

# Big writes (merge, prune) go in transactions of this many rows (about 0.1 s each), with a
# pause between them: a receiver on the same database waits for one of them, not for all.
CHUNK = 5000
PAUSE_SECONDS = 0.02

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
    path: str

    if TYPE_CHECKING:  # provided by EventStore

        def _errors(self) -> ContextManager[None]: ...

        def _writing(self) -> ContextManager[sqlite3.Connection]: ...

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

    def meta(self) -> dict[str, str]:
        """Facts kept about this log (its logId, the receiver's size cap); {} on a database
        older than the table."""
        try:
            return dict(self.db.execute("SELECT key, value FROM tbhook_meta"))
        except sqlite3.OperationalError:
            return {}

    def space(self) -> dict[str, int]:
        """Pages in the file and how many of them hold data (free pages are reused first)."""
        page_size, pages, free = (
            self.db.execute(f"PRAGMA {name}").fetchone()[0]
            for name in ("page_size", "page_count", "freelist_count")
        )
        return {"pageSize": page_size, "pages": pages, "usedBytes": (pages - free) * page_size}

    def unknown_values(self) -> list[tuple[str, int, int]]:
        """(field, value, events) for each typeId or own value the spec does not list."""
        found = []
        for field, known in ENUMERATED.items():
            listed = ", ".join(str(value) for value in known)
            found += [
                (field, value, n)
                for value, n in self.db.execute(
                    f"SELECT \"{field}\", count(*) FROM events WHERE event = 'newResult' "
                    f'AND "{field}" NOT IN ({listed}) GROUP BY "{field}" ORDER BY "{field}"'
                )
            ]
        return found

    def backup(self, dest: str) -> None:
        """A consistent copy of the live database (``VACUUM INTO``), safe while `serve` writes.
        ``dest`` must not exist: the caller writes to a temporary name and renames it."""
        try:
            self.db.conn.execute("VACUUM INTO ?", [dest])
        except sqlite3.DatabaseError as exc:
            if type(exc) is sqlite3.DatabaseError:
                raise StoreUnavailable(damaged(self.path, exc)) from exc
            raise StoreUnavailable(f"cannot back up {self.path}: {exc}") from exc

    def merge_from(
        self, other: str, progress: Callable[[int], None] | None = None, chunk: int = CHUNK
    ) -> dict[str, int]:
        """Fold another tbhook log into this one, in its arrival order: a body already here
        gains the other's deliveries; quarantine comes along the same way.

        Short transactions of ``chunk`` rows, so a receiver writing to this database gets the
        lock between them. Each one also moves this log's record of how far the other has
        been merged, so merging it again (or a later backup of it) adds only what is new, and
        an interrupted merge resumes where it stopped.
        """
        with self._errors():
            self.db.conn.execute("ATTACH DATABASE ? AS other", [other])
        try:
            theirs = self._log_id("other")
            if theirs == self._log_id("main"):
                raise NotReady(
                    f"{other} is this log itself (or a copy of it): merging it would count its "
                    "deliveries twice"
                )
            done = self.db.execute(
                "SELECT lastEventId, lastQuarantineId FROM merged_logs WHERE logId = ?", [theirs]
            ).fetchone() or (0, 0)
            count = "SELECT count(*) FROM other.{} WHERE id > ?"
            new = [
                self.db.execute(count.format(table), [after]).fetchone()[0]
                for table, after in (("events", done[0]), ("quarantine", done[1]))
            ]
            added = [
                self._merge_table(table, columns, after, theirs, other, progress, chunk)
                for table, columns, after in (
                    ("events", _MERGE_COLUMNS, done[0]),
                    ("quarantine", _MERGE_QUARANTINE, done[1]),
                )
            ]
        finally:
            self.db.conn.execute("DETACH DATABASE other")
        return {
            "added": added[0],
            "alreadyHere": new[0] - added[0],
            "quarantine": added[1],
            "mergedBefore": done[0],  # the other log's last event id merged by an earlier run
        }

    def _log_id(self, schema: str) -> str | None:
        try:
            row = self.db.execute(
                f"SELECT value FROM {schema}.tbhook_meta WHERE key = 'logId'"
            ).fetchone()
        except sqlite3.OperationalError:
            return None
        return row[0] if row else None

    def _merge_table(
        self,
        table: str,
        columns: Sequence[str],
        after: int,
        log_id: str | None,
        source: str,
        progress: Callable[[int], None] | None,
        chunk: int,
    ) -> int:
        """Merge one table of the other log, from its row ``after`` on; how many rows were new
        here."""
        names = ", ".join(f'"{c}"' for c in columns)
        cursor_column = "lastEventId" if table == "events" else "lastQuarantineId"
        added = 0
        while True:
            with self._writing() as conn:
                upto, count = conn.execute(
                    f"SELECT max(id), count(*) FROM (SELECT id FROM other.{table} WHERE id > ? "
                    "ORDER BY id LIMIT ?)",
                    [after, chunk],
                ).fetchone()
                if upto is None:
                    return added
                # Rows new here get ids above the highest one now (this transaction holds the
                # write lock), so a receiver's deliveries meanwhile are not counted as merged.
                newest = conn.execute(f"SELECT coalesce(max(id), 0) FROM {table}").fetchone()[0]
                conn.execute(
                    f"INSERT INTO {table} ({names}) SELECT {names} FROM other.{table} "
                    "WHERE id > ? AND id <= ? ORDER BY id "
                    f"ON CONFLICT(bodySha256) DO UPDATE SET {_SUM_DELIVERIES}",
                    [after, upto],
                )
                added += conn.execute(
                    f"SELECT count(*) FROM {table} WHERE id > ?", [newest]
                ).fetchone()[0]
                if log_id is not None:
                    conn.execute(
                        "INSERT INTO merged_logs (logId, lastEventId, lastQuarantineId, source, "
                        "mergedAt) VALUES (?, 0, 0, ?, ?) ON CONFLICT(logId) DO UPDATE SET "
                        "source = excluded.source, mergedAt = excluded.mergedAt",
                        [log_id, source, utc_now()],
                    )
                    conn.execute(
                        f"UPDATE merged_logs SET {cursor_column} = ? WHERE logId = ?",
                        [upto, log_id],
                    )
            after = upto
            if progress:
                progress(count)
            time.sleep(PAUSE_SECONDS)  # let a waiting receiver take the lock

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

    def delete_events(
        self, ids: Sequence[int], progress: Callable[[int], None] | None = None, chunk: int = CHUNK
    ) -> None:
        """Delete events (and their forward records) in short transactions of ``chunk`` ids,
        so a receiver writing to this database gets the lock between them."""
        for start in range(0, len(ids), chunk):
            part = list(ids[start : start + chunk])
            with self._writing() as conn:
                for piece in range(0, len(part), 500):  # SQLite's limit on bound variables
                    some = part[piece : piece + 500]
                    marks = ", ".join("?" for _ in some)
                    conn.execute(f"DELETE FROM forwards WHERE eventId IN ({marks})", some)
                    conn.execute(f"DELETE FROM events WHERE id IN ({marks})", some)
            if progress:
                progress(len(part))
            time.sleep(PAUSE_SECONDS)

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

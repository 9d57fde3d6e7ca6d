"""Keeping the log for months: health facts for `doctor`, pruning, moving quarantined bodies
back, dropping them on request, and the bookkeeping of merges (the copying itself is each
backend's: ``merge_from``)."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Sequence
from typing import Any

from tbhook.errors import NotReady
from tbhook.model.events import COLUMNS, ENUMERATED, Event, Unreadable, is_test_delivery
from tbhook.model.times import utc_now
from tbhook.store.job import Job
from tbhook.store.rows import CHUNK, EVENT_COLUMNS, PAUSE_SECONDS, Recovery
from tbhook.store.sql import names, q


class Upkeep(Job):
    """Maintenance that both backends share."""

    def health(self, lag_seconds: int) -> dict:
        """Counts for a health report, in one scan of the events table."""
        # Only what a receiver received (its path is a URL path): an imported event's
        # receivedAt is when it was imported, not a late delivery.
        lag = (
            f"(CASE WHEN substr(path, 1, 1) = '/' THEN "
            f'{self.dialect.epoch_of_iso.format(q("receivedAt"))} - "timestamp" END)'
        )
        row = self.one(
            "SELECT count(*), coalesce(sum(CASE WHEN deliveries > 1 THEN 1 ELSE 0 END), 0), "
            "coalesce(sum(deliveries - 1), 0), "
            f"coalesce(sum(CASE WHEN {lag} > ? THEN 1 ELSE 0 END), 0), max({lag}), "
            'max("lastReceivedAt"), coalesce(max(id), 0) FROM events',
            [lag_seconds],
        )
        # Sorted here, by code point: the engines' collations need not agree.
        by_event = dict(sorted(self.query("SELECT event, count(*) FROM events GROUP BY event")))
        return {
            "events": row[0],
            "byEvent": by_event,
            "retriedEvents": int(row[1]),
            "extraDeliveries": int(row[2]),
            "lateDeliveries": int(row[3]),
            "maxLagSeconds": None if row[4] is None else round(row[4]),
            "lastReceivedAt": row[5],
            "skippedIds": int(row[6]) - row[0],  # ids below the highest with no event
            "quarantined": self.store.reads.count("quarantine"),
            "testDeliveries": self.test_deliveries(),
        }

    def test_deliveries(self) -> int:
        """Quarantined bodies that are Tracebuzz's test of the URL when a webhook is saved."""
        return sum(
            is_test_delivery(bytes(body))
            for (body,) in self.query("SELECT body FROM quarantine WHERE length(body) <= 64")
        )

    def unknown_values(self) -> list[tuple[str, int, int]]:
        """(field, value, events) for each typeId or own value the spec does not list."""
        found = []
        for key, known in ENUMERATED.items():
            listed = ", ".join(str(value) for value in known)
            found += [
                (key, value, n)
                for value, n in self.query(
                    f"SELECT {q(key)}, count(*) FROM events WHERE event = 'newResult' "
                    f"AND {q(key)} NOT IN ({listed}) GROUP BY {q(key)} ORDER BY {q(key)}"
                )
            ]
        return found

    def prune_plan(self, before: int) -> tuple[list[int], int]:
        """Ids of events whose timestamp is before ``before`` that can go, and how many old
        merges must stay because a remaining event's person resolves through them."""
        old = [
            row[0]
            for row in self.query(
                "SELECT id FROM events WHERE \"timestamp\" < ? AND event != 'profileMerged'",
                [before],
            )
        ]
        resolver = self.store.persons.resolver()
        remaining = {
            resolver.root(row[0])
            for row in self.query(
                'SELECT "personId" FROM events WHERE "timestamp" >= ? OR "timestamp" IS NULL '
                "UNION SELECT \"oldPersonId\" FROM events WHERE event = 'profileMerged' "
                'AND "timestamp" >= ? UNION SELECT "newPersonId" FROM events '
                "WHERE event = 'profileMerged' AND \"timestamp\" >= ?",
                [before, before, before],
            )
            if row[0] is not None
        }
        kept = 0
        for merge_id, old_person in self.query(
            "SELECT id, \"oldPersonId\" FROM events WHERE event = 'profileMerged' "
            'AND "timestamp" < ?',
            [before],
        ):
            if resolver.root(old_person) in remaining:
                kept += 1
            else:
                old.append(merge_id)
        return sorted(old), kept

    def archive_bodies(self, ids: Sequence[int]) -> Iterator[bytes]:
        """The raw bodies of ``ids`` in arrival order, for a prune archive."""
        for _, _, body in self.archive_rows(ids):
            yield body

    def archive_rows(self, ids: Sequence[int]) -> Iterator[tuple[int, int, bytes]]:
        """(id, timestamp, raw body) of ``ids`` in arrival order: the receiver's retention
        archives each day's events in a file of that day."""
        for start in range(0, len(ids), 500):
            part = list(ids[start : start + 500])
            marks = ", ".join("?" for _ in part)
            for row_id, stamp, body in self.query(
                f'SELECT id, "timestamp", body FROM events WHERE id IN ({marks}) ORDER BY id',
                part,
            ):
                yield row_id, stamp, bytes(body)

    def oldest_timestamp(self) -> int | None:
        """The earliest timestamp among the events a prune may take (merges aside)."""
        return self.one("SELECT min(\"timestamp\") FROM events WHERE event != 'profileMerged'")[0]

    def delete_events(
        self,
        ids: Sequence[int],
        progress: Callable[[int], None] | None = None,
        chunk: int = CHUNK,
        pause: float = PAUSE_SECONDS,
        yielding: float = 0.0,
    ) -> None:
        """Delete events (and their forward records) in short transactions of ``chunk`` ids,
        ``pause`` seconds apart, so a receiver writing to this database gets the lock between
        them; with ``yielding``, at least that many times as long as the transaction took (a
        busy database slows the deletes down rather than the receiver)."""
        for start in range(0, len(ids), chunk):
            part = list(ids[start : start + chunk])
            began = time.monotonic()
            with self.writing() as conn:
                for piece in range(0, len(part), 500):
                    some = part[piece : piece + 500]
                    marks = ", ".join("?" for _ in some)
                    conn.execute(f'DELETE FROM forwards WHERE "eventId" IN ({marks})', some)
                    conn.execute(f"DELETE FROM events WHERE id IN ({marks})", some)
            if progress:
                progress(len(part))
            time.sleep(max(pause, yielding * (time.monotonic() - began)))

    def drop_quarantined(self, ids: Sequence[int]) -> int:
        """Delete these quarantined deliveries (a person's decision); how many went."""
        dropped = 0
        with self.writing() as conn:
            for start in range(0, len(ids), 500):
                part = list(ids[start : start + 500])
                marks = ", ".join("?" for _ in part)
                dropped += conn.execute(
                    f"DELETE FROM quarantine WHERE id IN ({marks})", part
                ).rowcount
        return dropped

    def recover_quarantined(
        self,
        ids: Sequence[int] | None,
        parse: Callable[[bytes], Event | Unreadable],
        chunk: int = 500,
    ) -> Iterator[Recovery]:
        """Parse quarantined bodies again (``ids``, or all) and move each one that is now
        readable into ``events``, with the receive times and deliveries it came in with, in
        one transaction per chunk (the quarantine row goes only as its event row comes). A
        body already among the events adds its deliveries there. Idempotent: a moved row is
        gone from quarantine; a row delivered again meanwhile waits for the next run."""
        wanted = sorted(set(ids)) if ids is not None else None
        after = 0
        columns = 'id, "receivedAt", "lastReceivedAt", deliveries, path, body, "bodySha256"'
        # Inserted only when not stored: a conflicting INSERT would use up an id on SQLite.
        insert = (
            f"INSERT INTO events ({names((*EVENT_COLUMNS, 'deliveries'))}) VALUES "
            f"({', '.join('?' for _ in range(len(EVENT_COLUMNS) + 1))})"
        )
        add = (
            'UPDATE events SET deliveries = deliveries + ?, "receivedAt" = '
            f'{self.dialect.least}("receivedAt", ?), "lastReceivedAt" = '
            f'{self.dialect.greatest}("lastReceivedAt", ?) WHERE id = ?'
        )
        find = (
            'SELECT id, deliveries FROM events WHERE "bodySha256" = ? '
            "AND coalesce(timestamp, 0) = coalesce(?, 0)"
        )
        while True:
            if wanted is None:
                rows = list(
                    self.query_dicts(
                        f"SELECT {columns} FROM quarantine WHERE id > ? ORDER BY id LIMIT ?",
                        [after, chunk],
                    )
                )
                if not rows:
                    return
                after = rows[-1]["id"]
            else:
                part, wanted = wanted[:chunk], wanted[chunk:]
                if not part:
                    return
                marks = ", ".join("?" for _ in part)
                rows = list(
                    self.query_dicts(
                        f"SELECT {columns} FROM quarantine WHERE id IN ({marks}) ORDER BY id", part
                    )
                )
                found = {row["id"] for row in rows}
                yield from (Recovery(i, missing=True) for i in part if i not in found)
            parsed = [(row, parse(bytes(row["body"]))) for row in rows]
            done = []
            with self.writing() as conn:
                for row, result in parsed:
                    if not isinstance(result, Event):
                        done.append(Recovery(row["id"], reason=result.reason))
                        continue
                    gone = conn.execute(
                        "DELETE FROM quarantine WHERE id = ? AND deliveries = ? AND "
                        '"lastReceivedAt" = ?',
                        [row["id"], row["deliveries"], row["lastReceivedAt"]],
                    ).rowcount
                    if gone != 1:  # delivered again (or moved) since it was read: next run
                        done.append(Recovery(row["id"], reason="delivered again meanwhile"))
                        continue
                    values = [result.values.get(column) for column in COLUMNS]
                    digest = bytes(row["bodySha256"])
                    key = [digest, result.values.get("timestamp")]
                    stored = conn.execute(find, key).fetchone()
                    if stored is not None:
                        conn.execute(
                            add,
                            [
                                row["deliveries"],
                                row["receivedAt"],
                                row["lastReceivedAt"],
                                stored[0],
                            ],
                        )
                    else:
                        conn.execute(
                            insert,
                            [
                                row["receivedAt"],
                                row["lastReceivedAt"],
                                row["path"],
                                result.event,
                                *values,
                                bytes(row["body"]),
                                digest,
                                row["deliveries"],
                            ],
                        )
                    event_id, deliveries = conn.execute(find, key).fetchone()
                    done.append(
                        Recovery(
                            row["id"],
                            event_id=event_id,
                            event=result.event,
                            merged=deliveries > row["deliveries"],
                        )
                    )
            yield from done
            time.sleep(PAUSE_SECONDS)  # let a waiting receiver take the lock

    def refuse_merging_back(self, other: str, merged_at: str | None) -> None:
        """Refuse to merge a log that this log was merged into (``merged_at``: when): its
        copies of this log's events would add their deliveries here a second time."""
        if merged_at is not None:
            raise NotReady(
                f"{other} already holds this log's events (this log was merged into it at "
                f"{merged_at}); merging it back would count their deliveries twice. Merge in "
                "one direction only: the log you keep takes the others"
            )

    def merged_upto(self, log_id: str) -> tuple[int, int]:
        row = next(
            iter(
                self.query(
                    'SELECT "lastEventId", "lastQuarantineId" FROM merged_logs WHERE "logId" = ?',
                    [log_id],
                )
            ),
            None,
        )
        return (row[0], row[1]) if row else (0, 0)

    def record_merged(self, conn: Any, log_id: str, table: str, upto: int, source: str) -> None:
        """Inside a merge chunk's transaction: the other log is merged up to its row ``upto``."""
        cursor = "lastEventId" if table == "events" else "lastQuarantineId"
        conn.execute(
            'INSERT INTO merged_logs ("logId", "lastEventId", "lastQuarantineId", source, '
            '"mergedAt") VALUES (?, 0, 0, ?, ?) ON CONFLICT ("logId") DO UPDATE SET '
            'source = excluded.source, "mergedAt" = excluded."mergedAt"',
            [log_id, source, utc_now()],
        )
        conn.execute(f'UPDATE merged_logs SET {q(cursor)} = ? WHERE "logId" = ?', [upto, log_id])

    def merge_from(
        self, other: str, progress: Callable[[int], None] | None = None, chunk: int = CHUNK
    ) -> dict[str, int]:
        """Fold another tbhook log (a SQLite file) into this one, in its arrival order, in
        short transactions; idempotent (see ``merged_logs``). Each backend copies its way."""
        raise NotImplementedError

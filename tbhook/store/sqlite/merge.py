"""SQLite's merge: the other log attached to this connection and copied in SQL, a chunk per
transaction, remembering how far each other log has been merged."""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Callable, Sequence

from tbhook.errors import NotReady
from tbhook.store.rows import CHUNK, MERGE_EVENT_COLUMNS, MERGE_QUARANTINE_COLUMNS, PAUSE_SECONDS
from tbhook.store.sql import names
from tbhook.store.upkeep import Upkeep


class SQLiteUpkeep(Upkeep):
    def merge_from(
        self, other: str, progress: Callable[[int], None] | None = None, chunk: int = CHUNK
    ) -> dict[str, int]:
        """ATTACH the other file and copy in SQL, a chunk per transaction."""
        conn = self.store.conn
        with self.store.reading():
            conn.execute("ATTACH DATABASE ? AS other", [other])
        try:
            theirs = self._attached_log_id()
            if theirs is not None and theirs == self.store.reads.log_id():
                raise NotReady(
                    f"{other} is this log itself (or a copy of it): merging it would count its "
                    "deliveries twice"
                )
            self.refuse_merging_back(other, self._merged_into_attached())
            done = self.merged_upto(theirs) if theirs else (0, 0)
            new = [
                self.one(f"SELECT count(*) FROM other.{table} WHERE id > ?", [after])[0]
                for table, after in (("events", done[0]), ("quarantine", done[1]))
            ]
            added = [
                self._merge_table(table, columns, after, theirs, other, progress, chunk)
                for table, columns, after in (
                    ("events", MERGE_EVENT_COLUMNS, done[0]),
                    ("quarantine", MERGE_QUARANTINE_COLUMNS, done[1]),
                )
            ]
        finally:
            conn.execute("DETACH DATABASE other")
        return {
            "added": added[0],
            "alreadyHere": new[0] - added[0],
            "quarantine": added[1],
            "mergedBefore": done[0],
        }

    def _merged_into_attached(self) -> str | None:
        """When this log was merged into the attached one, if it was."""
        try:
            row = self.store.conn.execute(
                'SELECT "mergedAt" FROM other.merged_logs WHERE "logId" = ?',
                [self.store.reads.log_id()],
            ).fetchone()
        except sqlite3.OperationalError:  # a log from before merges were recorded
            return None
        return row[0] if row else None

    def _attached_log_id(self) -> str | None:
        try:
            row = self.store.conn.execute(
                "SELECT value FROM other.tbhook_meta WHERE key = 'logId'"
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
        """Merge one table of the other log from its row ``after`` on; how many rows were new
        here."""
        added = 0
        while True:
            with self.writing() as conn:
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
                # Bodies stored here add their deliveries; only the others are inserted (a
                # conflicting INSERT would use up an id: a gap that looks like a lost event).
                same = 't."bodySha256" = o."bodySha256"' + (
                    " AND coalesce(t.timestamp, 0) = coalesce(o.timestamp, 0)"
                    if table == "events"
                    else ""
                )
                conn.execute(
                    f"UPDATE main.{table} AS t SET deliveries = t.deliveries + o.deliveries, "
                    '"receivedAt" = min(t."receivedAt", o."receivedAt"), '
                    '"lastReceivedAt" = max(t."lastReceivedAt", o."lastReceivedAt") '
                    f"FROM other.{table} AS o WHERE o.id > ? AND o.id <= ? AND {same}",
                    [after, upto],
                )
                conn.execute(
                    f"INSERT INTO main.{table} ({names(columns)}) SELECT {names(columns)} "
                    f"FROM other.{table} AS o WHERE o.id > ? AND o.id <= ? AND NOT EXISTS "
                    f"(SELECT 1 FROM main.{table} AS t WHERE {same}) ORDER BY o.id",
                    [after, upto],
                )
                added += conn.execute(
                    f"SELECT count(*) FROM {table} WHERE id > ?", [newest]
                ).fetchone()[0]
                if log_id is not None:
                    self.record_merged(conn, log_id, table, upto, source)
            after = upto
            if progress:
                progress(count)
            time.sleep(PAUSE_SECONDS)  # let a waiting receiver take the lock

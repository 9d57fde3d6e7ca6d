"""PostgreSQL's merge: a SQLite log's rows copied in with COPY into a staging table, then one
upsert per chunk (a body already here gains its deliveries), a transaction per chunk."""

from __future__ import annotations

import functools
import time
from collections.abc import Callable, Sequence

from tbhook.errors import NotReady
from tbhook.store.interface import Store
from tbhook.store.postgres.driver import CHANNEL, POSTGRES, stage
from tbhook.store.rows import CHUNK, MERGE_EVENT_COLUMNS, MERGE_QUARANTINE_COLUMNS, PAUSE_SECONDS
from tbhook.store.sql import names
from tbhook.store.sqlite import SQLiteStore
from tbhook.store.upkeep import Upkeep


class PostgresUpkeep(Upkeep):
    def merge_from(
        self, other: str, progress: Callable[[int], None] | None = None, chunk: int = CHUNK
    ) -> dict[str, int]:
        """Copy a SQLite log in, a chunk per transaction, its rows in their arrival order."""
        source = SQLiteStore.open_readonly(other)
        try:
            theirs = source.reads.log_id()
            if theirs is not None and theirs == self.store.reads.log_id():
                raise NotReady(f"{other} is this log itself (or a copy of it)")
            done = self.merged_upto(theirs) if theirs else (0, 0)
            new = [
                source.one(f"SELECT count(*) FROM {table} WHERE id > ?", [after])[0]
                for table, after in (("events", done[0]), ("quarantine", done[1]))
            ]
            added = [
                self._merge_table(source, table, columns, after, theirs, other, progress, chunk)
                for table, columns, after in (
                    ("events", MERGE_EVENT_COLUMNS, done[0]),
                    ("quarantine", MERGE_QUARANTINE_COLUMNS, done[1]),
                )
            ]
        finally:
            source.close()
        return {
            "added": added[0],
            "alreadyHere": new[0] - added[0],
            "quarantine": added[1],
            "mergedBefore": done[0],
        }

    def _merge_table(
        self,
        source: Store,
        table: str,
        columns: Sequence[str],
        after: int,
        log_id: str | None,
        other: str,
        progress: Callable[[int], None] | None,
        chunk: int,
    ) -> int:
        added = 0
        while True:
            rows = list(
                source.query(
                    f"SELECT id, {names(columns)} FROM {table} WHERE id > ? ORDER BY id LIMIT ?",
                    [after, chunk],
                )
            )
            if not rows:
                return added
            with self.writing() as conn:
                stage(conn, table, columns, [row[1:] for row in rows])
                merged = conn.execute(_merge_staged(table, tuple(columns)))
                added += sum(1 for (inserted,) in merged if inserted)
                if log_id is not None:
                    self.record_merged(conn, log_id, table, rows[-1][0], other)
                conn.execute(f"NOTIFY {CHANNEL}")
            after = rows[-1][0]
            if progress:
                progress(len(rows))
            time.sleep(PAUSE_SECONDS)


@functools.lru_cache(maxsize=4)
def _merge_staged(table: str, columns: tuple[str, ...]) -> str:
    """Staged rows of another log: a body already here gains its deliveries; ``xmax = 0`` is
    true for a row this statement inserted (not updated)."""
    return (
        f"INSERT INTO {table} ({names(columns)}) SELECT {names(columns)} FROM staged_{table} "
        f'ORDER BY n ON CONFLICT ("bodySha256") DO UPDATE SET {POSTGRES.sum_deliveries(table)} '
        "RETURNING (xmax = 0)"
    )

"""SQLite's export rows: the merged persons in a temporary table of this connection, then
the cursor's rows in lists, so a C writer (csv) takes each list whole."""

from __future__ import annotations

from collections.abc import Iterator

from tbhook.model.filters import Filters
from tbhook.store.exports import Exports
from tbhook.store.sql import IdRange

BATCH = 5000


class SQLiteExports(Exports):
    def batches(self, filters: Filters, ids: IdRange | None = None) -> Iterator[list[tuple]]:
        conn = self.store.conn
        changed = self.store.persons.resolver().changed()
        with self.store.reading():
            conn.execute(
                "CREATE TEMP TABLE IF NOT EXISTS canon (person INTEGER PRIMARY KEY, now INTEGER)"
            )
            conn.execute("DELETE FROM temp.canon")
            conn.executemany("INSERT INTO temp.canon VALUES (?, ?)", changed.items())
        sql, params = self.select(filters, ids)
        with self.store.reading():
            cursor = conn.execute(sql, params)
            while rows := cursor.fetchmany(BATCH):
                yield rows

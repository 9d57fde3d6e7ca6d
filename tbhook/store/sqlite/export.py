"""SQLite's export rows: the merged persons in a temporary table of this connection, then
the cursor itself, so a C writer (csv) pulls every row without Python in between."""

from __future__ import annotations

from collections.abc import Iterator

from tbhook.filters import Filters
from tbhook.store.exports import Exports
from tbhook.store.sql import IdRange


class SQLiteExports(Exports):
    def rows(self, filters: Filters, ids: IdRange | None = None) -> Iterator[tuple]:
        conn = self.store.conn
        changed = self.store.persons.resolver().changed()
        with self.store.reading():
            conn.execute(
                "CREATE TEMP TABLE IF NOT EXISTS canon (person INTEGER PRIMARY KEY, now INTEGER)"
            )
            conn.execute("DELETE FROM temp.canon")
            conn.executemany("INSERT INTO temp.canon VALUES (?, ?)", changed.items())
        sql, params = self.select(filters, ids)
        return self.query(sql, params)

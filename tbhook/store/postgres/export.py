"""PostgreSQL's export rows: the merged persons in a temporary table of one transaction (the
planner knows its size: a hash join), then the rows through a server-side cursor, a few
thousand at a time."""

from __future__ import annotations

from collections.abc import Iterator

from tbhook.model.filters import Filters
from tbhook.store.exports import Exports
from tbhook.store.postgres.driver import pg
from tbhook.store.sql import IdRange

FETCH = 5000  # rows per round trip


class PostgresExports(Exports):
    def batches(self, filters: Filters, ids: IdRange | None = None) -> Iterator[list[tuple]]:
        changed = self.store.persons.resolver().changed()
        sql, params = self.select(filters, ids)
        store = self.store
        conn = store.connection()
        with store._errors("cannot read"), conn.transaction():
            # Only the temporary table is written, so this reader may write in this
            # transaction. No JIT: compiling the export's expressions costs more than it saves
            # (measured: 3.1 s -> 1.7 s for a million rows).
            conn.execute("SET TRANSACTION READ WRITE")
            conn.execute("SET LOCAL jit = off")
            conn.execute(
                "CREATE TEMP TABLE canon (person BIGINT PRIMARY KEY, now BIGINT) ON COMMIT DROP"
            )
            with conn.cursor() as cursor, cursor.copy("COPY canon FROM STDIN") as copy:
                for pair in changed.items():
                    copy.write_row(pair)
            conn.execute("ANALYZE canon")
            with conn.cursor(name="tbhook_export") as cursor:
                cursor.execute(pg(sql), params)
                while rows := cursor.fetchmany(FETCH):
                    yield rows

"""PostgreSQL's reads: stats grouped on the server, and whole rows without its own columns."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from typing import Any

from tbhook.model.filters import Filters
from tbhook.store.reads import Reads
from tbhook.store.rows import EVENT_COLUMNS, QUARANTINE_COLUMNS
from tbhook.store.sql import DAY, IdRange, names


class PostgresReads(Reads):
    def rows(self, table: str = "events") -> Iterator[dict]:
        if table not in ("events", "quarantine"):
            raise ValueError(table)
        columns = (
            ("id", "deliveries", *EVENT_COLUMNS)
            if table == "events"
            else ("id", "deliveries", *QUARANTINE_COLUMNS, "line")
        )
        return self.query_dicts(f"SELECT {names(columns)} FROM {table} ORDER BY id")

    def stats_counter(self, filters: Filters, ids: IdRange | None = None) -> Any:
        """Grouped on the server: the same groups as SQLite's Counter, without moving every row."""
        where, params = self.where(filters, ids)
        rows = self.query(
            f'SELECT e.event, e.own, e."typeId", e."sourceId", {DAY}, count(*) FROM events e '
            f"WHERE {where} GROUP BY 1, 2, 3, 4, 5",
            params,
        )
        return Counter({tuple(row[:5]): row[5] for row in rows})

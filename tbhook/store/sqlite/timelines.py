"""SQLite's case summaries: one writer at a time and ids that only grow, so the events a
transaction added are those above the highest id when it began (as for ``event_counts``);
one query finds them with their cases' stored summaries."""

from __future__ import annotations

from typing import Any

from tbhook.model.cases import CASE_COLUMNS, SUMMARY_COLUMNS, Summary
from tbhook.store.sql import q
from tbhook.store.tallies import Tallies
from tbhook.store.timelines import CASE_SELECT, Timelines

# NOT INDEXED: the rowid range, not an index on another column (measured: SQLite otherwise
# chose events_event_time, every event of a kind for each commit).
NEW_ROWS = (
    f"SELECT {CASE_SELECT}, {', '.join(f't.{q(c)}' for c in SUMMARY_COLUMNS)} "
    'FROM events e NOT INDEXED LEFT JOIN case_timelines t ON t."caseId" = e."caseId" '
    'WHERE e.id > ? AND e."caseId" IS NOT NULL ORDER BY e."caseId", e."timestamp", e.id'
)
WIDTH = len(CASE_COLUMNS)


class SQLiteTimelines(Timelines):
    def available(self) -> bool:
        return self.store.has_timelines

    def new_rows(
        self, conn: Any, after: Any = None
    ) -> tuple[list[tuple], dict[int, Summary] | None]:
        found = conn.execute(NEW_ROWS, [after]).fetchall()
        stored = {row[WIDTH]: Summary.of(row[WIDTH:]) for row in found if row[WIDTH] is not None}
        return [row[:WIDTH] for row in found], stored


class SQLiteTallies(Tallies):
    def available(self) -> bool:
        return self.store.has_tallies

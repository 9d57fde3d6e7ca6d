"""`tbhook export`: every matching event as a row of ``EXPORT_COLUMNS``, in arrival order,
streamed in batches; ``canonicalPersonId`` resolved in SQL through a temporary table of the
persons merges changed (each backend fills it its own way), ``time`` formatted as ISO-8601
UTC. The rows are values, not text: ``tbhook.output`` writes them, as CSV or NDJSON."""

from __future__ import annotations

from collections.abc import Iterator

from tbhook.model.filters import Filters
from tbhook.store.job import Job
from tbhook.store.rows import EXPORT_COLUMNS
from tbhook.store.sql import IdRange, q


class Exports(Job):
    """Export rows; a backend supplies ``rows``."""

    def batches(self, filters: Filters, ids: IdRange | None = None) -> Iterator[list[tuple]]:
        """Every matching event (within ``ids``) as a tuple of ``EXPORT_COLUMNS``, in lists
        of a few thousand (a writer then takes each list whole)."""
        raise NotImplementedError

    def select(self, filters: Filters, ids: IdRange | None = None) -> tuple[str, list]:
        """The export's SELECT, joining a temporary table ``canon (person, now)`` of merged
        persons that the backend fills first."""
        expressions = {name: f"e.{q(name)}" for name in EXPORT_COLUMNS}
        expressions["time"] = self.dialect.iso_time('e."timestamp"')
        expressions["canonicalPersonId"] = 'coalesce(canon.now, e."personId", e."newPersonId")'
        where, params = self.where(filters, ids)
        return (
            f"SELECT {', '.join(expressions.values())} FROM events e LEFT JOIN canon "
            'ON canon.person = coalesce(e."personId", e."newPersonId") '
            f"WHERE {where} ORDER BY e.id",
            params,
        )

"""SQLite's reads: counts of events by day, event, sender, type and source, kept by every
write transaction (``event_counts``, m012), answer `stats` and the footers' totals without
reading the events, for the filters they can answer."""

from __future__ import annotations

import dataclasses
from collections import Counter

from tbhook.model.filters import Filters
from tbhook.store import sql
from tbhook.store.reads import Reads
from tbhook.store.sql import IdRange

DAY_SECONDS = 86400
# The filters event_counts can answer (an allowlist: a filter added later is never ignored by
# the shortcut, which would give wrong counts, but sends the count to the events themselves).
COUNTED = frozenset({"events", "sender", "source", "since", "until"})


class SQLiteReads(Reads):
    """Reads, with the per-day counts where they answer."""

    def _counted(self, filters: Filters) -> tuple[str, list, list[Filters]] | None:
        """How ``event_counts`` answers ``filters``: a WHERE over it for the whole UTC days,
        and the filters of the partial days at either end (to scan through the timestamp
        index); None when the counts cannot answer (a case, person, search or id filter)."""
        if not self.store.has_counts or any(
            getattr(filters, field.name) not in (None, ())
            for field in dataclasses.fields(filters)
            if field.name not in COUNTED
        ):
            return None
        since, until = filters.since, filters.until
        first_day = None if since is None else -(-since // DAY_SECONDS)  # the first whole day
        end_day = None if until is None else until // DAY_SECONDS  # days before it are whole
        if first_day is not None and end_day is not None and first_day >= end_day:
            return None  # not one whole day: the scan is short anyway
        whole = dataclasses.replace(filters, since=None, until=None)
        where, params = sql.where(whole, self.dialect, self.store.persons.aliases, table="")
        for clause, value in (("day >= ?", first_day), ("day < ?", end_day)):
            if value is not None:
                where += f" AND {clause}"
                params.append(value)
        edges = []
        if first_day is not None and since is not None and since < first_day * DAY_SECONDS:
            edges.append(dataclasses.replace(filters, until=first_day * DAY_SECONDS))
        if end_day is not None and until is not None and until > end_day * DAY_SECONDS:
            edges.append(dataclasses.replace(filters, since=end_day * DAY_SECONDS))
        return f"n > 0 AND {where}", params, edges

    def stats_is_cheap(self, filters: Filters) -> bool:
        return self._counted(filters) is not None

    def stats_counter(self, filters: Filters, ids: IdRange | None = None) -> Counter:
        """From ``event_counts`` when it can answer, else by scanning the matching events."""
        counted = self._counted(filters) if ids is None else None
        if counted is None:
            return super().stats_counter(filters, ids)
        where, params, edges = counted
        result: Counter = Counter()
        for event, own, type_id, source, day, n in self.query(
            f'SELECT event, own, "typeId", "sourceId", day, n FROM event_counts WHERE {where}',
            params,
        ):
            result[(event, own, type_id, source, day)] += n
        for edge in edges:
            result.update(super().stats_counter(edge))
        return result

    def count_matching(self, filters: Filters) -> int:
        if filters == Filters():
            return self.one("SELECT count(*) FROM events")[0]  # SQLite's own quick count
        counted = self._counted(filters)
        if counted is None:
            return super().count_matching(filters)
        where, params, edges = counted
        whole = self.one(f"SELECT coalesce(sum(n), 0) FROM event_counts WHERE {where}", params)[0]
        for edge in edges:  # a loop: super() does not reach into a generator's own scope
            whole += super().count_matching(edge)
        return whole

    def meta(self) -> dict[str, str]:
        if not self.store.has_table("tbhook_meta"):  # a database older than the table
            return {}
        return super().meta()

"""``case_timelines``: one summary row per case (``tbhook.model.cases.Summary``), kept by every
write transaction, so `report` reads a row per case instead of every event.

Each write transaction, before it commits, folds the events it added into their cases' rows:
appended when they come after everything the row holds (events arrive in time order: almost
always), else the case is recomputed from its events. A deleted event (prune) marks its case
stale (a trigger writes ``case_stale``), and the same step recomputes it. Readers trust the
rows and recompute, in memory, any case a write has not folded yet; a database without the
table (not yet upgraded) is read from its events. ``tests/test_timelines.py`` proves the rows
equal a recomputation after every kind of write.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from itertools import groupby
from operator import itemgetter
from typing import Any

from tbhook.model.cases import (
    BRIEF_COLUMNS,
    CASE_COLUMNS,
    ENTRY_LIMIT,
    SUMMARY_COLUMNS,
    Summary,
    summaries,
)
from tbhook.model.filters import Filters
from tbhook.model.tallies import Changes
from tbhook.store.job import Job
from tbhook.store.sql import names, q

# Of the summary's meaning: another, and the next writer rebuilds every row (and the
# tallies). 2: each case's wait now (the queue), and the report's tallies.
VERSION = "2"
REBUILD_CASES = 20_000  # cases a rebuild counts into tallies in memory before writing them
CHUNK = 500  # case ids in one IN (...)
CASE_SELECT = ", ".join(f"e.{q(c)}" for c in CASE_COLUMNS)
TIMELINE_EVENTS = ("newResult", "caseClosed")


def case_sql(where: str) -> str:
    """The events of the cases ``where`` picks (over ``events e``), as rows of CASE_COLUMNS
    in order. Every event with a caseId: the other kinds are left out as they are folded (a
    condition on the event name makes SQLite read 10x the rows it returns)."""
    return (
        f'SELECT {CASE_SELECT} FROM events e WHERE {where} ORDER BY e."caseId", e."timestamp", e.id'
    )


UPSERT = (
    f"INSERT INTO case_timelines ({names(SUMMARY_COLUMNS)}) "
    f"VALUES ({', '.join('?' for _ in SUMMARY_COLUMNS)}) "
    f'ON CONFLICT ("caseId") DO UPDATE SET '
    + ", ".join(f"{q(c)} = excluded.{q(c)}" for c in SUMMARY_COLUMNS[1:])
)


META = "SELECT value FROM tbhook_meta WHERE key = ?"


def meta(conn: Any, key: str, default: Any = 0) -> Any:
    """A value of ``tbhook_meta`` (an int when the default is one)."""
    row = conn.execute(META, [key]).fetchone()
    if row is None:
        return default
    return int(row[0]) if isinstance(default, int) else row[0]


def set_meta(conn: Any, key: str, value: Any) -> None:
    conn.execute(
        "INSERT INTO tbhook_meta (key, value) VALUES (?, ?) "
        "ON CONFLICT (key) DO UPDATE SET value = excluded.value",
        [key, str(value)],
    )


def chunks(values: Sequence[Any], size: int = CHUNK) -> Iterator[Sequence[Any]]:
    for start in range(0, len(values), size):
        yield values[start : start + size]


def marks(values: Sequence[Any]) -> str:
    return ", ".join("?" for _ in values)


@dataclass(frozen=True)
class Selection:
    """Which cases a report counts: those with an entry in [start, end) (None: any), and
    among those, the ones ``filters`` keep (by the case's first message: source, searchId,
    path; its person, after merges; or one caseId)."""

    filters: Filters = Filters()
    start: int | None = None
    end: int | None = None


class Timelines(Job):
    """The case summaries: kept up by writers, read by `report`."""

    # -- writing: inside a write transaction ----------------------------------------------

    def keep_up(self, conn: Any, after: Any = None) -> None:
        """Fold this transaction's new events (and any stale case) into ``case_timelines``
        and the tallies (``after``: what the backend knows of where the new events begin)."""
        rows, stored = self.new_rows(conn, after)
        rows = [row for row in rows if row[1] in TIMELINE_EVENTS and row[2] is not None]
        stale = {row[0] for row in conn.execute('SELECT "caseId" FROM case_stale')}
        if not rows and not stale:
            return
        if stored is None:
            stored = self.stored(conn, sorted({row[0] for row in rows} | stale))
        recompute = set(stale)
        changed: list[tuple] = []
        tallied = Changes()
        for case_id, events in groupby(rows, key=itemgetter(0)):
            if case_id in recompute:
                continue
            ordered = list(events)
            summary = stored.get(case_id) or Summary(case_id)
            if not summary.follows(ordered[0][2], ordered[0][3]):
                recompute.add(case_id)  # an event older than the row's newest: recount
                continue
            before = _counted(summary)
            for row in ordered:
                summary.add(row)
            changed.append(summary.row())
            tallied.case(before, _counted(summary))
        if recompute:
            ids = sorted(recompute)
            missing = [case_id for case_id in ids if case_id not in stored]
            if missing:  # stale cases no new event named: their rows as they are
                stored.update(self.stored(conn, missing))
            fresh = {s.caseId: s for s in summaries(self.case_rows(conn, ids))}
            changed += [summary.row() for summary in fresh.values()]
            for case_id in ids:
                old = stored.get(case_id)
                tallied.case(_counted(old) if old else None, _counted(fresh.get(case_id)))
            gone = [case_id for case_id in ids if case_id not in fresh]
            for part in chunks(gone):
                conn.execute(f'DELETE FROM case_timelines WHERE "caseId" IN ({marks(part)})', part)
            conn.execute("DELETE FROM case_stale")
        if changed:
            conn.executemany(UPSERT, changed)
        if self.store.tallies.available():
            self.store.tallies.keep(conn, tallied)

    def new_rows(
        self, conn: Any, after: Any = None
    ) -> tuple[list[tuple], dict[int, Summary] | None]:
        """The events with a caseId this transaction added, as rows of CASE_COLUMNS by
        caseId, timestamp, id (a backend knows which are new); and their cases' stored
        summaries when the same query found them (else None: ``stored`` looks)."""
        raise NotImplementedError

    def stored(self, conn: Any, case_ids: Sequence[int]) -> dict[int, Summary]:
        """The stored rows of these cases (a backend with concurrent writers locks them)."""
        found = {}
        for part in chunks(case_ids):
            for row in conn.execute(
                f"SELECT {names(SUMMARY_COLUMNS)} FROM case_timelines "
                f'WHERE "caseId" IN ({marks(part)})',
                part,
            ):
                found[row[0]] = Summary.of(row)
        return found

    def case_rows(self, conn: Any, case_ids: Sequence[int]) -> Iterator[tuple]:
        """Every event of these cases, as rows of CASE_COLUMNS in order."""
        for part in chunks(case_ids):
            yield from conn.execute(case_sql(f'e."caseId" IN ({marks(part)})'), part).fetchall()

    def rebuild(self, conn: Any) -> int:
        """Every row recomputed from the events, and the tallies from them (an upgrade, or a
        new VERSION); how many."""
        conn.execute("DELETE FROM case_timelines")
        conn.execute("DELETE FROM case_stale")
        tallies = self.store.tallies if self.store.tallies.available() else None
        if tallies:
            tallies.clear(conn)
        rows = self.scan(
            conn,
            case_sql('e."caseId" IS NOT NULL'),
        )
        count = 0
        batch: list[tuple] = []
        tallied = Changes()
        for summary in summaries(rows):
            batch.append(summary.row())
            tallied.case(None, _counted(summary))
            if len(batch) == REBUILD_CASES:
                self.insert(conn, batch)
                if tallies:
                    tallies.keep(conn, tallied)
                tallied = Changes()
                count += len(batch)
                batch = []
        self.insert(conn, batch)
        if tallies:
            tallies.keep(conn, tallied)
        return count + len(batch)

    def scan(self, conn: Any, sql: str) -> Iterator[tuple]:
        """Rows of a big query inside the write transaction, streamed."""
        cursor = conn.execute(sql)
        while rows := cursor.fetchmany(5000):
            yield from rows

    def is_outdated(self, conn: Any) -> bool:
        return str(meta(conn, "timelinesVersion", "")) != VERSION

    def bring_up_to_date(self, conn: Any) -> int | None:
        """In the writer's opening transaction: every row rebuilt when the summaries are new
        here or mean something else now (VERSION); how many, or None when they are current."""
        if not self.is_outdated(conn):
            return None
        count = self.rebuild(conn)
        set_meta(conn, "timelinesVersion", VERSION)
        return count

    def insert(self, conn: Any, rows: list[tuple]) -> None:
        if rows:
            conn.executemany(
                f"INSERT INTO case_timelines ({names(SUMMARY_COLUMNS)}) "
                f"VALUES ({marks(SUMMARY_COLUMNS)})",
                rows,
            )

    # -- reading -----------------------------------------------------------------------------

    def available(self) -> bool:
        """Whether this database keeps the summaries (a reader may open one not upgraded)."""
        return bool(self.store.has_timelines)

    def pending(self) -> set[int]:
        """Cases whose stored row a write has not brought up to date: recomputed when read."""
        return {row[0] for row in self.query('SELECT "caseId" FROM case_stale')}

    def read(self, selection: Selection) -> Iterator[tuple]:
        """The selected cases, as rows of BRIEF_COLUMNS: the stored rows, with any case a
        write has not folded yet recomputed from its events; from the events alone when the
        database does not keep them."""
        keep = self.predicate(selection.filters)
        if not self.available():
            yield from (s.brief() for s in self._recomputed(selection, keep, None))
            return
        pending = self.pending()
        where, params = self._where(selection)
        rows = self.query(
            f"SELECT {', '.join(f't.{q(c)}' for c in BRIEF_COLUMNS)} "
            f"FROM case_timelines t WHERE {where}",
            params,
        )
        if pending:
            rows = (row for row in rows if row[0] not in pending)
        yield from rows
        if pending:
            yield from (s.brief() for s in self._recomputed(selection, keep, sorted(pending)))

    def _recomputed(
        self, selection: Selection, keep: Callable[[Summary], bool], ids: list[int] | None
    ) -> Iterator[Summary]:
        if ids is None:
            rows: Iterable[tuple] = self.query(case_sql('e."caseId" IS NOT NULL'))
        else:
            rows = (
                row
                for part in chunks(ids)
                for row in self.query(case_sql(f'e."caseId" IN ({marks(part)})'), part)
            )
        for summary in summaries(rows):
            if keep(summary) and _in_window(summary, selection):
                yield summary

    def listing(
        self, descending: bool, limit: int | None, past: int | None = None
    ) -> Iterator[Summary] | None:
        """Every case's summary by caseId (the first ``limit``), straight from the stored
        rows: what `cases` lists with no filter, without reading ten million events. None
        when the rows cannot answer alone (not kept here, or a case waits to be recounted)."""
        if not self.available() or not self.store.tallies.available() or self.pending():
            return None  # (the summaries of a database not upgraded lack the wait columns)
        direction = "DESC" if descending else "ASC"
        beyond = "" if past is None else f' AND "caseId" {"<" if descending else ">"} ?'
        rows = self.query(
            f"SELECT {names(SUMMARY_COLUMNS)} FROM case_timelines "
            f"WHERE entries != {self.dialect.empty_blob}{beyond} "
            f'ORDER BY "caseId" {direction}' + (f" LIMIT {int(limit)}" if limit else ""),
            [] if past is None else [past],
        )
        return (Summary.of(row) for row in rows)

    def count(self) -> int:
        """How many cases (``listing`` without a limit)."""
        return self.one(
            f"SELECT count(*) FROM case_timelines WHERE entries != {self.dialect.empty_blob}"
        )[0]

    def span(self, selection: Selection) -> tuple[int, int] | None:
        """The first and the last moment of the selected cases (None when there are none):
        where a report with no --since or --until begins and ends."""
        if not self.available() or self.pending():
            moments = [
                (s.startAt, min(max(s.lastAt, -ENTRY_LIMIT), ENTRY_LIMIT))
                for s in self._recomputed(selection, self.predicate(selection.filters), None)
                if s.startAt is not None and s.lastAt is not None
            ]
            if not moments:
                return None
            return min(m[0] for m in moments), max(m[1] for m in moments)
        where, params = self._where(selection)
        first, last = self.one(
            f'SELECT min(t."startAt"), max(t."lastAt") FROM case_timelines t WHERE {where}',
            params,
        )
        if first is None or last is None:
            return None
        return first, min(max(last, -ENTRY_LIMIT), ENTRY_LIMIT)

    def open_before(self, selection: Selection, by: str) -> dict[Any, int]:
        """How many selected cases whose last entry is before ``selection.start`` are open
        now, per source (``by`` source) or in all (key None): they count in openAtEnd only."""
        if selection.start is None:
            return {}
        start = selection.start
        counts: dict[Any, int] = {}

        def count(found: Iterable[Summary]) -> None:
            for summary in found:
                if summary.openNow and summary.lastAt is not None and summary.lastAt < start:
                    key = summary.sourceId if by == "source" else None
                    counts[key] = counts.get(key, 0) + 1

        keep = self.predicate(selection.filters)
        if not self.available():
            count(self._recomputed(Selection(selection.filters), keep, None))
            return counts
        pending = self.pending()
        where, params = self._filters(selection.filters)
        group = 't."sourceId"' if by == "source" else "NULL"
        for key, case_id in self.query(
            f'SELECT {group}, t."caseId" '
            f'FROM case_timelines t WHERE t."openNow" = 1 AND t."lastAt" < ? AND {where}',
            [start, *params],
        ):
            if case_id not in pending:
                counts[key] = counts.get(key, 0) + 1
        if pending:
            count(self._recomputed(Selection(selection.filters), keep, sorted(pending)))
        return counts

    def _where(self, selection: Selection) -> tuple[str, list]:
        where, params = self._filters(selection.filters)
        if selection.start is not None:
            where += ' AND t."lastAt" >= ?'
            params.append(selection.start)
        if selection.end is not None:
            where += ' AND t."startAt" < ?'
            params.append(selection.end)
        return where, params

    def _filters(self, filters: Filters) -> tuple[str, list]:
        clauses, params = ["TRUE"], []
        for column, value in (
            ("caseId", filters.case),
            ("sourceId", filters.source),
            ("searchId", filters.search_id),
            ("path", filters.path),
        ):
            if value is not None:
                clauses.append(f"t.{q(column)} = ?")
                params.append(value)
        if filters.person is not None:
            persons = sorted(self.store.persons.aliases(filters.person))
            clauses.append(f't."personId" IN ({marks(persons)})')
            params += persons
        return " AND ".join(clauses), params

    def predicate(self, filters: Filters) -> Callable[[Summary], bool]:
        """``_filters`` for a summary recomputed in memory."""
        persons = (
            set(self.store.persons.aliases(filters.person)) if filters.person is not None else None
        )

        def keep(summary: Summary) -> bool:
            return (
                (filters.case is None or summary.caseId == filters.case)
                and (filters.source is None or summary.sourceId == filters.source)
                and (filters.search_id is None or summary.searchId == filters.search_id)
                and (filters.path is None or summary.path == filters.path)
                and (persons is None or summary.personId in persons)
            )

        return keep


def _counted(summary: Summary | None) -> tuple[Any, bytes] | None:
    """What the tallies count of a case: its source and entries (None: nothing to count)."""
    if summary is None or not summary.entries:
        return None
    return summary.sourceId, summary.entries


def _in_window(summary: Summary, selection: Selection) -> bool:
    if selection.start is not None and (summary.lastAt or 0) < selection.start:
        return False
    return selection.end is None or summary.startAt is None or summary.startAt < selection.end

"""Reading the log: events, cases, counts and quarantined deliveries, in the SQL both
backends share (a backend overrides what it can answer faster, such as SQLite's counts)."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator, Sequence
from typing import Any

from tbhook.model.cases import CASE_COLUMNS
from tbhook.model.filters import Filters
from tbhook.store.job import Job
from tbhook.store.rows import READ_COLUMNS, blobs
from tbhook.store.sql import DAY, ORDERS, IdRange, merges_by, q


class Reads(Job):
    """Questions about what is stored."""

    def counts(self) -> tuple[int, int]:
        """Events and quarantined deliveries."""
        return self.count(), self.count("quarantine")

    def count(self, table: str = "events") -> int:
        """Rows in ``events`` or ``quarantine``."""
        if table not in ("events", "quarantine"):
            raise ValueError(table)
        return self.one(f"SELECT count(*) FROM {table}")[0]

    def max_id(self, table: str = "events") -> int:
        if table not in ("events", "quarantine"):
            raise ValueError(table)
        return self.one(f"SELECT coalesce(max(id), 0) FROM {table}")[0]

    def widths(self) -> dict[str, int]:
        """How many characters the widest of each kind of number in this log takes (a minus
        sign counted): event id, caseId, personId (a merge's newPersonId too) and quarantine
        id. From the indexes, in a few quick queries: a table is laid out before its rows."""

        def one(sql: str) -> Any:
            return self.one(sql)[0]

        def digits(*values: Any) -> int:
            return max((len(str(value)) for value in values if value is not None), default=1)

        merges = f"FROM events{self.dialect.hint('events_merge_newPersonId')} "
        merges += "WHERE event = 'profileMerged'"
        return {
            "id": digits(one("SELECT max(id) FROM events")),
            "case": digits(
                one('SELECT min("caseId") FROM events'), one('SELECT max("caseId") FROM events')
            ),
            "person": digits(
                one('SELECT min("personId") FROM events'),
                one('SELECT max("personId") FROM events'),
                one(f'SELECT min("newPersonId") {merges}'),
                one(f'SELECT max("newPersonId") {merges}'),
            ),
            "quarantine": digits(one("SELECT max(id) FROM quarantine")),
        }

    def event_names(self) -> list[str]:
        """Every event name in the log, by walking the event index from name to name (a few
        index look-ups per name, whatever the log's size)."""
        rows = self.query(
            "WITH RECURSIVE names(event) AS (SELECT min(event) FROM events UNION ALL "
            "SELECT (SELECT min(event) FROM events WHERE event > names.event) FROM names "
            "WHERE names.event IS NOT NULL) SELECT event FROM names WHERE event IS NOT NULL"
        )
        return [row[0] for row in rows]

    def has_merges(self) -> bool:
        """Whether any merge made one person another (a self-merge, as the spec's example,
        changes nothing)."""
        sql = f"SELECT 1 {merges_by(self.dialect, 'oldPersonId')} IS NOT NULL "
        sql += 'AND "oldPersonId" != "newPersonId" LIMIT 1'
        return any(True for _ in self.query(sql))

    def rows(self, table: str = "events") -> Iterator[dict]:
        """Every row of ``events`` or ``quarantine``, raw body included, in arrival order."""
        if table not in ("events", "quarantine"):
            raise ValueError(table)
        return self.query_dicts(f"SELECT * FROM {table} ORDER BY id")

    def events(
        self,
        filters: Filters = Filters(),
        *,
        order_by: str = "time",
        descending: bool = False,
        limit: int | None = None,
        after_id: int = 0,
        upto_id: int | None = None,
        with_forwards: bool = False,
    ) -> Iterator[dict]:
        """Matching events (without the raw body), streamed in the order asked for.
        ``after_id``/``upto_id`` bound the id: a cursor."""
        where, params = self.where(filters)
        order = ORDERS[order_by].format("DESC" if descending else "ASC")
        columns = ", ".join(f"e.{q(c)}" for c in READ_COLUMNS)
        sql = f"SELECT {columns} FROM events e WHERE e.id > ? AND {where}"
        if with_forwards:
            sql = (
                f"SELECT {columns}, f.state AS {q('forwardState')}, "
                f"f.attempts AS {q('forwardAttempts')}, f.{q('lastStatus')} AS "
                f"{q('forwardStatus')} FROM events e LEFT JOIN forwards f ON f.{q('eventId')} "
                f"= e.id WHERE e.id > ? AND {where}"
            )
        params.insert(0, after_id)
        if upto_id is not None:
            sql += " AND e.id <= ?"
            params.append(upto_id)
        sql += f" ORDER BY {order}"
        if limit:
            sql += f" LIMIT {int(limit)}"
        return self.query_dicts(sql, params)

    def id_span(self, filters: Filters) -> tuple[int | None, int | None]:
        """The lowest and highest id among matching events."""
        where, params = self.where(filters)
        first, last = self.one(f"SELECT min(e.id), max(e.id) FROM events e WHERE {where}", params)
        return first, last

    def bodies(self, filters: Filters) -> Iterator[tuple[int, bytes]]:
        """(id, raw body) of matching events in arrival order, for replay."""
        where, params = self.where(filters)
        rows = self.query_dicts(
            f"SELECT e.id, e.body FROM events e WHERE {where} ORDER BY e.id", params
        )  # streamed: a replay of a year must not hold a year of bodies
        return ((row["id"], bytes(row["body"])) for row in rows)

    def count_matching(self, filters: Filters) -> int:
        where, params = self.where(filters)
        return self.one(f"SELECT count(*) FROM events e WHERE {where}", params)[0]

    def any_matching(self, filters: Filters) -> bool:
        """Whether any event matches (to explain an empty answer)."""
        where, params = self.where(filters)
        return any(
            True for _ in self.query(f"SELECT 1 FROM events e WHERE {where} LIMIT 1", params)
        )

    def event_row(self, event_id: int) -> dict | None:
        """One event in full: every column, the raw body, and its forward state, if any."""
        columns = ", ".join(f"e.{q(c)}" for c in (*READ_COLUMNS, "body", "bodySha256"))
        forward = ", ".join(
            f"f.{q(column)} AS {q(name)}"
            for column, name in (
                ("target", "forwardTarget"),
                ("state", "forwardState"),
                ("attempts", "forwardAttempts"),
                ("lastStatus", "forwardStatus"),
                ("lastError", "forwardError"),
                ("lastAttemptAt", "forwardLastAttemptAt"),
                ("nextAttemptAt", "forwardNextAttemptAt"),
            )
        )
        rows = self.query_dicts(
            f"SELECT {columns}, {forward} FROM events e "
            'LEFT JOIN forwards f ON f."eventId" = e.id WHERE e.id = ?',
            [event_id],
        )
        row = next(iter(rows), None)
        return None if row is None else blobs(row, "body", "bodySha256")

    def count_cases(self, filters: Filters) -> int:
        """How many cases have a matching event."""
        where, params = self.where(filters)
        return self.one(
            f'SELECT count(DISTINCT e."caseId") FROM events e WHERE e."caseId" IS NOT NULL '
            f"AND {where}",
            params,
        )[0]

    def case_events(
        self,
        filters: Filters,
        *,
        descending: bool = False,
        limit: int | None = None,
        past: int | None = None,
    ) -> Iterator[tuple]:
        """Every event of every case that has a matching event, as rows of ``CASE_COLUMNS``
        (what the metrics need), by caseId then time; with ``limit``, of the first ``limit``
        such cases only (found first, through the caseId index, so the first page of a big
        log is quick); only those past ``past`` in that order (the next page)."""
        where, params = self.where(filters)
        if past is not None:
            where += f' AND e."caseId" {"<" if descending else ">"} ?'
            params = [*params, past]
        columns = ", ".join(f"e.{q(c)}" for c in CASE_COLUMNS)
        direction = "DESC" if descending else "ASC"
        if filters == Filters() and past is None:
            cases = 'e."caseId" IS NOT NULL'  # every case: no second look-up of each caseId
        else:
            cases = (
                'e."caseId" IN (SELECT e."caseId" FROM events e WHERE e."caseId" IS NOT NULL '
                f"AND {where})"
            )
        if limit:
            ids = [
                row[0]
                for row in self.query(
                    f'SELECT DISTINCT e."caseId" FROM events e WHERE e."caseId" IS NOT NULL '
                    f'AND {where} ORDER BY e."caseId" {direction} LIMIT {int(limit)}',
                    params,
                )
            ]
            if not ids:
                return iter(())
            cases, params = f'e."caseId" IN ({", ".join("?" for _ in ids)})', ids
        return self.query(
            f"SELECT {columns} FROM events e WHERE {cases} "
            f'ORDER BY e."caseId" {direction}, e."timestamp", e.id',
            params if "?" in cases else [],
        )

    def stats_is_cheap(self, filters: Filters) -> bool:
        """Whether ``stats_counter`` answers without reading every matching event."""
        return False

    def stats_counter(self, filters: Filters, ids: IdRange | None = None) -> Counter:
        """How many matching events (within ``ids``) share each (event, own, typeId,
        sourceId, UTC day)."""
        where, params = self.where(filters, ids)
        sql = f'SELECT e.event, e.own, e."typeId", e."sourceId", {DAY} FROM events e WHERE {where}'
        return Counter(self.query(sql, params))

    def quarantined(self, limit: int | None = None, *, descending: bool = False) -> Iterator[dict]:
        """Quarantined deliveries in arrival order (or newest first), each with its full
        reason, the size and the first bytes of its body."""
        sql = (
            'SELECT id, "receivedAt", "lastReceivedAt", deliveries, path, reason, '
            'length(body) AS "bodySize", '
            f'coalesce(substr(body, 1, 80), {self.dialect.empty_blob}) AS "bodyStart" '
            f"FROM quarantine ORDER BY id {'DESC' if descending else 'ASC'}"
        )
        if limit:
            sql += f" LIMIT {int(limit)}"
        return (blobs(row, "bodyStart") for row in self.query_dicts(sql))

    def quarantine_row(self, quarantine_id: int) -> dict | None:
        """One quarantined delivery in full, raw body included."""
        rows = self.query_dicts(
            'SELECT id, "receivedAt", "lastReceivedAt", deliveries, path, reason, line, body, '
            '"bodySha256" FROM quarantine WHERE id = ?',
            [quarantine_id],
        )
        row = next(iter(rows), None)
        return None if row is None else blobs(row, "body", "bodySha256")

    def not_quarantined(self, ids: Sequence[int]) -> list[int]:
        """Which of ``ids`` are not in quarantine."""
        found: set[int] = set()
        for start in range(0, len(ids), 500):
            part = list(ids[start : start + 500])
            marks = ", ".join("?" for _ in part)
            found.update(
                row[0]
                for row in self.query(f"SELECT id FROM quarantine WHERE id IN ({marks})", part)
            )
        return sorted(set(ids) - found)

    def last_received_at(self) -> str | None:
        """When the newest event was received (ISO 8601 UTC), or None."""
        rows = list(
            self.query('SELECT "receivedAt" FROM events WHERE id = (SELECT max(id) FROM events)')
        )
        return rows[0][0] if rows else None

    def meta(self) -> dict[str, str]:
        """Facts kept about this log: its logId, the receiver's size cap."""
        return dict(self.query("SELECT key, value FROM tbhook_meta"))

    def log_id(self) -> str | None:
        return self.meta().get("logId")

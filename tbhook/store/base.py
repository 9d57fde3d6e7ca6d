"""The store's one interface, and everything both backends share.

A backend supplies a connection and a handful of primitives (run a query, write a transaction,
append a batch, export, merge, back up); every query whose text can be the same on SQLite and
PostgreSQL is written once here, through a small ``Dialect`` for the few functions they spell
differently. That is how the two backends give the same answers: the same SQL, the same
filters, the same person resolution (``persons.py``) and case metrics (``cases.py``).

Identifiers are always double-quoted, as PostgreSQL needs for Tracebuzz's camelCase names
(``"caseId"``), so column names are identical on both. Placeholders are written ``?``; the
PostgreSQL backend turns them into ``%s``.
"""

from __future__ import annotations

import functools
import hashlib
import time
from abc import ABC, abstractmethod
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from datetime import date, timedelta
from typing import IO, Any

from tbhook.cases import CASE_COLUMNS
from tbhook.errors import ForeignDatabase, NotReady, StoreUnavailable
from tbhook.events import COLUMNS, ENUMERATED, EVENT_FIELDS, Event, Unreadable
from tbhook.filters import Filters, utc_now
from tbhook.persons import Merge, PersonGroup, Resolver, group_of, resolver_for

EVENT_COLUMNS = ("receivedAt", "lastReceivedAt", "path", "event", *COLUMNS, "body", "bodySha256")
QUARANTINE_COLUMNS = ("receivedAt", "lastReceivedAt", "path", "reason", "body", "bodySha256")
# What `merge` carries from another log: every column but the id, which this log assigns.
MERGE_EVENT_COLUMNS = (
    "receivedAt",
    "lastReceivedAt",
    "deliveries",
    "path",
    "event",
    *COLUMNS,
    "body",
    "bodySha256",
)
MERGE_QUARANTINE_COLUMNS = (
    "receivedAt",
    "lastReceivedAt",
    "deliveries",
    "path",
    "reason",
    "body",
    "bodySha256",
    "line",
)
# Everything a reader sees of an event: all but the raw body.
READ_COLUMNS = ("id", "receivedAt", "lastReceivedAt", "deliveries", "path", "event", *COLUMNS)
EXPORT_COLUMNS = EVENT_FIELDS  # the export's columns, in order
CHUNK = 5000  # merge and prune write in transactions of this many rows (about 0.1 s each)
PAUSE_SECONDS = 0.02  # between them, so a receiver waiting for the lock gets it


def q(name: str) -> str:
    """A quoted identifier: ``"caseId"``."""
    return f'"{name}"'


def names(columns: Sequence[str]) -> str:
    return ", ".join(q(c) for c in columns)


@dataclass(frozen=True)
class Dialect:
    """The few things SQLite and PostgreSQL spell differently in otherwise shared SQL."""

    name: str
    char: str  # the function from a code point to a character
    empty_blob: str
    iso_time_format: str  # {0}: a Unix-seconds column; gives ISO-8601 UTC or NULL
    epoch_of_iso: str  # {0}: an ISO-8601 text column; gives Unix seconds
    indexed_by: bool  # SQLite's INDEXED BY hints
    least: str  # the smaller of two values: min (SQLite), LEAST (PostgreSQL)
    greatest: str
    # What makes an event a duplicate, as its unique index spells it: the body's hash, on
    # SQLite behind the timestamp (the same body has the same timestamp; new keys then land
    # in the newest pages, m014).
    event_key: str = '"bodySha256"'

    def dedupe(self, table: str) -> str:
        """The upsert's conflict target for a row of ``table``."""
        return f"({self.event_key})" if table == "events" else '("bodySha256")'

    def sum_deliveries(self, table: str) -> str:
        """An upsert's SET for a body stored twice (a merge, a recovered quarantine row): the
        deliveries add up, the first and last receive times are the earliest and latest."""
        return (
            f"deliveries = {table}.deliveries + excluded.deliveries, "
            f'"receivedAt" = {self.least}({table}."receivedAt", excluded."receivedAt"), '
            f'"lastReceivedAt" = {self.greatest}({table}."lastReceivedAt", '
            'excluded."lastReceivedAt")'
        )

    def iso_time(self, column: str) -> str:
        # Out of range (before year 1 or after 9999) is NULL on both, as iso_time() says.
        return (
            f"CASE WHEN {column} BETWEEN -62135596800 AND 253402300799 "
            f"THEN {self.iso_time_format.format(column)} END"
        )

    def formula_guard(self, column: str) -> str:
        from tbhook.text import FORMULA_STARTS

        # PostgreSQL's text holds no NUL (nor does any event name: events.py refuses it).
        starts = [c for c in FORMULA_STARTS if c != "\0" or self.name == "sqlite"]
        firsts = ", ".join(f"{self.char}({ord(c)})" for c in starts)
        return (
            f"CASE WHEN substr({column}, 1, 1) IN ({firsts}) "
            f"THEN {self.char}(39) || {column} ELSE {column} END"
        )

    def hint(self, index: str) -> str:
        return f" INDEXED BY {index}" if self.indexed_by else ""


@dataclass(frozen=True)
class Delivery:
    """One body as it arrived: the raw bytes, the path, and what parsing made of it."""

    body: bytes
    parsed: Event | Unreadable
    path: str = "/"
    received_at: str = field(default_factory=utc_now)

    @functools.cached_property
    def params(self) -> tuple:
        """Its row's insert parameters (hashing the body), made once: the receiver makes them
        on the event loop's thread, so the writer thread needs the GIL only for SQLite."""
        return row_params(self.body, self.parsed, self.path, self.received_at)


@dataclass(frozen=True)
class Stored:
    """Where a delivery landed: its row id, and whether it was a retry or quarantined."""

    id: int
    deliveries: int
    quarantined: bool

    @property
    def duplicate(self) -> bool:
        return self.deliveries > 1


@dataclass(frozen=True)
class ForwardOutcome:
    """One forward attempt: delivered, pending a retry at ``next_at``, or failed for good."""

    event_id: int
    target: str
    attempts: int
    state: str
    status: int | None = None
    error: str | None = None
    next_at: float | None = None


@dataclass(frozen=True)
class Recovery:
    """What `quarantine retry` made of one quarantined delivery: moved to ``event_id`` (adding
    its deliveries to an event already stored, when ``merged``), still unreadable (``reason``),
    or not in quarantine (``missing``)."""

    quarantine_id: int
    event_id: int | None = None
    event: str | None = None
    merged: bool = False
    reason: str | None = None
    missing: bool = False


def _bytes(row: dict, *keys: str) -> dict:
    """``row`` with its blob columns as bytes (PostgreSQL gives memoryview)."""
    for key in keys:
        if row[key] is not None:
            row[key] = bytes(row[key])
    return row


@dataclass
class ImportRows:
    """Rows ready for ``Store.import_rows``, built outside the writing thread."""

    events: list[tuple] = field(default_factory=list)
    quarantine: list[tuple] = field(default_factory=list)  # each ends with its line number

    def add(self, line: int, body: bytes, parsed: Event | Unreadable, path: str, now: str) -> None:
        params = row_params(body, parsed, path, now)
        if isinstance(parsed, Event):
            self.events.append(params)
        else:
            self.quarantine.append((*params, line))


def row_params(body: bytes, parsed: Event | Unreadable, path: str, now: str) -> tuple:
    """The insert parameters of one body: an ``events`` row, or a ``quarantine`` row (in the
    order of EVENT_COLUMNS / QUARANTINE_COLUMNS; the hash last)."""
    digest = hashlib.sha256(body).digest()
    if isinstance(parsed, Event):
        values = [parsed.values.get(column) for column in COLUMNS]
        return (now, now, path, parsed.event, *values, body, digest)
    return (now, now, path, parsed.reason, body, digest)


def batch_params(deliveries: Sequence[Delivery]) -> tuple[list[tuple], list[bool]]:
    params = [d.params for d in deliveries]
    return params, [isinstance(d.parsed, Event) for d in deliveries]


def outcomes(
    params: list[tuple], readable: list[bool], found: dict[tuple[bool, bytes], tuple[int, int]]
) -> list[Stored]:
    """Where each delivery landed, given each body's row (id, deliveries after the batch).
    A body that came k times in the batch had deliveries D-k+1 .. D, in batch order."""
    seen: Counter = Counter((r, p[-1]) for p, r in zip(params, readable, strict=True))
    result = []
    for row, is_event in zip(params, readable, strict=True):
        key = (is_event, row[-1])
        row_id, count = found[key]
        result.append(Stored(row_id, count - seen[key] + 1, quarantined=not is_event))
        seen[key] -= 1
    return result


_EPOCH = date(1970, 1, 1)
# (timestamp - its remainder modulo a day) / a day: the UTC day number, also before 1970.
DAY = '(e."timestamp" - (e."timestamp" % 86400 + 86400) % 86400) / 86400'


def day_name(days: int | None) -> str | None:
    """Days since 1970-01-01 as an ISO date, or None when out of range."""
    if days is None:
        return None
    try:
        return (_EPOCH + timedelta(days=days)).isoformat()
    except OverflowError:
        return None


def stats_groups(groups: Counter) -> Iterator[dict]:
    """``Store.stats_counter`` results as rows with an ISO date per day."""
    for (event, own, type_id, source, days), n in groups.items():
        yield {
            "event": event,
            "own": own,
            "typeId": type_id,
            "sourceId": source,
            "day": day_name(days),
            "n": n,
        }


_ORDERS = {
    "time": 'e."timestamp" {0}, e.id {0}',  # what happened when, as Tracebuzz stamped it
    "arrival": "e.id {0}",  # what we received when: a cursor for tail
}


def not_tbhooks(path: str, found: list[str], advice: str) -> ForeignDatabase:
    """The refusal of a database that holds someone else's tables (the first few named)."""
    shown = ", ".join(found[:5]) + (", ..." if len(found) > 5 else "")
    return ForeignDatabase(f"{path} is not a tbhook database (it holds {shown}); {advice}")


class Store(ABC):
    """A tbhook database, opened for writing (one writer) or read-only.

    The methods below are the whole interface the receiver, the writer, the read commands and
    the operations commands use; ``open_store``/``open_reader`` pick the backend.
    """

    dialect: Dialect
    path: str  # what to show the user: the file, or the URL without its password
    target: str  # what to open it again with: the file, or the whole URL
    max_bytes: int | None = None
    can_split = False  # whether big reads may be split over two processes (SQLite)

    # -- primitives ---------------------------------------------------------------------

    @abstractmethod
    def query(self, sql: str, params: Sequence = ()) -> Iterator[tuple]:
        """Rows as tuples, streamed (``?`` placeholders)."""

    @abstractmethod
    def query_dicts(self, sql: str, params: Sequence = ()) -> Iterator[dict]:
        """Rows as dicts keyed by column name, streamed."""

    @abstractmethod
    def writing(self) -> AbstractContextManager[Any]:
        """One durable write transaction; yields an object with ``execute(sql, params)`` and
        ``executemany(sql, rows)``. Failures become StoreBusy or StoreUnavailable."""

    @abstractmethod
    def close(self) -> None: ...

    def one(self, sql: str, params: Sequence = ()) -> tuple:
        return next(iter(self.query(sql, params)))

    # -- writing ------------------------------------------------------------------------

    def append(self, deliveries: Sequence[Delivery], forward_to: str | None = None) -> list[Stored]:
        """Store a batch of deliveries in one durable transaction (group commit); with
        ``forward_to``, queue each new event for forwarding in the same transaction."""
        return self.append_rows(*batch_params(deliveries), forward_to)

    @abstractmethod
    def append_rows(
        self, params: list[tuple], readable: list[bool], forward_to: str | None = None
    ) -> list[Stored]:
        """``append`` of prepared rows (``Delivery.params``, and whether each is an event)."""

    @abstractmethod
    def import_rows(self, rows: ImportRows) -> tuple[int, list[int]]:
        """Insert prepared rows in one transaction, leaving already-stored bodies alone; how
        many events were new, and the lines of the bodies newly quarantined."""

    def set_busy_timeout(self, milliseconds: int) -> None:  # noqa: B027 - SQLite's only
        """How long a write waits for another writer's lock before failing busy."""

    def checkpoint_every(self, pages: int) -> AbstractContextManager[None]:
        """For a bulk load: checkpoint the log less often (SQLite); nothing elsewhere."""
        import contextlib

        return contextlib.nullcontext()

    def checkpoint_in_background(self) -> Callable[[], None]:
        """For the receiver's writer: move log maintenance off the commit path (SQLite's WAL
        checkpoints); returns a function that stops it. Nothing to do elsewhere."""
        return lambda: None

    def commit_check(self) -> str | None:
        """Why a delivery could not be committed now, or None when one can: a real commit
        (of the time of this check, in ``tbhook_meta``; no event, no delivery counted), after
        ``room_check``. The receiver's /healthz and `doctor` both ask this, so both give the
        same reason in the same words as the 503 a delivery would get."""
        reason = self.room_check()
        if reason:
            return reason
        try:
            with self.writing() as conn:
                conn.execute(
                    "INSERT INTO tbhook_meta (key, value) VALUES ('lastCommitCheck', ?) "
                    "ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                    [utc_now()],
                )
        except StoreUnavailable as exc:
            return str(exc)
        return None

    def room_check(self) -> str | None:
        """Why the next delivery would not fit (SQLite's --max-db-size cap), or None."""
        return None

    def record_size_cap(self) -> None:  # noqa: B027 - SQLite's only
        """Note the receiver's --max-db-size in the database, for `doctor` to read."""

    def queue_forwards(self, conn: Any, stored: list[Stored], target: str) -> None:
        """Queue new events for forwarding, inside the batch's transaction."""
        new = [(s.id, target, time.time()) for s in stored if not s.quarantined and not s.duplicate]
        if new:
            conn.executemany(
                self.insert_ignore(
                    "forwards",
                    ("eventId", "target", "state", "nextAttemptAt"),
                    "?, ?, 'pending', ?",
                ),
                new,
            )

    def insert_ignore(self, table: str, columns: Sequence[str], values: str) -> str:
        return f"INSERT INTO {table} ({names(columns)}) VALUES ({values}) ON CONFLICT DO NOTHING"

    # -- reading ------------------------------------------------------------------------

    def counts(self) -> tuple[int, int]:
        """Events and quarantined deliveries."""
        return self.count(), self.count("quarantine")

    def durability_warning(self) -> str | None:
        """Why a 200 might not survive a crash with this database's settings, if it might."""
        return None

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
        sql = f"SELECT 1 {self._merges_by('oldPersonId')} IS NOT NULL "
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
        order = _ORDERS[order_by].format("DESC" if descending else "ASC")
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
        return None if row is None else _bytes(row, "body", "bodySha256")

    def count_cases(self, filters: Filters) -> int:
        """How many cases have a matching event."""
        where, params = self.where(filters)
        return self.one(
            f'SELECT count(DISTINCT e."caseId") FROM events e WHERE e."caseId" IS NOT NULL '
            f"AND {where}",
            params,
        )[0]

    def case_events(
        self, filters: Filters, *, descending: bool = False, limit: int | None = None
    ) -> Iterator[tuple]:
        """Every event of every case that has a matching event, as rows of ``CASE_COLUMNS``
        (what the metrics need), by caseId then time; with ``limit``, of the first ``limit``
        such cases only (found first, through the caseId index, so the first page of a big
        log is quick)."""
        where, params = self.where(filters)
        columns = ", ".join(f"e.{q(c)}" for c in CASE_COLUMNS)
        direction = "DESC" if descending else "ASC"
        if filters == Filters():
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

    def stats_counter(self, filters: Filters) -> Counter:
        """How many matching events share each (event, own, typeId, sourceId, UTC day)."""
        where, params = self.where(filters)
        sql = f'SELECT e.event, e.own, e."typeId", e."sourceId", {DAY} FROM events e WHERE {where}'
        return Counter(self.query(sql, params))

    # -- quarantine -----------------------------------------------------------------------

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
        return (_bytes(row, "bodyStart") for row in self.query_dicts(sql))

    def quarantine_row(self, quarantine_id: int) -> dict | None:
        """One quarantined delivery in full, raw body included."""
        rows = self.query_dicts(
            'SELECT id, "receivedAt", "lastReceivedAt", deliveries, path, reason, line, body, '
            '"bodySha256" FROM quarantine WHERE id = ?',
            [quarantine_id],
        )
        row = next(iter(rows), None)
        return None if row is None else _bytes(row, "body", "bodySha256")

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

    def drop_quarantined(self, ids: Sequence[int]) -> int:
        """Delete these quarantined deliveries (a person's decision); how many went."""
        dropped = 0
        with self.writing() as conn:
            for start in range(0, len(ids), 500):
                part = list(ids[start : start + 500])
                marks = ", ".join("?" for _ in part)
                dropped += conn.execute(
                    f"DELETE FROM quarantine WHERE id IN ({marks})", part
                ).rowcount
        return dropped

    def quarantined_since(self, since: str | None) -> list[dict]:
        """Quarantined deliveries (new or delivered again) whose last delivery was at or after
        ``since`` (a receivedAt), oldest first: what `tail --quarantine` follows."""
        return list(
            self.query_dicts(
                'SELECT id, "receivedAt", "lastReceivedAt", deliveries, path, reason, '
                'length(body) AS "bodySize" FROM quarantine WHERE "lastReceivedAt" >= ? '
                'ORDER BY "lastReceivedAt", id',
                [since or ""],
            )
        )

    def redelivered_since(self, filters: Filters, since: str | None) -> list[dict]:
        """Matching events delivered more than once whose last delivery was at or after
        ``since``, oldest first: what `tail --retries` follows (a partial index holds only
        redelivered events, so this stays cheap in a big log)."""
        where, params = self.where(filters)
        columns = ", ".join(f"e.{q(c)}" for c in READ_COLUMNS)
        return list(
            self.query_dicts(
                f'SELECT {columns} FROM events e WHERE e.deliveries > 1 AND e."lastReceivedAt" '
                f'>= ? AND {where} ORDER BY e."lastReceivedAt", e.id',
                [since or "", *params],
            )
        )

    def last_redelivery(self) -> str | None:
        """The latest time a stored body (event or quarantined) was delivered again or
        quarantined: where `tail --retries/--quarantine` starts following."""
        return self.one(
            'SELECT max(t) FROM (SELECT max("lastReceivedAt") AS t FROM events '
            'WHERE deliveries > 1 UNION ALL SELECT max("lastReceivedAt") FROM quarantine) m'
        )[0]

    def recover_quarantined(
        self,
        ids: Sequence[int] | None,
        parse: Callable[[bytes], Event | Unreadable],
        chunk: int = 500,
    ) -> Iterator[Recovery]:
        """Parse quarantined bodies again (``ids``, or all) and move each one that is now
        readable into ``events``, with the receive times and deliveries it came in with, in
        one transaction per chunk (the quarantine row goes only as its event row comes). A
        body already among the events adds its deliveries there. Idempotent: a moved row is
        gone from quarantine; a row delivered again meanwhile waits for the next run."""
        wanted = sorted(set(ids)) if ids is not None else None
        after = 0
        columns = 'id, "receivedAt", "lastReceivedAt", deliveries, path, body, "bodySha256"'
        insert = (
            f"INSERT INTO events ({names((*EVENT_COLUMNS, 'deliveries'))}) VALUES "
            f"({', '.join('?' for _ in range(len(EVENT_COLUMNS) + 1))}) "
            f"ON CONFLICT {self.dialect.dedupe('events')} "
            f"DO UPDATE SET {self.dialect.sum_deliveries('events')}"
        )
        while True:
            if wanted is None:
                rows = list(
                    self.query_dicts(
                        f"SELECT {columns} FROM quarantine WHERE id > ? ORDER BY id LIMIT ?",
                        [after, chunk],
                    )
                )
                if not rows:
                    return
                after = rows[-1]["id"]
            else:
                part, wanted = wanted[:chunk], wanted[chunk:]
                if not part:
                    return
                marks = ", ".join("?" for _ in part)
                rows = list(
                    self.query_dicts(
                        f"SELECT {columns} FROM quarantine WHERE id IN ({marks}) ORDER BY id", part
                    )
                )
                found = {row["id"] for row in rows}
                yield from (Recovery(i, missing=True) for i in part if i not in found)
            parsed = [(row, parse(bytes(row["body"]))) for row in rows]
            done = []
            with self.writing() as conn:
                for row, result in parsed:
                    if not isinstance(result, Event):
                        done.append(Recovery(row["id"], reason=result.reason))
                        continue
                    gone = conn.execute(
                        "DELETE FROM quarantine WHERE id = ? AND deliveries = ? AND "
                        '"lastReceivedAt" = ?',
                        [row["id"], row["deliveries"], row["lastReceivedAt"]],
                    ).rowcount
                    if gone != 1:  # delivered again (or moved) since it was read: next run
                        done.append(Recovery(row["id"], reason="delivered again meanwhile"))
                        continue
                    values = [result.values.get(column) for column in COLUMNS]
                    digest = bytes(row["bodySha256"])
                    conn.execute(
                        insert,
                        [
                            row["receivedAt"],
                            row["lastReceivedAt"],
                            row["path"],
                            result.event,
                            *values,
                            bytes(row["body"]),
                            digest,
                            row["deliveries"],
                        ],
                    )
                    event_id, deliveries = conn.execute(
                        'SELECT id, deliveries FROM events WHERE "bodySha256" = ? '
                        "AND coalesce(timestamp, 0) = coalesce(?, 0)",
                        [digest, result.values.get("timestamp")],
                    ).fetchone()
                    done.append(
                        Recovery(
                            row["id"],
                            event_id=event_id,
                            event=result.event,
                            merged=deliveries > row["deliveries"],
                        )
                    )
            yield from done
            time.sleep(PAUSE_SECONDS)  # let a waiting receiver take the lock

    # -- persons --------------------------------------------------------------------------

    def merges_touching(self, person_ids: set[int]) -> list[Merge]:
        """The merges that name any of ``person_ids`` on either side."""
        ids = sorted(person_ids)
        found: list[Merge] = []
        # A UNION, not an OR, so each side uses its own partial index.
        columns = 'SELECT "timestamp", id, "oldPersonId", "newPersonId"'
        for start in range(0, len(ids), 5000):  # within SQLite's limit on parameters
            part = ids[start : start + 5000]
            marks = ", ".join("?" for _ in part)
            sql = (
                f"{columns} {self._merges_by('oldPersonId')} IN ({marks}) "
                f"UNION {columns} {self._merges_by('newPersonId')} IN ({marks})"
            )
            found += [Merge(*row) for row in self.query(sql, [*part, *part])]
        return list({merge.id: merge for merge in found}.values())

    def _merges_by(self, side: str) -> str:
        hint = self.dialect.hint(f"events_merge_{side}")
        return f"FROM events{hint} WHERE event = 'profileMerged' AND {q(side)}"

    def person_group(self, person_id: int) -> PersonGroup:
        return group_of(person_id, self.merges_touching)

    def canonical_lookup(self) -> Callable[[int | None], int | None]:
        """Canonical IDs looked up person by person (cached): fast for a few rows."""

        @functools.lru_cache(maxsize=4096)
        def canonical(person_id: int | None) -> int | None:
            return None if person_id is None else self.person_group(person_id).canonicalPersonId

        return canonical

    def canonical_for(self, person_ids: Iterable[int | None]) -> Callable[[Any], Any]:
        """Canonical IDs for a page of rows: the groups of just these persons, walked together."""
        return resolver_for(
            {p for p in person_ids if p is not None}, self.merges_touching
        ).canonical

    def resolver(self) -> Resolver:
        """Canonical IDs for everyone, from all merges."""
        return Resolver(
            Merge(*row)
            for row in self.query(
                'SELECT "timestamp", id, "oldPersonId", "newPersonId" FROM events '
                "WHERE event = 'profileMerged'"
            )
        )

    def where(self, filters: Filters) -> tuple[str, list]:
        """The filters as a WHERE clause over ``events e``, and its parameters."""
        clauses: list[str] = ["TRUE"]
        params: list = []
        if filters.events:
            clauses.append(f"e.event IN ({', '.join('?' for _ in filters.events)})")
            params.extend(filters.events)
        for clause, value in (
            ('e."caseId" = ?', filters.case),
            ('e."searchId" = ?', filters.search_id),
            ('e."sourceId" = ?', filters.source),
            ("e.own = ?", filters.sender),
            ('e."timestamp" >= ?', filters.since),
            ('e."timestamp" < ?', filters.until),  # until is exclusive
            ("e.path = ?", filters.path),
            ("e.id >= ?", filters.first_id),
            ("e.id <= ?", filters.last_id),
        ):
            if value is not None:
                clauses.append(clause)
                params.append(value)
        if filters.person is not None:
            aliases = self.person_group(filters.person).aliases
            marks = ", ".join("?" for _ in aliases)
            clauses.append(
                f'e.id IN (SELECT id FROM events WHERE "personId" IN ({marks}) '
                f"UNION SELECT id {self._merges_by('oldPersonId')} IN ({marks}) "
                f"UNION SELECT id {self._merges_by('newPersonId')} IN ({marks}))"
            )
            params.extend(aliases * 3)
        return " AND ".join(clauses), params

    # -- tail ---------------------------------------------------------------------------------

    def tail_begin(self, filters: Filters, lines: int | None) -> tuple[Iterable[dict], Any]:
        """The last ``lines`` matching events in arrival order (0: all of them, streamed;
        None: none), and a cursor for ``tail_more``. With one writer at a time (SQLite), ids
        commit in order: the highest id is the cursor."""
        cursor = self.max_id()
        if lines is None:
            return [], cursor
        after = 0
        if lines:  # streamed from the lines-th matching event from the end
            where, params = self.where(filters)
            found = list(
                self.query(
                    f"SELECT e.id FROM events e WHERE e.id <= ? AND {where} "
                    f"ORDER BY e.id DESC LIMIT 1 OFFSET {int(lines) - 1}",
                    [cursor, *params],
                )
            )
            after = found[0][0] - 1 if found else 0
        return self.events(filters, order_by="arrival", after_id=after, upto_id=cursor), cursor

    def tail_more(self, filters: Filters, cursor: Any) -> tuple[list[dict], Any]:
        """Matching events committed since ``cursor``, and the next cursor."""
        newest = self.max_id()
        if newest <= cursor:
            return [], cursor
        rows = self.events(filters, order_by="arrival", after_id=cursor, upto_id=newest)
        return list(rows), newest

    def tail_wait(self, seconds: float) -> None:
        """Wait for new events, or ``seconds``."""
        time.sleep(seconds)

    # -- export ---------------------------------------------------------------------------

    @abstractmethod
    def export(
        self, filters: Filters, fmt: str, stream: IO[str], progress: Callable[[int], None] | None
    ) -> int:
        """Write every matching event in arrival order as CSV rows (no header) or NDJSON lines;
        return how many. canonicalPersonId and the formula guard are finished in SQL."""

    def export_select(self, filters: Filters, fmt: str) -> tuple[str, list]:
        """The export's SELECT: each row already a finished CSV record's values (the event
        name guarded against spreadsheet formulas), or one NDJSON line of text. Joins a
        temporary table ``canon`` of merged persons (the backend fills it)."""
        expressions = self._export_expressions()
        where, params = self.where(filters)
        if fmt == "csv":
            columns = ", ".join(
                self.dialect.formula_guard("e.event") if name == "event" else sql
                for name, sql in expressions.items()
            )
        else:
            columns = self._json_line(expressions)
        return (
            f"SELECT {columns} FROM events e LEFT JOIN canon "
            'ON canon.person = coalesce(e."personId", e."newPersonId") '
            f"WHERE {where} ORDER BY e.id",
            params,
        )

    def _export_expressions(self) -> dict[str, str]:
        expressions = {name: f"e.{q(name)}" for name in EXPORT_COLUMNS}
        expressions["time"] = self.dialect.iso_time('e."timestamp"')
        expressions["canonicalPersonId"] = 'coalesce(canon.now, e."personId", e."newPersonId")'
        return expressions

    @abstractmethod
    def _json_line(self, expressions: dict[str, str]) -> str:
        """One SQL expression: the NDJSON line of an event, as compact JSON."""

    # -- health and operations ------------------------------------------------------------

    def health(self, lag_seconds: int) -> dict:
        """Counts for a health report, in one scan of the events table."""
        # Only what a receiver received (its path is a URL path): an imported event's
        # receivedAt is when it was imported, not a late delivery.
        lag = (
            f"(CASE WHEN substr(path, 1, 1) = '/' THEN "
            f'{self.dialect.epoch_of_iso.format(q("receivedAt"))} - "timestamp" END)'
        )
        row = self.one(
            "SELECT count(*), coalesce(sum(CASE WHEN deliveries > 1 THEN 1 ELSE 0 END), 0), "
            "coalesce(sum(deliveries - 1), 0), "
            f"coalesce(sum(CASE WHEN {lag} > ? THEN 1 ELSE 0 END), 0), max({lag}), "
            'max("lastReceivedAt") FROM events',
            [lag_seconds],
        )
        # Sorted here, by code point: the engines' collations need not agree.
        by_event = dict(sorted(self.query("SELECT event, count(*) FROM events GROUP BY event")))
        return {
            "events": row[0],
            "byEvent": by_event,
            "retriedEvents": int(row[1]),
            "extraDeliveries": int(row[2]),
            "lateDeliveries": int(row[3]),
            "maxLagSeconds": None if row[4] is None else round(row[4]),
            "lastReceivedAt": row[5],
            "quarantined": self.count("quarantine"),
            "testDeliveries": self.test_deliveries(),
        }

    def test_deliveries(self) -> int:
        """Quarantined bodies that are Tracebuzz's test of the URL when a webhook is saved."""
        from tbhook.events import is_test_delivery

        return sum(
            is_test_delivery(bytes(body))
            for (body,) in self.query("SELECT body FROM quarantine WHERE length(body) <= 64")
        )

    def unknown_values(self) -> list[tuple[str, int, int]]:
        """(field, value, events) for each typeId or own value the spec does not list."""
        found = []
        for key, known in ENUMERATED.items():
            listed = ", ".join(str(value) for value in known)
            found += [
                (key, value, n)
                for value, n in self.query(
                    f"SELECT {q(key)}, count(*) FROM events WHERE event = 'newResult' "
                    f"AND {q(key)} NOT IN ({listed}) GROUP BY {q(key)} ORDER BY {q(key)}"
                )
            ]
        return found

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

    def prune_plan(self, before: int) -> tuple[list[int], int]:
        """Ids of events whose timestamp is before ``before`` that can go, and how many old
        merges must stay because a remaining event's person resolves through them."""
        old = [
            row[0]
            for row in self.query(
                "SELECT id FROM events WHERE \"timestamp\" < ? AND event != 'profileMerged'",
                [before],
            )
        ]
        resolver = self.resolver()
        remaining = {
            resolver.root(row[0])
            for row in self.query(
                'SELECT "personId" FROM events WHERE "timestamp" >= ? OR "timestamp" IS NULL '
                "UNION SELECT \"oldPersonId\" FROM events WHERE event = 'profileMerged' "
                'AND "timestamp" >= ? UNION SELECT "newPersonId" FROM events '
                "WHERE event = 'profileMerged' AND \"timestamp\" >= ?",
                [before, before, before],
            )
            if row[0] is not None
        }
        kept = 0
        for merge_id, old_person in self.query(
            "SELECT id, \"oldPersonId\" FROM events WHERE event = 'profileMerged' "
            'AND "timestamp" < ?',
            [before],
        ):
            if resolver.root(old_person) in remaining:
                kept += 1
            else:
                old.append(merge_id)
        return sorted(old), kept

    def archive_bodies(self, ids: Sequence[int]) -> Iterator[bytes]:
        """The raw bodies of ``ids`` in arrival order, for a prune archive."""
        for start in range(0, len(ids), 500):
            part = list(ids[start : start + 500])
            marks = ", ".join("?" for _ in part)
            for (body,) in self.query(
                f"SELECT body FROM events WHERE id IN ({marks}) ORDER BY id", part
            ):
                yield bytes(body)

    def delete_events(
        self, ids: Sequence[int], progress: Callable[[int], None] | None = None, chunk: int = CHUNK
    ) -> None:
        """Delete events (and their forward records) in short transactions of ``chunk`` ids,
        so a receiver writing to this database gets the lock between them."""
        for start in range(0, len(ids), chunk):
            part = list(ids[start : start + chunk])
            with self.writing() as conn:
                for piece in range(0, len(part), 500):
                    some = part[piece : piece + 500]
                    marks = ", ".join("?" for _ in some)
                    conn.execute(f'DELETE FROM forwards WHERE "eventId" IN ({marks})', some)
                    conn.execute(f"DELETE FROM events WHERE id IN ({marks})", some)
            if progress:
                progress(len(part))
            time.sleep(PAUSE_SECONDS)

    @abstractmethod
    def merge_from(
        self, other: str, progress: Callable[[int], None] | None = None, chunk: int = CHUNK
    ) -> dict[str, int]:
        """Fold another tbhook log (a SQLite file) into this one, in its arrival order, in
        short transactions; idempotent (see ``merged_logs``)."""

    def refuse_merging_back(self, other: str, merged_at: str | None) -> None:
        """Refuse to merge a log that this log was merged into (``merged_at``: when): its
        copies of this log's events would add their deliveries here a second time."""
        if merged_at is not None:
            raise NotReady(
                f"{other} already holds this log's events (this log was merged into it at "
                f"{merged_at}); merging it back would count their deliveries twice. Merge in "
                "one direction only: the log you keep takes the others"
            )

    def merged_upto(self, log_id: str) -> tuple[int, int]:
        row = next(
            iter(
                self.query(
                    'SELECT "lastEventId", "lastQuarantineId" FROM merged_logs WHERE "logId" = ?',
                    [log_id],
                )
            ),
            None,
        )
        return (row[0], row[1]) if row else (0, 0)

    def record_merged(self, conn: Any, log_id: str, table: str, upto: int, source: str) -> None:
        """Inside a merge chunk's transaction: the other log is merged up to its row ``upto``."""
        cursor = "lastEventId" if table == "events" else "lastQuarantineId"
        conn.execute(
            'INSERT INTO merged_logs ("logId", "lastEventId", "lastQuarantineId", source, '
            '"mergedAt") VALUES (?, 0, 0, ?, ?) ON CONFLICT ("logId") DO UPDATE SET '
            'source = excluded.source, "mergedAt" = excluded."mergedAt"',
            [log_id, source, utc_now()],
        )
        conn.execute(f'UPDATE merged_logs SET {q(cursor)} = ? WHERE "logId" = ?', [upto, log_id])

    # -- forwarding -------------------------------------------------------------------------

    def due_forwards(self, now: float, limit: int = 100) -> list[dict]:
        """Pending forwards whose next attempt is due, oldest due first, with their bodies."""
        return [
            {**row, "body": bytes(row["body"])}
            for row in self.query_dicts(
                'SELECT f."eventId", f.attempts, e.body FROM forwards f '
                'JOIN events e ON e.id = f."eventId" '
                "WHERE f.state = 'pending' AND f.\"nextAttemptAt\" <= ? "
                'ORDER BY f."nextAttemptAt", f."eventId" LIMIT ?',
                [now, limit],
            )
        ]

    def pending_forwards(self) -> int:
        """Forwards still to be delivered (the forward queue's length)."""
        return self.one("SELECT count(*) FROM forwards WHERE state = 'pending'")[0]

    def next_forward_at(self) -> float | None:
        """When the next pending forward is due, or None when nothing is pending."""
        return self.one("SELECT min(\"nextAttemptAt\") FROM forwards WHERE state = 'pending'")[0]

    def record_forward(self, outcome: ForwardOutcome) -> None:
        """Store the result of one forward attempt."""
        with self.writing() as conn:
            conn.execute(
                'UPDATE forwards SET target = ?, attempts = ?, state = ?, "lastStatus" = ?, '
                '"lastError" = ?, "lastAttemptAt" = ?, "nextAttemptAt" = ? WHERE "eventId" = ?',
                (
                    outcome.target,
                    outcome.attempts,
                    outcome.state,
                    outcome.status,
                    outcome.error,
                    utc_now(),
                    outcome.next_at,
                    outcome.event_id,
                ),
            )

    # -- facts for doctor -------------------------------------------------------------------

    @abstractmethod
    def integrity(self, quick: bool = False) -> list[str]:
        """``["ok"]`` when the database is sound, else what is wrong."""

    @abstractmethod
    def backup(self, dest: str) -> None:
        """A consistent copy at ``dest`` (which must not exist), or why there cannot be one."""

    @abstractmethod
    def schema(self) -> tuple[list[str], list[str]]:
        """Applied and pending migration names."""

    @abstractmethod
    def server_facts(self) -> dict[str, Any]:
        """What the backend adds to `doctor`: file and WAL sizes, or the server's version,
        size and synchronous_commit."""

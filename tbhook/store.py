"""EventStore: the only module that speaks SQL to the tbhook database."""

from __future__ import annotations

import contextlib
import functools
import hashlib
import os
import sqlite3
import time
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import date, timedelta
from pathlib import Path
from urllib.parse import quote

from sqlite_utils import Database

from tbhook.errors import NoDatabase, NotReady, StoreBusy, StoreUnavailable, damaged, human_size
from tbhook.events import COLUMNS, Event, Unreadable
from tbhook.filters import Filters, utc_now
from tbhook.migrations import READERS_DO_NOT_NEED, migrations
from tbhook.persons import Merge, PersonGroup, Resolver, group_of
from tbhook.store_ops import Operations
from tbhook.text import sql_formula_guard

BUSY_TIMEOUT_MS = 5000
WAL_SIZE_LIMIT = 64 * 1024 * 1024
CACHE_KIB = 64 * 1024

_EVENT_COLUMNS = ("receivedAt", "lastReceivedAt", "path", "event", *COLUMNS, "body", "bodySha256")
_QUARANTINE_COLUMNS = ("receivedAt", "lastReceivedAt", "path", "reason", "body", "bodySha256")


def _upsert_sql(table: str, columns: Sequence[str]) -> str:
    names = ", ".join(f'"{c}"' for c in columns)
    marks = ", ".join("?" for _ in columns)
    # The unique body hash makes a retry an update of the first row, atomically:
    # no check-then-insert race, whatever the batch holds.
    return (
        f"INSERT INTO {table} ({names}) VALUES ({marks}) "
        "ON CONFLICT(bodySha256) DO UPDATE SET deliveries = deliveries + 1, "
        "lastReceivedAt = excluded.lastReceivedAt"
    )


# Everything a reader sees of an event: all but the raw body.
_READ_COLUMNS = ", ".join(
    f'"{c}"'
    for c in ("id", "receivedAt", "lastReceivedAt", "deliveries", "path", "event", *COLUMNS)
)
_ORDERS = {
    "time": "timestamp {0}, id {0}",  # what happened when, as Tracebuzz stamped it
    "arrival": "id {0}",  # what we received when: a cursor for tail
}
# The export's columns as SQL expressions, in EXPORT order (see output.EVENT_FIELDS).
_EXPORT = {
    "id": "id",
    "receivedAt": "receivedAt",
    "event": "event",
    "timestamp": "timestamp",
    "time": "strftime('%Y-%m-%dT%H:%M:%SZ', timestamp, 'unixepoch')",
    **{c: f'"{c}"' for c in COLUMNS[1:]},
    "canonicalPersonId": "coalesce(canon.now, personId, newPersonId)",
    "deliveries": "deliveries",
}
# The event name is the one column a sender's text reaches: a spreadsheet must not run it.
_CSV_EVENT = sql_formula_guard("event")
_CSV_COLUMNS = ", ".join(_CSV_EVENT if name == "event" else sql for name, sql in _EXPORT.items())
_JSON_LINE = "json_object(" + ", ".join(f"'{name}', {sql}" for name, sql in _EXPORT.items()) + ")"
_MERGES = "SELECT timestamp, id, oldPersonId, newPersonId FROM events WHERE event = 'profileMerged'"
# The partial merge indexes, named, so the planner never scans every merge instead.
_MERGES_BY = {
    side: f"FROM events INDEXED BY events_merge_{side} WHERE event = 'profileMerged' AND {side}"
    for side in ("oldPersonId", "newPersonId")
}


def _insert_sql(table: str, columns: Sequence[str]) -> str:
    names = ", ".join(f'"{c}"' for c in columns)
    return f"INSERT OR IGNORE INTO {table} ({names}) VALUES ({', '.join('?' for _ in columns)})"


_INSERT_EVENT = _upsert_sql("events", _EVENT_COLUMNS)
# How a batch goes in. Each statement costs the writer thread the GIL at every SQLite step, so
# small rows go in many to a statement. But a cached statement keeps its last bound values
# alive: so only small bodies go in multi-row statements, of a few fixed sizes (at most about
# 1 MiB held in all), and a large body goes in alone (at most one held).
_SMALL_BODY = 1024
_ROW_COUNTS = (512, 128, 32, 8, 2, 1)


def _upsert(conn: sqlite3.Connection, table: str, rows: list[tuple]) -> None:
    large = [row for row in rows if len(row[-2]) > _SMALL_BODY]
    if large:
        conn.executemany(_upsert_rows(table, 1), large)
    small = [row for row in rows if len(row[-2]) <= _SMALL_BODY]
    start = 0
    for count in _ROW_COUNTS:
        while len(small) - start >= count:
            part = small[start : start + count]
            conn.execute(_upsert_rows(table, count), [v for row in part for v in row])
            start += count


@functools.lru_cache(maxsize=16)
def _upsert_rows(table: str, count: int) -> str:
    """One INSERT of ``count`` rows: a body already stored (or twice in the batch) counts one
    more delivery on the first row, atomically."""
    columns = _EVENT_COLUMNS if table == "events" else _QUARANTINE_COLUMNS
    names = ", ".join(f'"{c}"' for c in columns)
    row = "(" + ", ".join("?" for _ in columns) + ")"
    return (
        f"INSERT INTO {table} ({names}) VALUES {', '.join([row] * count)} "
        "ON CONFLICT(bodySha256) DO UPDATE SET deliveries = deliveries + 1, "
        "lastReceivedAt = excluded.lastReceivedAt"
    )


# Ids of a batch's rows are looked up in pieces of this many hashes (SQLite allows 32,766
# bound values in one statement).
_LOOKUP_ROWS = 1000


@functools.lru_cache(maxsize=64)
def _lookup(table: str, count: int) -> str:
    marks = ", ".join("?" for _ in range(count))
    return f"SELECT id, deliveries, bodySha256 FROM {table} WHERE bodySha256 IN ({marks})"


def _outcomes(
    params: list[tuple], readable: list[bool], found: dict[tuple[bool, bytes], tuple[int, int]]
) -> list[Stored]:
    """Where each delivery landed. A body that came k times in this batch has its row's count
    after the batch, D; its k deliveries were numbers D-k+1 .. D, in batch order."""
    seen: Counter = Counter((r, p[-1]) for p, r in zip(params, readable, strict=True))
    outcomes = []
    for row, is_event in zip(params, readable, strict=True):
        key = (is_event, row[-1])
        row_id, count = found[key]
        outcomes.append(Stored(row_id, count - seen[key] + 1, quarantined=not is_event))
        seen[key] -= 1
    return outcomes


# Imports keep what is already stored as it is: re-importing is not another delivery.
_IMPORT_EVENT = _insert_sql("events", _EVENT_COLUMNS)
_IMPORT_QUARANTINE = _insert_sql("quarantine", (*_QUARANTINE_COLUMNS, "line"))
_INSERT_QUARANTINE = _upsert_sql("quarantine", _QUARANTINE_COLUMNS)


def _day(days: int | None) -> str | None:
    """Days since 1970-01-01 as an ISO date, or None when out of range."""
    if days is None:
        return None
    try:
        return (_EPOCH + timedelta(days=days)).isoformat()
    except OverflowError:
        return None


_EPOCH = date(1970, 1, 1)


@dataclass(frozen=True)
class Delivery:
    """One body as it arrived: the raw bytes, the path, and what parsing made of it."""

    body: bytes
    parsed: Event | Unreadable
    path: str = "/"
    received_at: str = field(default_factory=utc_now)


@dataclass(frozen=True)
class Stored:
    """Where a delivery landed: its row id, and whether it was a retry or quarantined."""

    id: int
    deliveries: int
    quarantined: bool

    @property
    def duplicate(self) -> bool:
        return self.deliveries > 1


@dataclass
class ImportRows:
    """Rows ready for ``EventStore.import_rows``, built outside the writing thread."""

    events: list[tuple] = field(default_factory=list)
    quarantine: list[tuple] = field(default_factory=list)  # each ends with its line number

    def add(self, line: int, body: bytes, parsed: Event | Unreadable, path: str, now: str) -> None:
        params = _params(body, parsed, path, now)
        if isinstance(parsed, Event):
            self.events.append(params)
        else:
            self.quarantine.append((*params, line))


def _params(body: bytes, parsed: Event | Unreadable, path: str, now: str) -> tuple:
    """The insert parameters of one body: an ``events`` row, or a ``quarantine`` row."""
    digest = hashlib.sha256(body).digest()
    if isinstance(parsed, Event):
        values = [parsed.values.get(column) for column in COLUMNS]
        return (now, now, path, parsed.event, *values, body, digest)
    return (now, now, path, parsed.reason, body, digest)


class EventStore(Operations):
    """A tbhook database: one writer connection, or a read-only one."""

    def __init__(self, conn: sqlite3.Connection, path: str):
        # No sqlite-utils plugins: nothing here uses them, and loading them costs every command.
        self.db = Database(conn, execute_plugins=False)
        self.path = path
        self.max_bytes: int | None = None

    @classmethod
    def open(cls, path: str | os.PathLike, max_bytes: int | None = None) -> EventStore:
        """Open (creating with mode 0600) a database for writing, migrate it, prove it writable.

        ``max_bytes`` caps the database file: past it, commits fail as on a full disk.
        """
        path = os.fspath(path)
        store = None
        try:
            os.close(os.open(path, os.O_RDONLY | os.O_CREAT, 0o600))
            conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
            store = cls(conn, path)
            store._refuse_foreign()
            store._configure_writer()
            if max_bytes:
                page_size = conn.execute("PRAGMA page_size").fetchone()[0]
                conn.execute(f"PRAGMA max_page_count = {max(1, max_bytes // page_size)}")
                store.max_bytes = max_bytes
        except OSError as exc:
            raise StoreUnavailable(f"cannot open {path} for writing: {exc.strerror}") from exc
        except sqlite3.Error as exc:
            if store:
                store.close()
            if type(exc) is sqlite3.DatabaseError:  # corrupt, or not a database at all
                raise StoreUnavailable(damaged(path, exc)) from exc
            raise StoreUnavailable(f"cannot open {path} for writing: {exc}") from exc
        except NotReady:
            store.close()  # type: ignore[union-attr]
            raise
        return store

    def _refuse_foreign(self) -> None:
        """A database that holds tables but not tbhook's is someone else's: never add to it."""
        if migrations.applied(self.db):
            return
        names = [
            name
            for (name,) in self.db.execute(
                "SELECT name FROM sqlite_master WHERE name NOT LIKE 'sqlite_%' ORDER BY name"
            )
        ]
        if names:
            shown = ", ".join(names[:5]) + (", ..." if len(names) > 5 else "")
            raise NotReady(
                f"{self.path} is not a tbhook database (it holds {shown}); "
                "give --db a new file or an existing tbhook database"
            )

    def counts(self) -> tuple[int, int]:
        """Events and quarantined deliveries; a damaged file is reported in plain words."""
        try:
            return self.count(), self.count("quarantine")
        except sqlite3.DatabaseError as exc:
            raise StoreUnavailable(damaged(self.path, exc)) from exc

    @classmethod
    def open_readonly(cls, path: str | os.PathLike, current: bool = True) -> EventStore:
        """Open an existing database read-only; never create one. With ``current``, refuse a
        database an older tbhook wrote (its tables may lack what the reader expects)."""
        path = os.fspath(path)
        if not os.path.isfile(path):
            raise NoDatabase(path)
        uri = "file:" + quote(str(Path(path).resolve())) + "?mode=ro"
        try:
            conn = sqlite3.connect(uri, uri=True, isolation_level=None, check_same_thread=False)
            conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
            store = cls(conn, path)
            applied = migrations.applied(store.db)
            pending = [m for m in migrations.pending(store.db) if m.name not in READERS_DO_NOT_NEED]
        except sqlite3.Error as exc:
            raise StoreUnavailable(f"cannot read {path}: {exc}") from exc
        if pending and (current or not applied):
            store.close()
            if not applied:
                raise NotReady(f"{path} is not a tbhook database")
            raise NotReady(
                f"{path} was written by an older tbhook; run `tbhook serve --db {path}` "
                "once to upgrade it"
            )
        return store

    def _configure_writer(self) -> None:
        conn = self.db.conn
        conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
        self.db.enable_wal()
        # FULL: the WAL is fsynced at every commit, so a 200 survives power loss.
        conn.execute("PRAGMA synchronous = FULL")
        conn.execute(f"PRAGMA journal_size_limit = {WAL_SIZE_LIMIT}")
        # Random body hashes make index inserts land all over the file; keep them in memory.
        conn.execute(f"PRAGMA cache_size = -{CACHE_KIB}")
        migrations.apply(self.db)
        # Take the write lock once now, so a read-only file fails at start-up, not per request.
        conn.execute("BEGIN IMMEDIATE")
        conn.execute("ROLLBACK")

    def close(self) -> None:
        self.db.close()

    # -- writing -----------------------------------------------------------------------

    @contextlib.contextmanager
    def _errors(self) -> Iterator[None]:
        """Any SQLite failure becomes StoreBusy (another connection holds the lock) or
        StoreUnavailable (disk full, at its size cap, read-only, I/O)."""
        try:
            yield
        except sqlite3.OperationalError as exc:
            if "locked" in str(exc) or "busy" in str(exc):
                raise StoreBusy(f"could not store: {exc}") from exc
            if "full" in str(exc) and self._at_size_cap():
                raise StoreUnavailable(
                    f"could not store: the database reached its size cap (--max-db-size "
                    f"{human_size(self.max_bytes or 0)}); raise the cap, or prune old events"
                ) from exc
            raise StoreUnavailable(f"could not store: {exc}") from exc
        except sqlite3.Error as exc:
            raise StoreUnavailable(f"could not store: {exc}") from exc

    def _at_size_cap(self) -> bool:
        """Whether "full" means the --max-db-size cap rather than the disk: the disk still has
        room for a WAL's worth of writes."""
        if not self.max_bytes:
            return False
        try:
            disk = os.statvfs(os.path.dirname(os.path.abspath(self.path)))
        except OSError:
            return True
        return disk.f_bavail * disk.f_frsize > 2 * WAL_SIZE_LIMIT

    def record_size_cap(self) -> None:
        """Note the receiver's --max-db-size in the database, for `doctor` to read."""
        with self._writing() as conn:
            if self.max_bytes:
                conn.execute(
                    "INSERT OR REPLACE INTO tbhook_meta VALUES ('maxDbSize', ?)", [self.max_bytes]
                )
            else:
                conn.execute("DELETE FROM tbhook_meta WHERE key = 'maxDbSize'")

    @contextlib.contextmanager
    def _writing(self) -> Iterator[sqlite3.Connection]:
        """One write transaction, durably committed at the end (or rolled back)."""
        conn = self.db.conn
        with self._errors():
            conn.execute("BEGIN IMMEDIATE")
            try:
                yield conn
            except BaseException:
                self.rollback()
                raise
        self.commit()

    def commit(self) -> None:
        """Durably commit the open transaction (the fsync happens here), or roll it back."""
        with self._errors():
            try:
                self.db.conn.execute("COMMIT")
            except BaseException:
                self.rollback()
                raise

    def rollback(self) -> None:
        if self.db.conn.in_transaction:
            self.db.conn.execute("ROLLBACK")

    def set_busy_timeout(self, milliseconds: int) -> None:
        """How long a write waits for another connection's lock before failing busy."""
        self.db.conn.execute(f"PRAGMA busy_timeout = {int(milliseconds)}")

    @contextlib.contextmanager
    def checkpoint_every(self, pages: int) -> Iterator[None]:
        """Checkpoint the WAL less often for a bulk load, then restore the setting."""
        conn = self.db.conn
        previous = conn.execute("PRAGMA wal_autocheckpoint").fetchone()[0]
        conn.execute(f"PRAGMA wal_autocheckpoint = {int(pages)}")
        try:
            yield
        finally:
            conn.execute(f"PRAGMA wal_autocheckpoint = {int(previous)}")

    def append(self, deliveries: Sequence[Delivery], forward_to: str | None = None) -> list[Stored]:
        """Store a batch of deliveries in one durable transaction (group commit).

        A handful of statements whatever the batch size: one multi-row upsert per table and
        one look-up of the rows' ids, so the writer thread seldom needs the GIL back (SQLite
        gives it up at every step). With ``forward_to``, each new event is also queued for
        forwarding, in the same transaction, so a pending forward survives a crash exactly
        when its event does.
        """
        params = [_params(d.body, d.parsed, d.path, d.received_at) for d in deliveries]
        readable = [isinstance(d.parsed, Event) for d in deliveries]
        with self._writing() as conn:
            found: dict[tuple[bool, bytes], tuple[int, int]] = {}
            for table, is_event in (("events", True), ("quarantine", False)):
                rows = [p for p, r in zip(params, readable, strict=True) if r is is_event]
                if not rows:
                    continue
                _upsert(conn, table, rows)
                digests = sorted({row[-1] for row in rows})
                for start in range(0, len(digests), _LOOKUP_ROWS):
                    part = digests[start : start + _LOOKUP_ROWS]
                    lookup = conn.execute(_lookup(table, len(part)), part)
                    found.update(
                        ((is_event, digest), (row_id, count)) for row_id, count, digest in lookup
                    )
            stored = _outcomes(params, readable, found)
            if forward_to:
                now = time.time()
                conn.executemany(
                    "INSERT OR IGNORE INTO forwards (eventId, target, state, nextAttemptAt) "
                    "VALUES (?, ?, 'pending', ?)",
                    [
                        (s.id, forward_to, now)
                        for s in stored
                        if not s.quarantined and not s.duplicate
                    ],
                )
            return stored

    def import_rows(self, rows: ImportRows) -> tuple[int, list[int]]:
        """Insert prepared rows in one transaction, leaving already-stored bodies alone.
        Returns how many events were new, and the lines of the bodies newly quarantined."""
        with self._writing() as conn:
            before = conn.total_changes
            conn.executemany(_IMPORT_EVENT, rows.events)
            inserted = conn.total_changes - before
            quarantined = []
            for params in rows.quarantine:  # few: one at a time, to know which were new
                before = conn.total_changes
                conn.execute(_IMPORT_QUARANTINE, params)
                if conn.total_changes > before:
                    quarantined.append(params[-1])
        return inserted, quarantined

    # -- reading -----------------------------------------------------------------------

    def count(self, table: str = "events") -> int:
        """Rows in ``events`` or ``quarantine``."""
        if table not in ("events", "quarantine"):
            raise ValueError(table)
        return self.db.execute(f"SELECT count(*) FROM {table}").fetchone()[0]

    def rows(self, table: str = "events") -> Iterator[dict]:
        """Every row of ``events`` or ``quarantine``, raw body included, in arrival order."""
        if table not in ("events", "quarantine"):
            raise ValueError(table)
        return self.db.query(f"SELECT * FROM {table} ORDER BY id")

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

        ``after_id``/``upto_id`` bound the id, which is monotonic: a cursor for ``tail``.
        """
        where, params = self._where(filters)
        order = _ORDERS[order_by].format("DESC" if descending else "ASC")
        sql = f"SELECT {_READ_COLUMNS} FROM events WHERE id > ? AND {where}"
        if with_forwards:
            sql = (
                f"SELECT {_READ_COLUMNS}, state AS forwardState, attempts AS forwardAttempts, "
                "lastStatus AS forwardStatus FROM events LEFT JOIN forwards ON eventId = id "
                f"WHERE id > ? AND {where}"
            )
        params.insert(0, after_id)
        if upto_id is not None:
            sql += " AND id <= ?"
            params.append(upto_id)
        sql += f" ORDER BY {order}"
        if limit:
            sql += f" LIMIT {int(limit)}"
        return self.db.query(sql, params)

    def export_cursor(self, filters: Filters, fmt: str) -> sqlite3.Cursor:
        """Matching events in arrival order, as finished rows: the CSV columns (the event name
        kept from running as a spreadsheet formula), or one NDJSON line each.
        canonicalPersonId comes from joining a temporary table of merged persons, so no row
        needs Python to finish it."""
        conn = self.db.conn
        conn.execute(
            "CREATE TEMP TABLE IF NOT EXISTS canon (person INTEGER PRIMARY KEY, now INTEGER)"
        )
        conn.execute("DELETE FROM temp.canon")
        conn.executemany("INSERT INTO temp.canon VALUES (?, ?)", self.resolver().changed().items())
        where, params = self._where(filters)
        columns = _CSV_COLUMNS if fmt == "csv" else _JSON_LINE
        sql = (
            f"SELECT {columns} FROM events "
            "LEFT JOIN temp.canon ON canon.person = coalesce(personId, newPersonId) "
            f"WHERE {where} ORDER BY id"
        )
        return conn.execute(sql, params)

    def id_span(self, filters: Filters) -> tuple[int | None, int | None]:
        """The lowest and highest id among matching events."""
        where, params = self._where(filters)
        return self.db.execute(
            f"SELECT min(id), max(id) FROM events WHERE {where}", params
        ).fetchone()

    def bodies(self, filters: Filters) -> Iterator[tuple[int, bytes]]:
        """(id, raw body) of matching events in arrival order, for replay."""
        where, params = self._where(filters)
        return iter(
            self.db.execute(f"SELECT id, body FROM events WHERE {where} ORDER BY id", params)
        )

    def count_matching(self, filters: Filters) -> int:
        where, params = self._where(filters)
        return self.db.execute(f"SELECT count(*) FROM events WHERE {where}", params).fetchone()[0]

    def max_id(self) -> int:
        return self.db.execute("SELECT coalesce(max(id), 0) FROM events").fetchone()[0]

    def case_events(self, filters: Filters) -> Iterator[dict]:
        """Every event of every case that has a matching event, by caseId then time."""
        where, params = self._where(filters)
        sql = (
            f"SELECT {_READ_COLUMNS} FROM events WHERE caseId IN "
            f"(SELECT caseId FROM events WHERE caseId IS NOT NULL AND {where}) "
            "ORDER BY caseId, timestamp, id"
        )
        return self.db.query(sql, params)

    def stats_counter(self, filters: Filters) -> Counter:
        """How many events share each (event, own, typeId, sourceId, UTC day number).

        A Counter over the cursor: hashing in C is twice as fast as SQLite's GROUP BY, which
        sorts every row first.
        """
        where, params = self._where(filters)
        day = "(timestamp - (timestamp % 86400 + 86400) % 86400) / 86400"  # floor, also < 1970
        sql = f"SELECT event, own, typeId, sourceId, {day} FROM events WHERE {where}"
        return Counter(self.db.conn.execute(sql, params))

    @staticmethod
    def stats_groups(groups: Counter) -> Iterator[dict]:
        """``stats_counter`` results as rows with an ISO date per day."""
        for (event, own, type_id, source, days), n in groups.items():
            yield {
                "event": event,
                "own": own,
                "typeId": type_id,
                "sourceId": source,
                "day": _day(days),
                "n": n,
            }

    def quarantined(self) -> Iterator[dict]:
        """Quarantined deliveries, oldest first, with the size and first bytes of each body."""
        return self.db.query(
            "SELECT id, receivedAt, lastReceivedAt, deliveries, path, reason, "
            "length(body) AS bodySize, coalesce(substr(body, 1, 80), X'') AS bodyStart "
            "FROM quarantine ORDER BY id"
        )

    # -- persons ---------------------------------------------------------------------

    def merges_touching(self, person_ids: set[int]) -> list[Merge]:
        """The merges that name any of ``person_ids`` on either side."""
        ids = sorted(person_ids)
        marks = ", ".join("?" for _ in ids)
        # A UNION, not an OR, so each side uses its own partial index.
        columns = "SELECT timestamp, id, oldPersonId, newPersonId"
        sql = (
            f"{columns} {_MERGES_BY['oldPersonId']} IN ({marks}) "
            f"UNION {columns} {_MERGES_BY['newPersonId']} IN ({marks})"
        )
        return [Merge(*row) for row in self.db.execute(sql, [*ids, *ids])]

    def person_group(self, person_id: int) -> PersonGroup:
        return group_of(person_id, self.merges_touching)

    def canonical_lookup(self) -> Callable[[int | None], int | None]:
        """Canonical IDs looked up person by person (cached): fast for a few rows."""

        @functools.lru_cache(maxsize=4096)
        def canonical(person_id: int | None) -> int | None:
            return None if person_id is None else self.person_group(person_id).canonicalPersonId

        return canonical

    def resolver(self) -> Resolver:
        """Canonical IDs for everyone, from all merges."""
        return Resolver(Merge(*row) for row in self.db.execute(_MERGES))

    def _where(self, filters: Filters) -> tuple[str, list]:
        clauses: list[str] = ["1"]
        params: list = []
        if filters.events:
            clauses.append(f"event IN ({', '.join('?' for _ in filters.events)})")
            params.extend(filters.events)
        for clause, value in (
            ("caseId = ?", filters.case),
            ("searchId = ?", filters.search_id),
            ("sourceId = ?", filters.source),
            ("own = ?", filters.sender),
            ("timestamp >= ?", filters.since),
            ("timestamp < ?", filters.until),  # until is exclusive
            ("id >= ?", filters.first_id),
            ("id <= ?", filters.last_id),
        ):
            if value is not None:
                clauses.append(clause)
                params.append(value)
        if filters.person is not None:
            aliases = self.person_group(filters.person).aliases
            marks = ", ".join("?" for _ in aliases)
            clauses.append(
                f"id IN (SELECT id FROM events WHERE personId IN ({marks}) "
                f"UNION SELECT id {_MERGES_BY['oldPersonId']} IN ({marks}) "
                f"UNION SELECT id {_MERGES_BY['newPersonId']} IN ({marks}))"
            )
            params.extend(aliases * 3)
        return " AND ".join(clauses), params

"""The SQLite backend: one file, one writer connection, readers opened read-only."""

from __future__ import annotations

import contextlib
import csv
import dataclasses
import functools
import json
import os
import sqlite3
import threading
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import IO, Any
from urllib.parse import quote

from tbhook.errors import (
    ForeignDatabase,
    NoDatabase,
    NotReady,
    StoreBusy,
    StoreUnavailable,
    TbhookError,
    damaged,
    human_size,
)
from tbhook.filters import Filters
from tbhook.store.base import (
    CHUNK,
    EVENT_COLUMNS,
    MERGE_EVENT_COLUMNS,
    MERGE_QUARANTINE_COLUMNS,
    PAUSE_SECONDS,
    QUARANTINE_COLUMNS,
    Dialect,
    ImportRows,
    Store,
    Stored,
    names,
    not_tbhooks,
    outcomes,
)
from tbhook.store.sqlite_steps import READERS_DO_NOT_NEED, STEP_NAMES
from tbhook.text import CSV_LINE_END

BUSY_TIMEOUT_MS = 5000
DAY_SECONDS = 86400
CHECKPOINT_SECONDS = 0.2  # the receiver's WAL is copied into the database this often
# ... and the writer finishes the copy itself once the log holds this many pages (16 MiB):
# only a checkpoint between two of its own commits lets the next one start the log over.
WRITER_CHECKPOINT_PAGES = 4096
PAGES_PER_DELIVERY = 8  # the most new pages one delivery can take: its row, index splits
WAL_SIZE_LIMIT = 64 * 1024 * 1024
CACHE_KIB = 64 * 1024

SQLITE = Dialect(
    name="sqlite",
    char="char",
    empty_blob="X''",
    iso_time_format="strftime('%Y-%m-%dT%H:%M:%SZ', {0}, 'unixepoch')",
    epoch_of_iso="((julianday({0}) - 2440587.5) * 86400)",
    indexed_by=True,
    least="min",
    greatest="max",
    event_key='coalesce(timestamp, 0), "bodySha256"',  # the index events_dedupe (m014)
)

# How a batch goes in. Each statement costs the writer thread the GIL at every SQLite step, so
# small rows go in many to a statement. But a cached statement keeps its last bound values
# alive: so only small bodies go in multi-row statements, of a few fixed sizes (at most about
# 1 MiB held in all), and a large body goes in alone (at most one held).
_SMALL_BODY = 1024
_ROW_COUNTS = (512, 128, 32, 8, 2, 1)
_LOOKUP_ROWS = 1000  # hashes per look-up of a batch's ids (SQLite allows 32,766 values)


@functools.lru_cache(maxsize=16)
def _upsert_rows(table: str, count: int) -> str:
    """One INSERT of ``count`` rows: a body already stored (or twice in the batch) counts one
    more delivery on the first row, atomically."""
    columns = EVENT_COLUMNS if table == "events" else QUARANTINE_COLUMNS
    row = "(" + ", ".join("?" for _ in columns) + ")"
    return (
        f"INSERT INTO {table} ({names(columns)}) VALUES {', '.join([row] * count)} "
        f"ON CONFLICT{SQLITE.dedupe(table)} DO UPDATE SET deliveries = deliveries + 1, "
        '"lastReceivedAt" = excluded."lastReceivedAt"'
    )


@functools.lru_cache(maxsize=64)
def _lookup(table: str, count: int) -> str:
    """The ids and deliveries of ``count`` rows by their key: (timestamp, hash) pairs for
    events, hashes for the quarantine."""
    # One row for the whole batch: SQLite hands the GIL back at every step, and a busy event
    # loop makes the writer thread wait to take it again, so every further row would cost.
    found = 'json_group_array(json_array(t.id, t.deliveries, hex(t."bodySha256")))'
    if table == "events":
        keys = ", ".join("(?, ?)" for _ in range(count))
        return (
            f"SELECT {found} FROM (VALUES {keys}) AS k CROSS JOIN events AS t "
            'ON coalesce(t.timestamp, 0) = k.column1 AND t."bodySha256" = k.column2'
        )
    marks = ", ".join("?" for _ in range(count))
    return f'SELECT {found} FROM {table} AS t WHERE t."bodySha256" IN ({marks})'


_TIMESTAMP = EVENT_COLUMNS.index("timestamp")


# The events a transaction added (ids above the highest before it: one writer at a time, and
# AUTOINCREMENT never reuses an id) into event_counts, grouped: what `stats` reads.
_COUNT_NEW = """
INSERT INTO event_counts (key, day, event, own, typeId, sourceId, n)
SELECT quote(day) || ',' || quote(event) || ',' || quote(own) || ',' || quote(typeId) || ',' ||
        quote(sourceId), day, event, own, typeId, sourceId, count(*)
FROM (SELECT (timestamp - (timestamp % 86400 + 86400) % 86400) / 86400 AS day, event, own,
        typeId, sourceId FROM events WHERE id > ?)
WHERE TRUE GROUP BY 1
ON CONFLICT (key) DO UPDATE SET n = n + excluded.n"""


def _import_sql(table: str, columns: Sequence[str]) -> str:
    marks = ", ".join("?" for _ in columns)
    return f"INSERT OR IGNORE INTO {table} ({names(columns)}) VALUES ({marks})"


_IMPORT_EVENT = _import_sql("events", EVENT_COLUMNS)
_IMPORT_QUARANTINE = _import_sql("quarantine", (*QUARANTINE_COLUMNS, "line"))


def log_identity(path: str | os.PathLike) -> tuple[bool, str | None] | None:
    """Whether the SQLite file at ``path`` is a tbhook log, and its logId (None before m008);
    None when it is not a SQLite file tbhook can read. Reads only."""
    from tbhook.files import is_sqlite

    if not is_sqlite(path):
        return None
    uri = "file:" + quote(str(Path(path).resolve())) + "?mode=ro"
    try:
        conn = sqlite3.connect(uri, uri=True, isolation_level=None)
    except sqlite3.Error:
        return None
    try:
        store = SQLiteStore(conn, os.fspath(path))
        if not store.applied_steps():
            return False, None
        return True, store.meta().get("logId")
    except sqlite3.Error:
        return None
    finally:
        conn.close()


# The filters event_counts can answer (an allowlist: a filter added later is never ignored by
# the shortcut, which would give wrong counts, but sends the count to the events themselves).
COUNTED = frozenset({"events", "sender", "source", "since", "until"})


class SQLiteStore(Store):
    """A tbhook database in one SQLite file."""

    dialect = SQLITE
    can_split = True

    def __init__(self, conn: sqlite3.Connection, path: str):
        self.conn = conn
        self.path = self.target = path
        self.max_bytes: int | None = None

    @functools.cached_property
    def db(self) -> Any:
        """The connection as a sqlite-utils Database, for migrations: imported only when
        writing (it costs a read command about 30 ms). No plugins: nothing here uses them."""
        from sqlite_utils import Database

        return Database(self.conn, execute_plugins=False)

    def applied_steps(self) -> list[str]:
        """The names of the schema steps this database has, in the order they were applied."""
        try:
            rows = self.conn.execute(
                "SELECT name FROM _sqlite_migrations WHERE migration_set = 'tbhook' ORDER BY id"
            ).fetchall()
        except sqlite3.OperationalError:  # no migrations table: not (yet) a tbhook database
            return []
        return [name for (name,) in rows]

    @classmethod
    def open(
        cls,
        path: str | os.PathLike,
        max_bytes: int | None = None,
        notice: Callable[[str], None] | None = None,
    ) -> SQLiteStore:
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
            store._configure_writer(notice)
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

    @classmethod
    def open_readonly(cls, path: str | os.PathLike, current: bool = True) -> SQLiteStore:
        """Open an existing database read-only; never create one. With ``current``, refuse a
        database an older tbhook wrote (its tables may lack what the reader expects)."""
        path = os.fspath(path)
        if os.path.isdir(path):
            raise TbhookError(f"{path} is a directory, not a database file")
        if not os.path.isfile(path):
            raise NoDatabase(path)
        uri = "file:" + quote(str(Path(path).resolve())) + "?mode=ro"
        try:
            conn = sqlite3.connect(uri, uri=True, isolation_level=None, check_same_thread=False)
            conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
            store = cls(conn, path)
            applied = store.applied_steps()
            pending = [
                name
                for name in STEP_NAMES
                if name not in applied and name not in READERS_DO_NOT_NEED
            ]
        except sqlite3.Error as exc:
            raise StoreUnavailable(f"cannot read {path}: {exc}") from exc
        if pending and (current or not applied):
            if not applied:
                tables = store._tables()
                store.close()
                if tables:
                    raise ForeignDatabase(f"{path} is not a tbhook database")
                # Empty: a receiver may be creating it this moment.
                raise NotReady(f"{path} is not a tbhook database (yet: it holds no tables)")
            store.close()
            raise NotReady(
                f"{path} was written by an older tbhook; run `tbhook serve --db {path}` "
                "once to upgrade it"
            )
        return store

    def _refuse_foreign(self) -> None:
        """A database that holds tables but not tbhook's is someone else's: never add to it."""
        if self.applied_steps():
            return
        found = self._tables()
        if found:
            raise not_tbhooks(
                self.path, found, "give --db a new file or an existing tbhook database"
            )

    def _tables(self) -> list[str]:
        return [
            name
            for (name,) in self.conn.execute(
                "SELECT name FROM sqlite_master WHERE name NOT LIKE 'sqlite_%' ORDER BY name"
            )
        ]

    def _configure_writer(self, notice: Callable[[str], None] | None = None) -> None:
        conn = self.conn
        conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
        self.db.enable_wal()
        # FULL: the WAL is fsynced at every commit, so a 200 survives power loss.
        conn.execute("PRAGMA synchronous = FULL")
        conn.execute(f"PRAGMA journal_size_limit = {WAL_SIZE_LIMIT}")
        # Index pages of the busy tables stay in memory between batches.
        conn.execute(f"PRAGMA cache_size = -{CACHE_KIB}")
        # Under the write lock, so receivers starting at the same moment migrate once (each
        # step in a savepoint of this transaction); this also proves the file is writable.
        # Temporary data in files meanwhile: a step that builds an index sorts it there
        # (in memory, m014 held 6 GB at 10M events).
        conn.execute("BEGIN IMMEDIATE")
        try:
            from tbhook.store.sqlite_migrations import migrations, slow_steps

            if notice:
                for line in slow_steps(self.db, migrations.pending(self.db)):
                    notice(line)
            migrations.apply(self.db)
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        conn.execute("COMMIT")
        # A statement that fires a trigger (a prune's deletes) keeps a statement journal to
        # undo itself: in memory, not in a temporary file.
        conn.execute("PRAGMA temp_store = MEMORY")

    def counts(self) -> tuple[int, int]:
        """Events and quarantined deliveries; a damaged file is reported in plain words."""
        try:
            return self.count(), self.count("quarantine")
        except sqlite3.DatabaseError as exc:
            raise StoreUnavailable(damaged(self.path, exc)) from exc

    def close(self) -> None:
        self.conn.close()

    # -- primitives ----------------------------------------------------------------------

    def query(self, sql: str, params: Sequence = ()) -> Iterator[tuple]:
        return iter(self.conn.execute(sql, params))

    def query_dicts(self, sql: str, params: Sequence = ()) -> Iterator[dict]:
        cursor = self.conn.execute(sql, params)
        keys = [column[0] for column in cursor.description]
        return (dict(zip(keys, row, strict=True)) for row in cursor)

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
                raise StoreUnavailable(self._cap_reached()) from exc
            raise StoreUnavailable(f"could not store: {exc}") from exc
        except sqlite3.Error as exc:
            raise StoreUnavailable(f"could not store: {exc}") from exc

    def _cap_reached(self) -> str:
        return (
            f"could not store: the database reached its size cap (--max-db-size "
            f"{human_size(self.max_bytes or 0)}); raise the cap, or prune old events"
        )

    def room_check(self) -> str | None:
        """Under --max-db-size: fewer free pages than a delivery may need (its row and a new
        page for each index, in the worst case) means the cap is reached."""
        if not self.max_bytes:
            return None
        limit, pages, free = (
            self.conn.execute(f"PRAGMA {name}").fetchone()[0]
            for name in ("max_page_count", "page_count", "freelist_count")
        )
        return self._cap_reached() if limit - pages + free < PAGES_PER_DELIVERY else None

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

    @contextlib.contextmanager
    def writing(self) -> Iterator[sqlite3.Connection]:
        """A write transaction. Before it commits, the events it added are counted into
        ``event_counts`` (whichever command added them: receiver, import, merge, retry)."""
        conn = self.conn
        with self._errors():
            conn.execute("BEGIN IMMEDIATE")
            try:
                before = conn.execute("SELECT coalesce(max(id), 0) FROM events").fetchone()[0]
                yield conn
                if self._has_counts:
                    conn.execute(_COUNT_NEW, [before])
            except BaseException:
                self.rollback()
                raise
        self.commit()

    def commit(self) -> None:
        """Durably commit the open transaction (the fsync happens here), or roll it back."""
        with self._errors():
            try:
                self.conn.execute("COMMIT")
            except BaseException:
                self.rollback()
                raise

    def rollback(self) -> None:
        if self.conn.in_transaction:
            self.conn.execute("ROLLBACK")

    def set_busy_timeout(self, milliseconds: int) -> None:
        self.conn.execute(f"PRAGMA busy_timeout = {int(milliseconds)}")

    @contextlib.contextmanager
    def checkpoint_every(self, pages: int) -> Iterator[None]:
        conn = self.conn
        previous = conn.execute("PRAGMA wal_autocheckpoint").fetchone()[0]
        conn.execute(f"PRAGMA wal_autocheckpoint = {int(pages)}")
        try:
            yield
        finally:
            conn.execute(f"PRAGMA wal_autocheckpoint = {int(previous)}")

    def checkpoint_in_background(self, every: float = CHECKPOINT_SECONDS) -> Callable[[], None]:
        """For the receiver's writer: copy the WAL into the database from a thread with a
        connection of its own, every ``every`` seconds, so that a commit rarely waits for a
        checkpoint (SQLite's automatic one runs in the commit that passes 1,000 pages: 15% of
        the writer's time at 64 connections). PASSIVE: it never waits for a reader or the
        writer. Under steady load the writer commits during those copies, so they never
        catch up with the log's end, and only a writer that finds the log fully copied
        starts it over; the writer's own automatic checkpoint, at WRITER_CHECKPOINT_PAGES,
        copies the few pages left and keeps the WAL bounded. Returns a function that stops
        the thread."""
        self.conn.execute(f"PRAGMA wal_autocheckpoint = {WRITER_CHECKPOINT_PAGES}")
        stop = threading.Event()

        def run() -> None:
            conn = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
            try:
                conn.execute("PRAGMA synchronous = FULL")
                while not stop.wait(every):
                    with contextlib.suppress(sqlite3.Error):
                        conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()
            finally:
                conn.close()

        thread = threading.Thread(target=run, name="tbhook-checkpoint", daemon=True)
        thread.start()

        def stopped() -> None:
            stop.set()
            thread.join(10)
            with contextlib.suppress(sqlite3.Error):
                self.conn.execute("PRAGMA wal_autocheckpoint = 1000")

        return stopped

    def insert_ignore(self, table: str, columns: Sequence[str], values: str) -> str:
        return f"INSERT OR IGNORE INTO {table} ({names(columns)}) VALUES ({values})"

    # -- writing -------------------------------------------------------------------------

    def append_rows(
        self, params: list[tuple], readable: list[bool], forward_to: str | None = None
    ) -> list[Stored]:
        """One durable transaction: a few multi-row upserts and one look-up of the rows' ids."""
        with self.writing() as conn:
            found: dict[tuple[bool, bytes], tuple[int, int]] = {}
            for table, is_event in (("events", True), ("quarantine", False)):
                rows = [p for p, r in zip(params, readable, strict=True) if r is is_event]
                if not rows:
                    continue
                _upsert(conn, table, rows)
                keys: list[tuple] = sorted(
                    {(row[_TIMESTAMP] or 0, row[-1]) for row in rows}  # the events' key
                    if is_event
                    else {(row[-1],) for row in rows}
                )
                for start in range(0, len(keys), _LOOKUP_ROWS):
                    part = keys[start : start + _LOOKUP_ROWS]
                    values = [value for key in part for value in key]
                    [(rows_found,)] = conn.execute(_lookup(table, len(part)), values)
                    found.update(
                        ((is_event, bytes.fromhex(digest)), (row_id, count))
                        for row_id, count, digest in json.loads(rows_found)
                    )
            stored = outcomes(params, readable, found)
            if forward_to:
                self.queue_forwards(conn, stored, forward_to)
            return stored

    def import_rows(self, rows: ImportRows) -> tuple[int, list[int]]:
        with self.writing() as conn:
            # rowcount counts the statement's own rows, not what the triggers add.
            inserted = conn.executemany(_IMPORT_EVENT, rows.events).rowcount
            quarantined = []
            for params in rows.quarantine:  # few: one at a time, to know which were new
                if conn.execute(_IMPORT_QUARANTINE, params).rowcount > 0:
                    quarantined.append(params[-1])
        return inserted, quarantined

    def record_size_cap(self) -> None:
        with self.writing() as conn:
            if self.max_bytes:
                conn.execute(
                    "INSERT OR REPLACE INTO tbhook_meta VALUES ('maxDbSize', ?)", [self.max_bytes]
                )
            else:
                conn.execute("DELETE FROM tbhook_meta WHERE key = 'maxDbSize'")

    # -- counts kept by triggers (m012) ---------------------------------------------------

    @functools.cached_property
    def _has_counts(self) -> bool:
        """Whether the database has ``event_counts`` (a reader may open one not yet migrated)."""
        row = self.conn.execute(
            "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'event_counts'"
        ).fetchone()
        return row is not None

    def _counted(self, filters: Filters) -> tuple[str, list, list[Filters]] | None:
        """How ``event_counts`` answers ``filters``: a WHERE over it for the whole UTC days,
        and the filters of the partial days at either end (to scan through the timestamp
        index); None when the counts cannot answer (a case, person, search or id filter)."""
        if not self._has_counts or any(
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
        clauses: list[str] = ["n > 0"]
        params: list[Any] = []
        if filters.events:
            clauses.append(f"event IN ({', '.join('?' for _ in filters.events)})")
            params += list(filters.events)
        for clause, value in (
            ("own = ?", filters.sender),
            ('"sourceId" = ?', filters.source),
            ("day >= ?", first_day),
            ("day < ?", end_day),
        ):
            if value is not None:
                clauses.append(clause)
                params.append(value)
        edges = []
        if first_day is not None and since is not None and since < first_day * DAY_SECONDS:
            edges.append(dataclasses.replace(filters, until=first_day * DAY_SECONDS))
        if end_day is not None and until is not None and until > end_day * DAY_SECONDS:
            edges.append(dataclasses.replace(filters, since=end_day * DAY_SECONDS))
        return " AND ".join(clauses), params, edges

    def stats_is_cheap(self, filters: Filters) -> bool:
        return self._counted(filters) is not None

    def stats_counter(self, filters: Filters) -> Counter:
        """From ``event_counts`` when it can answer, else by scanning the matching events."""
        counted = self._counted(filters)
        if counted is None:
            return super().stats_counter(filters)
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

    # -- export --------------------------------------------------------------------------

    def export(
        self,
        filters: Filters,
        fmt: str,
        stream: IO[str],
        progress: Callable[[int], None] | None = None,
    ) -> int:
        """SQLite finishes every row; the C csv writer takes the cursor whole."""
        conn = self.conn
        conn.execute(
            "CREATE TEMP TABLE IF NOT EXISTS canon (person INTEGER PRIMARY KEY, now INTEGER)"
        )
        conn.execute("DELETE FROM temp.canon")
        conn.executemany("INSERT INTO temp.canon VALUES (?, ?)", self.resolver().changed().items())
        sql, params = self.export_select(filters, fmt)
        rows = _Counted(conn.execute(sql, params), progress)
        if fmt == "csv":
            csv.writer(stream, lineterminator=CSV_LINE_END).writerows(rows)
        else:
            stream.writelines(line + "\n" for (line,) in rows)
        return rows.count

    def _json_line(self, expressions: dict[str, str]) -> str:
        return "json_object(" + ", ".join(f"'{k}', {v}" for k, v in expressions.items()) + ")"

    # -- operations ----------------------------------------------------------------------

    def backup(self, dest: str) -> None:
        """A consistent copy of the live database (``VACUUM INTO``), safe while `serve` writes.
        ``dest`` must not exist: the caller writes to a temporary name and renames it."""
        try:
            self.conn.execute("VACUUM INTO ?", [dest])
        except sqlite3.DatabaseError as exc:
            if type(exc) is sqlite3.DatabaseError:
                raise StoreUnavailable(damaged(self.path, exc)) from exc
            raise StoreUnavailable(f"cannot back up {self.path}: {exc}") from exc

    def merge_from(
        self, other: str, progress: Callable[[int], None] | None = None, chunk: int = CHUNK
    ) -> dict[str, int]:
        """ATTACH the other file and copy in SQL, a chunk per transaction."""
        with self._errors():
            self.conn.execute("ATTACH DATABASE ? AS other", [other])
        try:
            theirs = self._attached_log_id()
            if theirs is not None and theirs == self.log_id():
                raise NotReady(
                    f"{other} is this log itself (or a copy of it): merging it would count its "
                    "deliveries twice"
                )
            self.refuse_merging_back(other, self._merged_into_attached())
            done = self.merged_upto(theirs) if theirs else (0, 0)
            new = [
                self.one(f"SELECT count(*) FROM other.{table} WHERE id > ?", [after])[0]
                for table, after in (("events", done[0]), ("quarantine", done[1]))
            ]
            added = [
                self._merge_table(table, columns, after, theirs, other, progress, chunk)
                for table, columns, after in (
                    ("events", MERGE_EVENT_COLUMNS, done[0]),
                    ("quarantine", MERGE_QUARANTINE_COLUMNS, done[1]),
                )
            ]
        finally:
            self.conn.execute("DETACH DATABASE other")
        return {
            "added": added[0],
            "alreadyHere": new[0] - added[0],
            "quarantine": added[1],
            "mergedBefore": done[0],
        }

    def _merged_into_attached(self) -> str | None:
        """When this log was merged into the attached one, if it was."""
        try:
            row = self.conn.execute(
                'SELECT "mergedAt" FROM other.merged_logs WHERE "logId" = ?', [self.log_id()]
            ).fetchone()
        except sqlite3.OperationalError:  # a log from before merges were recorded
            return None
        return row[0] if row else None

    def _attached_log_id(self) -> str | None:
        try:
            row = self.conn.execute(
                "SELECT value FROM other.tbhook_meta WHERE key = 'logId'"
            ).fetchone()
        except sqlite3.OperationalError:
            return None
        return row[0] if row else None

    def _merge_table(
        self,
        table: str,
        columns: Sequence[str],
        after: int,
        log_id: str | None,
        source: str,
        progress: Callable[[int], None] | None,
        chunk: int,
    ) -> int:
        """Merge one table of the other log from its row ``after`` on; how many rows were new
        here."""
        import time

        added = 0
        while True:
            with self.writing() as conn:
                upto, count = conn.execute(
                    f"SELECT max(id), count(*) FROM (SELECT id FROM other.{table} WHERE id > ? "
                    "ORDER BY id LIMIT ?)",
                    [after, chunk],
                ).fetchone()
                if upto is None:
                    return added
                # Rows new here get ids above the highest one now (this transaction holds the
                # write lock), so a receiver's deliveries meanwhile are not counted as merged.
                newest = conn.execute(f"SELECT coalesce(max(id), 0) FROM {table}").fetchone()[0]
                conn.execute(
                    f"INSERT INTO {table} ({names(columns)}) SELECT {names(columns)} "
                    f"FROM other.{table} WHERE id > ? AND id <= ? ORDER BY id "
                    f"ON CONFLICT{SQLITE.dedupe(table)} DO UPDATE SET "
                    f"{SQLITE.sum_deliveries(table)}",
                    [after, upto],
                )
                added += conn.execute(
                    f"SELECT count(*) FROM {table} WHERE id > ?", [newest]
                ).fetchone()[0]
                if log_id is not None:
                    self.record_merged(conn, log_id, table, upto, source)
            after = upto
            if progress:
                progress(count)
            time.sleep(PAUSE_SECONDS)  # let a waiting receiver take the lock

    # -- facts for doctor ----------------------------------------------------------------

    def integrity(self, quick: bool = False) -> list[str]:
        """``PRAGMA integrity_check`` (or ``quick_check``): ``["ok"]`` when all is well."""
        pragma = "quick_check" if quick else "integrity_check"
        return [row[0] for row in self.conn.execute(f"PRAGMA {pragma}")]

    def schema(self) -> tuple[list[str], list[str]]:
        applied = self.applied_steps()
        return applied, [name for name in STEP_NAMES if name not in applied]

    def meta(self) -> dict[str, str]:
        try:
            return super().meta()
        except sqlite3.OperationalError:  # a database older than the table
            return {}

    def space(self) -> dict[str, int]:
        """Pages in the file and how many of them hold data (free pages are reused first)."""
        page_size, pages, free = (
            self.conn.execute(f"PRAGMA {name}").fetchone()[0]
            for name in ("page_size", "page_count", "freelist_count")
        )
        return {"pageSize": page_size, "pages": pages, "usedBytes": (pages - free) * page_size}

    def server_facts(self) -> dict[str, Any]:
        wal = Path(f"{self.path}-wal")
        return {
            "sizeBytes": os.path.getsize(self.path),
            "walBytes": wal.stat().st_size if wal.exists() else 0,
            "usedBytes": self.space()["usedBytes"],
        }


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


class _Counted:
    """Counts rows as a writer pulls them, reporting progress now and then."""

    EVERY = 10_000

    def __init__(self, rows: Any, progress: Callable[[int], None] | None):
        self._rows = iter(rows)
        self._progress = progress
        self.count = 0

    def __iter__(self) -> Iterator[Any]:
        return self

    def __next__(self) -> Any:
        row = next(self._rows)
        self.count += 1
        if self._progress and self.count % self.EVERY == 0:
            self._progress(self.EVERY)
        return row

"""The SQLite backend: one file, one writer connection, readers opened read-only."""

from __future__ import annotations

import contextlib
import csv
import functools
import json
import os
import sqlite3
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import IO, Any
from urllib.parse import quote

from sqlite_utils import Database

from tbhook.errors import NoDatabase, NotReady, StoreBusy, StoreUnavailable, damaged, human_size
from tbhook.filters import Filters
from tbhook.output.safe import CSV_LINE_END
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
    outcomes,
)
from tbhook.store.sqlite_migrations import READERS_DO_NOT_NEED, migrations

BUSY_TIMEOUT_MS = 5000
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
        'ON CONFLICT("bodySha256") DO UPDATE SET deliveries = deliveries + 1, '
        '"lastReceivedAt" = excluded."lastReceivedAt"'
    )


@functools.lru_cache(maxsize=64)
def _lookup(table: str, count: int) -> str:
    marks = ", ".join("?" for _ in range(count))
    # One row for the whole batch: SQLite hands the GIL back at every step, and a busy event
    # loop makes the writer thread wait to take it again, so every further row would cost.
    return (
        'SELECT json_group_array(json_array(id, deliveries, hex("bodySha256"))) '
        f'FROM {table} WHERE "bodySha256" IN ({marks})'
    )


def _import_sql(table: str, columns: Sequence[str]) -> str:
    marks = ", ".join("?" for _ in columns)
    return f"INSERT OR IGNORE INTO {table} ({names(columns)}) VALUES ({marks})"


_IMPORT_EVENT = _import_sql("events", EVENT_COLUMNS)
_IMPORT_QUARANTINE = _import_sql("quarantine", (*QUARANTINE_COLUMNS, "line"))


class SQLiteStore(Store):
    """A tbhook database in one SQLite file."""

    dialect = SQLITE
    can_split = True

    def __init__(self, conn: sqlite3.Connection, path: str):
        # No sqlite-utils plugins: nothing here uses them, and loading them costs every command.
        self.db = Database(conn, execute_plugins=False)
        self.path = self.target = path
        self.max_bytes: int | None = None

    @classmethod
    def open(cls, path: str | os.PathLike, max_bytes: int | None = None) -> SQLiteStore:
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

    @classmethod
    def open_readonly(cls, path: str | os.PathLike, current: bool = True) -> SQLiteStore:
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

    def _refuse_foreign(self) -> None:
        """A database that holds tables but not tbhook's is someone else's: never add to it."""
        if migrations.applied(self.db):
            return
        found = [
            name
            for (name,) in self.db.execute(
                "SELECT name FROM sqlite_master WHERE name NOT LIKE 'sqlite_%' ORDER BY name"
            )
        ]
        if found:
            shown = ", ".join(found[:5]) + (", ..." if len(found) > 5 else "")
            raise NotReady(
                f"{self.path} is not a tbhook database (it holds {shown}); "
                "give --db a new file or an existing tbhook database"
            )

    def _configure_writer(self) -> None:
        conn = self.db.conn
        conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
        self.db.enable_wal()
        # FULL: the WAL is fsynced at every commit, so a 200 survives power loss.
        conn.execute("PRAGMA synchronous = FULL")
        conn.execute(f"PRAGMA journal_size_limit = {WAL_SIZE_LIMIT}")
        # Random body hashes make index inserts land all over the file; keep them in memory.
        conn.execute(f"PRAGMA cache_size = -{CACHE_KIB}")
        # Under the write lock, so receivers starting at the same moment migrate once (each
        # step in a savepoint of this transaction); this also proves the file is writable.
        conn.execute("BEGIN IMMEDIATE")
        try:
            migrations.apply(self.db)
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        conn.execute("COMMIT")

    def counts(self) -> tuple[int, int]:
        """Events and quarantined deliveries; a damaged file is reported in plain words."""
        try:
            return self.count(), self.count("quarantine")
        except sqlite3.DatabaseError as exc:
            raise StoreUnavailable(damaged(self.path, exc)) from exc

    def close(self) -> None:
        self.db.close()

    # -- primitives ----------------------------------------------------------------------

    def query(self, sql: str, params: Sequence = ()) -> Iterator[tuple]:
        return iter(self.db.conn.execute(sql, params))

    def query_dicts(self, sql: str, params: Sequence = ()) -> Iterator[dict]:
        return self.db.query(sql, params)

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

    @contextlib.contextmanager
    def writing(self) -> Iterator[sqlite3.Connection]:
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
        self.db.conn.execute(f"PRAGMA busy_timeout = {int(milliseconds)}")

    @contextlib.contextmanager
    def checkpoint_every(self, pages: int) -> Iterator[None]:
        conn = self.db.conn
        previous = conn.execute("PRAGMA wal_autocheckpoint").fetchone()[0]
        conn.execute(f"PRAGMA wal_autocheckpoint = {int(pages)}")
        try:
            yield
        finally:
            conn.execute(f"PRAGMA wal_autocheckpoint = {int(previous)}")

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
                digests = sorted({row[-1] for row in rows})
                for start in range(0, len(digests), _LOOKUP_ROWS):
                    part = digests[start : start + _LOOKUP_ROWS]
                    [(rows_found,)] = conn.execute(_lookup(table, len(part)), part)
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

    def record_size_cap(self) -> None:
        with self.writing() as conn:
            if self.max_bytes:
                conn.execute(
                    "INSERT OR REPLACE INTO tbhook_meta VALUES ('maxDbSize', ?)", [self.max_bytes]
                )
            else:
                conn.execute("DELETE FROM tbhook_meta WHERE key = 'maxDbSize'")

    # -- export --------------------------------------------------------------------------

    def export(
        self,
        filters: Filters,
        fmt: str,
        stream: IO[str],
        progress: Callable[[int], None] | None = None,
    ) -> int:
        """SQLite finishes every row; the C csv writer takes the cursor whole."""
        conn = self.db.conn
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
            self.db.conn.execute("VACUUM INTO ?", [dest])
        except sqlite3.DatabaseError as exc:
            if type(exc) is sqlite3.DatabaseError:
                raise StoreUnavailable(damaged(self.path, exc)) from exc
            raise StoreUnavailable(f"cannot back up {self.path}: {exc}") from exc

    def merge_from(
        self, other: str, progress: Callable[[int], None] | None = None, chunk: int = CHUNK
    ) -> dict[str, int]:
        """ATTACH the other file and copy in SQL, a chunk per transaction."""
        with self._errors():
            self.db.conn.execute("ATTACH DATABASE ? AS other", [other])
        try:
            theirs = self._attached_log_id()
            if theirs is not None and theirs == self.log_id():
                raise NotReady(
                    f"{other} is this log itself (or a copy of it): merging it would count its "
                    "deliveries twice"
                )
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
            self.db.conn.execute("DETACH DATABASE other")
        return {
            "added": added[0],
            "alreadyHere": new[0] - added[0],
            "quarantine": added[1],
            "mergedBefore": done[0],
        }

    def _attached_log_id(self) -> str | None:
        try:
            row = self.db.conn.execute(
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
                    f'ON CONFLICT("bodySha256") DO UPDATE SET {SQLITE.sum_deliveries(table)}',
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
        return [row[0] for row in self.db.execute(f"PRAGMA {pragma}")]

    def schema(self) -> tuple[list[str], list[str]]:
        applied = [m.name for m in migrations.applied(self.db)]
        return applied, [m.name for m in migrations.pending(self.db)]

    def meta(self) -> dict[str, str]:
        try:
            return super().meta()
        except sqlite3.OperationalError:  # a database older than the table
            return {}

    def space(self) -> dict[str, int]:
        """Pages in the file and how many of them hold data (free pages are reused first)."""
        page_size, pages, free = (
            self.db.execute(f"PRAGMA {name}").fetchone()[0]
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

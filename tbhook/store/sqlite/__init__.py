"""The SQLite backend: one file, one writer connection, readers opened read-only.

The engine is here; the jobs SQLite does its own way have a module each: ``reads`` (counts kept
per day by the write transactions), ``export`` (rows straight from the cursor), ``merge``
(another log attached and copied in SQL, and ``VACUUM INTO`` backups); ``migrations`` are
its frozen schema steps.
"""

from __future__ import annotations

import contextlib
import functools
import os
import sqlite3
import threading
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any
from urllib.parse import quote

from tbhook.errors import (
    ForeignDatabase,
    NoDatabase,
    NotReady,
    StoreBusy,
    StoreDamaged,
    StoreUnavailable,
    TbhookError,
    damaged,
)
from tbhook.model.words import human_size
from tbhook.store.interface import Store, job, not_tbhooks, refuse_newer
from tbhook.store.rows import ImportRows, Stored, outcomes
from tbhook.store.sql import names
from tbhook.store.sqlite import batches
from tbhook.store.sqlite.dialect import SQLITE
from tbhook.store.sqlite.export import SQLiteExports
from tbhook.store.sqlite.merge import SQLiteUpkeep
from tbhook.store.sqlite.reads import SQLiteReads
from tbhook.store.sqlite.steps import READERS_DO_NOT_NEED, STEP_NAMES
from tbhook.store.sqlite.timelines import SQLiteTallies, SQLiteTimelines
from tbhook.transfer.files import is_sqlite

BUSY_TIMEOUT_MS = 5000
DAY_SECONDS = 86400
CHECKPOINT_SECONDS = 0.2  # the receiver's WAL is copied into the database this often
# ... and the writer finishes the copy itself once the log holds this many pages (16 MiB):
# only a checkpoint between two of its own commits lets the next one start the log over.
WRITER_CHECKPOINT_PAGES = 4096
PAGES_PER_DELIVERY = 8  # the most new pages one delivery can take: its row, index splits
WAL_SIZE_LIMIT = 64 * 1024 * 1024
CACHE_KIB = 64 * 1024


def log_identity(path: str | os.PathLike) -> tuple[bool, str | None] | None:
    """Whether the SQLite file at ``path`` is a tbhook log, and its logId (None before m008);
    None when it is not a SQLite file tbhook can read. Reads only."""
    if not is_sqlite(path):
        return None
    # Immutable: no -wal or -shm is created beside a file that is only looked at (and left
    # behind when the command is refused). A live log has its -wal: read with it.
    live = os.path.exists(f"{os.fspath(path)}-wal")
    uri = (
        "file:"
        + quote(str(Path(path).resolve()))
        + ("?mode=ro" if live else "?mode=ro&immutable=1")
    )
    try:
        conn = sqlite3.connect(uri, uri=True, isolation_level=None)
    except sqlite3.Error:
        return None
    try:
        store = SQLiteStore(conn, os.fspath(path))
        if not store.applied_steps():
            return False, None
        return True, store.reads.meta().get("logId")
    except sqlite3.Error:
        return None
    finally:
        conn.close()


def unreadable(path: str, exc: sqlite3.DatabaseError) -> TbhookError:
    """What SQLite's "file is not a database" means: a file that is not SQLite at all (a
    README given as --db) is no tbhook database, and no backup is needed; a SQLite file that
    SQLite cannot read is damaged, and the last backup is the way back."""
    with contextlib.suppress(OSError):
        if os.path.getsize(path) and not is_sqlite(path):
            return ForeignDatabase(f"{path} is not a tbhook database (not a SQLite file at all)")
    return StoreDamaged(damaged(path, exc))


class SQLiteStore(Store):
    """A tbhook database in one SQLite file."""

    dialect = SQLITE
    can_split = True
    reads, exports = job(SQLiteReads), job(SQLiteExports)
    upkeep, timelines, tallies = job(SQLiteUpkeep), job(SQLiteTimelines), job(SQLiteTallies)

    def __init__(self, conn: sqlite3.Connection, path: str):
        self.conn = conn
        self.path = self.target = path
        self.max_bytes: int | None = None

    @functools.cached_property
    def db(self) -> Any:
        """The connection as a sqlite-utils Database, for migrations: imported only when
        writing (it costs a read command about 30 ms). No plugins: nothing here uses them."""
        from sqlite_utils import Database  # about 80 ms: only to migrate, when writing

        return Database(self.conn, execute_plugins=False)

    @functools.cached_property
    def has_counts(self) -> bool:
        """Whether the database has ``event_counts`` (a reader may open one not yet migrated)."""
        return self.has_table("event_counts")

    @functools.cached_property
    def has_timelines(self) -> bool:
        """Whether the database keeps ``case_timelines`` (m015)."""
        return self.has_table("case_timelines")

    @functools.cached_property
    def has_tallies(self) -> bool:
        """Whether the database keeps ``case_tallies`` and each case's wait (m016)."""
        return self.has_table("case_tallies")

    def has_table(self, name: str) -> bool:
        with self.reading():
            row = self.conn.execute(
                "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?", [name]
            ).fetchone()
        return row is not None

    def applied_steps(self) -> list[str]:
        """The names of the schema steps this database has, in the order they were applied."""
        if not self.has_table("_sqlite_migrations"):  # not (yet) a tbhook database
            return []
        with self.reading():
            rows = self.conn.execute(
                "SELECT name FROM _sqlite_migrations WHERE migration_set = 'tbhook' ORDER BY id"
            ).fetchall()
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
            if not os.path.exists(path):
                # Created 0600 here, only when missing: closing a descriptor of a database
                # this process has open drops every POSIX lock the process holds on it, and
                # then another process closing the last connection it sees deletes the WAL
                # under this one's (the receiver opens a second connection for its alerts).
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
                raise unreadable(path, exc) from exc
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
            try:
                refuse_newer(path, applied, STEP_NAMES)
            except NotReady:
                store.close()
                raise
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
        """A database that holds tables but not tbhook's is someone else's: never add to it;
        one a newer tbhook migrated is not this one's to write. The tables are looked at
        first: a receiver starting at the same moment may migrate the file between two looks,
        and its tables come with its steps (one transaction), so once seen, so are they."""
        found = self._tables()
        applied = self.applied_steps() if found else []
        if applied:
            refuse_newer(self.path, applied, STEP_NAMES)
            return
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
            from tbhook.store.sqlite.migrations import migrations, slow_steps  # sqlite_utils

            if notice:
                for line in slow_steps(self.db, migrations.pending(self.db)):
                    notice(line)
            migrations.apply(self.db)
            self._build_timelines(notice)
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        conn.execute("COMMIT")
        # A statement that fires a trigger (a prune's deletes) keeps a statement journal to
        # undo itself: in memory, not in a temporary file.
        conn.execute("PRAGMA temp_store = MEMORY")

    def _build_timelines(self, notice: Callable[[str], None] | None) -> None:
        """After an upgrade (or a new meaning of the summaries), every case summarized once,
        in the opening transaction: a minute at 10M events."""
        if not self.has_table("case_timelines"):
            return
        events = self.conn.execute("SELECT coalesce(max(id), 0) FROM events").fetchone()[0]
        if notice and events >= 1_000_000 and self.timelines.is_outdated(self.conn):
            notice(
                f"Summarizing the cases of {self.path} for `tbhook report`, once "
                f"(about {events // 1_000_000 * 6} seconds)."
            )
        self.timelines.bring_up_to_date(self.conn)

    def close(self) -> None:
        self.conn.close()

    # -- primitives ----------------------------------------------------------------------

    def query(self, sql: str, params: Sequence = ()) -> Iterator[tuple]:
        with self.reading():
            cursor = self.conn.execute(sql, params)
        return self._streamed(cursor)

    def query_dicts(self, sql: str, params: Sequence = ()) -> Iterator[dict]:
        with self.reading():
            cursor = self.conn.execute(sql, params)
        keys = [column[0] for column in cursor.description]
        return (dict(zip(keys, row, strict=True)) for row in self._streamed(cursor))

    def _streamed(self, rows: Iterator[Any]) -> Iterator[Any]:
        """Rows as SQLite gives them; a failure on the way (a damaged page met halfway) as a
        TbhookError, like one at the start."""
        with self.reading():
            # A loop, not ``yield from``: a generator closed early (`| head`) must not close
            # the cursor, whose connection may be closed already.
            for row in rows:  # noqa: UP028
                yield row

    @contextlib.contextmanager
    def reading(self) -> Iterator[None]:
        """Any SQLite failure while reading, as StoreDamaged (the file is corrupt, or not a
        database) or StoreUnavailable (locked, I/O)."""
        try:
            yield
        except sqlite3.DatabaseError as exc:
            if type(exc) is sqlite3.DatabaseError:
                raise unreadable(self.path, exc) from exc
            raise StoreUnavailable(f"cannot read {self.path}: {exc}") from exc
        except sqlite3.Error as exc:
            raise StoreUnavailable(f"cannot read {self.path}: {exc}") from exc

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
        ``event_counts`` and folded into ``case_timelines`` (whichever command added them:
        receiver, import, merge, retry; a prune's deletes too)."""
        conn = self.conn
        with self._errors():
            conn.execute("BEGIN IMMEDIATE")
            try:
                before = conn.execute("SELECT coalesce(max(id), 0) FROM events").fetchone()[0]
                yield conn
                if self.has_counts:
                    conn.execute(batches.COUNT_NEW, [before])
                if self.has_timelines:
                    self.timelines.keep_up(conn, before)
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

    def beside_the_writer(self) -> None:
        # In WAL mode: no fsync at commit; the next durable commit (the writer's) syncs the
        # log these frames are in.
        self.conn.execute("PRAGMA synchronous = NORMAL")
        self.conn.execute("PRAGMA wal_autocheckpoint = 0")

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
            stored = outcomes(params, readable, batches.append(conn, params, readable))
            if forward_to:
                self.forwards.queue(conn, stored, forward_to)
            return stored

    def import_rows(self, rows: ImportRows) -> tuple[int, list[int]]:
        with self.writing() as conn:
            return batches.insert_new(conn, rows)

    def record_size_cap(self) -> None:
        with self.writing() as conn:
            if self.max_bytes:
                conn.execute(
                    "INSERT OR REPLACE INTO tbhook_meta VALUES ('maxDbSize', ?)", [self.max_bytes]
                )
            else:
                conn.execute("DELETE FROM tbhook_meta WHERE key = 'maxDbSize'")

    # -- operations ----------------------------------------------------------------------

    def backup(self, dest: str) -> None:
        """A consistent copy of the live database (``VACUUM INTO``), safe while `serve` writes.
        ``dest`` must not exist, or be empty (a temporary created 0600 before this writes to
        it): the caller writes to a temporary name and renames it."""
        try:
            self.conn.execute("VACUUM INTO ?", [dest])
        except sqlite3.DatabaseError as exc:
            if type(exc) is sqlite3.DatabaseError:
                raise unreadable(self.path, exc) from exc
            raise StoreUnavailable(f"cannot back up {self.path}: {exc}") from exc

    # -- facts for doctor ----------------------------------------------------------------

    def integrity(self, quick: bool = False) -> list[str]:
        """``PRAGMA integrity_check`` (or ``quick_check``): ``["ok"]`` when all is well."""
        pragma = "quick_check" if quick else "integrity_check"
        try:
            return [row[0] for row in self.conn.execute(f"PRAGMA {pragma}")]
        except sqlite3.DatabaseError as exc:  # too damaged to check: that is the answer
            return [str(exc)]

    def schema(self) -> tuple[list[str], list[str]]:
        applied = self.applied_steps()
        return applied, [name for name in STEP_NAMES if name not in applied]

    def space(self) -> dict[str, int]:
        """Pages in the file and how many of them hold data (free pages are reused first)."""
        with self.reading():
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

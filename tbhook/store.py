"""EventStore: the only module that speaks SQL to the tbhook database."""

from __future__ import annotations

import hashlib
import os
import sqlite3
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from urllib.parse import quote

from sqlite_utils import Database

from tbhook.errors import NoDatabase, StoreUnavailable
from tbhook.events import COLUMNS, Event, Unreadable
from tbhook.migrations import migrations

BUSY_TIMEOUT_MS = 5000
WAL_SIZE_LIMIT = 64 * 1024 * 1024

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
        "lastReceivedAt = excluded.lastReceivedAt RETURNING id, deliveries"
    )


_INSERT_EVENT = _upsert_sql("events", _EVENT_COLUMNS)
_INSERT_QUARANTINE = _upsert_sql("quarantine", _QUARANTINE_COLUMNS)


def utc_now() -> str:
    """The current UTC time as ISO-8601 with milliseconds, the format of receivedAt."""
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


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


class EventStore:
    """A tbhook database: one writer connection, or a read-only one."""

    def __init__(self, conn: sqlite3.Connection, path: str):
        self.db = Database(conn)
        self.path = path

    @classmethod
    def open(cls, path: str | os.PathLike) -> EventStore:
        """Open (creating with mode 0600) a database for writing, migrate it, prove it writable."""
        path = os.fspath(path)
        try:
            os.close(os.open(path, os.O_RDONLY | os.O_CREAT, 0o600))
            conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
            store = cls(conn, path)
            store._configure_writer()
        except OSError as exc:
            raise StoreUnavailable(f"cannot open {path} for writing: {exc.strerror}") from exc
        except sqlite3.Error as exc:
            raise StoreUnavailable(f"cannot open {path} for writing: {exc}") from exc
        return store

    @classmethod
    def open_readonly(cls, path: str | os.PathLike) -> EventStore:
        """Open an existing database read-only; never create one."""
        path = os.fspath(path)
        if not os.path.isfile(path):
            raise NoDatabase(path)
        uri = "file:" + quote(str(Path(path).resolve())) + "?mode=ro"
        try:
            conn = sqlite3.connect(uri, uri=True, isolation_level=None, check_same_thread=False)
            conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
            conn.execute("SELECT count(*) FROM sqlite_master").fetchone()
        except sqlite3.Error as exc:
            raise StoreUnavailable(f"cannot read {path}: {exc}") from exc
        return cls(conn, path)

    def _configure_writer(self) -> None:
        conn = self.db.conn
        conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
        self.db.enable_wal()
        # FULL: the WAL is fsynced at every commit, so a 200 survives power loss.
        conn.execute("PRAGMA synchronous = FULL")
        conn.execute(f"PRAGMA journal_size_limit = {WAL_SIZE_LIMIT}")
        migrations.apply(self.db)
        # Take the write lock once now, so a read-only file fails at start-up, not per request.
        conn.execute("BEGIN IMMEDIATE")
        conn.execute("ROLLBACK")

    def close(self) -> None:
        self.db.close()

    # -- writing -----------------------------------------------------------------------

    def append(self, deliveries: Sequence[Delivery]) -> list[Stored]:
        """Store a batch of deliveries in one durable transaction (group commit)."""
        conn = self.db.conn
        try:
            conn.execute("BEGIN IMMEDIATE")
            try:
                stored = [self._append_one(conn, d) for d in deliveries]
                conn.execute("COMMIT")
            except BaseException:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                raise
        except sqlite3.Error as exc:
            raise StoreUnavailable(f"could not store: {exc}") from exc
        return stored

    @staticmethod
    def _append_one(conn: sqlite3.Connection, delivery: Delivery) -> Stored:
        digest = hashlib.sha256(delivery.body).hexdigest()
        now, path, parsed = delivery.received_at, delivery.path, delivery.parsed
        if isinstance(parsed, Event):
            values = [parsed.values.get(column) for column in COLUMNS]
            params = (now, now, path, parsed.event, *values, delivery.body, digest)
            row_id, count = conn.execute(_INSERT_EVENT, params).fetchone()
            return Stored(row_id, count, quarantined=False)
        params = (now, now, path, parsed.reason, delivery.body, digest)
        row_id, count = conn.execute(_INSERT_QUARANTINE, params).fetchone()
        return Stored(row_id, count, quarantined=True)

    # -- reading -----------------------------------------------------------------------

    def count(self, table: str = "events") -> int:
        """Rows in ``events`` or ``quarantine``."""
        if table not in ("events", "quarantine"):
            raise ValueError(table)
        return self.db.execute(f"SELECT count(*) FROM {table}").fetchone()[0]

    def rows(self, table: str = "events") -> Iterator[dict]:
        """Every row of ``events`` or ``quarantine`` in arrival order."""
        if table not in ("events", "quarantine"):
            raise ValueError(table)
        return self.db.query(f"SELECT * FROM {table} ORDER BY id")

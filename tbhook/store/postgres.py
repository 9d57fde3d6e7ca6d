"""The PostgreSQL backend: several receivers and any number of readers on one database.

- Dedupe stays race-free across receivers: ``INSERT ... ON CONFLICT ("bodySha256") DO UPDATE``
  with each batch's bodies in hash order (no two batches can deadlock on each other), and the
  same body twice in a batch folded into one row first.
- A 200 only after the commit: the batch's transaction commits before the writer answers, and
  ``open`` warns when the server's ``synchronous_commit`` is off.
- Migrations run once under an advisory lock, even when receivers start together.
- `tail` follows transactions, not ids: a lower id can commit after a higher one, so it shows
  the events of transactions older than the oldest one still in flight (``events.txid``),
  each exactly once, and wakes on ``NOTIFY tbhook_events``.
- A lost connection (a restart, a failover) fails the batch (503) and is reopened on the next.
"""

from __future__ import annotations

import contextlib
import functools
import time
from collections.abc import Callable, Iterator, Sequence
from typing import IO, Any

from tbhook.errors import NoDatabase, NotReady, StoreBusy, StoreUnavailable, TbhookError
from tbhook.filters import Filters, utc_now
from tbhook.store.base import (
    CHUNK,
    EVENT_COLUMNS,
    EXPORT_COLUMNS,
    MERGE_EVENT_COLUMNS,
    MERGE_QUARANTINE_COLUMNS,
    PAUSE_SECONDS,
    QUARANTINE_COLUMNS,
    READ_COLUMNS,
    Dialect,
    ImportRows,
    Store,
    Stored,
    names,
    not_tbhooks,
    outcomes,
    q,
)
from tbhook.store.postgres_migrations import READERS_DO_NOT_NEED, STEPS

POSTGRES = Dialect(
    name="postgresql",
    char="chr",
    empty_blob="''::bytea",
    iso_time_format=(
        "to_char(to_timestamp({0}) AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"')"
    ),
    epoch_of_iso="extract(epoch from ({0})::timestamptz)",
    indexed_by=False,
    least="LEAST",
    greatest="GREATEST",
)
MIGRATION_LOCK = 0x7462686F6F6B  # "tbhook", for pg_advisory_xact_lock
CHANNEL = "tbhook_events"
_TEXT_COLUMNS = {"receivedAt", "event", "time"}  # in the export: JSON strings, not numbers


def is_url(target: str) -> bool:
    return target.startswith(("postgresql://", "postgres://"))


def check_url(url: str) -> None:
    """Raise TbhookError, in words and without the password, when ``url`` cannot be a
    PostgreSQL URL (a port that is not a number or out of range, an unclosed IPv6 bracket)."""
    from urllib.parse import urlsplit

    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        reason = str(exc)
        if "cast to integer" in reason:
            reason = "its port is not a number"
        elif "out of range" in reason:
            reason = "its port is not between 1 and 65535"
        elif "IPv6" in reason:
            reason = "its IPv6 address lacks a bracket (write postgresql://[::1]:5432/tbhook)"
        raise TbhookError(f"{_masked(url)} is not a valid PostgreSQL URL: {reason}") from None
    if port == 0:
        raise TbhookError(
            f"{_masked(url)} is not a valid PostgreSQL URL: its port is not between 1 and 65535"
        )


def _masked(url: str) -> str:
    """The URL with any password replaced, without parsing it (it may not parse)."""
    import re

    return re.sub(r"^([a-z]+://[^:/@]*):[^@/]*@", r"\1:***@", url)


def shown(url: str) -> str:
    """The URL without its password: safe for a banner, a report or an error."""
    from urllib.parse import urlsplit, urlunsplit

    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.hostname or ""
    if parts.username:
        netloc = f"{parts.username}@{netloc}"
    if parts.port:
        netloc += f":{parts.port}"
    return urlunsplit(parts._replace(netloc=netloc))


def _psycopg() -> Any:
    try:
        import psycopg
    except ImportError:
        raise TbhookError(
            "a postgresql:// database needs psycopg: pip install 'psycopg[binary]'"
        ) from None
    return psycopg


@functools.lru_cache(maxsize=512)
def _pg(sql: str) -> str:
    """``?`` placeholders as psycopg's ``%s`` (a literal % doubled first)."""
    return sql.replace("%", "%%").replace("?", "%s")


class _Writer:
    """The connection inside a write transaction, taking ``?`` placeholders."""

    def __init__(self, conn: Any):
        self.conn = conn

    def execute(self, sql: str, params: Sequence = ()) -> Any:
        return self.conn.execute(_pg(sql), params)

    def executemany(self, sql: str, rows: Sequence[Sequence]) -> Any:
        with self.conn.cursor() as cursor:
            cursor.executemany(_pg(sql), rows)
            return cursor


class PostgresStore(Store):
    """A tbhook database in PostgreSQL."""

    dialect = POSTGRES
    kind = "postgresql"

    def __init__(self, url: str, readonly: bool):
        self.url = self.target = url
        self.path = shown(url)
        self.readonly = readonly
        self._conn: Any = None

    # -- connecting ----------------------------------------------------------------------

    @classmethod
    def open(cls, url: str, max_bytes: int | None = None) -> PostgresStore:
        """Connect for writing, migrate once (advisory lock), check durability settings."""
        if max_bytes:
            raise TbhookError("--max-db-size caps a SQLite file; on PostgreSQL use quotas there")
        store = cls(url, readonly=False)
        with store._errors("cannot open"):
            conn = store.connection()
            with conn.transaction():
                conn.execute("SELECT pg_advisory_xact_lock(%s)", [MIGRATION_LOCK])
                store._refuse_foreign(conn)
                # Nothing is written when the schema is current: a database that turned
                # read-only opens, and each commit then says why it cannot (503, /healthz).
                if not conn.execute("SELECT to_regclass('tbhook_migrations')").fetchone()[0]:
                    conn.execute(
                        "CREATE TABLE tbhook_migrations "
                        '(name TEXT PRIMARY KEY, "appliedAt" TEXT NOT NULL)'
                    )
                done = {row[0] for row in conn.execute("SELECT name FROM tbhook_migrations")}
                for name, statements in STEPS:
                    if name not in done:
                        for statement in statements:
                            conn.execute(statement)
                        conn.execute(
                            "INSERT INTO tbhook_migrations VALUES (%s, %s)", [name, utc_now()]
                        )
        return store

    @classmethod
    def open_readonly(cls, url: str, current: bool = True) -> PostgresStore:
        store = cls(url, readonly=True)
        with store._errors("cannot read"):
            conn = store.connection()
            exists = conn.execute("SELECT to_regclass('tbhook_migrations')").fetchone()[0]
            applied = (
                {row[0] for row in conn.execute("SELECT name FROM tbhook_migrations")}
                if exists
                else set()
            )
        if not applied:
            store.close()
            raise (
                NoDatabase(store.path)
                if not exists
                else NotReady(f"{store.path} is not a tbhook database")
            )
        if current and {name for name, _ in STEPS} - applied - READERS_DO_NOT_NEED:
            store.close()
            raise NotReady(
                f"{store.path} was written by an older tbhook; run `tbhook serve --db ...` "
                "once to upgrade it"
            )
        return store

    def connection(self) -> Any:
        """The connection, reopened if it was lost (a server restart, a failover)."""
        if self._conn is None or self._conn.closed or self._conn.broken:
            psycopg = _psycopg()
            if self._conn is not None:
                with contextlib.suppress(Exception):
                    self._conn.close()
            self._conn = None
            extra = {"options": "-c default_transaction_read_only=on"} if self.readonly else {}
            self._conn = psycopg.connect(self.url, autocommit=True, connect_timeout=5, **extra)
        return self._conn

    def _refuse_foreign(self, conn: Any) -> None:
        """A database that holds tables but not tbhook's is someone else's: never add to it."""
        if conn.execute("SELECT to_regclass('tbhook_migrations')").fetchone()[0]:
            return
        found = [
            row[0]
            for row in conn.execute(
                "SELECT table_name FROM information_schema.tables "
                "WHERE table_schema = current_schema() ORDER BY table_name LIMIT 6"
            )
        ]
        if found:
            raise not_tbhooks(
                self.path, found, "give --db an empty database or an existing tbhook one"
            )

    def close(self) -> None:
        if self._conn is not None:
            with contextlib.suppress(Exception):
                self._conn.close()
            self._conn = None

    @contextlib.contextmanager
    def _errors(self, doing: str = "could not store") -> Iterator[None]:
        """psycopg's errors as tbhook's, in plain words and never with the password."""
        psycopg = _psycopg()
        try:
            yield
        except psycopg.errors.LockNotAvailable as exc:
            raise StoreBusy(f"{doing}: {self._clean(exc)}") from exc
        except psycopg.errors.ReadOnlySqlTransaction as exc:
            if not self.readonly:
                # A new session takes the database's setting as it is then (or reaches the new
                # primary after a failover): this one would refuse every write from now on.
                self.close()
            raise StoreUnavailable(f"{doing}: {self._clean(exc)}") from exc
        except psycopg.OperationalError as exc:
            raise StoreUnavailable(
                f"{doing}: PostgreSQL at {self.path} is unreachable or failing: {self._clean(exc)}"
            ) from exc
        except psycopg.Error as exc:
            raise StoreUnavailable(f"{doing}: {self._clean(exc)}") from exc

    def _clean(self, exc: BaseException) -> str:
        text = " ".join(str(exc).split())
        from urllib.parse import urlsplit

        password = urlsplit(self.url).password
        return text.replace(password, "***") if password else text

    # -- primitives ----------------------------------------------------------------------

    def query(self, sql: str, params: Sequence = ()) -> Iterator[tuple]:
        with self._errors("cannot read"):
            return iter(self.connection().execute(_pg(sql), params).fetchall())

    def query_dicts(self, sql: str, params: Sequence = ()) -> Iterator[dict]:
        """Streamed through a server-side cursor: a million rows never sit in memory."""
        from psycopg.rows import dict_row

        conn = self.connection()
        with (
            self._errors("cannot read"),
            conn.transaction(),
            conn.cursor(name="tbhook_rows", row_factory=dict_row) as cursor,
        ):
            cursor.itersize = 2000
            cursor.execute(_pg(sql), params)
            yield from cursor

    @contextlib.contextmanager
    def writing(self) -> Iterator[_Writer]:
        with self._errors():
            conn = self.connection()
            with conn.transaction():
                yield _Writer(conn)

    # -- writing -------------------------------------------------------------------------

    def append_rows(
        self, params: list[tuple], readable: list[bool], forward_to: str | None = None
    ) -> list[Stored]:
        # The same body twice in a batch: one row, counted twice. PostgreSQL's upsert may not
        # touch a row twice in one statement.
        folded: dict[tuple[bool, bytes], list] = {}
        for row, is_event in zip(params, readable, strict=True):
            key = (is_event, row[-1])
            if key in folded:
                folded[key][1] += 1
                folded[key][2] = row[1]  # lastReceivedAt of the latest
            else:
                folded[key] = [row, 1, row[1]]
        for attempt in range(3):
            try:
                return self._append_folded(params, readable, folded, forward_to)
            except StoreUnavailable as exc:
                # Two receivers upserting the same bodies in opposite orders deadlock, and
                # PostgreSQL aborts one of them: that one tries again (rare: Tracebuzz would
                # have to retry two events at once through two receivers). A session the
                # server ended (a restart, pg_terminate_backend, a failover) is opened again
                # once: the batch is not answered 503 for a connection that sat idle. Had it
                # committed before the session broke, dedupe makes the second try a retry,
                # as Tracebuzz's own would be.
                if attempt == 2 or not (self._deadlock(exc) or (attempt == 0 and self._lost())):
                    raise
        raise AssertionError("unreachable")

    @staticmethod
    def _deadlock(exc: StoreUnavailable) -> bool:
        return isinstance(exc.__cause__, _psycopg().errors.DeadlockDetected)

    def _lost(self) -> bool:
        """Whether the write connection is gone (``connection()`` opens a new one)."""
        return self._conn is None or self._conn.closed or self._conn.broken

    def _append_folded(
        self,
        params: list[tuple],
        readable: list[bool],
        folded: dict[tuple[bool, bytes], list],
        forward_to: str | None,
    ) -> list[Stored]:
        found: dict[tuple[bool, bytes], tuple[int, int]] = {}
        with self.writing() as conn:
            for table, is_event in (("events", True), ("quarantine", False)):
                # In arrival order (dicts keep it): ids grow as the bodies came in.
                rows = [
                    (*first[:1], last, *first[2:], count)
                    for key, (first, count, last) in folded.items()
                    if key[0] is is_event
                ]
                if not rows:
                    continue
                # One short statement, pipelined: psycopg sends every row at once and the
                # server plans the statement once (a long multi-row text is parsed anew, in
                # Python, every time).
                with conn.conn.cursor() as cursor:
                    cursor.executemany(_pg(_upsert(table, 1)), rows, returning=True)
                    while True:
                        digest, row_id, count = cursor.fetchone()
                        found[(is_event, bytes(digest))] = (row_id, count)
                        if not cursor.nextset():
                            break
            stored = outcomes(params, readable, found)
            if forward_to:
                self.queue_forwards(conn, stored, forward_to)
            conn.execute(f"NOTIFY {CHANNEL}")  # sent at commit: tail wakes
        return stored

    def import_rows(self, rows: ImportRows) -> tuple[int, list[int]]:
        """Through ``COPY`` into a staging table, then one INSERT that leaves stored bodies
        alone (about 4x the multi-row INSERT, whose parameters Python builds one by one)."""
        with self.writing() as conn:
            _stage(conn, "events", EVENT_COLUMNS, rows.events)
            inserted = conn.execute(
                f"INSERT INTO events ({names(EVENT_COLUMNS)}) SELECT {names(EVENT_COLUMNS)} "
                "FROM staged_events ORDER BY n ON CONFLICT DO NOTHING"
            ).rowcount
            quarantined = []
            for params in rows.quarantine:  # few: one at a time, to know which were new
                cursor = conn.execute(
                    _insert_new("quarantine", (*QUARANTINE_COLUMNS, "line"), 1), params
                )
                if cursor.rowcount:
                    quarantined.append(params[-1])
            if inserted or quarantined:
                conn.execute(f"NOTIFY {CHANNEL}")
        return inserted, quarantined

    # -- reading -------------------------------------------------------------------------

    def rows(self, table: str = "events") -> Iterator[dict]:
        if table not in ("events", "quarantine"):
            raise ValueError(table)
        columns = (
            ("id", "deliveries", *EVENT_COLUMNS)
            if table == "events"
            else ("id", "deliveries", *QUARANTINE_COLUMNS, "line")
        )
        return self.query_dicts(f"SELECT {names(columns)} FROM {table} ORDER BY id")

    def stats_counter(self, filters: Filters) -> Any:
        """Grouped on the server: the same groups as SQLite's Counter, without moving every row."""
        from collections import Counter

        from tbhook.store.base import DAY

        where, params = self.where(filters)
        rows = self.query(
            f'SELECT e.event, e.own, e."typeId", e."sourceId", {DAY}, count(*) FROM events e '
            f"WHERE {where} GROUP BY 1, 2, 3, 4, 5",
            params,
        )
        return Counter({tuple(row[:5]): row[5] for row in rows})

    # -- tail: every event exactly once, by transaction -----------------------------------

    def tail_begin(self, filters: Filters, lines: int | None) -> tuple[list[dict], Any]:
        """The last ``lines`` matching events (0: all, None: none), and where following
        starts: the oldest transaction in flight now. Backlog rows from newer transactions
        are remembered, so the windows that follow do not show them again."""
        limit = f"LIMIT {int(lines)}" if lines else ""
        with self._snapshot() as horizon:
            backlog = (
                self._rows_with_txid(filters, "TRUE", [], f"ORDER BY e.id DESC {limit}")
                if lines is not None
                else []
            )
        backlog.reverse()
        shown = {row["id"]: row["txid"] for row in backlog if row["txid"] >= horizon}
        return [_strip(row) for row in backlog], (horizon, shown)

    def tail_more(self, filters: Filters, cursor: Any) -> tuple[list[dict], Any]:
        """Events of the transactions that finished since the last call: every transaction
        older than the oldest one still in flight, which no later commit can add to. Each
        event belongs to one such window, so it is shown exactly once."""
        boundary, shown = cursor
        with self._snapshot() as horizon:
            rows = self._rows_with_txid(
                filters,
                "e.txid >= ?::text::xid8 AND e.txid < ?::text::xid8",
                [str(boundary), str(horizon)],
                "ORDER BY e.id",
            )
        fresh = [_strip(row) for row in rows if row["id"] not in shown]
        shown = {i: txid for i, txid in shown.items() if txid >= horizon}
        return fresh, (max(boundary, horizon), shown)

    @contextlib.contextmanager
    def _snapshot(self) -> Iterator[int]:
        """A REPEATABLE READ transaction, and its snapshot's xmin: every transaction below it
        has finished, and those that committed are visible in this snapshot."""
        conn = self.connection()
        with self._errors("cannot read"), conn.transaction():
            conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
            yield int(
                conn.execute("SELECT pg_snapshot_xmin(pg_current_snapshot())::text").fetchone()[0]
            )

    def _rows_with_txid(self, filters: Filters, window: str, bounds: list, order: str) -> list:
        from psycopg.rows import dict_row

        where, params = self.where(filters)
        columns = ", ".join(f"e.{q(c)}" for c in READ_COLUMNS)
        with self.connection().cursor(row_factory=dict_row) as cursor:
            cursor.execute(
                _pg(
                    f"SELECT {columns}, e.txid::text::bigint AS txid FROM events e "
                    f"WHERE {window} AND {where} {order}"
                ),
                [*bounds, *params],
            )
            return cursor.fetchall()

    def tail_wait(self, seconds: float) -> None:
        """Sleep until a receiver commits (NOTIFY), or a second at most: a window can also
        open when another transaction ends, which sends nothing."""
        seconds = max(seconds, 1.0)
        listener = getattr(self, "_listener", None)
        if listener is None:
            psycopg = _psycopg()
            listener = psycopg.connect(self.url, autocommit=True, connect_timeout=5)
            listener.execute(f"LISTEN {CHANNEL}")
            self._listener = listener
        for _ in listener.notifies(timeout=seconds, stop_after=1):
            break

    # -- export --------------------------------------------------------------------------

    def export(
        self,
        filters: Filters,
        fmt: str,
        stream: IO[str],
        progress: Callable[[int], None] | None = None,
    ) -> int:
        """``COPY (SELECT ...) TO STDOUT``: PostgreSQL finishes each row as SQLite's path does;
        only the line ending is changed here, to CSV's CRLF (RFC 4180)."""
        changed = self.resolver().changed()
        sql, params = self.export_select(filters, fmt)
        # NDJSON: one column that needs no quoting, so CSV mode with never-used quote and
        # delimiter characters passes each line through as it is.
        options = "FORMAT csv" if fmt == "csv" else "FORMAT csv, QUOTE e'\\x01', DELIMITER e'\\x02'"
        count = 0
        conn = self.connection()
        with self._errors("cannot read"), conn.transaction():
            # The merged persons go in a temporary table the planner knows the size of (a
            # hash join); only it is written, so this reader may write in this transaction.
            # No JIT: compiling the export's expressions costs more than it saves (measured:
            # 3.1 s -> 1.7 s for a million rows with both).
            conn.execute("SET TRANSACTION READ WRITE")
            conn.execute("SET LOCAL jit = off")
            conn.execute(
                "CREATE TEMP TABLE canon (person BIGINT PRIMARY KEY, now BIGINT) ON COMMIT DROP"
            )
            with conn.cursor() as cursor, cursor.copy("COPY canon FROM STDIN") as copy:
                for pair in changed.items():
                    copy.write_row(pair)
            conn.execute("ANALYZE canon")
            statement = f"COPY ({_pg(sql)}) TO STDOUT WITH ({options})"
            with conn.cursor() as cursor, cursor.copy(statement, params) as copy:
                batch: list[bytes] = []
                for row in copy:  # one message per row, ending in "\n"
                    batch.append(bytes(row))
                    if len(batch) == 2000:
                        stream.write(_lines(batch, fmt))
                        count += len(batch)
                        batch.clear()
                        if progress and count % 10_000 == 0:
                            progress(10_000)
                stream.write(_lines(batch, fmt))
                count += len(batch)
        return count

    def _json_line(self, expressions: dict[str, str]) -> str:
        """Compact JSON as SQLite's json_object writes it (the same escapes, the same order)."""
        parts = []
        for i, name in enumerate(EXPORT_COLUMNS):
            value = (
                f"to_json({expressions[name]})::text"
                if name in _TEXT_COLUMNS
                else (f"({expressions[name]})::text")
            )
            parts.append(f"'{'{' if i == 0 else ','}\"{name}\":' || coalesce({value}, 'null')")
        return "(" + " || ".join(parts) + " || '}')"

    # -- operations ----------------------------------------------------------------------

    def backup(self, dest: str) -> None:
        raise TbhookError(
            "backup copies a SQLite file; for PostgreSQL use its own tools, such as "
            f"pg_dump --format=custom --file=tbhook.dump '{self.path}'"
        )

    def merge_from(
        self, other: str, progress: Callable[[int], None] | None = None, chunk: int = CHUNK
    ) -> dict[str, int]:
        """Copy a SQLite log in, a chunk per transaction, its rows in their arrival order."""
        from tbhook.store.sqlite import SQLiteStore

        source = SQLiteStore.open_readonly(other)
        try:
            theirs = source.log_id()
            if theirs is not None and theirs == self.log_id():
                raise NotReady(f"{other} is this log itself (or a copy of it)")
            done = self.merged_upto(theirs) if theirs else (0, 0)
            new = [
                source.one(f"SELECT count(*) FROM {table} WHERE id > ?", [after])[0]
                for table, after in (("events", done[0]), ("quarantine", done[1]))
            ]
            added = [
                self._merge_table(source, table, columns, after, theirs, other, progress, chunk)
                for table, columns, after in (
                    ("events", MERGE_EVENT_COLUMNS, done[0]),
                    ("quarantine", MERGE_QUARANTINE_COLUMNS, done[1]),
                )
            ]
        finally:
            source.close()
        return {
            "added": added[0],
            "alreadyHere": new[0] - added[0],
            "quarantine": added[1],
            "mergedBefore": done[0],
        }

    def _merge_table(
        self,
        source: Store,
        table: str,
        columns: Sequence[str],
        after: int,
        log_id: str | None,
        other: str,
        progress: Callable[[int], None] | None,
        chunk: int,
    ) -> int:
        added = 0
        while True:
            rows = list(
                source.query(
                    f"SELECT id, {names(columns)} FROM {table} WHERE id > ? ORDER BY id LIMIT ?",
                    [after, chunk],
                )
            )
            if not rows:
                return added
            with self.writing() as conn:
                _stage(conn, table, columns, [row[1:] for row in rows])
                merged = conn.execute(_merge_staged(table, tuple(columns)))
                added += sum(1 for (inserted,) in merged if inserted)
                if log_id is not None:
                    self.record_merged(conn, log_id, table, rows[-1][0], other)
                conn.execute(f"NOTIFY {CHANNEL}")
            after = rows[-1][0]
            if progress:
                progress(len(rows))
            time.sleep(PAUSE_SECONDS)

    # -- facts for doctor ----------------------------------------------------------------

    def integrity(self, quick: bool = False) -> list[str]:
        return ["ok"]  # PostgreSQL checks its own pages (data checksums, amcheck)

    def schema(self) -> tuple[list[str], list[str]]:
        applied = [row[0] for row in self.query("SELECT name FROM tbhook_migrations ORDER BY name")]
        return applied, [name for name, _ in STEPS if name not in applied]

    def space(self) -> dict[str, int]:
        size = self.one("SELECT pg_database_size(current_database())")[0]
        return {"pageSize": 8192, "pages": size // 8192, "usedBytes": size}

    def server_facts(self) -> dict[str, Any]:
        return {
            "serverVersion": self.one("SHOW server_version")[0],
            "synchronousCommit": self.one("SHOW synchronous_commit")[0],
            "databaseBytes": self.one("SELECT pg_database_size(current_database())")[0],
        }

    def durability_warning(self) -> str | None:
        setting = self.one("SHOW synchronous_commit")[0]
        if setting != "off":
            return None
        return (
            "Warning: PostgreSQL's synchronous_commit is off for this database, so a 200 is "
            "sent before the event is on disk and a server crash can lose it; set "
            "synchronous_commit = on (postgresql.conf, or ALTER DATABASE ... SET)."
        )


def _lines(rows: list[bytes], fmt: str) -> str:
    """COPY's rows as text, each CSV record ending in CRLF (RFC 4180). A record holds a newline
    of its own only inside a quoted field, so a batch without a quote is changed at once."""
    data = b"".join(rows)
    if fmt != "csv":
        return data.decode()
    if b'"' not in data:
        return data.replace(b"\n", b"\r\n").decode()
    return b"".join(row[:-1] + b"\r\n" for row in rows).decode()


def _strip(row: dict) -> dict:
    row.pop("txid", None)
    return row


@functools.lru_cache(maxsize=4)
def _upsert(table: str, count: int) -> str:
    columns = (*(EVENT_COLUMNS if table == "events" else QUARANTINE_COLUMNS), "deliveries")
    row = "(" + ", ".join("?" for _ in columns) + ")"
    return (
        f"INSERT INTO {table} ({names(columns)}) VALUES {', '.join([row] * count)} "
        f'ON CONFLICT ("bodySha256") DO UPDATE SET deliveries = {table}.deliveries + '
        'excluded.deliveries, "lastReceivedAt" = excluded."lastReceivedAt" '
        'RETURNING "bodySha256", id, deliveries'
    )


@functools.lru_cache(maxsize=16)
def _insert_new(table: str, columns: tuple[str, ...], count: int) -> str:
    row = "(" + ", ".join("?" for _ in columns) + ")"
    return (
        f"INSERT INTO {table} ({names(columns)}) VALUES {', '.join([row] * count)} "
        "ON CONFLICT DO NOTHING"
    )


def _stage(conn: _Writer, table: str, columns: Sequence[str], rows: Sequence[Sequence]) -> None:
    """``rows`` into ``staged_<table>`` (emptied at commit), numbered in their order."""
    staged = f"staged_{table}"
    conn.execute(
        f"CREATE TEMP TABLE IF NOT EXISTS {staged} ON COMMIT DELETE ROWS AS "
        f"SELECT 0::bigint AS n, {names(columns)} FROM {table} WITH NO DATA"
    )
    with (
        conn.conn.cursor() as cursor,
        cursor.copy(f"COPY {staged} (n, {names(columns)}) FROM STDIN") as copy,
    ):
        for n, row in enumerate(rows):
            copy.write_row((n, *row))


@functools.lru_cache(maxsize=4)
def _merge_staged(table: str, columns: tuple[str, ...]) -> str:
    """Staged rows of another log: a body already here gains its deliveries; ``xmax = 0`` is
    true for a row this statement inserted (not updated)."""
    return (
        f"INSERT INTO {table} ({names(columns)}) SELECT {names(columns)} FROM staged_{table} "
        f'ORDER BY n ON CONFLICT ("bodySha256") DO UPDATE SET {POSTGRES.sum_deliveries(table)} '
        "RETURNING (xmax = 0)"
    )

"""The PostgreSQL backend: several receivers and any number of readers on one database.

- Dedupe stays race-free across receivers: ``INSERT ... ON CONFLICT ("bodySha256") DO UPDATE``
  with each batch's bodies in hash order (no two batches can deadlock on each other), and the
  same body twice in a batch folded into one row first.
- A 200 only after the commit: the batch's transaction commits before the writer answers, and
  ``open`` warns when the server's ``synchronous_commit`` is off.
- Migrations run once under an advisory lock, even when receivers start together.
- A lost connection (a restart, a failover) fails the batch (503) and is reopened on the next.

The engine is here; the jobs PostgreSQL does its own way have a module each: ``tail``
(following transactions), ``reads`` (counts grouped on the server), ``export`` (rows through a
server-side cursor), ``merge`` (a SQLite log copied in with COPY); ``driver`` is psycopg.
"""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Iterator, Sequence
from typing import Any
from urllib.parse import urlsplit

from tbhook.errors import NoDatabase, NotReady, StoreBusy, StoreUnavailable, TbhookError
from tbhook.model.targets import shown
from tbhook.model.times import utc_now
from tbhook.store.interface import Store, job, not_tbhooks, refuse_newer
from tbhook.store.postgres.driver import CHANNEL, POSTGRES, Writer, pg, psycopg, stage
from tbhook.store.postgres.export import PostgresExports
from tbhook.store.postgres.merge import PostgresUpkeep
from tbhook.store.postgres.migrations import READERS_DO_NOT_NEED, STEPS
from tbhook.store.postgres.reads import PostgresReads
from tbhook.store.postgres.tail import PostgresTail
from tbhook.store.postgres.timelines import PostgresTallies, PostgresTimelines
from tbhook.store.rows import EVENT_COLUMNS, QUARANTINE_COLUMNS, ImportRows, Stored, outcomes
from tbhook.store.sql import names

__all__ = ["PostgresStore"]

MIGRATION_LOCK = 0x7462686F6F6B  # "tbhook", for pg_advisory_xact_lock


class PostgresStore(Store):
    """A tbhook database in PostgreSQL."""

    dialect = POSTGRES
    kind = "postgresql"
    reads, tail, exports = job(PostgresReads), job(PostgresTail), job(PostgresExports)
    upkeep, timelines, tallies = job(PostgresUpkeep), job(PostgresTimelines), job(PostgresTallies)

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
        with store._errors("cannot open"), store._closed_on(NotReady):
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
                refuse_newer(store.path, sorted(done), [name for name, _ in STEPS])
                for name, statements in STEPS:
                    if name not in done:
                        for statement in statements:
                            conn.execute(statement)
                        conn.execute(
                            "INSERT INTO tbhook_migrations VALUES (%s, %s)", [name, utc_now()]
                        )
                # Under the same lock: every case summarized once after an upgrade.
                store.timelines.bring_up_to_date(Writer(conn))
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
        try:
            refuse_newer(store.path, sorted(applied), [name for name, _ in STEPS])
        except NotReady:
            store.close()
            raise
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

    @contextlib.contextmanager
    def _closed_on(self, error: type[Exception]) -> Iterator[None]:
        try:
            yield
        except error:
            self.close()
            raise

    def connection(self) -> Any:
        """The connection, reopened if it was lost (a server restart, a failover)."""
        if self._conn is None or self._conn.closed or self._conn.broken:
            driver = psycopg()
            if self._conn is not None:
                with contextlib.suppress(Exception):
                    self._conn.close()
            self._conn = None
            extra = {"options": "-c default_transaction_read_only=on"} if self.readonly else {}
            # Named in pg_stat_activity: which tbhook session is which, for the operator.
            name = "tbhook reader" if self.readonly else "tbhook writer"
            self._conn = driver.connect(
                self.url, autocommit=True, connect_timeout=5, application_name=name, **extra
            )
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

    @contextlib.contextmanager
    def exclusive(self, name: str) -> Iterator[bool]:
        """A session advisory lock keyed by ``name``: whether this connection got it (another
        receiver's pass holds it otherwise); released when the block ends."""
        import zlib

        key = MIGRATION_LOCK ^ zlib.crc32(name.encode())
        with self._errors("cannot lock"):
            got = self.connection().execute("SELECT pg_try_advisory_lock(%s)", [key]).fetchone()
        try:
            yield bool(got[0])
        finally:
            if got[0]:
                with contextlib.suppress(Exception):
                    self.connection().execute("SELECT pg_advisory_unlock(%s)", [key])

    def beside_the_writer(self) -> None:
        with self._errors("cannot set synchronous_commit"):
            self.connection().execute("SET synchronous_commit = off")

    def close(self) -> None:
        if "tail" in self.__dict__:  # its listening session, if it opened one
            self.tail.close()
        if self._conn is not None:
            with contextlib.suppress(Exception):
                self._conn.close()
            self._conn = None

    @contextlib.contextmanager
    def _errors(self, doing: str = "could not store") -> Iterator[None]:
        """psycopg's errors as tbhook's, in plain words and never with the password."""
        driver = psycopg()
        try:
            yield
        except driver.errors.LockNotAvailable as exc:
            raise StoreBusy(f"{doing}: {self._clean(exc)}") from exc
        except driver.errors.ReadOnlySqlTransaction as exc:
            if not self.readonly:
                # A new session takes the database's setting as it is then (or reaches the new
                # primary after a failover): this one would refuse every write from now on.
                self.close()
            raise StoreUnavailable(f"{doing}: {self._clean(exc)}") from exc
        except driver.OperationalError as exc:
            self._drop_unusable()
            raise StoreUnavailable(
                f"{doing}: PostgreSQL at {self.path} is unreachable or failing: {self._clean(exc)}"
            ) from exc
        except driver.Error as exc:
            self._drop_unusable()
            raise StoreUnavailable(f"{doing}: {self._clean(exc)}") from exc

    def _drop_unusable(self) -> None:
        """After a failure, close a session left in no state to go on, so the next call opens
        a new one. psycopg does not mark every such session broken: one the server ended in
        the middle of a pipelined statement (executemany) stays "in pipeline mode" and fails
        every later statement, while libpq logs each refusal; a writer kept on it answered
        503 until restarted and logged gigabytes (what the restart-under-load test met)."""
        conn = self._conn
        if conn is None or conn.closed:
            return
        from psycopg import pq

        idle = conn.info.transaction_status == pq.TransactionStatus.IDLE
        if conn.broken or not idle or conn.pgconn.pipeline_status != pq.PipelineStatus.OFF:
            with contextlib.suppress(Exception):
                conn.close()
            self._conn = None

    def _clean(self, exc: BaseException) -> str:
        text = " ".join(str(exc).split())

        password = urlsplit(self.url).password
        return text.replace(password, "***") if password else text

    # -- primitives ----------------------------------------------------------------------

    def query(self, sql: str, params: Sequence = ()) -> Iterator[tuple]:
        with self._errors("cannot read"):
            return iter(self.connection().execute(pg(sql), params).fetchall())

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
            cursor.execute(pg(sql), params)
            yield from cursor

    @contextlib.contextmanager
    def writing(self) -> Iterator[Writer]:
        with self._errors():
            conn = self.connection()
            with conn.transaction():
                writer = Writer(conn)
                yield writer
                if self.has_timelines:
                    self.timelines.keep_up(writer)

    @functools.cached_property
    def has_timelines(self) -> bool:
        """Whether the database keeps ``case_timelines`` (p006)."""
        with self._errors("cannot read"):
            found = self.connection().execute("SELECT to_regclass('case_timelines')").fetchone()
        return found[0] is not None

    @functools.cached_property
    def has_tallies(self) -> bool:
        """Whether the database keeps ``case_tallies`` and each case's wait (p007)."""
        with self._errors("cannot read"):
            found = self.connection().execute("SELECT to_regclass('case_tallies')").fetchone()
        return found[0] is not None

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
        return isinstance(exc.__cause__, psycopg().errors.DeadlockDetected)

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
                # A body stored already only adds its deliveries: an INSERT that conflicts
                # takes a number from the sequence, a gap that looks like a lost event. Two
                # receivers inserting one new body at once still conflict (one id skipped).
                known = {
                    bytes(row[0])
                    for row in conn.execute(
                        f'SELECT "bodySha256" FROM {table} WHERE "bodySha256" = ANY(?)',
                        [[row[-2] for row in rows]],
                    )
                }
                again = [(row[-1], row[1], row[-2]) for row in rows if row[-2] in known]
                new = [row for row in rows if row[-2] not in known]
                # One short statement, pipelined: psycopg sends every row at once and the
                # server plans the statement once (a long multi-row text is parsed anew, in
                # Python, every time).
                for sql, values in ((_add(table), again), (_upsert(table, 1), new)):
                    if not values:
                        continue
                    with conn.conn.cursor() as cursor:
                        cursor.executemany(pg(sql), values, returning=True)
                        while True:
                            digest, row_id, count = cursor.fetchone()
                            found[(is_event, bytes(digest))] = (row_id, count)
                            if not cursor.nextset():
                                break
            stored = outcomes(params, readable, found)
            if forward_to:
                self.forwards.queue(conn, stored, forward_to)
            conn.execute(f"NOTIFY {CHANNEL}")  # sent at commit: tail wakes
        return stored

    def import_rows(self, rows: ImportRows) -> tuple[int, list[int]]:
        """Through ``COPY`` into a staging table, then one INSERT that leaves stored bodies
        alone (about 4x the multi-row INSERT, whose parameters Python builds one by one)."""
        with self.writing() as conn:
            stage(conn, "events", EVENT_COLUMNS, rows.events)
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

    def backup(self, dest: str) -> None:
        raise TbhookError(
            "backup copies a SQLite file; for PostgreSQL use its own tools, such as "
            f"pg_dump --format=custom --file=tbhook.dump '{self.path}'"
        )

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


@functools.lru_cache(maxsize=4)
def _add(table: str) -> str:
    """A stored body delivered again: its deliveries and last receive time."""
    return (
        f'UPDATE {table} SET deliveries = deliveries + ?, "lastReceivedAt" = ? '
        'WHERE "bodySha256" = ? RETURNING "bodySha256", id, deliveries'
    )


@functools.lru_cache(maxsize=16)
def _insert_new(table: str, columns: tuple[str, ...], count: int) -> str:
    row = "(" + ", ".join("?" for _ in columns) + ")"
    return (
        f"INSERT INTO {table} ({names(columns)}) VALUES {', '.join([row] * count)} "
        "ON CONFLICT DO NOTHING"
    )

"""PostgreSQL through psycopg 3: the driver (imported only when a postgresql:// URL is used),
``?`` placeholders as psycopg's ``%s``, a write transaction's connection, and COPY into a
staging table."""

from __future__ import annotations

import functools
from collections.abc import Sequence
from typing import Any

from tbhook.errors import TbhookError
from tbhook.store.sql import Dialect, names

CHANNEL = "tbhook_events"  # NOTIFY at each commit: tail wakes
POSTGRES = Dialect(
    name="postgresql",
    char="chr",
    empty_blob="''::bytea",
    contains="position(?::bytea IN {0}) > 0",
    iso_time_format=(
        "to_char(to_timestamp({0}) AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"')"
    ),
    epoch_of_iso="extract(epoch from ({0})::timestamptz)",
    indexed_by=False,
    least="LEAST",
    greatest="GREATEST",
)


def psycopg() -> Any:
    try:
        import psycopg  # about 140 ms: only for a postgresql:// database
    except ImportError:
        raise TbhookError(
            "a postgresql:// database needs psycopg: pip install 'psycopg[binary]'"
        ) from None
    return psycopg


@functools.lru_cache(maxsize=512)
def pg(sql: str) -> str:
    """``?`` placeholders as psycopg's ``%s`` (a literal % doubled first)."""
    return sql.replace("%", "%%").replace("?", "%s")


class Writer:
    """The connection inside a write transaction, taking ``?`` placeholders."""

    def __init__(self, conn: Any):
        self.conn = conn

    def execute(self, sql: str, params: Sequence = ()) -> Any:
        return self.conn.execute(pg(sql), params)

    def executemany(self, sql: str, rows: Sequence[Sequence]) -> Any:
        with self.conn.cursor() as cursor:
            cursor.executemany(pg(sql), rows)
            return cursor


def stage(conn: Writer, table: str, columns: Sequence[str], rows: Sequence[Sequence]) -> None:
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

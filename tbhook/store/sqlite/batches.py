"""How a batch goes into SQLite: multi-row upserts of a few fixed sizes, one look-up of the
rows' ids, and the per-day counts of what the transaction added. For the receiver's writer
(``append``) and for ``tbhook import`` (``insert_new``)."""

from __future__ import annotations

import functools
import json
import sqlite3
from collections.abc import Sequence

from tbhook.store.rows import EVENT_COLUMNS, QUARANTINE_COLUMNS, ImportRows
from tbhook.store.sql import names
from tbhook.store.sqlite.dialect import SQLITE

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
COUNT_NEW = """
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


def append(
    conn: sqlite3.Connection, params: list[tuple], readable: list[bool]
) -> dict[tuple[bool, bytes], tuple[int, int]]:
    """Upsert a batch's rows (inside the caller's transaction); each body's row id and
    deliveries after the batch, by (is an event, hash)."""
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
    return found


def insert_new(conn: sqlite3.Connection, rows: ImportRows) -> tuple[int, list[int]]:
    """Insert what is not stored yet (inside the caller's transaction): how many events were
    new, and the lines of the bodies newly quarantined."""
    # rowcount counts the statement's own rows, not what the triggers add.
    inserted = conn.executemany(_IMPORT_EVENT, rows.events).rowcount
    quarantined = []
    for params in rows.quarantine:  # few: one at a time, to know which were new
        if conn.execute(_IMPORT_QUARANTINE, params).rowcount > 0:
            quarantined.append(params[-1])
    return inserted, quarantined

"""How a batch goes into SQLite: one look-up of what is stored already, multi-row inserts of a
few fixed sizes of what is not, and the per-day counts of what the transaction added. For the
receiver's writer (``append``) and for ``tbhook import`` (``insert_new``)."""

from __future__ import annotations

import functools
import json
import sqlite3
from collections.abc import Sequence

from tbhook.store.rows import EVENT_COLUMNS, QUARANTINE_COLUMNS, ImportRows
from tbhook.store.sql import names

# How a batch goes in. Each statement costs the writer thread the GIL at every SQLite step, so
# small rows go in many to a statement. But a cached statement keeps its last bound values
# alive: so only small bodies go in multi-row statements, of a few fixed sizes (at most about
# 1 MiB held in all), and a large body goes in alone (at most one held).
_SMALL_BODY = 1024
_ROW_COUNTS = (512, 128, 32, 8, 2, 1)
_LOOKUP_ROWS = 1000  # hashes per look-up of a batch's ids (SQLite allows 32,766 values)


@functools.lru_cache(maxsize=16)
def _insert_rows(table: str, count: int) -> str:
    """One INSERT of ``count`` rows none of which is stored: their ids follow each other (one
    writer, AUTOINCREMENT), so the last one's id gives them all."""
    columns = EVENT_COLUMNS if table == "events" else QUARANTINE_COLUMNS
    row = "(" + ", ".join("?" for _ in columns) + ")"
    return f"INSERT INTO {table} ({names(columns)}) VALUES {', '.join([row] * count)}"


def _again(table: str) -> str:
    """A body delivered again: its deliveries and its last receive time."""
    return f'UPDATE {table} SET deliveries = deliveries + ?, "lastReceivedAt" = ? WHERE id = ?'


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
    return f"INSERT INTO {table} ({names(columns)}) VALUES ({marks})"


_IMPORT_EVENT = _import_sql("events", EVENT_COLUMNS)
_IMPORT_QUARANTINE = _import_sql("quarantine", (*QUARANTINE_COLUMNS, "line"))


def _insert(conn: sqlite3.Connection, table: str, rows: list[tuple]) -> dict[bytes, int]:
    """Insert rows none of which is stored: their ids, by hash."""
    ids: dict[bytes, int] = {}

    def inserted(count: int, part: list[tuple], values: list) -> None:
        last = conn.execute(_insert_rows(table, count), values).lastrowid or 0
        ids.update((row[-1], last - count + 1 + n) for n, row in enumerate(part))

    small = [row for row in rows if len(row[-2]) <= _SMALL_BODY]
    for row in rows:
        if len(row[-2]) > _SMALL_BODY:
            inserted(1, [row], list(row))
    start = 0
    for count in _ROW_COUNTS:
        while len(small) - start >= count:
            part = small[start : start + count]
            inserted(count, part, [v for row in part for v in row])
            start += count
    return ids


def _key(is_event: bool, row: tuple) -> tuple:
    """A row's key in the unique index its table dedupes on (events_dedupe: the timestamp,
    then the hash; the quarantine's: the hash)."""
    return (row[_TIMESTAMP] or 0, row[-1]) if is_event else (row[-1],)


def stored_rows(
    conn: sqlite3.Connection, table: str, keys: Sequence[tuple]
) -> dict[bytes, tuple[int, int]]:
    """The rows of ``table`` already stored under ``keys`` (from ``_key``): id and deliveries,
    by hash."""
    found: dict[bytes, tuple[int, int]] = {}
    for start in range(0, len(keys), _LOOKUP_ROWS):
        part = keys[start : start + _LOOKUP_ROWS]
        values = [value for key in part for value in key]
        [(rows_found,)] = conn.execute(_lookup(table, len(part)), values)
        found.update(
            (bytes.fromhex(digest), (row_id, count))
            for row_id, count, digest in json.loads(rows_found)
        )
    return found


def append(
    conn: sqlite3.Connection, params: list[tuple], readable: list[bool]
) -> dict[tuple[bool, bytes], tuple[int, int]]:
    """Store a batch's rows (inside the caller's transaction); each body's row id and
    deliveries after the batch, by (is an event, hash).

    What is stored already is looked up first (the one query a batch makes besides its
    inserts), and only new bodies are inserted: an INSERT that conflicts still uses up an
    AUTOINCREMENT id, and a duplicate delivery would leave a gap that looks like a lost event.
    A body delivered again, before or within the batch, adds to its row's deliveries."""
    found: dict[tuple[bool, bytes], tuple[int, int]] = {}
    for table, is_event in (("events", True), ("quarantine", False)):
        rows = [p for p, r in zip(params, readable, strict=True) if r is is_event]
        if not rows:
            continue
        stored = stored_rows(conn, table, sorted({_key(is_event, row) for row in rows}))
        new: dict[bytes, tuple] = {}
        again: dict[bytes, list] = {}  # hash: [times, last receive time]
        for row in rows:
            digest = row[-1]
            if digest in stored or digest in new:
                times = again.setdefault(digest, [0, None])
                times[0] += 1
                times[1] = row[1]  # lastReceivedAt: the latest delivery's
            else:
                new[digest] = row
        for digest, row_id in _insert(conn, table, list(new.values())).items():
            found[(is_event, digest)] = (row_id, 1)
        for digest, (row_id, count) in stored.items():
            found[(is_event, digest)] = (row_id, count)
        if again:  # the rare path: a retry of a delivery already committed
            updates = []
            for digest, (times, last) in again.items():
                row_id, count = found[(is_event, digest)]
                found[(is_event, digest)] = (row_id, count + times)
                updates.append((times, last, row_id))
            conn.executemany(_again(table), updates)
    return found


def insert_new(conn: sqlite3.Connection, rows: ImportRows) -> tuple[int, list[int]]:
    """Insert what is not stored yet (inside the caller's transaction), leaving stored bodies
    alone and using no id for them (see ``append``): how many events were new, and the lines
    of the bodies newly quarantined."""
    stored = stored_rows(conn, "events", sorted({_key(True, row) for row in rows.events}))
    new: dict[bytes, tuple] = {}
    for row in rows.events:
        if row[-1] not in stored:
            new.setdefault(row[-1], row)
    conn.executemany(_IMPORT_EVENT, new.values())
    kept = stored_rows(conn, "quarantine", sorted({(row[-2],) for row in rows.quarantine}))
    quarantined = []
    for params in rows.quarantine:  # few: each line newly quarantined is named
        if params[-2] not in kept:
            conn.execute(_IMPORT_QUARANTINE, params)
            kept[params[-2]] = (0, 1)
            quarantined.append(params[-1])
    return len(new), quarantined

"""The SQL both backends share: quoted identifiers, the few functions they spell differently
(``Dialect``), and the one compiler from ``Filters`` to a WHERE clause.

Identifiers are always double-quoted, as PostgreSQL needs for Tracebuzz's camelCase names
(``"caseId"``), so column names are identical on both. Placeholders are written ``?``; the
PostgreSQL backend turns them into ``%s``. The same SQL text on both is how the two backends
give the same answers.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, fields

from tbhook.model.filters import Filters

# (timestamp - its remainder modulo a day) / a day: the UTC day number, also before 1970.
DAY = '(e."timestamp" - (e."timestamp" % 86400 + 86400) % 86400) / 86400'
ORDERS = {
    "time": 'e."timestamp" {0}, e.id {0}',  # what happened when, as Tracebuzz stamped it
    "arrival": "e.id {0}",  # what we received when: a cursor for tail
}
IdRange = tuple[int, int]  # first and last id, both included: a part of a big read


def q(name: str) -> str:
    """A quoted identifier: ``"caseId"``."""
    return f'"{name}"'


def names(columns: Sequence[str]) -> str:
    return ", ".join(q(c) for c in columns)


@dataclass(frozen=True)
class Dialect:
    """The few things SQLite and PostgreSQL spell differently in otherwise shared SQL."""

    name: str
    char: str  # the function from a code point to a character
    empty_blob: str
    iso_time_format: str  # {0}: a Unix-seconds column; gives ISO-8601 UTC or NULL
    epoch_of_iso: str  # {0}: an ISO-8601 text column; gives Unix seconds
    indexed_by: bool  # SQLite's INDEXED BY hints
    least: str  # the smaller of two values: min (SQLite), LEAST (PostgreSQL)
    greatest: str
    contains: str  # {0}: a blob column; true when it holds the bytes of the parameter
    # What makes an event a duplicate, as its unique index spells it: the body's hash, on
    # SQLite behind the timestamp (the same body has the same timestamp; new keys then land
    # in the newest pages, m014).
    event_key: str = '"bodySha256"'

    def dedupe(self, table: str) -> str:
        """The upsert's conflict target for a row of ``table``."""
        return f"({self.event_key})" if table == "events" else '("bodySha256")'

    def sum_deliveries(self, table: str) -> str:
        """An upsert's SET for a body stored twice (a merge, a recovered quarantine row): the
        deliveries add up, the first and last receive times are the earliest and latest."""
        return (
            f"deliveries = {table}.deliveries + excluded.deliveries, "
            f'"receivedAt" = {self.least}({table}."receivedAt", excluded."receivedAt"), '
            f'"lastReceivedAt" = {self.greatest}({table}."lastReceivedAt", '
            'excluded."lastReceivedAt")'
        )

    def iso_time(self, column: str) -> str:
        # Out of range (before year 1 or after 9999) is NULL on both, as iso_time() says.
        return (
            f"CASE WHEN {column} BETWEEN -62135596800 AND 253402300799 "
            f"THEN {self.iso_time_format.format(column)} END"
        )

    def hint(self, index: str) -> str:
        return f" INDEXED BY {index}" if self.indexed_by else ""


def merges_by(dialect: Dialect, side: str) -> str:
    """``FROM ... WHERE`` of the merges naming a person on ``side`` (oldPersonId or
    newPersonId), through that side's partial index; the caller adds ``IN (...)``."""
    hint = dialect.hint(f"events_merge_{side}")
    return f"FROM events{hint} WHERE event = 'profileMerged' AND {q(side)}"


# Each filter's clause over the events table (``{t}`` is its alias, with its dot): a field of
# Filters missing here (or from the list or person clauses below) is refused at once.
CLAUSES = {
    "case": '{t}"caseId" = ?',
    "search_id": '{t}"searchId" = ?',
    "source": '{t}"sourceId" = ?',
    "sender": "{t}own = ?",
    "since": '{t}"timestamp" >= ?',
    "until": '{t}"timestamp" < ?',  # until is exclusive
    "path": "{t}path = ?",
}
COMPILED = frozenset({"events", "person", "text", *CLAUSES})


def where(
    filters: Filters,
    dialect: Dialect,
    aliases: Callable[[int], list[int]],
    ids: IdRange | None = None,
    table: str = "e",
) -> tuple[str, list]:
    """The filters as a WHERE clause over the events table (alias ``table``), and its
    parameters: the one place a filter becomes SQL. ``aliases`` gives everyone merged with a
    person (``--person``); ``ids`` bounds the id range (a big read split over two processes).
    The per-day counts (SQLite's ``event_counts``, whose columns share these names) are
    filtered by the same clauses, with ``table=""``."""
    unknown = {f for f in _given(filters)} - COMPILED
    if unknown:
        raise ValueError(f"no SQL for the filters {sorted(unknown)}")
    t = f"{table}." if table else ""
    clauses: list[str] = ["TRUE"]
    params: list = []
    if filters.events:
        clauses.append(f"{t}event IN ({', '.join('?' for _ in filters.events)})")
        params.extend(filters.events)
    for name, clause in CLAUSES.items():
        value = getattr(filters, name)
        if value is not None:
            clauses.append(clause.format(t=t))
            params.append(value)
    if filters.text is not None:  # inside the raw bodies: a scan, stopped by the limit
        clauses.append(dialect.contains.format(f"{t}body"))
        params.append(filters.text.encode())
    if ids is not None:
        clauses.append(f"{t}id BETWEEN ? AND ?")
        params.extend(ids)
    if filters.person is not None:
        people = aliases(filters.person)
        marks = ", ".join("?" for _ in people)
        clauses.append(
            f'{t}id IN (SELECT id FROM events WHERE "personId" IN ({marks}) '
            f"UNION SELECT id {merges_by(dialect, 'oldPersonId')} IN ({marks}) "
            f"UNION SELECT id {merges_by(dialect, 'newPersonId')} IN ({marks}))"
        )
        params.extend(people * 3)
    return " AND ".join(clauses), params


def _given(filters: Filters) -> list[str]:
    """The names of the filters that are set (not None, not empty)."""
    return [f.name for f in fields(filters) if getattr(filters, f.name) not in (None, ())]

"""The rows the store takes and gives: the columns of each table, a delivery as it arrived,
where it landed, a forward attempt, a recovered quarantine row, rows prepared for a bulk
import, and stats groups. No SQL."""

from __future__ import annotations

import functools
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import date, timedelta

from tbhook.model.events import COLUMNS, EVENT_FIELDS, Event, Unreadable
from tbhook.model.times import utc_now

EVENT_COLUMNS = ("receivedAt", "lastReceivedAt", "path", "event", *COLUMNS, "body", "bodySha256")
QUARANTINE_COLUMNS = ("receivedAt", "lastReceivedAt", "path", "reason", "body", "bodySha256")
# What `merge` carries from another log: every column but the id, which this log assigns.
MERGE_EVENT_COLUMNS = (
    "receivedAt",
    "lastReceivedAt",
    "deliveries",
    "path",
    "event",
    *COLUMNS,
    "body",
    "bodySha256",
)
MERGE_QUARANTINE_COLUMNS = (
    "receivedAt",
    "lastReceivedAt",
    "deliveries",
    "path",
    "reason",
    "body",
    "bodySha256",
    "line",
)
# Everything a reader sees of an event: all but the raw body.
READ_COLUMNS = ("id", "receivedAt", "lastReceivedAt", "deliveries", "path", "event", *COLUMNS)
EXPORT_COLUMNS = EVENT_FIELDS  # the export's columns, in order
CHUNK = 5000  # merge and prune write in transactions of this many rows (about 0.1 s each)
PAUSE_SECONDS = 0.02  # between them, so a receiver waiting for the lock gets it


@dataclass(frozen=True)
class Delivery:
    """One body as it arrived: the raw bytes, the path, and what parsing made of it."""

    body: bytes
    parsed: Event | Unreadable
    path: str = "/"
    received_at: str = field(default_factory=utc_now)

    @functools.cached_property
    def params(self) -> tuple:
        """Its row's insert parameters (hashing the body), made once: the receiver makes them
        on the event loop's thread, so the writer thread needs the GIL only for SQLite."""
        return row_params(self.body, self.parsed, self.path, self.received_at)


@dataclass(frozen=True)
class Stored:
    """Where a delivery landed: its row id, and whether it was a retry or quarantined."""

    id: int
    deliveries: int
    quarantined: bool

    @property
    def duplicate(self) -> bool:
        return self.deliveries > 1


@dataclass(frozen=True)
class ForwardOutcome:
    """One forward attempt: delivered, pending a retry at ``next_at``, or failed for good."""

    event_id: int
    target: str
    attempts: int
    state: str
    status: int | None = None
    error: str | None = None
    next_at: float | None = None


@dataclass(frozen=True)
class Recovery:
    """What `quarantine retry` made of one quarantined delivery: moved to ``event_id`` (adding
    its deliveries to an event already stored, when ``merged``), still unreadable (``reason``),
    or not in quarantine (``missing``)."""

    quarantine_id: int
    event_id: int | None = None
    event: str | None = None
    merged: bool = False
    reason: str | None = None
    missing: bool = False


def blobs(row: dict, *keys: str) -> dict:
    """``row`` with its blob columns as bytes (PostgreSQL gives memoryview)."""
    for key in keys:
        if row[key] is not None:
            row[key] = bytes(row[key])
    return row


@dataclass
class ImportRows:
    """Rows ready for ``Store.import_rows``, built outside the writing thread."""

    events: list[tuple] = field(default_factory=list)
    quarantine: list[tuple] = field(default_factory=list)  # each ends with its line number

    def add(self, line: int, body: bytes, parsed: Event | Unreadable, path: str, now: str) -> None:
        params = row_params(body, parsed, path, now)
        if isinstance(parsed, Event):
            self.events.append(params)
        else:
            self.quarantine.append((*params, line))


def row_params(body: bytes, parsed: Event | Unreadable, path: str, now: str) -> tuple:
    """The insert parameters of one body: an ``events`` row, or a ``quarantine`` row (in the
    order of EVENT_COLUMNS / QUARANTINE_COLUMNS; the hash last)."""
    import hashlib  # OpenSSL: 2 ms to load, and a reader never hashes (cached after)

    digest = hashlib.sha256(body).digest()
    if isinstance(parsed, Event):
        values = [parsed.values.get(column) for column in COLUMNS]
        return (now, now, path, parsed.event, *values, body, digest)
    return (now, now, path, parsed.reason, body, digest)


def batch_params(deliveries: Sequence[Delivery]) -> tuple[list[tuple], list[bool]]:
    params = [d.params for d in deliveries]
    return params, [isinstance(d.parsed, Event) for d in deliveries]


def outcomes(
    params: list[tuple], readable: list[bool], found: dict[tuple[bool, bytes], tuple[int, int]]
) -> list[Stored]:
    """Where each delivery landed, given each body's row (id, deliveries after the batch).
    A body that came k times in the batch had deliveries D-k+1 .. D, in batch order."""
    seen: Counter = Counter((r, p[-1]) for p, r in zip(params, readable, strict=True))
    result = []
    for row, is_event in zip(params, readable, strict=True):
        key = (is_event, row[-1])
        row_id, count = found[key]
        result.append(Stored(row_id, count - seen[key] + 1, quarantined=not is_event))
        seen[key] -= 1
    return result


_EPOCH = date(1970, 1, 1)


def day_name(days: int | None) -> str | None:
    """Days since 1970-01-01 as an ISO date, or None when out of range."""
    if days is None:
        return None
    try:
        return (_EPOCH + timedelta(days=days)).isoformat()
    except OverflowError:
        return None


def stats_groups(groups: Counter) -> Iterator[dict]:
    """``Store.stats_counter`` results as rows with an ISO date per day."""
    for (event, own, type_id, source, days), n in groups.items():
        yield {
            "event": event,
            "own": own,
            "typeId": type_id,
            "sourceId": source,
            "day": day_name(days),
            "n": n,
        }

"""What the receiver counts, and `serve --metrics`: the same counts for Prometheus at GET /metrics.

``Counts`` is what the receiver, the connection guard, the writer and the forwarder tell; it
does nothing (and imports nothing) unless ``--metrics`` makes it a ``Metrics``, which keeps
them in prometheus_client's counters, histograms and gauges on a registry of its own.

Every label value is one of a fixed set written below: nothing a sender controls (a path,
an event name) becomes a label, so Prometheus holds a bounded number of series whatever is
posted. The secret never appears.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from datetime import datetime
from typing import Any

from tbhook.store import open_reader

# deliveries_total{outcome}: every POST answered, once each
OUTCOMES = (
    "stored",  # a new event (200)
    "duplicate",  # a body kept already, event or quarantined (200)
    "quarantined",  # a new body that could not be read, kept in the quarantine (200)
    "unauthorized",  # 401: missing or wrong secret header
    "too_large",  # 413: over --max-body
    "protocol_error",  # 400, 405, 408, 431: not an HTTP request tbhook can take
    "unavailable",  # 503: not stored; the sender retries
)
# unavailable_total{reason}: why a 503
UNAVAILABLE = ("store", "memory", "connections", "shutdown")
PROTOCOL_ERRORS = ("400", "405", "408", "431")
FORWARDS = ("delivered", "retrying", "failed")  # forward attempts, by what came of them
OTHER = "other"

COMMIT_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1000)


class Counts:
    """What the receiver tells as it goes; without --metrics, nobody listens."""

    def delivered(self, outcome: str) -> None:
        """A POST answered 200: "stored", "duplicate" or "quarantined"."""

    def refused(self, status: int, reason: str = "") -> None:
        """A POST (or a request at the protocol level) answered with an error status."""

    def committed(self, size: int, seconds: float, failure: str | None) -> None:
        """A batch of ``size`` deliveries, answered by the writer after ``seconds``."""

    def checked(self, failure: str | None) -> None:
        """A commit check (/healthz) came back."""

    def forwarded(self, outcome: str) -> None:
        """A forward attempt: "delivered", "retrying" or "failed"."""


class Metrics(Counts):
    """The counts in prometheus_client metrics, for GET /metrics."""

    def __init__(self, target: str, backend: str, version: str) -> None:
        from prometheus_client import (  # about 55 ms: only with --metrics
            CollectorRegistry,
            Counter,
            Gauge,
            GCCollector,
            Histogram,
            PlatformCollector,
            ProcessCollector,
            disable_created_metrics,
        )

        disable_created_metrics()  # no *_created series: half the lines, nothing an alert uses
        registry = self.registry = CollectorRegistry()
        ProcessCollector(registry=registry)
        PlatformCollector(registry=registry)
        GCCollector(registry=registry)
        self.deliveries = Counter(
            "tbhook_deliveries",
            "POSTs answered, by outcome: stored (new event), duplicate, quarantined (all 200), "
            "unauthorized (401), too_large (413), protocol_error (400/405/408/431), "
            "unavailable (503, not stored).",
            ["outcome"],
            registry=registry,
        )
        self.unavailable = Counter(
            "tbhook_unavailable",
            "503 answers by reason: store (could not commit), memory (--body-memory), "
            "connections (--max-connections), shutdown.",
            ["reason"],
            registry=registry,
        )
        self.protocol_errors = Counter(
            "tbhook_protocol_errors",
            "Requests refused at the HTTP level, by status.",
            ["status"],
            registry=registry,
        )
        self.commit_seconds = Histogram(
            "tbhook_commit_seconds",
            "Time from handing a batch to the writer until it was committed (fsync included).",
            buckets=COMMIT_BUCKETS,
            registry=registry,
        )
        self.batch_size = Histogram(
            "tbhook_commit_batch_size",
            "Deliveries committed together in one transaction (group commit).",
            buckets=BATCH_BUCKETS,
            registry=registry,
        )
        self.last_stored = Gauge(
            "tbhook_last_event_stored_timestamp_seconds",
            "When the newest event was stored, as a Unix time (0: none yet).",
            registry=registry,
        )
        self.writable = Gauge(
            "tbhook_store_writable",
            "1 while the store commits (the last batch or /healthz check succeeded), else 0.",
            registry=registry,
        )
        self.forwards = Counter(
            "tbhook_forward_attempts",
            "Forward attempts (--forward-to), by what came of them: delivered, retrying "
            "(will be tried again), failed (gave up).",
            ["outcome"],
            registry=registry,
        )
        info = Gauge(
            "tbhook_info",
            "This receiver: its version and backend.",
            ["version", "backend"],
            registry=registry,
        )
        info.labels(version, backend).set(1)
        for outcome in (*OUTCOMES, OTHER):
            self.deliveries.labels(outcome)
        for reason in (*UNAVAILABLE, OTHER):
            self.unavailable.labels(reason)
        for status in (*PROTOCOL_ERRORS, OTHER):
            self.protocol_errors.labels(status)
        for outcome in FORWARDS:
            self.forwards.labels(outcome)
        self.writable.set(1)
        self.store = StoreFacts(target, backend)
        registry.register(self.store)

    def started_from(self, last_received_at: str | None) -> None:
        """The newest event already stored when the receiver starts (ISO 8601 UTC)."""
        if last_received_at:
            moment = datetime.fromisoformat(last_received_at.replace("Z", "+00:00"))
            self.last_stored.set(moment.timestamp())

    def delivered(self, outcome: str) -> None:
        self.deliveries.labels(_bounded(outcome, OUTCOMES)).inc()
        if outcome == "stored":
            self.last_stored.set_to_current_time()

    def refused(self, status: int, reason: str = "") -> None:
        if status == 401:
            self.deliveries.labels("unauthorized").inc()
        elif status == 413:
            self.deliveries.labels("too_large").inc()
        elif status == 503:
            self.deliveries.labels("unavailable").inc()
            self.unavailable.labels(_bounded(reason, UNAVAILABLE)).inc()
        else:
            self.deliveries.labels("protocol_error").inc()
            self.protocol_errors.labels(_bounded(str(status), PROTOCOL_ERRORS)).inc()

    def committed(self, size: int, seconds: float, failure: str | None) -> None:
        self.writable.set(0 if failure else 1)
        if failure is None:
            self.commit_seconds.observe(seconds)
            self.batch_size.observe(size)

    def checked(self, failure: str | None) -> None:
        self.writable.set(0 if failure else 1)

    def forwarded(self, outcome: str) -> None:
        self.forwards.labels(_bounded(outcome, FORWARDS)).inc()

    def exposition(self) -> tuple[bytes, str]:
        """The text Prometheus scrapes, and its content type. Reads the database (sizes, the
        forward queue): call it off the event loop, from one thread."""
        from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

        return generate_latest(self.registry), CONTENT_TYPE_LATEST

    def close(self) -> None:
        self.store.close()


def _bounded(value: str, allowed: tuple[str, ...]) -> str:
    return value if value in allowed else OTHER


class StoreFacts:
    """Read at each scrape, on a reader connection of its own: the database's size (the file
    and its WAL for SQLite), whether it can be reached (the connection state, for PostgreSQL),
    and the forward queue's length."""

    def __init__(self, target: str, backend: str) -> None:
        self.target = target
        self.backend = backend
        self._reader: Any = None  # opened on the one scrape thread, used only there

    def describe(self) -> list:
        return []  # nothing read at registration

    def collect(self) -> Iterator[Any]:
        from prometheus_client.core import GaugeMetricFamily

        facts = self._read()
        reachable = GaugeMetricFamily(
            "tbhook_store_reachable",
            "1 when this scrape could read the database (for PostgreSQL: connect), else 0.",
            value=0 if facts is None else 1,
        )
        yield reachable
        if facts is None:
            return
        size, wal, pending = facts
        yield GaugeMetricFamily(
            "tbhook_database_bytes",
            "The database's size: the SQLite file, or PostgreSQL's pg_database_size.",
            value=size,
        )
        if wal is not None:
            yield GaugeMetricFamily(
                "tbhook_wal_bytes", "The SQLite write-ahead log's size.", value=wal
            )
        yield GaugeMetricFamily(
            "tbhook_forwards_pending",
            "Forwards still to be delivered (--forward-to).",
            value=pending,
        )

    def _read(self) -> tuple[int, int | None, int] | None:
        try:
            if self._reader is None:
                self._reader = open_reader(self.target, current=False)
            reader = self._reader
            if self.backend == "sqlite":
                size = os.path.getsize(reader.path)
                wal_path = f"{reader.path}-wal"
                wal = os.path.getsize(wal_path) if os.path.exists(wal_path) else 0
            else:
                size, wal = reader.server_facts()["databaseBytes"], None
            return size, wal, reader.forwards.pending()
        except Exception:  # TbhookError, OSError, a driver's error: reported as unreachable
            self.close()
            return None

    def close(self) -> None:
        reader, self._reader = self._reader, None
        if reader is not None:
            with contextlib.suppress(Exception):
                reader.close()

"""The single writer: group commit of deliveries waiting to be stored.

Requests that arrive together are committed together: a delivery joins the pending batch and
the first one schedules a flush on the event loop, which runs once the loop has read every
request that is ready. The flush commits the whole batch in one durable transaction, then
answers each request. Measured here, this beats a separate writer thread by 35% at 64
connections: the thread and the event loop spent most of their time waiting for each other's
GIL, while a batch commit on the loop's own thread costs about a millisecond.

The loop never waits long on SQLite's lock: a write that finds the database locked by another
connection (an import, a sqlite3 shell) is retried on a worker thread for up to
``LOCK_WAIT_SECONDS`` while the loop goes on serving, and later deliveries queue behind it.
Other threads (the forwarder) write through ``call``; a lock keeps the one connection to one
writer at a time.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable

from tbhook.errors import StoreBusy, StoreUnavailable
from tbhook.store import Delivery, EventStore, Stored

Outcome = Stored | StoreUnavailable
Batch = list[tuple[Delivery, asyncio.Future]]

MAX_BATCH = 1000
QUICK_BUSY_MS = 20  # on the loop's thread, a locked database gives up fast...
LOCK_WAIT_SECONDS = 5.0  # ...and a worker thread keeps trying for this long before a 503


class BatchWriter:
    """Commits pending deliveries in one transaction, then answers each of them."""

    def __init__(
        self,
        store: EventStore,
        max_batch: int = MAX_BATCH,
        forward_to: str | None = None,
        on_commit: Callable[[], None] | None = None,
    ):
        self.store = store
        self.max_batch = max_batch
        self.forward_to = forward_to
        self.on_commit = on_commit
        self._pending: Batch = []
        self._waiting_for_lock = False
        self._lock = threading.Lock()
        store.set_busy_timeout(QUICK_BUSY_MS)

    async def write(self, delivery: Delivery) -> Stored:
        """Store a delivery and wait until its batch is committed. Raises StoreUnavailable."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Outcome] = loop.create_future()
        self._pending.append((delivery, future))
        if len(self._pending) == 1:
            loop.call_soon(self._flush)  # after the loop has read what is ready now
        outcome = await future
        if isinstance(outcome, StoreUnavailable):
            raise outcome
        return outcome

    def call(self, operation: Callable[[EventStore], object]) -> object:
        """Run ``operation(store)`` as the writer from another thread, between batches,
        waiting out another connection's lock like a delivery does."""
        deadline = time.monotonic() + LOCK_WAIT_SECONDS
        while True:
            try:
                with self._lock:
                    return operation(self.store)
            except StoreBusy:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.01)

    def close(self) -> None:
        """Commit whatever is still pending (nothing, once uvicorn has drained)."""
        while self._pending:
            batch = self._pending[: self.max_batch]
            del self._pending[: self.max_batch]
            _settle(batch, self._store_patiently(batch))

    def _flush(self) -> None:
        while self._pending and not self._waiting_for_lock:
            batch = self._pending[: self.max_batch]
            del self._pending[: self.max_batch]
            try:
                outcomes = self._store(batch)
            except StoreBusy:
                self._wait_for_lock(batch)
                return
            _settle(batch, outcomes)

    def _store(self, batch: Batch) -> list[Outcome]:
        """Commit a batch: its outcomes, or StoreBusy when another connection holds the lock."""
        try:
            with self._lock:
                deliveries = [delivery for delivery, _ in batch]
                outcomes: list[Outcome] = list(
                    self.store.append(deliveries, forward_to=self.forward_to)
                )
        except StoreBusy:
            raise
        except StoreUnavailable as exc:
            outcomes = [exc] * len(batch)
        except Exception as exc:  # a bug must fail this batch, never the writer
            failure = StoreUnavailable(f"could not store: {type(exc).__name__}: {exc}")
            outcomes = [failure] * len(batch)
        if self.on_commit:
            self.on_commit()
        return outcomes

    def _wait_for_lock(self, batch: Batch) -> None:
        self._waiting_for_lock = True
        loop = asyncio.get_running_loop()
        patient = loop.run_in_executor(None, self._store_patiently, batch)
        patient.add_done_callback(lambda done: self._after_wait(batch, done))

    def _store_patiently(self, batch: Batch) -> list[Outcome]:
        """On a worker thread: retry a locked database until it frees or time runs out."""
        deadline = time.monotonic() + LOCK_WAIT_SECONDS
        while True:
            try:
                return self._store(batch)
            except StoreBusy as exc:
                if time.monotonic() > deadline:
                    return [exc] * len(batch)
                time.sleep(0.01)

    def _after_wait(self, batch: Batch, done: asyncio.Future) -> None:
        self._waiting_for_lock = False
        _settle(batch, done.result())
        self._flush()  # what queued up meanwhile


def _settle(batch: Batch, outcomes: list[Outcome]) -> None:
    for (_, future), outcome in zip(batch, outcomes, strict=True):
        if not future.done():  # the client may have gone away meanwhile
            future.set_result(outcome)

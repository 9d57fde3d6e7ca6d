"""The single writer: group commit of deliveries waiting to be stored.

Requests that arrive together are committed together: a delivery joins the pending batch, and
while the writer thread commits one batch, the event loop goes on reading requests that form
the next one. Each request is answered once its own batch is committed.

Every SQLite write runs on the writer thread, never on the loop's: on a disk that stalls (a
frozen file system, a dying disk, a full NFS server), even starting a transaction can block
for as long as the stall lasts, because SQLite writes to its shared-memory index. The loop must
go on answering health checks and reading requests meanwhile; only the acknowledgements wait.

A write that finds the database locked by another connection (an import, a prune, a sqlite3
shell) waits on the writer thread for up to ``LOCK_WAIT_SECONDS`` (SQLite's busy timeout);
later deliveries queue behind it. Other threads (the forwarder) write through ``call``, on the
same thread, between batches.
"""

from __future__ import annotations

import asyncio
import contextlib
import sys
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import TypeVar

from tbhook.errors import StoreUnavailable
from tbhook.store import Delivery, Store, Stored

Outcome = Stored | StoreUnavailable
Batch = list[tuple[Delivery, asyncio.Future]]
T = TypeVar("T")

MAX_BATCH = 1000
LOCK_WAIT_SECONDS = 5.0  # another connection's lock is waited out this long before a 503
# The writer thread needs the GIL back after each SQLite step; with the default 5 ms switch
# interval a busy event loop would make it wait that long each time (measured: a 31-row batch
# took 5.3 ms in the server against 1.5 ms alone).
SWITCH_INTERVAL = 0.0005


class BatchWriter:
    """Commits pending deliveries in one transaction on its own thread, then answers each."""

    def __init__(
        self,
        store: Store,
        max_batch: int = MAX_BATCH,
        forward_to: str | None = None,
        on_commit: Callable[[], None] | None = None,
    ):
        self.store = store
        self.max_batch = max_batch
        self.forward_to = forward_to
        self.on_commit = on_commit
        self._pending: Batch = []
        self._busy = False
        self._thread = ThreadPoolExecutor(1, thread_name_prefix="tbhook-writer")
        self._switch_interval = sys.getswitchinterval()
        sys.setswitchinterval(min(self._switch_interval, SWITCH_INTERVAL))
        store.set_busy_timeout(int(LOCK_WAIT_SECONDS * 1000))

    async def write(self, delivery: Delivery) -> Stored:
        """Store a delivery and wait until its batch is committed. Raises StoreUnavailable."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Outcome] = loop.create_future()
        self._pending.append((delivery, future))
        if len(self._pending) == 1 and not self._busy:
            loop.call_soon(self._flush)  # after the loop has read what is ready now
        outcome = await future
        if isinstance(outcome, StoreUnavailable):
            raise outcome
        return outcome

    def call(self, operation: Callable[[Store], T]) -> T:
        """Run ``operation(store)`` on the writer thread, between batches (from another
        thread: it blocks until done)."""
        return self._thread.submit(operation, self.store).result()

    def close(self) -> None:
        """Commit whatever is still pending (nothing, once uvicorn has drained), then stop."""
        while self._pending:
            batch = self._pending[: self.max_batch]
            del self._pending[: self.max_batch]
            _settle(batch, self._thread.submit(self._store, batch).result())
        self._thread.shutdown(wait=True)
        sys.setswitchinterval(self._switch_interval)

    def _flush(self) -> None:
        if not self._pending or self._busy:
            return
        batch = self._pending[: self.max_batch]
        del self._pending[: self.max_batch]
        self._busy = True
        loop = asyncio.get_running_loop()
        done: Future[list[Outcome]] = self._thread.submit(self._store, batch)

        def back_on_the_loop(finished: Future) -> None:
            with contextlib.suppress(RuntimeError):  # the loop closed at shutdown: see close()
                loop.call_soon_threadsafe(self._after, batch, finished)

        done.add_done_callback(back_on_the_loop)

    def _after(self, batch: Batch, finished: Future) -> None:
        self._busy = False
        _settle(batch, finished.result())
        self._flush()  # what queued up meanwhile

    def _store(self, batch: Batch) -> list[Outcome]:
        """On the writer thread: commit a batch; its outcomes, one per delivery."""
        try:
            deliveries = [delivery for delivery, _ in batch]
            outcomes: list[Outcome] = list(self.store.append(deliveries, self.forward_to))
        except Exception as exc:  # a bug fails the batch, not the writer
            if not isinstance(exc, StoreUnavailable):
                exc = StoreUnavailable(f"could not store: {type(exc).__name__}: {exc}")
            return [exc] * len(batch)
        if self.on_commit:
            self.on_commit()
        return outcomes


def _settle(batch: Batch, outcomes: list[Outcome]) -> None:
    for (_, future), outcome in zip(batch, outcomes, strict=True):
        if not future.done():  # the client may have gone away meanwhile
            with contextlib.suppress(RuntimeError):  # its loop already closed at shutdown
                future.set_result(outcome)

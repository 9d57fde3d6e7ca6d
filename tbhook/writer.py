"""The single writer: group commit of deliveries waiting to be stored.

Deliveries queue up; a writer thread takes everything queued, commits it in one transaction,
hands each request its outcome back on the event loop, and takes what queued up meanwhile at
once, without waiting for the loop: while it commits one batch, the loop reads the requests
that form the next. Each request is answered once its own batch is committed.

Every SQLite write runs on the writer thread, never on the loop's: on a disk that stalls (a
frozen file system, a dying disk, a full NFS server), even starting a transaction can block
for as long as the stall lasts, because SQLite writes to its shared-memory index. The loop must
go on answering health checks and reading requests meanwhile; only the acknowledgements wait.

A write that finds the database locked by another connection (an import, a prune, a sqlite3
shell) waits on the writer thread for up to ``LOCK_WAIT_SECONDS`` (SQLite's busy timeout);
later deliveries queue behind it. Other threads (the forwarder) write through ``call``, between
batches.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import threading
from collections.abc import Callable
from typing import TypeVar

from tbhook.errors import StoreUnavailable
from tbhook.store import Delivery, Store, Stored

Outcome = Stored | StoreUnavailable
Batch = list[tuple[Delivery, asyncio.Future]]
T = TypeVar("T")

MAX_BATCH = 1000
LOCK_WAIT_SECONDS = 5.0  # another connection's lock is waited out this long before a 503


class BatchWriter:
    """Commits queued deliveries in one transaction on its own thread, then answers each."""

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
        self._queue: collections.deque[tuple[Delivery, asyncio.Future, asyncio.AbstractEventLoop]]
        self._queue = collections.deque()
        self._wake = threading.Event()
        self._lock = threading.Lock()  # one writer of the connection at a time
        self._stopping = False
        self._thread = threading.Thread(target=self._run, name="tbhook-writer", daemon=True)
        self._thread.start()
        store.set_busy_timeout(int(LOCK_WAIT_SECONDS * 1000))

    async def write(self, delivery: Delivery) -> Stored:
        """Store a delivery and wait until its batch is committed. Raises StoreUnavailable."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Outcome] = loop.create_future()
        delivery.params  # noqa: B018 - made here, on the loop's thread (see Delivery.params)
        self._queue.append((delivery, future, loop))
        self._wake.set()
        outcome = await future
        if isinstance(outcome, StoreUnavailable):
            raise outcome
        return outcome

    def call(self, operation: Callable[[Store], T]) -> T:
        """Run ``operation(store)`` between batches (from another thread: it blocks)."""
        with self._lock:
            return operation(self.store)

    def close(self) -> None:
        """Commit whatever is still queued (nothing, once uvicorn has drained), then stop."""
        self._stopping = True
        self._wake.set()
        self._thread.join()

    def _run(self) -> None:
        while True:
            self._wake.wait()
            self._wake.clear()
            while self._queue:
                self._commit_next()
            if self._stopping and not self._queue:
                return

    def _commit_next(self) -> None:
        """Commit what is queued (up to ``max_batch``), and answer it on its loop. A function
        of its own, so no body outlives its batch while the thread waits for the next."""
        batch = [self._queue.popleft() for _ in range(min(len(self._queue), self.max_batch))]
        outcomes = self._store([delivery for delivery, _, _ in batch])
        answers = [
            (future, outcome) for (_, future, _), outcome in zip(batch, outcomes, strict=True)
        ]
        with contextlib.suppress(RuntimeError):  # the loop closed at shutdown
            batch[0][2].call_soon_threadsafe(_settle, answers)

    def _store(self, deliveries: list[Delivery]) -> list[Outcome]:
        """Commit a batch; its outcomes, one per delivery."""
        try:
            with self._lock:
                outcomes: list[Outcome] = list(self.store.append(deliveries, self.forward_to))
        except Exception as exc:  # a bug fails the batch, not the writer
            if not isinstance(exc, StoreUnavailable):
                exc = StoreUnavailable(f"could not store: {type(exc).__name__}: {exc}")
            return [exc] * len(deliveries)
        if self.on_commit:
            self.on_commit()
        return outcomes


def _settle(answers: list[tuple[asyncio.Future, Outcome]]) -> None:
    for future, outcome in answers:
        if not future.done():  # the client may have gone away meanwhile
            future.set_result(outcome)

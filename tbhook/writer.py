"""The single writer thread: group commit of deliveries waiting to be stored."""

from __future__ import annotations

import asyncio
import contextlib
import queue
import threading
from collections.abc import Callable

from tbhook.errors import StoreUnavailable
from tbhook.store import Delivery, EventStore, Stored

Outcome = Stored | StoreUnavailable
Callback = Callable[[Outcome], None]

MAX_BATCH = 1000
_STOP = object()


class BatchWriter:
    """Commits whatever deliveries are waiting in one transaction, then answers each of them.

    While one batch is being fsynced the next one gathers, so many concurrent requests
    share one commit instead of queueing for one fsync each.
    """

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
        self._queue: queue.SimpleQueue = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._run, name="tbhook-writer", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def close(self) -> None:
        """Commit everything already submitted, then stop the thread."""
        if self._thread.is_alive():
            self._queue.put(_STOP)
            self._thread.join()

    def submit(self, delivery: Delivery, callback: Callback) -> None:
        """Queue a delivery; ``callback`` runs on the writer thread once committed or failed."""
        self._queue.put((delivery, callback))

    def call(self, operation: Callable[[EventStore], object]) -> object:
        """Run ``operation(store)`` on the writer thread, between batches, and wait for it.

        Other threads (the forwarder) write through here, so there is still one writer.
        """
        call = _Call(operation)
        self._queue.put(call)
        call.done.wait()
        if isinstance(call.outcome, BaseException):
            raise call.outcome
        return call.outcome

    async def write(self, delivery: Delivery) -> Stored:
        """Store a delivery and wait until its batch is committed. Raises StoreUnavailable."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Outcome] = loop.create_future()

        def settle(outcome: Outcome) -> None:
            # A closed loop means nobody is waiting any more.
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(_settle, future, outcome)

        self.submit(delivery, settle)
        outcome = await future
        if isinstance(outcome, StoreUnavailable):
            raise outcome
        return outcome

    def _run(self) -> None:
        stopping = False
        while not stopping:
            batch = [self._queue.get()]
            while len(batch) < self.max_batch:
                try:
                    batch.append(self._queue.get_nowait())
                except queue.Empty:
                    break
            if _STOP in batch:
                stopping = True
            deliveries = [item for item in batch if isinstance(item, tuple)]
            if deliveries:
                self._commit(deliveries)
            for call in batch:
                if isinstance(call, _Call):
                    call.run(self.store)

    def _commit(self, batch: list[tuple[Delivery, Callback]]) -> None:
        outcomes: list[Outcome]
        try:
            deliveries = [delivery for delivery, _ in batch]
            outcomes = list(self.store.append(deliveries, forward_to=self.forward_to))
        except StoreUnavailable as exc:
            outcomes = [exc] * len(batch)
        except Exception as exc:  # a bug must fail this batch, never the writer
            failure = StoreUnavailable(f"could not store: {type(exc).__name__}: {exc}")
            outcomes = [failure] * len(batch)
        for (_, callback), outcome in zip(batch, outcomes, strict=True):
            callback(outcome)
        if self.on_commit:
            self.on_commit()


class _Call:
    def __init__(self, operation: Callable[[EventStore], object]):
        self.operation = operation
        self.done = threading.Event()
        self.outcome: object = None

    def run(self, store: EventStore) -> None:
        try:
            self.outcome = self.operation(store)
        except Exception as exc:  # handed to the caller, never fatal to the writer
            self.outcome = exc
        self.done.set()


def _settle(future: asyncio.Future, outcome: Outcome) -> None:
    if not future.done():  # the client may have gone away meanwhile
        future.set_result(outcome)

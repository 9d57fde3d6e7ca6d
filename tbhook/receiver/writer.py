"""The single writer: group commit, in a process of its own.

Deliveries queue up on the event loop; the writer process takes everything queued at once,
commits it in one transaction and answers with each row's id and delivery count; meanwhile the
loop reads the requests that form the next batch. Each request is answered only once its own
batch is committed.

Why a process: every SQLite write can block for as long as a disk stalls (even starting a
transaction writes to SQLite's shared-memory index), so none may run on the loop's thread;
and on a second thread, the writer and the loop would take turns at one GIL (measured: a
quarter of the throughput lost to the handovers). In its own process the writer uses the
second core. The loop talks to it through a pipe without ever blocking on it.

The writer process is a fresh interpreter (SQLite state must never cross a fork) that
inherits nothing but its end of a socket; it opens the database once told to. If it dies, the
batch in flight is answered 503 and a new one is started.
"""

from __future__ import annotations

import asyncio
import contextlib
import pickle
import signal
import socket
import struct
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from tbhook.errors import StoreUnavailable
from tbhook.processes import die_with_parent, start_python
from tbhook.store import Delivery, Store, Stored, open_store

Outcome = Stored | StoreUnavailable
T = TypeVar("T")
StoreFactory = Callable[[], Store]
# Told after each batch: how many deliveries, the seconds until the writer answered, and
# None once committed or why not.
BatchObserver = Callable[[int, float, "str | None"], None]

MAX_BATCH = 1000
LOCK_WAIT_SECONDS = 5.0  # another connection's lock is waited out this long before a 503
_HEADER = struct.Struct("!Q")


@dataclass(frozen=True)
class OpenStore:
    """Opens the store in the writer process (picklable: it travels there)."""

    target: str
    max_bytes: int | None = None

    def __call__(self) -> Store:
        return open_store(self.target, self.max_bytes)


class BatchWriter:
    """Hands batches to the writer process and answers each delivery with its outcome.

    ``store_factory`` opens the store in the writer process; ``on_commit`` is told after
    each committed batch (the forwarder wakes), ``observer`` after every batch (metrics).
    """

    def __init__(
        self,
        store_factory: StoreFactory,
        max_batch: int = MAX_BATCH,
        forward_to: str | None = None,
        on_commit: Callable[[], None] | None = None,
        observer: BatchObserver | None = None,
        on_replaced: Callable[[str | None], None] | None = None,
    ):
        self.max_batch = max_batch
        # Told why, when the writer process died and a new one was started; then told None
        # once the new one has stored a batch (or opened the store).
        self.on_replaced = on_replaced or (lambda why: None)
        self._replaced = False
        self.forward_to = forward_to
        self.on_commit = on_commit
        self.observer = observer
        self._factory = store_factory
        self._pending: list[tuple[Delivery, asyncio.Future]] = []
        self._in_flight: list[tuple[Delivery, asyncio.Future]] | None = None
        self._checks: list[asyncio.Future] = []  # waiting for the next commit check
        self._checking: list[asyncio.Future] = []  # answered by the check in flight
        self._sent_at = 0.0
        self._transport: asyncio.Transport | None = None
        self._connecting = False
        self._reopening = False  # a new writer process is opening the store
        self._sock, self._process = _spawn(store_factory, forward_to)

    @classmethod
    def for_target(cls, target: str, max_bytes: int | None = None, **kwargs: Any) -> BatchWriter:
        return cls(OpenStore(target, max_bytes), **kwargs)

    def start(self) -> None:
        """Open the store in the writer process (before serving); raise what went wrong."""
        _send(self._sock, ("open",))
        reply = _receive(self._sock)
        if reply[0] != "opened":
            raise StoreUnavailable(reply[1])

    async def write(self, delivery: Delivery) -> Stored:
        """Store a delivery and wait until its batch is committed. Raises StoreUnavailable."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Outcome] = loop.create_future()
        delivery.params  # noqa: B018 - the row is made here, on the loop (Delivery.params)
        self._pending.append((delivery, future))
        if len(self._pending) == 1 and self._in_flight is None:
            loop.call_soon(self._flush)  # after the loop has read what is ready now
        outcome = await future
        if isinstance(outcome, StoreUnavailable):
            raise outcome
        return outcome

    async def check(self) -> str | None:
        """Whether the writer can commit now: None, or why not (``Store.commit_check``, in
        the writer process, between two batches). Callers meanwhile share one check."""
        future: asyncio.Future[str | None] = asyncio.get_running_loop().create_future()
        self._checks.append(future)
        if len(self._checks) == 1 and self._in_flight is None:
            asyncio.get_running_loop().call_soon(self._flush)
        return await future

    def detach(self) -> None:
        """On the loop, once nothing is pending: close this end of the socket, so the writer
        process sees the end of its input, finishes and exits."""
        if self._transport is not None:
            transport, self._transport = self._transport, None
            transport.close()

    def close(self) -> None:
        """Stop the writer process (nothing is pending once uvicorn has drained)."""
        for _, future in self._pending:
            if not future.done():
                with contextlib.suppress(RuntimeError):
                    future.set_result(StoreUnavailable("shutting down before the commit"))
        self._pending.clear()
        for _, future in self._in_flight or []:
            if not future.done():
                with contextlib.suppress(RuntimeError):
                    future.set_result(StoreUnavailable("shutting down before the commit"))
        for future in self._checks + self._checking:
            if not future.done():
                with contextlib.suppress(RuntimeError):
                    future.set_result("shutting down")
        self._checks, self._checking = [], []
        # The end of its input tells the writer process to finish; if the loop that owned the
        # transport is gone without closing it, say so in words.
        with contextlib.suppress(OSError, ValueError):
            self._sock.setblocking(True)
            _send(self._sock, ("close",))
        with contextlib.suppress(OSError):
            self._sock.close()
        self._process.join(30)
        if self._process.is_alive():  # stuck (a disk that never came back): nothing pending
            self._process.kill()
            self._process.join(5)

    # -- the loop's side of the socket --------------------------------------------------

    def _flush(self) -> None:
        if not (self._pending or self._checks) or self._in_flight is not None:
            return
        if self._transport is None:
            if not self._connecting:
                self._connecting = True
                asyncio.get_running_loop().create_task(self._connect())
            return
        self._sent_at = time.perf_counter()
        if self._checks:  # at most one a second (the receiver keeps the answer that long)
            self._in_flight, self._checking, self._checks = [], self._checks, []
            self._transport.write(_frame(("check",)))
            return
        batch = self._pending[: self.max_batch]
        del self._pending[: self.max_batch]
        self._in_flight = batch
        params = [delivery.params for delivery, _ in batch]
        readable = [not hasattr(delivery.parsed, "reason") for delivery, _ in batch]
        self._transport.write(_frame(("append", params, readable)))

    async def _connect(self) -> None:
        """The socket to the writer process as an asyncio transport: the loop never blocks
        on it, whatever the writer process is waiting for."""
        loop = asyncio.get_running_loop()
        transport, _ = await loop.create_connection(lambda: _Replies(self), sock=self._sock)
        self._transport = transport  # type: ignore[assignment]
        self._connecting = False
        self._flush()

    def answer(self, reply: tuple) -> None:
        """A reply from the writer process: the outcomes of the batch in flight."""
        if self._reopening:  # a new writer process has opened the store (or could not)
            self._reopening = False
            self._in_flight = None
            if reply[0] == "opened":
                self._back()
            self._flush()
            return
        batch, self._in_flight = self._in_flight or [], None
        checking, self._checking = self._checking, []
        if reply[0] == "checked" or (checking and reply[0] == "failed"):
            for future in checking:
                if not future.done():
                    future.set_result(reply[1])
            self._flush()
            return
        if self.observer:
            why = None if reply[0] == "stored" else reply[1]
            self.observer(len(batch), time.perf_counter() - self._sent_at, why)
        if reply[0] == "stored":
            self._back()
            outcomes: list[Outcome] = [Stored(*row) for row in reply[1]]
            if self.on_commit:
                self.on_commit()
        else:
            outcomes = [StoreUnavailable(reply[1])] * len(batch)
        for (_, future), outcome in zip(batch, outcomes, strict=True):
            if not future.done():  # the client may have gone away meanwhile
                future.set_result(outcome)
        self._flush()

    def died(self) -> None:
        """The writer process is gone: the batch in flight (and a commit check) is answered
        503 now, never left waiting. A new process is started; what queues meanwhile waits
        until it has opened the store."""
        transport, self._transport = self._transport, None
        if transport is not None:
            transport.close()
        # Held, not None: nothing is sent until the new process has opened the store.
        batch, self._in_flight = self._in_flight or [], []
        checking, self._checking = self._checking, []
        why = "could not store: the writer process stopped unexpectedly"
        if batch and self.observer:
            self.observer(len(batch), time.perf_counter() - self._sent_at, why)
        for _, future in batch:
            if not future.done():
                future.set_result(StoreUnavailable(why))
        for future in checking:
            if not future.done():
                future.set_result(why)
        self._process.join(5)
        exit_code = self._process.exit_code()
        self._sock, self._process = _spawn(self._factory, self.forward_to)
        self._replaced = True
        self.on_replaced(
            f"killed by signal {-exit_code}"
            if exit_code is not None and exit_code < 0
            else f"exit {exit_code}"
        )
        self._sock.setblocking(False)
        self._reopening = True
        asyncio.get_running_loop().create_task(self._reconnect())

    def _back(self) -> None:
        if self._replaced:
            self._replaced = False
            self.on_replaced(None)

    async def _reconnect(self) -> None:
        loop = asyncio.get_running_loop()
        transport, _ = await loop.create_connection(lambda: _Replies(self), sock=self._sock)
        self._transport = transport  # type: ignore[assignment]
        transport.write(_frame(("open",)))


class _Replies(asyncio.Protocol):
    """Frames from the writer process: a length, then a pickled reply."""

    def __init__(self, writer: BatchWriter):
        self._buffer = bytearray()
        self._writer = writer
        self._transport: asyncio.BaseTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = transport

    def data_received(self, data: bytes) -> None:
        self._buffer += data
        while len(self._buffer) >= _HEADER.size:
            (size,) = _HEADER.unpack_from(self._buffer)
            if len(self._buffer) < _HEADER.size + size:
                return
            frame = bytes(self._buffer[_HEADER.size : _HEADER.size + size])
            del self._buffer[: _HEADER.size + size]
            self._writer.answer(pickle.loads(frame))

    def connection_lost(self, exc: Exception | None) -> None:
        # Only the writer's current connection: not one closed on purpose (detach), nor the
        # connection to a process already replaced.
        if self._transport is not None and self._writer._transport is self._transport:
            self._writer.died()

    def eof_received(self) -> bool:
        return False  # close the transport; connection_lost follows


# -- the writer process ------------------------------------------------------------------


def _frame(message: tuple) -> bytes:
    data = pickle.dumps(message, protocol=5)
    return _HEADER.pack(len(data)) + data


def _send(sock: socket.socket, message: tuple) -> None:
    sock.sendall(_frame(message))


def _receive(sock: socket.socket) -> tuple:
    header = _read_exactly(sock, _HEADER.size)
    (size,) = _HEADER.unpack(header)
    return pickle.loads(_read_exactly(sock, size))


def _read_exactly(sock: socket.socket, size: int) -> bytes:
    data = bytearray()
    while len(data) < size:
        chunk = sock.recv(min(size - len(data), 1 << 20))
        if not chunk:
            raise EOFError
        data += chunk
    return bytes(data)


class _Process:
    """The writer process: a fresh interpreter running ``child_main`` on the child's end of
    the socket, and nothing else inherited (a client's connection, the listening socket, the
    parent's end of the socket: none stays open on its account)."""

    def __init__(self, keep: socket.socket):
        self._proc = start_python(
            "tbhook.receiver.writer:child_main", [str(keep.fileno())], keep=[keep.fileno()]
        )

    def is_alive(self) -> bool:
        return self._proc.poll() is None

    def exit_code(self) -> int | None:
        return self._proc.poll()

    def join(self, timeout: float) -> None:
        with contextlib.suppress(subprocess.TimeoutExpired):
            self._proc.wait(timeout)

    def kill(self) -> None:
        with contextlib.suppress(ProcessLookupError):
            self._proc.kill()


def _spawn(store_factory: StoreFactory, forward_to: str | None) -> tuple[socket.socket, _Process]:
    parent, child = socket.socketpair()
    process = _Process(child)
    child.close()
    _send(parent, ("setup", store_factory, forward_to))
    return parent, process


def child_main(argv: list[str]) -> None:
    """The writer process's entry point: ``argv`` holds its socket's file descriptor."""
    sock = socket.socket(fileno=int(argv[0]))
    _, store_factory, forward_to = _receive(sock)
    _serve_writes(sock, store_factory, forward_to)


def _serve_writes(sock: socket.socket, store_factory: StoreFactory, forward_to: str | None) -> None:
    """In the writer process: open the store when told, then commit each batch sent."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the server stops it, when it is done
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    die_with_parent()
    store = None
    stop_checkpoints: Callable[[], None] = lambda: None  # noqa: E731
    try:
        while True:
            try:
                message = _receive(sock)
            except (EOFError, OSError):
                return
            if message[0] == "close":
                return
            if message[0] == "check":
                reply: tuple = ("checked", _check(store))
            elif message[0] == "open":
                store, stop_checkpoints, why = _open(store_factory)
                reply = ("opened",) if store is not None else ("failed", why)
            else:
                why = ""
                if store is None:  # a store that could not be opened is tried again per batch
                    store, stop_checkpoints, why = _open(store_factory)
                reply = (
                    _commit(store, message[1], message[2], forward_to)
                    if store is not None
                    else ("failed", f"could not store: {why}")
                )
            _send(sock, reply)
    finally:
        stop_checkpoints()
        if store is not None:
            store.close()


def _open(store_factory: StoreFactory) -> tuple[Store | None, Callable[[], None], str]:
    """The store, opened for writing (or None, and why not: reported by the parent)."""
    try:
        store = store_factory()
        store.set_busy_timeout(int(LOCK_WAIT_SECONDS * 1000))
        return store, store.checkpoint_in_background(), ""
    except Exception as exc:
        return None, lambda: None, str(exc)


def _commit(store: Store | None, params: list, readable: list, forward_to: str | None) -> tuple:
    try:
        if store is None:
            raise StoreUnavailable("could not store: the database is not open")
        stored = store.append_rows(params, readable, forward_to)
        return ("stored", [(s.id, s.deliveries, s.quarantined) for s in stored])
    except StoreUnavailable as exc:
        return ("failed", str(exc))
    except Exception as exc:  # a bug fails the batch, not the writer
        return ("failed", f"could not store: {type(exc).__name__}: {exc}")


def _check(store: Store | None) -> str | None:
    if store is None:
        return "could not store: the database is not open"
    try:
        return store.commit_check()
    except Exception as exc:  # a bug fails the check, not the writer
        return f"could not store: {type(exc).__name__}: {exc}"

"""The receiver's background jobs (forwards, alerts, retention passes): each on a daemon
thread of its own, started with the receiver, woken early when there is something to do,
and stopped with it."""

from __future__ import annotations

import threading


class Background:
    """A job's thread: ``start``; ``wake`` (do it now); ``close``: stop, wake, let the job
    stop what it waits on (``_stopping``), wait ``joined`` seconds (None: until it ends),
    then let it release what it holds (``_closed``). A job writes ``_run``, which returns
    once ``_stop`` is set."""

    name = "tbhook-background"
    joined: float | None = None

    def __init__(self, wake: threading.Event | None = None):
        self._wake = wake if wake is not None else threading.Event()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=self.name, daemon=True)

    def start(self) -> None:
        self._thread.start()

    def wake(self) -> None:
        self._wake.set()

    def close(self) -> None:
        self._stop.set()
        self._wake.set()
        self._stopping()
        if self._thread.is_alive():
            self._thread.join(self.joined)
        self._closed()

    def _run(self) -> None:
        raise NotImplementedError

    def _stopping(self) -> None:
        """Before the wait for the thread: stop what it may be waiting on."""

    def _closed(self) -> None:
        """Once the thread ended (or ``joined`` passed): release what the job holds."""

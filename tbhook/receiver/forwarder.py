"""`serve --forward-to`: pass each stored event on to the user's app, on Tracebuzz's schedule.

Forwarding runs on its own thread after the 200 has gone back to Tracebuzz, so the user's
app being slow or down never touches receiving. Attempts are stored, so pending retries
resume after a restart.
"""

from __future__ import annotations

import threading
import time

from tbhook.errors import TbhookError
from tbhook.model.events import SCHEDULE_MINUTES
from tbhook.receiver.background import Background
from tbhook.receiver.log import Log
from tbhook.receiver.metrics import Counts
from tbhook.store import ForwardOutcome, Store
from tbhook.transfer.client import Poster, PostFailed

IDLE_SECONDS = 1.0


class Forwarder(Background):
    """Forwards due events on a thread of its own, through a connection of its own (``store``,
    opened for writing: it records each attempt). ``wake`` is set when new events are
    committed."""

    name = "tbhook-forwarder"

    def __init__(
        self,
        store: Store,
        target: str,
        wake: threading.Event,
        headers: dict[str, str] | None = None,
        retry_scale: float = 1.0,
        log: Log | None = None,
        counts: Counts | None = None,
    ):
        self.store = store
        self.retry_scale = retry_scale
        self.log = log
        self.counts = counts or Counts()
        # Pending forwards from an earlier run go to today's --forward-to: the app may have moved.
        self.poster = Poster(target, headers)
        super().__init__(wake)

    def _closed(self) -> None:
        self.poster.close()

    def retry_delay(self, attempts: int) -> float | None:
        """Seconds to wait after failed attempt number ``attempts``, or None: give up."""
        if attempts > len(SCHEDULE_MINUTES):
            return None
        return SCHEDULE_MINUTES[attempts - 1] * 60 * self.retry_scale

    def _run(self) -> None:
        while not self._stop.is_set():
            due = self.store.forwards.due(time.time())
            for row in due:
                if self._stop.is_set():
                    return
                self._attempt(row)
            if not due:
                self._wake.wait(self._idle_seconds())
                self._wake.clear()

    def _idle_seconds(self) -> float:
        next_at = self.store.forwards.next_at()
        if next_at is None:
            return IDLE_SECONDS
        return min(IDLE_SECONDS, max(0.0, next_at - time.time()))

    def _attempt(self, row: dict) -> None:
        event_id, attempts = row["eventId"], row["attempts"] + 1
        try:
            status: int | None = self.poster.post(row["body"]).status
            error = None if status == 200 else f"HTTP {status}"
        except PostFailed as exc:
            status, error = None, str(exc)
        facts = {"kind": "forward", "id": event_id, "attempts": attempts, "status": status}
        if status == 200:
            outcome = ForwardOutcome(event_id, self.poster.url, attempts, "delivered", status)
            self.counts.forwarded("delivered")
            if self.log:
                self.log.info(f"forwarded #{event_id}: 200", outcome="delivered", **facts)
        else:
            delay = self.retry_delay(attempts)
            if delay is None:
                outcome = ForwardOutcome(
                    event_id, self.poster.url, attempts, "failed", status, error
                )
                self.counts.forwarded("failed")
                self._warn(
                    f"forward #{event_id} failed ({error}); gave up after {attempts} attempts",
                    outcome="failed",
                    reason=error,
                    **facts,
                )
            else:
                next_at = time.time() + delay
                outcome = ForwardOutcome(
                    event_id, self.poster.url, attempts, "pending", status, error, next_at
                )
                self.counts.forwarded("retrying")
                self._warn(
                    f"forward #{event_id} failed ({error}); retry {attempts} in {delay:.3g}s",
                    outcome="retrying",
                    reason=error,
                    retryInSeconds=round(delay, 3),
                    **facts,
                )
        try:
            self.store.forwards.record(outcome)
        except TbhookError as exc:  # sent but not recorded: it will be sent again (at least once)
            self._warn(f"forward #{event_id}: could not record the attempt: {exc}", **facts)

    def _warn(self, line: str, **facts: object) -> None:
        if self.log:
            self.log.warning(line, **facts)

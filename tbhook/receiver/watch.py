"""`serve --notify`: what the receiver watches and tells (``tbhook.notify`` sends it).

- ``failing``: told by the app of every answer to a delivery (on the loop: no I/O here);
- ``writer``: told by the writer when its process died, and when a new one stores again;
- ``retention``: told by the retention passes;
- ``stale`` and ``size``: looked at every few seconds on a thread of its own, through a reader
  connection of its own; under ``--retain``, a database nearing its cap wakes a pass;
- ``sla`` (with ``--sla``): looked at on that thread when due (``tbhook.receiver.breaches``).
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import time
from collections.abc import Callable
from datetime import datetime
from typing import Any

from tbhook.errors import TbhookError
from tbhook.model import alerts
from tbhook.notify import Notifier
from tbhook.receiver.background import Background

STATE_KEY = "alerts"


class MetaState:
    """The notifier's state in the database's meta, through a connection of its own (opened
    when first needed; a database that cannot be written keeps it in memory meanwhile)."""

    def __init__(self, target: str, loaded: dict[str, Any]):
        self.target = target
        self.loaded = loaded
        self._store: Any = None

    def load(self) -> dict[str, Any]:
        return self.loaded

    def save(self, state: dict[str, Any]) -> None:
        self.loaded = state
        try:
            if self._store is None:
                from tbhook.store import open_store

                self._store = open_store(self.target)
                self._store.beside_the_writer()
            self._store.set_meta(STATE_KEY, json.dumps(state))
        except TbhookError:
            if self._store is not None:
                with contextlib.suppress(Exception):
                    self._store.close()
                self._store = None
            raise

    def close(self) -> None:
        if self._store is not None:
            self._store.close()
            self._store = None


def kept_state(store: Any) -> dict[str, Any]:
    """What a previous run's notifier kept (alerts firing, alerts not yet sent)."""
    try:
        value = json.loads(store.reads.meta().get(STATE_KEY) or "{}")
    except (ValueError, TbhookError):
        return {}
    return value if isinstance(value, dict) else {}


class Watch(Background):
    """The receiver's alerts; see the module's docstring."""

    name = "tbhook-watch"
    joined = 10.0

    def __init__(
        self,
        notifier: Notifier,
        target: str,
        *,
        cap: int | None = None,
        stale: int | None = None,
        archive_dir: str | None = None,
        every: float = 10.0,
        last_delivery: float | None = None,
        wake_retention: Callable[[], None] | None = None,
        clock: Callable[[], float] = time.time,
        breaches: Any = None,
    ):
        self.notifier = notifier
        self.target = target
        self.cap = cap
        self.stale = stale
        self.archive_dir = archive_dir
        self.every = every
        self.clock = clock
        self.wake_retention = wake_retention
        self.started = clock()
        self.last_delivery = last_delivery
        self.streak = alerts.Streak()
        self.breaches = breaches  # a receiver.breaches.Breaches with --sla
        # Firing when an earlier run stopped: the first 200 resolves it (the streak that
        # fired it is gone with that run).
        self._failing_open = ("failing", "") in notifier.firing()
        self._reader: Any = None
        super().__init__()

    def _closed(self) -> None:
        if self._reader is not None:
            with contextlib.suppress(Exception):
                self._reader.close()

    # -- told by the others ---------------------------------------------------------------

    def answered(self, status: int, cause: str = "") -> None:
        """An answer to a delivery (on the loop)."""
        now = self.clock()
        if status == 200:
            self.last_delivery = now
            if self.breaches is not None and self.breaches.delivered():
                self._wake.set()
        change = self.streak.answered(status, cause, now)
        if isinstance(change, alerts.Alert):
            self._fire(change)
        elif change or (status == 200 and self._failing_open):
            self._failing_open = False
            self.notifier.resolve(
                "failing", "", "deliveries are answered 200 again", {"answered": 200}
            )

    def writer_died(self, why: str) -> None:
        text = (
            f"the writer process stopped unexpectedly ({why}) and was started again; the "
            "deliveries of the batch it held were answered 503, and Tracebuzz sends them again"
        )
        self.notifier.fire("writer", "", text, {"why": why})

    def writer_back(self) -> None:
        self.notifier.resolve("writer", "", "a new writer process is storing deliveries", {})

    def retention_pass(self, result: dict[str, Any]) -> None:
        if result.get("busy"):
            return
        if result.get("error"):
            text = (
                f"a retention pass failed: {result['error']}; nothing was deleted that was not "
                "archived, and the next pass tries again"
            )
            self.notifier.fire("retention", "", text, {"error": result["error"]})
        else:
            deleted = result.get("deleted", 0)
            text = f"a retention pass worked again ({deleted} events archived and deleted)"
            self.notifier.resolve("retention", "", text, {"deleted": deleted})

    # -- looked at ------------------------------------------------------------------------

    def _fire(self, alert: alerts.Alert) -> None:
        self.notifier.fire(alert.name, alert.key, alert.text, alert.details)

    def _run(self) -> None:
        looked = float("-inf")
        while not self._stop.is_set():
            if time.monotonic() - looked >= self.every:
                looked = time.monotonic()
                with contextlib.suppress(Exception):  # a look that fails is tried next time
                    self.look()
            pause = self.every - (time.monotonic() - looked)
            if self.breaches is not None:
                with contextlib.suppress(Exception):
                    self.breaches.look(self._store(), self.clock())
                pause = min(pause, self.breaches.pause(self.clock()))
            self._wake.wait(max(0.01, pause))
            self._wake.clear()

    def look(self) -> None:
        """Each condition once: stale, the database's size, the disks' free space."""
        now = self.clock()
        if self.stale:
            age = now - (self.last_delivery or self.started)
            alert = alerts.stale(age, self.stale)
            if alert:
                self._fire(alert)
            else:
                self.notifier.resolve("stale", "", "deliveries are coming in again", {})
        if self.cap:
            used = self._used()
            if used is not None:
                if self.wake_retention and used >= _prune_at() * self.cap:
                    self.wake_retention()
                alert = alerts.size(used, self.cap)
                if alert:
                    self._fire(alert)
                elif used < alerts.SIZE_CLEAR * self.cap:
                    text = f"the database is back under {alerts.SIZE_CLEAR:.0%} of --max-db-size"
                    self.notifier.resolve("size", "database", text, {"usedBytes": used})
        for where, what in self._disks():
            usage = shutil.disk_usage(where)
            alert = alerts.disk(where, what, usage.free, usage.total)
            if alert:
                self._fire(alert)
            elif usage.free >= alerts.DISK_CLEAR * usage.total:
                text = f"the disk holding the {what} ({where}) has room again"
                self.notifier.resolve("size", f"disk:{where}", text, {"freeBytes": usage.free})

    def _used(self) -> int | None:
        return int(self._store().space()["usedBytes"])

    def _store(self) -> Any:
        """The watch's own reader connection."""
        if self._reader is None:
            from tbhook.store import open_reader

            self._reader = open_reader(self.target, current=False)
        return self._reader

    def _disks(self) -> list[tuple[str, str]]:
        from tbhook.model.targets import is_url

        found = []
        if not is_url(self.target):
            found.append((os.path.dirname(os.path.abspath(self.target)), "database"))
        if self.archive_dir:
            found.append((os.path.abspath(self.archive_dir), "archive directory"))
        return found


def _prune_at() -> float:
    from tbhook.transfer.retention import PRUNE_AT

    return PRUNE_AT


def last_delivery(store: Any) -> float | None:
    """When the newest delivery came (Unix seconds), also once retention pruned it."""
    from tbhook.transfer.retention import state_of

    times = [store.reads.last_received_at(), state_of(store).get("lastReceivedAt")]
    return max((t for t in map(seconds_of, times) if t is not None), default=None)


def seconds_of(iso: str | None) -> float | None:
    """An ISO time (receivedAt) as Unix seconds."""
    try:
        return datetime.fromisoformat((iso or "").replace("Z", "+00:00")).timestamp()
    except ValueError:  # none yet, or not a time (a row some other tool wrote)
        return None

"""Alerts to a person's chat or pager: `serve --notify URL`, `doctor --notify URL`, `notify test`.

A ``Notifier`` POSTs each alert as JSON to every URL:
``{"alert": NAME, "state": "firing"|"resolved", "text": ..., "at": ISO, "details": {...}}``;
``text`` is what a Slack or Teams incoming webhook shows as it is. Callers say what is true
(``fire``, ``resolve``); the notifier decides what is sent: each alert once when it fires and
once when it resolves, and a condition that comes back within ``FLAP_SECONDS`` of its last
firing is held until that much time has passed (sent then only if it still holds).

Sending happens on a thread per URL with retries and backoff, so nothing that fires waits
for a URL, and a URL that hangs delays no other; what could not be delivered is logged. What
was sent to which URL (and what is still to be sent) is kept by a ``State`` (the database's
meta for the receiver, a file for doctor), so a restart neither repeats an alert nor forgets to
resolve one, and a URL added since an alert fired is told of it on the next run.
"""

from __future__ import annotations

import contextlib
import json
import os
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from tbhook.model.times import iso_time

FLAP_SECONDS = 600  # a condition that comes back sooner is not sent again before this
BACKOFF_SECONDS = (1, 2, 5, 15, 30, 60, 120, 300)  # between tries; then it is logged as lost
TIMEOUT_SECONDS = 10.0


class Logger(Protocol):
    def warning(self, message: str, **facts: Any) -> None: ...


class State(Protocol):
    """Where a notifier keeps what it sent: ``load`` gives back what ``save`` was given."""

    def load(self) -> dict[str, Any]: ...

    def save(self, state: dict[str, Any]) -> None: ...


class MemoryState:
    """Nothing kept across runs (``notify test``)."""

    def __init__(self) -> None:
        self.state: dict[str, Any] = {}

    def load(self) -> dict[str, Any]:
        return self.state

    def save(self, state: dict[str, Any]) -> None:
        self.state = state


class FileState:
    """A JSON file (0600, replaced whole): what `doctor --notify` sent on its last run."""

    def __init__(self, path: Path):
        self.path = path

    def load(self) -> dict[str, Any]:
        try:
            loaded = json.loads(self.path.read_text())
        except (OSError, ValueError):
            return {}
        return loaded if isinstance(loaded, dict) else {}

    def save(self, state: dict[str, Any]) -> None:
        from tbhook.transfer.files import create_private, replacing

        self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        with replacing(self.path, "doctor") as temp, create_private(temp) as out:
            out.write(json.dumps(state, sort_keys=True))


HOST = os.uname().nodename  # which machine says it: a team may run several receivers


def payload(name: str, state: str, text: str, details: dict[str, Any], at: float) -> dict:
    """An alert as it is posted: ``text`` for a person (and a chat's incoming webhook), the
    rest for a program."""
    what = name if state == "firing" else f"{name}, resolved"
    return {
        "alert": name,
        "state": state,
        "text": f"tbhook on {HOST} ({what}): {text}",
        "at": iso_time(int(at)),
        "details": details,
    }


@dataclass
class _Queue:
    """What is still to be sent to one URL, in order, and when the next try is due."""

    url: str
    waiting: deque = field(default_factory=deque)
    tries: int = 0
    due: float = 0.0


class Notifier:
    """Sends alerts to ``urls``; see the module's docstring. Thread-safe; ``close`` sends what
    it can within ``timeout`` seconds in all and keeps the rest in the state for the next run."""

    def __init__(
        self,
        urls: Sequence[str],
        log: Logger | None = None,
        state: State | None = None,
        *,
        clock: Callable[[], float] = time.time,
        flap_seconds: float = FLAP_SECONDS,
        backoff: Sequence[float] = BACKOFF_SECONDS,
        source: str = "",
    ):
        from tbhook.transfer.client import Poster

        self.urls = list(urls)
        self.log = log
        self.clock = clock
        self.flap_seconds = flap_seconds
        self.backoff = tuple(backoff)
        self.source = source  # which receiver or database, in every alert's details
        self._state = state or MemoryState()
        self._lock = threading.Condition()
        loaded = self._state.load()
        self._alerts: dict[str, dict[str, Any]] = dict(loaded.get("alerts", {}))
        self._queues = {url: _Queue(url) for url in self.urls}
        self._posters = {url: Poster(url, timeout=TIMEOUT_SECONDS) for url in self.urls}
        self._dirty = False
        self._stopping = False
        self._closed = False
        self._threads: list[threading.Thread] = []
        self._saving = threading.Lock()  # one save at a time, each of the newest state
        self._unsent(loaded.get("outbox", []))

    # -- what callers say -----------------------------------------------------------------

    def fire(self, name: str, key: str, text: str, details: dict[str, Any] | None = None) -> None:
        """``name`` (for ``key``: which case, which disk; "" when there is one) is true now."""
        with self._lock:
            ident = _ident(name, key)
            alert = self._alerts.get(ident)
            if alert and alert["firing"]:
                alert.update(text=text, details=details or {})
                if alert["held"]:
                    self._lock.notify_all()
                return
            now = self.clock()
            self._forget(now)
            last = alert["sentAt"] if alert else None
            held = last is not None and now - last < self.flap_seconds
            self._alerts[ident] = {
                "name": name,
                "key": key,
                "firing": True,
                "held": held,
                "sentAt": last,
                "text": text,
                "details": details or {},
            }
            if not held:
                self._send_firing(ident, now)
            self._dirty = True
            self._lock.notify_all()

    def resolve(
        self, name: str, key: str = "", text: str | None = None, details: dict | None = None
    ) -> None:
        """``name`` (for ``key``) is no longer true: said once, if its firing was sent."""
        with self._lock:
            ident = _ident(name, key)
            alert = self._alerts.get(ident)
            if not alert or not alert["firing"]:
                return
            alert["firing"] = False
            if not alert["held"]:
                message = payload(
                    name,
                    "resolved",
                    text or alert["text"],
                    self._details(details or alert["details"], key),
                    self.clock(),
                )
                self._enqueue(message, alert.get("told", []))
            alert["held"] = False
            self._dirty = True
            self._lock.notify_all()

    def _unsent(self, outbox: list) -> None:
        """What an earlier run could not send: still sent to the URLs given now; what waited
        for a URL no longer given is dropped, said once (and that URL counts as not told)."""
        dropped: dict[str, int] = {}
        for url, message in outbox:
            if url in self._queues:
                self._queues[url].waiting.append(message)
                continue
            dropped[url] = dropped.get(url, 0) + 1
            alert = self._alerts.get(_ident(message["alert"], message["details"].get("key", "")))
            if alert and url in alert.get("told", []):
                alert["told"].remove(url)
        for url, count in dropped.items():
            self._warn(
                f"dropped {count} alerts waiting to be sent to {url}: no longer a --notify URL"
            )
            self._dirty = True

    def firing(self) -> list[tuple[str, str]]:
        """The (name, key) of each alert firing now, sent or held."""
        with self._lock:
            return [(a["name"], a["key"]) for a in self._alerts.values() if a["firing"]]

    # -- sending --------------------------------------------------------------------------

    def start(self) -> Notifier:
        """Send on threads of their own, one per URL (what a previous run left unsent first,
        and each alert still firing to a URL not yet told of it)."""
        with self._lock:
            for alert in self._alerts.values():
                untold = [u for u in self.urls if u not in alert.get("told", [])]
                if alert["firing"] and not alert["held"] and alert["sentAt"] and untold:
                    details = self._details(alert["details"], alert["key"])
                    message = payload(alert["name"], "firing", alert["text"], details, self.clock())
                    for url in untold:
                        self._queues[url].waiting.append(message)
                    alert["told"] = [*alert.get("told", []), *untold]
                    self._dirty = True
        self._threads = [threading.Thread(target=self._run, name="tbhook-notify", daemon=True)]
        self._threads += [
            threading.Thread(target=self._send, args=(q,), name="tbhook-notify-url", daemon=True)
            for q in self._queues.values()
        ]
        for thread in self._threads:
            thread.start()
        return self

    def close(self, timeout: float = 3.0) -> None:
        """Send what is waiting for up to ``timeout`` seconds in all (a URL that hangs holds
        no stop longer), then keep the rest for the next run."""
        deadline = time.monotonic() + timeout
        with self._lock:
            while self._pending() and time.monotonic() < deadline and self._threads:
                if all(q.tries for q in self._queues.values() if q.waiting):
                    break  # every URL with work is failing: its tries go on next run
                self._lock.wait(min(0.05, max(0.0, deadline - time.monotonic())))
            self._stopping = True
            self._lock.notify_all()
        for thread in self._threads:  # a post still in flight is let go: its message is kept
            thread.join(max(0.0, deadline - time.monotonic()))
        self._save()
        with self._lock:
            self._closed = True  # a post that answers later changes nothing kept
        for poster in self._posters.values():
            with contextlib.suppress(Exception):
                poster.close()

    def flush(self, timeout: float = 30.0) -> bool:
        """Wait until nothing is waiting to be sent (or ``timeout``): whether all went."""
        deadline = time.monotonic() + timeout
        with self._lock:
            while self._pending() and time.monotonic() < deadline:
                if all(q.tries >= len(self.backoff) for q in self._queues.values() if q.waiting):
                    return False
                self._lock.wait(min(0.05, max(0.0, deadline - time.monotonic())))
            return not self._pending()

    def _forget(self, now: float) -> None:
        """Resolved alerts sent longer ago than a flap: they hold nothing back any more (an
        ``sla`` alert is keyed by its wait, so they would pile up)."""
        old = [
            ident
            for ident, alert in self._alerts.items()
            if not alert["firing"] and now - (alert["sentAt"] or 0) >= self.flap_seconds
        ]
        for ident in old:
            del self._alerts[ident]
        self._dirty = self._dirty or bool(old)

    def _pending(self) -> bool:
        return any(q.waiting for q in self._queues.values())

    def _send_firing(self, ident: str, now: float) -> None:
        alert = self._alerts[ident]
        alert["sentAt"] = now
        alert["held"] = False
        details = self._details(alert["details"], alert["key"])
        alert["told"] = list(self.urls)
        self._enqueue(payload(alert["name"], "firing", alert["text"], details, now), self.urls)

    def _details(self, details: dict[str, Any], key: str) -> dict[str, Any]:
        extra = {"key": key} if key else {}
        if self.source:
            extra["source"] = self.source
        extra["host"] = HOST
        return {**details, **extra}

    def _enqueue(self, message: dict[str, Any], urls: Sequence[str]) -> None:
        for url in urls:
            if url in self._queues:
                self._queues[url].waiting.append(message)
        if self.log:  # in the log too, with or without a URL to send it to
            self.log.warning(message["text"], alert=message)

    def _run(self) -> None:
        """Alerts held for flapping, sent once they waited long enough; what changed, kept."""
        while True:
            with self._lock:
                if self._stopping:
                    return
                now = self.clock()
                for ident, alert in self._alerts.items():  # held long enough: sent now
                    waited = now - (alert["sentAt"] or 0) >= self.flap_seconds
                    if alert["firing"] and alert["held"] and waited:
                        self._send_firing(ident, now)
                        self._dirty = True
                        self._lock.notify_all()
            self._save()
            with self._lock:
                if self._stopping:
                    return
                if not self._dirty:
                    held = any(a["held"] for a in self._alerts.values())
                    self._lock.wait(1.0 if held else None)

    def _send(self, queue: _Queue) -> None:
        """One URL's messages, in order, each when due."""
        while True:
            with self._lock:
                if self._stopping:
                    return
                wait = queue.due - time.monotonic() if queue.waiting else None
                if wait is None or wait > 0:
                    self._lock.wait(wait)
                    continue
            self._try(queue)
            self._save()  # what was sent is kept before waiting: a kill then repeats nothing

    def _try(self, queue: _Queue) -> None:
        """One try at the oldest message for one URL (outside the lock)."""
        from tbhook.transfer.client import PostFailed

        with self._lock:
            if not queue.waiting:
                return
            message = queue.waiting[0]
        body = json.dumps(message).encode()
        try:
            reply = self._posters[queue.url].post(body)
            why = None if 200 <= reply.status < 300 else f"answered {reply.status}"
        except PostFailed as exc:
            why = str(exc)
        with self._lock:
            if self._closed:
                return
            if why is None:
                queue.waiting.popleft()
                queue.tries, queue.due = 0, 0.0
            elif queue.tries >= len(self.backoff):
                queue.waiting.popleft()
                queue.tries, queue.due = 0, 0.0
                self._warn(f"could not send the alert to {queue.url} ({why}): {message['text']}")
            else:
                if queue.tries == 0:
                    self._warn(
                        f"could not send an alert to {queue.url} ({why}); trying again "
                        f"{len(self.backoff)} times"
                    )
                queue.due = time.monotonic() + self.backoff[queue.tries]
                queue.tries += 1
            self._dirty = True
            self._lock.notify_all()

    def _warn(self, message: str) -> None:
        if self.log:
            self.log.warning(message)

    def _save(self) -> None:
        with self._saving:
            with self._lock:
                if not self._dirty or self._closed:
                    return
                self._dirty = False
                alerts = self._alerts.items()
                state = {
                    "alerts": {k: {**v, "told": list(v.get("told", []))} for k, v in alerts},
                    "outbox": [[q.url, m] for q in self._queues.values() for m in q.waiting],
                }
            with contextlib.suppress(Exception):  # a state that cannot be kept must not stop
                self._state.save(state)  # alerts


def _ident(name: str, key: str) -> str:
    return f"{name}:{key}" if key else name


def send_once(url: str, message: dict[str, Any]) -> tuple[int, bytes]:
    """POST one alert now (``notify test``): the status and body the URL answered. Raises
    PostFailed when there was no answer."""
    from tbhook.transfer.client import Poster

    poster = Poster(url, timeout=TIMEOUT_SECONDS)
    try:
        reply = poster.post(json.dumps(message).encode())
    finally:
        poster.close()
    return reply.status, reply.body

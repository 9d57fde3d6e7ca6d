"""`serve --sla`: an ``sla`` alert when a case waits past its target, once per wait, resolved
when it waits no more (an agent answered, or the case was closed).

The queue (``tbhook.queue_feed.snapshot``, what `tbhook queue --sla` answers) is asked only
when it can have changed: soon after a delivery (which can start or end a wait), and when
the soonest wait would cross its target (a lower bound with business hours: the clock
counts no faster than the wall's); never sooner than ``SHARE`` times what the last look
took, so a slow look costs the receiver a tenth of a core at most.

A wait that had breached more than ``BEFORE`` before serve started is not alerted (a first
start would otherwise send one per old wait; a restart still sends what breached while it
was down), so a look reads only the waits begun after the last such start (a binary search
on the clock, once), and those an earlier run fired (kept in the notifier's state, resolved
by this one): not the whole queue (160,000 waiting at 10M events). Unless its message came
after serve started: Tracebuzz retries a delivery for hours, so a wait stamped long ago can
arrive now; the events stored since the last look (read by the tail's cursor, taken before
serve took its first delivery) name those waits, and they are alerted too.
"""

from __future__ import annotations

import time
from dataclasses import replace
from typing import Any

from tbhook.model import alerts
from tbhook.notify import Notifier

SETTLE = 2.0  # seconds: a delivery is looked at this soon after the last look, at most
LONGEST = 300.0  # seconds between looks when nothing seems due (a prune, a missed change)
BEFORE = 900  # seconds: breached this long before serve started, a wait is still alerted
SHARE = 10  # a look waits at least this many times as long as the last one took
YEAR = 366 * 86400


class Breaches:
    """The waits past their target, as the notifier was last told of them."""

    def __init__(self, notifier: Notifier, asking: Any, started: float, cursor: Any = None):
        self.notifier = notifier
        self.cursor = cursor  # the tail's, where the events since the last look begin
        self.since = int(started) - BEFORE  # breached before this: not alerted
        self.asking = asking  # a queue_feed.Asking with an SLA
        self.hours = asking.clock.hours.spec if asking.clock else None
        self.due = 0.0  # when to look next (Unix seconds)
        self.looked = 0.0
        self.took = 0.0  # seconds the last look took
        self.after = _unalerted(asking, self.since)  # waits begun up to this: not alerted

    def delivered(self) -> bool:
        """A delivery was stored: look again soon. Whether that is sooner than planned (the
        watch is to be woken)."""
        soon = self.looked + max(SETTLE, SHARE * self.took)
        if soon < self.due:
            self.due = soon
            return True
        return False

    def pause(self, now: float) -> float:
        """Seconds until the next look is due."""
        return max(0.0, self.due - now)

    def look(self, store: Any, now: float) -> None:
        """When due: fire each wait past its target, resolve each that is no more."""
        from tbhook.queue_feed import snapshot
        from tbhook.store.timelines import chunks

        if now < self.due:
            return
        self.looked = now
        started = time.monotonic()
        firing = {key for name, key in self.notifier.firing() if name == "sla"}
        begun = [_moment(key.split("@", 1)[-1]) for key in firing]
        after = min([self.after, *(b - 1 for b in begun if b is not None)])
        asking = replace(self.asking, waiting=replace(self.asking.waiting, after=after))
        arrived = self._arrived(store)
        answer = snapshot(store, asking, int(now)).answer
        rows = dict(zip(answer.waits, answer.records, strict=True))
        for part in chunks(sorted(arrived)):  # waits stamped before `after`, arrived since
            late = replace(self.asking.waiting, cases=tuple(part))
            again = snapshot(store, replace(self.asking, waiting=late), int(now)).answer
            rows.update(zip(again.waits, again.records, strict=True))
        breached = {}
        soonest = LONGEST
        for wait, row in rows.items():
            if row.get("breached"):
                alert = alerts.sla(row, self.hours)
                breached[alert.key] = alert
                old = answer.seconds(wait[1], self.since) > row["slaSeconds"]
                new = wait[1] in arrived.get(wait[0], ())  # its first message came since
                if alert.key in firing or not old or new:
                    self.notifier.fire(alert.name, alert.key, alert.text, alert.details)
            elif row.get("slaLeftSeconds") is not None:
                soonest = min(soonest, row["slaLeftSeconds"] + 1)
        for key in firing - set(breached):
            self.notifier.resolve("sla", key, alerts.sla_resolved(key))
        self.took = time.monotonic() - started
        self.due = now + max(soonest, SHARE * self.took)

    def _arrived(self, store: Any) -> dict[int, set[int]]:
        """The events stored since the last look: by case, the moments they are stamped
        with (a wait begun by one of them begins at its moment)."""
        from tbhook.queue_feed import EVENTS

        if self.cursor is None:
            return {}
        upto = store.tail.advance(self.cursor)
        found: dict[int, set[int]] = {}
        for event in store.tail.window(EVENTS, self.cursor, upto):
            if event.get("caseId") is not None and event.get("timestamp") is not None:
                found.setdefault(event["caseId"], set()).add(event["timestamp"])
        self.cursor = upto
        return found


def _unalerted(asking: Any, since: int) -> int:
    """The latest start of a wait that had breached its target by ``since``, of either kind
    (waits a year older are taken as breached by then, whatever the clock)."""
    from tbhook.model.hours import duration
    from tbhook.model.queue import thresholds

    low = since - YEAR
    limits = thresholds(asking.sla, duration(asking.clock), since, low)
    found = [
        low if latest is None else latest
        for kind, (latest, _risk) in limits.items()
        if asking.sla.target(kind) is not None
    ]
    return min(found, default=since)


def _moment(iso: str) -> int | None:
    """An ISO time a key carries (when its wait began), as Unix seconds."""
    from datetime import datetime

    try:
        return int(datetime.fromisoformat(iso.replace("Z", "+00:00")).timestamp())
    except ValueError:
        return None

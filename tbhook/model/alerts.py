"""When an alert fires, and what it says: the rules `serve --notify` and `doctor --notify`
share. Pure: the receiver and doctor gather the facts, ``tbhook.notify`` sends."""

from __future__ import annotations

from dataclasses import dataclass
from itertools import accumulate
from typing import Any

from tbhook.model.events import SCHEDULE_MINUTES
from tbhook.model.times import duration, iso_time
from tbhook.model.words import human_size

# The answers Tracebuzz counts as a failed delivery (anything but 200 is; these are the ones
# a receiver gives).
FAILURES = (401, 413, 500, 503)
IN_A_ROW = 3
# Tracebuzz tries a failed delivery again after each of these, then disables the webhook.
RETRY_AT = tuple(minutes * 60 for minutes in accumulate(SCHEDULE_MINUTES))
RETRY_WINDOW = RETRY_AT[-1]
SIZE_SHARE = 0.9  # of --max-db-size: the size alert
SIZE_CLEAR = 0.85  # ... and below this it is resolved (no flapping around one value)
DISK_FREE = 0.05  # free share of a disk under which the size alert fires
DISK_CLEAR = 0.07


@dataclass(frozen=True)
class Alert:
    """An alert to fire: its name, key (which disk, which case), text and details."""

    name: str
    key: str
    text: str
    details: dict[str, Any]


class Streak:
    """Answers to deliveries, in order: three failures in a row (within Tracebuzz's retry
    window) fire ``failing``; the next 200 resolves it."""

    def __init__(self) -> None:
        self.count = 0
        self.first: float | None = None

    def answered(self, status: int, cause: str, now: float) -> Alert | bool | None:
        """An Alert to fire, True to resolve, None for no change."""
        if status == 200:
            was = self.count >= IN_A_ROW
            self.count, self.first = 0, None
            return True if was else None
        if status not in FAILURES:
            return None
        if self.first is None or now - self.first > RETRY_WINDOW:
            self.count, self.first = 0, now
        self.count += 1
        if self.count < IN_A_ROW:
            return None
        return failing(status, cause, self.count, self.first, now)


def failing(status: int, cause: str, count: int, first: float, now: float) -> Alert:
    """``failing``: what Tracebuzz was answered, and how long before it disables the webhook."""
    tried = sum(1 for at in RETRY_AT if at <= now - first)
    left = len(RETRY_AT) - tried
    disables = first + RETRY_WINDOW
    text = (
        f"{count} deliveries in a row were answered {status} ({cause}). Tracebuzz counts "
        f"each as a failure: a delivery that keeps failing is tried {left} more times, and "
        f"the webhook is disabled after its last try, about {duration(int(disables - now))} "
        f"from now ({iso_time(int(disables))}), unless an answer is 200 before then."
    )
    details = {
        "status": status,
        "cause": cause,
        "inARow": count,
        "firstFailureAt": iso_time(int(first)),
        "triesLeft": left,
        "disablesAt": iso_time(int(disables)),
    }
    return Alert("failing", "", text, details)


def stale(age: float | None, limit: int) -> Alert | None:
    """``stale``: no delivery for longer than ``--stale``."""
    if age is None or age <= limit:
        return None
    text = (
        f"no delivery for {duration(int(age))} (--stale {duration(limit)}): is the receiver "
        "reachable from Tracebuzz, and is the webhook still enabled there?"
    )
    return Alert("stale", "", text, {"seconds": int(age), "limit": limit})


def size(used: int, cap: int | None) -> Alert | None:
    """``size`` for the database: at 90% of ``--max-db-size``."""
    if not cap or used < SIZE_SHARE * cap:
        return None
    text = (
        f"the database holds {human_size(used)} of its --max-db-size {human_size(cap)} "
        f"({used / cap:.0%}); at the cap every delivery is answered 503: raise the cap, "
        "or give --retain and --archive-dir room to prune"
    )
    return Alert("size", "database", text, {"usedBytes": used, "capBytes": cap})


def disk(where: str, what: str, free: int, total: int) -> Alert | None:
    """``size`` for a disk (of the database, or of the archive directory): under 5% free."""
    if not total or free >= DISK_FREE * total:
        return None
    text = (
        f"the disk holding the {what} ({where}) has {human_size(free)} free of "
        f"{human_size(total)} ({free / total:.1%}); free some space"
    )
    return Alert("size", f"disk:{where}", text, {"freeBytes": free, "totalBytes": total})


def sla(row: dict[str, Any], hours: str | None = None) -> Alert:
    """``sla``: a wait past its target (a row of `tbhook queue --sla`), keyed by the case and
    when its wait began: one alert per wait. The path (sender text) is in the details only."""
    kind = "a first reply" if row["kind"] == "first" else "a reply"
    counted = f" in business hours ({hours})" if hours else ""
    text = (
        f"case {row['caseId']} (person {row['personId']}, source {row['sourceId']}) has "
        f"waited {duration(row['waitingSeconds'])}{counted} for {kind}, "
        f"{duration(-row['slaLeftSeconds'])} past its target of {duration(row['slaSeconds'])}; "
        f"waiting since {row['waitingSince']}"
    )
    details = {k: v for k, v in row.items() if k != "breached"}
    return Alert("sla", f"{row['caseId']}@{row['waitingSince']}", text, details)


def sla_resolved(key: str) -> str:
    """What an ``sla`` alert's resolution says: its case waits no more past its target."""
    case = key.split("@", 1)[0]
    return f"case {case} no longer waits past its target: an agent answered, or it was closed"

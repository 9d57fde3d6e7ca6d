"""The queue: the cases waiting for an agent at a moment, oldest wait first, against the
team's targets (an SLA). Pure, no I/O: the store keeps each case's wait (``Summary``'s
``wait`` fields, folded by ``tbhook.model.cases``); this turns waits into rows, counts how
many have breached or are at risk, and says what changed between two answers.

A wait's seconds are wall-clock, or open seconds of a business clock (``--hours``): the same
``duration(start, end)`` every report uses. A wait stamped after the moment asked about (a
sender's clock ahead of ours) has waited 0 seconds.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from tbhook.model.cases import FIRST, REPLY
from tbhook.model.text import quoted
from tbhook.model.times import iso_time, parse_duration

FIELDS = (
    "caseId",
    "personId",
    "sourceId",
    "path",
    "kind",
    "waitingSince",
    "waitingSeconds",
    "messages",
)
SLA_FIELDS = ("slaSeconds", "slaLeftSeconds", "breached")
KINDS = (FIRST, REPLY)
AT_RISK = 4  # a wait is at risk with less than 1/AT_RISK of its target left
# What a wait is, as the store keeps it: a row of these.
WAIT_COLUMNS = (
    "caseId",
    "waitAt",
    "waitKind",
    "waitMessages",
    "waitSourceId",
    "waitPath",
    "personId",
)

Duration = Callable[[int, int], int]


@dataclass(frozen=True)
class Sla:
    """The target of each kind of wait, in seconds (of the business clock with --hours);
    None: no target for that kind."""

    first: int | None = None
    reply: int | None = None
    spec: str = field(default="", compare=False)  # as it was written: first=1h,reply=4h

    def target(self, kind: str | None) -> int | None:
        return self.first if kind == FIRST else self.reply if kind == REPLY else None


def parse_sla(text: str) -> Sla:
    """``"first=1h,reply=4h"`` (either part alone too). Raises ValueError naming the part it
    could not read."""
    targets: dict[str, int] = {}
    parts = [part.strip() for part in text.split(",")]
    if not any(parts):
        raise ValueError("it is empty; give a target per kind of wait, like 'first=1h,reply=4h'")
    for part in parts:
        kind, equals, value = (piece.strip() for piece in part.partition("="))
        if not part or not equals:
            raise ValueError(f"{quoted(part)} is not kind=duration, like first=1h or reply=4h")
        if kind not in KINDS:
            raise ValueError(f"{quoted(kind)} is not a kind of wait; use first or reply")
        if kind in targets:
            raise ValueError(f"{quoted(kind)} is given twice")
        if re.fullmatch(r"[0smhdw ]*0[0smhdw ]*", value.lower()):  # 0, 0s, 0h0m: zero
            raise ValueError(
                f"{quoted(part)} is a target of nothing: every wait would be past it at once; "
                f"give a duration, like {kind}=1h"
            )
        targets[kind] = parse_duration(value)
    return Sla(targets.get(FIRST), targets.get(REPLY), text.strip())


@dataclass(frozen=True)
class Waiting:
    """Which waits a queue shows: on these sources (any when empty) and this path, at a
    moment (None: now, as the store stands)."""

    sources: tuple[int, ...] = ()
    path: str | None = None
    at: int | None = None
    after: int | None = None  # only waits begun after this moment (serve --sla's)
    cases: tuple[int, ...] = ()  # only these cases (any when empty; serve --sla's)

    def keeps(self, wait: Sequence[Any]) -> bool:
        """Whether a row of WAIT_COLUMNS is one of them."""
        return (
            (not self.sources or wait[4] in self.sources)
            and (self.path is None or wait[5] == self.path)
            and (self.after is None or wait[1] > self.after)
            and (not self.cases or wait[0] in self.cases)
        )


def waited(duration: Duration, since: int, now: int) -> int:
    """Seconds waited from ``since`` to ``now`` (0 for a wait stamped after now)."""
    return max(0, duration(since, now))


def record(
    wait: Sequence[Any],
    canonical: Callable[[int | None], int | None],
    duration: Duration,
    now: int,
    sla: Sla | None = None,
) -> dict[str, Any]:
    """One row of the queue from a row of WAIT_COLUMNS (FIELDS, and SLA_FIELDS with an SLA)."""
    case_id, since, kind, messages, source, path, person = wait
    seconds = waited(duration, since, now)
    row = {
        "caseId": case_id,
        "personId": canonical(person),
        "sourceId": source,
        "path": path,
        "kind": kind,
        "waitingSince": iso_time(since),
        "waitingSeconds": seconds,
        "messages": messages,
    }
    if sla is not None:
        target = sla.target(kind)
        left = target - seconds if target is not None else None
        row.update(slaSeconds=target, slaLeftSeconds=left, breached=left is not None and left < 0)
    return row


def at_risk(row: Mapping[str, Any]) -> bool:
    """Not breached, with less than a quarter of its target left."""
    target, left = row.get("slaSeconds"), row.get("slaLeftSeconds")
    return target is not None and left is not None and left >= 0 and left * AT_RISK < target


@dataclass(frozen=True)
class Standing:
    """The queue in one line: how many wait, have breached, are at risk; how long the oldest
    has waited (None when none waits)."""

    waiting: int = 0
    breached: int = 0
    at_risk: int = 0
    oldest: int | None = None

    @classmethod
    def of(cls, rows: Sequence[dict[str, Any]]) -> Standing:
        """From every row of a queue (oldest first)."""
        return cls(
            len(rows),
            sum(1 for row in rows if row.get("breached")),
            sum(1 for row in rows if at_risk(row)),
            rows[0]["waitingSeconds"] if rows else None,
        )

    def words(self, sla: bool, describe: Callable[[int], str]) -> str:
        """``3 waiting, 1 breached, 1 at risk; the oldest has waited 2d04h``."""
        if not self.waiting:
            return "nobody is waiting"
        parts = [f"{self.waiting:,} waiting"]
        if sla:
            parts += [f"{self.breached:,} breached", f"{self.at_risk:,} at risk"]
        oldest = describe(self.oldest) if self.oldest is not None else "?"
        return ", ".join(parts) + f"; the oldest has waited {oldest}"


def thresholds(
    sla: Sla, duration: Duration, now: int, oldest: int
) -> dict[str, tuple[int | None, int | None]]:
    """Per kind of wait, the latest start that has breached its target at ``now``, and the
    latest that is breached or at risk (None: no such start from ``oldest`` on): a wait's
    seconds only shrink as its start moves later, so a count of starts up to each answers
    how many, whatever the clock."""
    found: dict[str, tuple[int | None, int | None]] = {}
    for kind in KINDS:
        target = sla.target(kind)
        if target is None:
            found[kind] = (None, None)
            continue

        def breached(start: int, target: int = target) -> bool:
            return waited(duration, start, now) > target

        def risky(start: int, target: int = target) -> bool:
            return waited(duration, start, now) * AT_RISK > target * (AT_RISK - 1)

        found[kind] = (_latest(breached, oldest, now), _latest(risky, oldest, now))
    return found


def _latest(holds: Callable[[int], bool], low: int, high: int) -> int | None:
    """The largest start in [low, high] for which ``holds`` (true up to some start, false
    after it), or None."""
    if low > high or not holds(low):
        return None
    while low < high:
        middle = (low + high + 1) // 2
        if holds(middle):
            low = middle
        else:
            high = middle - 1
    return low


def ordered(waits: Iterable[Sequence[Any]]) -> list[Sequence[Any]]:
    """Oldest wait first (then by caseId): the queue's order."""
    return sorted(waits, key=lambda wait: (wait[1], wait[0]))


# -- what changed between two answers ----------------------------------------------------

CHANGES = ("waiting", "breached", "updated", "left")


def changes(before: Sequence[dict[str, Any]], after: Sequence[dict[str, Any]]) -> list[dict]:
    """What differs between two answers of the queue (rows of ``record``), one record per
    change, ``change`` first: ``waiting`` (a wait began), ``breached`` (a wait crossed its
    target), ``updated`` (more messages, another source, path or person), ``left`` (answered
    or closed: the row as it was last seen). A wait is its case and its start: a case
    answered and waiting again between the two is ``left`` then ``waiting``. The seconds
    waited and left change by themselves and are no change."""
    old = {_key(row): row for row in before}
    new = {_key(row): row for row in after}
    found = []
    for key, row in new.items():
        was = old.get(key)
        if was is None:
            found.append({"change": "waiting", **row})
        elif row.get("breached") and not was.get("breached"):
            found.append({"change": "breached", **row})
        elif any(row.get(name) != was.get(name) for name in _SAME):
            found.append({"change": "updated", **row})
    found += [{"change": "left", **row} for key, row in old.items() if key not in new]
    return found


_SAME = ("personId", "sourceId", "path", "kind", "messages", "slaSeconds")


def _key(row: dict[str, Any]) -> tuple:
    return row["caseId"], row["waitingSince"]

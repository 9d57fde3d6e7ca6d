"""The listings that can run to millions of rows (events, cases, quarantine), as streamed
tables: columns laid out from what the store knows before any row is read; and the queue's,
laid out the same way from its rows."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import tzinfo
from typing import Any

from rich.cells import cell_len

from tbhook.model.queue import at_risk
from tbhook.model.text import clean
from tbhook.model.times import duration
from tbhook.output import tables
from tbhook.output.describe import shown_time
from tbhook.output.streamed import Spec

# Widest text before it is cut: an event name (an undocumented one may be long), a sentence.
EVENT_NAME = 40
WHAT = 64
TIME = len("2024-01-01T00:00:00Z")
LOCAL_TIME = len("2024-01-01 00:00:00 CEST")


def events(
    widths: Mapping[str, int],
    names: Iterable[str],
    merged: bool,
    title: str | None = None,
    zone: tzinfo | None = None,
) -> Spec:
    """``tbhook events``: ``widths`` from ``Store.widths``, the event ``names`` in the log, a
    "now" column when any person was ``merged``."""
    columns = [c for c in tables.EVENT_COLUMNS if merged or c.name != "now"]
    natural = {
        "id": widths["id"],
        "time": TIME if zone is None else LOCAL_TIME,
        "event": min(EVENT_NAME, max((cell_len(clean(name)) for name in names), default=5)),
        "case": widths["case"],
        "person": widths["person"],
        "now": widths["person"],
        "what": WHAT,
    }
    return Spec(columns, lambda row: tables.event_cells(row, merged, zone), natural, title)


def cases(widths: Mapping[str, int], merged: bool, zone: tzinfo | None = None) -> Spec:
    columns = [c for c in tables.CASE_COLUMNS if merged or c.name != "now"]
    natural = {
        "case": widths["case"],
        "person": widths["person"],
        "now": widths["person"],
        "first message": len("2024-01-01 00:00"),
        "reply": len("99d23h"),
        "to close": len("99d23h"),
        "state": len("closed, reopened"),
    }
    return Spec(columns, lambda case: tables.case_cells(case, merged, zone), natural)


def quarantine(widths: Mapping[str, int], zone: tzinfo | None = None) -> Spec:
    natural = {
        "id": widths["quarantine"],
        "received": TIME if zone is None else LOCAL_TIME,
        "path": 16,
        "reason": 60,
        "body starts": 40,
    }
    return Spec(tables.QUARANTINE_COLUMNS, lambda r: tables.quarantine_cells(r, zone), natural)


QUEUE_COLUMNS = (
    tables.Column("case", justify="right"),
    tables.Column("person", justify="right"),
    tables.Column("source", justify="right", drop=3),
    tables.Column("path", tables.TEXT, drop=4),
    tables.Column("kind"),
    tables.Column("waiting since", drop=2),
    tables.Column("waited", justify="right"),
    tables.Column("msgs", justify="right", drop=1),
)
SLA_COLUMNS = (
    tables.Column("target", justify="right", drop=2),
    tables.Column("left", justify="right"),
    tables.Column("sla"),
)


def queue(
    records: list[Mapping[str, Any]], sla: bool, zone: tzinfo | None = None, title: str = ""
) -> Spec:
    """`tbhook queue`: its rows are in memory (a queue is short), so each column is as wide
    as its widest cell."""
    columns = QUEUE_COLUMNS + (SLA_COLUMNS if sla else ())

    def cells(row: Mapping[str, Any]) -> list[Any]:
        found = [
            row["caseId"],
            row["personId"],
            row["sourceId"],
            row["path"],
            row["kind"],
            (shown_time(row["waitingSince"], zone) or "")[:16].replace("T", " "),
            duration(row["waitingSeconds"]),
            row["messages"],
        ]
        if sla:
            state = (
                ("breached", "bold red")
                if row["breached"]
                else ("at risk", "yellow")
                if at_risk(row)
                else None
            )
            found += [duration(row["slaSeconds"]), duration(row["slaLeftSeconds"]), state]
        return found

    drawn = [cells(row) for row in records]
    natural = {
        column.name: max((cell_len(clean(_plain(row[i]))) for row in drawn), default=0)
        for i, column in enumerate(columns)
    }
    return Spec(columns, cells, natural, title or None)


def _plain(cell: Any) -> Any:
    value = cell[0] if isinstance(cell, tuple) else cell
    return "" if value is None else value

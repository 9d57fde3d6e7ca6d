"""`tbhook queue`: who is waiting for an agent now, for how long, against the team's SLA."""

from __future__ import annotations

import time
from datetime import timezone
from typing import Annotated, Any, Optional

import typer

from tbhook import questions
from tbhook.cli.access import reading
from tbhook.cli.asking import asks
from tbhook.cli.options import DEFAULT_DB, INT64, DbOption, FormatOption
from tbhook.cli.printing import table_layout
from tbhook.model.query import Asked
from tbhook.model.queue import Waiting
from tbhook.model.times import duration, iso_time
from tbhook.output.describe import shown_time
from tbhook.output.formats import Answer, write


@asks("queue")
def queue(
    db: DbOption = DEFAULT_DB,
    asked: Asked = Asked(),
    source: Annotated[
        Optional[list[int]],
        typer.Option(
            "--source",
            help="Only cases waiting on this sourceId (that of the customer's latest "
            "message; repeatable).",
            **INT64,  # ASCII digits, 64-bit, each
        ),
    ] = None,
    fmt: FormatOption = "table",
) -> None:
    """The cases waiting for an agent (the customer wrote last, and no agent message or
    close answered), oldest first: how long each has waited and, with --sla, the time left
    before its target. The table ends with how many wait, have breached and are at risk
    (less than a quarter of their target left)."""
    zone, clock, targets, limit = asked.zone, asked.clock, asked.sla, asked.limit
    waiting = Waiting(tuple(source or ()), asked.filters.path, asked.at)
    with reading(db) as store:
        answer = questions.queue(
            store, waiting, limit or None, now=int(time.time()), clock=clock, sla=targets
        )
    records = answer.records
    title = _title(answer.at, zone, clock.hours.spec if clock else None)

    out = Answer(
        records=records,
        fields=answer.fields,
        spec=table_layout(
            fmt, lambda listings: listings.queue(records, targets is not None, zone, title)
        ),
        total=answer.standing.waiting,
        limit=limit,
        notes=[answer.standing.words(targets is not None, duration)],
    )
    write(out, fmt)


def _title(at: int, zone: Any, hours: Optional[str]) -> str:
    when = shown_time(iso_time(at), zone or timezone.utc) or f"@{at}"
    return f"waiting at {when}" + (f", in business hours {hours}" if hours else "")

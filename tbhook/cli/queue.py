"""`tbhook queue`: who is waiting for an agent now, for how long, against the team's SLA."""

from __future__ import annotations

import time
from datetime import timezone
from typing import TYPE_CHECKING, Annotated, Any, Optional, TypeAlias

import typer

from tbhook import questions
from tbhook.cli.options import (
    DEFAULT_DB,
    DEFAULT_LIMIT,
    FILTER_OPTIONS,
    INT64,
    DbOption,
    FormatOption,
    HolidaysOption,
    HoursOption,
    LimitOption,
    LocalOption,
    business_clock,
    display_zone,
    reading,
    table_layout,
)
from tbhook.model.queue import Sla, Waiting, parse_sla
from tbhook.model.times import duration, iso_time, parse_when
from tbhook.output.describe import shown_time
from tbhook.output.formats import Answer, write

SlaOption = Annotated[
    Optional[str],
    typer.Option(
        "--sla",
        metavar="SPEC",
        help='Targets per kind of wait, in business hours with --hours: "first=1h,reply=4h" '
        "(first: no agent has replied in the case yet; reply: one has).",
    ),
]


if TYPE_CHECKING:
    PathOption: TypeAlias = Optional[str]
else:
    PathOption = FILTER_OPTIONS["path"]  # the filter bundle's --path, as every command has it


def sla_option(text: Optional[str]) -> Sla | None:
    """--sla read, or a usage error naming the part that is wrong."""
    if text is None:
        return None
    try:
        return parse_sla(text)
    except ValueError as exc:
        raise typer.BadParameter(f"cannot read {text!r}: {exc}", param_hint="'--sla'") from None


def queue(
    db: DbOption = DEFAULT_DB,
    hours: HoursOption = None,
    tz: Annotated[
        Optional[str],
        typer.Option(
            "--tz",
            metavar="ZONE",
            envvar="TBHOOK_TZ",
            help="The zone of --hours, and of the times in the table (default: UTC).",
        ),
    ] = None,
    local: LocalOption = False,
    holidays: HolidaysOption = None,
    sla: SlaOption = None,
    source: Annotated[
        Optional[list[int]],
        typer.Option(
            "--source",
            help="Only cases waiting on this sourceId (that of the customer's latest "
            "message; repeatable).",
            **INT64,  # ASCII digits, 64-bit, each
        ),
    ] = None,
    path: PathOption = None,
    at: Annotated[
        Optional[str],
        typer.Option(
            "--at",
            metavar="WHEN",
            help="The queue as it stood at this moment (events stamped up to it): "
            "2024-05-01T09:30 (in --tz), Unix seconds, or an age: 2h. Default: now.",
        ),
    ] = None,
    limit: LimitOption = DEFAULT_LIMIT,
    fmt: FormatOption = "table",
) -> None:
    """The cases waiting for an agent (the customer wrote last, and no agent message or
    close answered), oldest first: how long each has waited and, with --sla, the time left
    before its target. The table ends with how many wait, have breached and are at risk
    (less than a quarter of their target left)."""
    zone = display_zone(tz, local)
    clock = business_clock(hours, holidays, zone)
    targets = sla_option(sla)
    moment = None
    if at is not None:
        try:
            moment = parse_when(at, zone=zone or timezone.utc)
        except ValueError as exc:
            raise typer.BadParameter(str(exc), param_hint="'--at'") from None
    waiting = Waiting(tuple(source or ()), path, moment)
    with reading(db) as store:
        answer = questions.queue(
            store, waiting, limit or None, now=int(time.time()), clock=clock, sla=targets
        )
    records = answer.records
    title = _title(answer.at, zone, hours)
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

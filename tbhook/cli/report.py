"""`tbhook report`: the support team's numbers, per period, source or agent."""

from __future__ import annotations

import time
from datetime import timezone
from enum import Enum
from typing import Annotated, Any, Optional

import typer

from tbhook import questions
from tbhook.cli.options import (
    DEFAULT_DB,
    DbOption,
    FormatOption,
    HolidaysOption,
    HoursOption,
    LocalOption,
    business_clock,
    case_filter_options,
    display_zone,
    reading,
)
from tbhook.cli.queue import SlaOption, sla_option
from tbhook.model.filters import Filters
from tbhook.model.times import iso_time
from tbhook.output.formats import Answer, write


class By(str, Enum):
    day = "day"
    week = "week"
    month = "month"
    source = "source"
    agent = "agent"


@case_filter_options
def report(
    by: Annotated[
        By,
        typer.Option(
            "--by",
            metavar="day|week|month|source|agent",
            help="One row per day, ISO week or month (in --tz), per source (of each case's "
            "first message) or per agent (who first closed each case).",
        ),
    ] = By.day,
    db: DbOption = DEFAULT_DB,
    filters: Filters = Filters(),
    fmt: FormatOption = "table",
    tz: Annotated[
        Optional[str],
        typer.Option(
            "--tz",
            metavar="ZONE",
            envvar="TBHOOK_TZ",
            help="The zone of the days, weeks and months, and of --hours (default: UTC).",
        ),
    ] = None,
    local: LocalOption = False,
    hours: HoursOption = None,
    holidays: HolidaysOption = None,
    sla: SlaOption = None,
) -> None:
    """Response and resolution times, backlog, reopens and one-touch resolution: medians and
    90th percentiles, in business hours with --hours. --since/--until choose the periods
    shown (whole); --source, --search-id, --path and --person choose cases by their first
    message; --case one case. With --sla, the share of first replies and of later replies
    within their targets."""
    from tbhook.model.periods import BY_TIME, TooManyPeriods

    for name, given in (
        ("--event", filters.events),
        ("--sender", filters.sender),
        ("--text", filters.text),
    ):
        if given:
            raise typer.BadParameter(
                "a report counts whole cases; it cannot leave out some of their events",
                param_hint=f"'{name}'",
            )
    by_name = by.value
    zone = display_zone(tz, local) or timezone.utc
    clock = business_clock(hours, holidays, zone)
    targets = sla_option(sla)
    try:
        with reading(db) as store:
            counted = questions.report(
                store, filters, by_name, zone, clock, int(time.time()), targets
            )
    except TooManyPeriods as exc:
        raise _too_many(exc) from None

    def view(_rows: Any) -> Any:
        from tbhook.output.views import report_view  # rich: a table's only

        return report_view(
            counted.key, counted.rows, counted.totals, _title(by_name, tz, hours, sla)
        )

    answer = Answer(records=counted.rows, fields=counted.fields, table=view)
    if by_name in BY_TIME and counted.start is not None and counted.end is not None:
        answer.notes.append(
            (
                f"from {iso_time(counted.start)} to {iso_time(counted.end)}; durations are "
                "medians and 90th percentiles; the last row is the whole range",
                "dim",
            )
        )
    if not write(answer, fmt) and fmt in ("table",):
        typer.echo("no cases in that range", err=True)


def _title(by: str, tz: str | None, hours: str | None, sla: str | None = None) -> str:
    where = f" in {tz}" if tz else " (UTC)" if by in ("day", "week", "month") else ""
    return (
        f"cases by {by}{where}"
        + (f", business hours {hours}" if hours else "")
        + (f", SLA {sla}" if sla else "")
    )


def _too_many(exc: Any) -> typer.BadParameter:
    """The range named, what stretches it, and a report that fits (counted: it works)."""
    fix = " ".join(f"--{name} {value}" for name, value in exc.fix.items())
    advice = f"; try {fix}" if fix else ": choose fewer with --since/--until"
    return typer.BadParameter(f"{exc}{advice}", param_hint="'--by'")

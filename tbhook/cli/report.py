"""`tbhook report`: the support team's numbers, per period, source or agent."""

from __future__ import annotations

import time
from typing import Any

import typer

from tbhook import questions
from tbhook.cli.access import reading
from tbhook.cli.asking import asks, reported_mistakes
from tbhook.cli.options import DEFAULT_DB, DbOption, FormatOption
from tbhook.model.query import Asked
from tbhook.model.times import iso_time
from tbhook.output.formats import Answer, write


@asks("report")
def report(db: DbOption = DEFAULT_DB, asked: Asked = Asked(), fmt: FormatOption = "table") -> None:
    """Response and resolution times, backlog, reopens and one-touch resolution: medians and
    90th percentiles, in business hours with --hours. --since/--until choose the periods
    shown (whole; by day without either: up to the last 30 days with cases); --source,
    --search-id, --path and --person choose cases by their first message; --case one case.
    With --sla, the share of first replies and of later replies within their targets."""
    from tbhook.model.periods import BY_TIME

    by = asked.by
    with reading(db) as store, reported_mistakes():
        counted = questions.report(store, asked, int(time.time()))

    def view(_rows: Any) -> Any:
        from tbhook.output.views import report_view  # rich: a table's only

        totals = counted.totals if asked.total else None
        return report_view(counted.key, counted.rows, totals, _title(asked))

    records = counted.records(asked.total)
    answer = Answer(records=records, fields=counted.fields, table=view)
    if by in BY_TIME and counted.start is not None and counted.end is not None:
        answer.notes.append(
            (
                f"from {iso_time(counted.start)} to {iso_time(counted.end)}; durations are "
                "medians and 90th percentiles"
                + ("; the last row is the whole range" if asked.total else ""),
                "dim",
            )
        )
    if not write(answer, fmt) and fmt in ("table",):
        typer.echo("no cases in that range", err=True)


def _title(asked: Asked) -> str:
    from tbhook.model.periods import BY_TIME

    by, zone, clock, sla = asked.by, asked.zone, asked.clock, asked.sla
    where = f" in {zone}" if zone else " (UTC)" if by in BY_TIME else ""
    return (
        f"cases by {by}{where}"
        + (f", business hours {clock.hours.spec}" if clock else "")
        + (f", SLA {sla.spec}" if sla else "")
    )

"""The report: its numbers as server-drawn charts and the table, and its twins."""

from __future__ import annotations

import time
from datetime import timezone
from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from tbhook import questions
from tbhook.console import query
from tbhook.console.site import Mistake, Site, written
from tbhook.model.filters import Filters
from tbhook.model.times import parse_zone
from tbhook.output.formats import Answer


def report_query(site: Site, request: Request) -> tuple[Any, ...]:
    from tbhook.model.hours import Clock, ClosedDays, SpecError, parse_hours

    params = request.query_params
    by = params.get("by", "day")
    if by not in ("day", "week", "month", "source", "agent"):
        raise Mistake(f"by={by!r}: day, week, month, source or agent")
    try:
        zone = parse_zone(params["tz"]) if params.get("tz") else timezone.utc
    except ValueError as exc:
        raise Mistake(f"tz: {exc}") from None
    filters = query.filters(
        site, request, allowed=("case", "person", "source", "search_id", "path"), zone=zone
    )
    clock = None
    if params.get("hours"):
        try:
            closed = ClosedDays()
            for value in params.getlist("holidays"):
                if value.strip():
                    closed.add(value.strip())
            clock = Clock(parse_hours(params["hours"]), zone, closed)
        except SpecError as exc:
            raise Mistake(f"hours: cannot read {params['hours']!r}: {exc}") from None
    if filters.since is None and filters.until is None and by in ("day",):
        filters = Filters(**{**filters.__dict__, "since": int(time.time()) - 30 * 86400})
    return by, zone, clock, filters


def counted(site: Site, request: Request) -> Any:
    from tbhook.model.periods import TooManyPeriods

    by, zone, clock, filters = report_query(site, request)
    try:
        with site.reading() as store:
            return by, questions.report(store, filters, by, zone, clock, int(time.time()))
    except TooManyPeriods as exc:
        fix = "&".join(f"{name}={value}" for name, value in exc.fix.items())
        raise Mistake(
            f"{exc}; try {fix}" if fix else f"{exc}: choose fewer with since and until"
        ) from None


def page(site: Site, request: Request, _form: Any) -> Response:
    from tbhook.console.charts import Series, chart

    by, found = counted(site, request)
    rows = found.rows
    labels = [str(row[found.key]) if row[found.key] is not None else "(none)" for row in rows]

    def values(name: str) -> list[Any]:
        return [row[name] for row in rows]

    if found.key == "period":
        charts = [
            chart("Cases opened and closed", labels, [
                Series("new", values("newCases"), "s1"),
                Series("closed", values("closedCases"), "s2"),
            ], kind="bars"),
            chart("Backlog: open at the end", labels, [
                Series("open", values("openAtEnd"), "s3")]),
            chart("First response", labels, [
                Series("median", values("firstResponseMedian"), "s1"),
                Series("p90", values("firstResponseP90"), "s4"),
            ], unit="seconds"),
            chart("Replies", labels, [
                Series("median", values("replyMedian"), "s1"),
                Series("p90", values("replyP90"), "s4"),
            ], unit="seconds"),
            chart("Resolution", labels, [
                Series("median", values("resolutionMedian"), "s2"),
                Series("p90", values("resolutionP90"), "s4"),
            ], unit="seconds"),
        ]  # fmt: skip
    else:
        charts = [
            chart("Cases closed", labels, [
                Series("closed", values("closedCases"), "s2")], kind="bars"),
            chart("Resolution", labels, [
                Series("median", values("resolutionMedian"), "s2"),
                Series("p90", values("resolutionP90"), "s4"),
            ], unit="seconds", kind="bars"),
        ]  # fmt: skip
    return site.page(
        request, "report.html", report=found, charts=charts, query=dict(request.query_params), by=by
    )


def data(site: Site, request: Request, _form: Any) -> Response:
    fmt = query.machine_format(request)
    _by, found = counted(site, request)
    return written(Answer(records=found.rows, fields=found.fields), fmt)

"""The report: its numbers as server-drawn charts and the table, and its twins."""

from __future__ import annotations

import time
from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from tbhook import questions
from tbhook.console import query
from tbhook.console.site import Site, written
from tbhook.model.query import Asked
from tbhook.model.report import BY
from tbhook.output.formats import Answer


def counted(site: Site, request: Request) -> tuple[Asked, Any]:
    """The report the query asks for, as `tbhook report` counts it."""
    asked = query.asked(site, request, "report")
    with site.reading() as store:
        return asked, questions.report(store, asked, int(time.time()))


def page(site: Site, request: Request, _form: Any) -> Response:
    from tbhook.console.charts import Series, chart

    asked, found = counted(site, request)
    rows = found.rows
    labels = [str(row[found.key]) if row[found.key] is not None else "(none)" for row in rows]

    def values(name: str) -> list[Any]:
        return [row[name] for row in rows]

    sla = asked.sla
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
            ], unit="seconds", target=sla.first if sla else None),
            chart("Replies", labels, [
                Series("median", values("replyMedian"), "s1"),
                Series("p90", values("replyP90"), "s4"),
            ], unit="seconds", target=sla.reply if sla else None),
            chart("Resolution", labels, [
                Series("median", values("resolutionMedian"), "s2"),
                Series("p90", values("resolutionP90"), "s4"),
            ], unit="seconds"),
        ]  # fmt: skip
        if sla is not None:
            charts.append(chart("Answered within the SLA", labels, [
                Series("first replies", values("firstWithinSla"), "s1"),
                Series("replies", values("repliesWithinSla"), "s3"),
            ], unit="rate"))  # fmt: skip
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
        request,
        "report.html",
        report=found,
        records=found.records(asked.total),
        asked_total=asked.total and bool(found.rows),
        charts=charts,
        query=dict(request.query_params),
        by=asked.by,
        by_choices=BY,
        zone=asked.zone,
        sla=sla,
    )


def data(site: Site, request: Request, _form: Any) -> Response:
    fmt = query.machine_format(request)
    asked, found = counted(site, request)
    return written(Answer(records=found.records(asked.total), fields=found.fields), fmt)

"""``/queue``: the cases waiting for an agent, as `tbhook queue` answers, with its twins, and
``/queue/stream``: the page kept current over the console's one feed (a topic of it,
``tbhook.queue_feed``), one server-sent event each time what the page shows changes."""

from __future__ import annotations

import json
import time
from collections.abc import Awaitable, Callable
from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from tbhook.console import query
from tbhook.console.site import Site, querystring, said, written
from tbhook.console.views.stream import served
from tbhook.model.query import Asked, QueryError
from tbhook.model.queue import at_risk
from tbhook.model.times import duration, iso_time
from tbhook.queue_feed import Queue, Snapshot, asking_of, snapshot

CASE_KEYS = ("tz", "hours", "holidays")  # what a case's timeline takes of the queue's query


def _asked(site: Site, request: Request) -> tuple[Asked, str | None]:
    asked = query.asked(site, request, "queue")
    return asked, asked.clock.hours.spec if asked.clock else None


def page(site: Site, request: Request, _form: Any) -> Response:
    asked, hours = _asked(site, request)
    with site.reading() as store:
        found = snapshot(store, asking_of(asked), int(time.time()))
    params: dict[str, Any] = dict(request.query_params)
    if asked.sources:  # repeatable: every one kept in the form, the links and the stream
        params["source"] = [str(source) for source in asked.sources]
    return site.page(
        request,
        "queue.html",
        query=params,
        sources=params.get("source", []),
        limit=asked.limit,
        live=asked.at is None,
        stream="/queue/stream?" + querystring(**params) if asked.at is None else "",
        case_query=querystring(**{k: v for k, v in params.items() if k in CASE_KEYS}),
        zone=asked.zone,
        **shown(found, hours),
    )


def data(site: Site, request: Request, _form: Any) -> Response:
    from tbhook.output import queue as output

    fmt = query.machine_format(request)
    asked, hours = _asked(site, request)
    with site.reading() as store:
        found = snapshot(store, asking_of(asked), int(time.time())).answer
    return written(output.answer(found, fmt, asked.zone, hours, asked.limit), fmt)


def shown(found: Snapshot, hours: str | None) -> dict[str, Any]:
    """What the page and each of its server-sent events show of a snapshot: the rows (each
    marked breached or at risk), the queue in one line, the moment and the clock."""
    answer = found.answer
    sla = answer.sla is not None
    rows = [
        {**row, "state": "breached" if row.get("breached") else "at risk" if at_risk(row) else ""}
        for row in answer.records
    ]
    return {
        "rows": rows,
        "sla": sla,
        "standing": answer.standing.words(sla, duration),
        "oldest": answer.standing.oldest,  # its seconds, counted on by the page as its rows
        "at": answer.at,
        "at_time": iso_time(answer.at),
        "running": found.running,
        "hours": hours,
    }


def endpoint(site: Site) -> Callable[[Request], Awaitable[Response]]:
    """The stream's endpoint: async, on the event loop (the feed asks on its own thread)."""
    template = site.env.get_template("_queue_rows.html")

    async def answer(request: Request) -> Response:
        return await stream(site, request, template)

    return answer


async def stream(site: Site, request: Request, template: Any) -> Response:
    """The queue now, then again each time what the page shows changes (``event: queue``,
    the rows as HTML the server escaped, the line under them, the moment and the clock)."""
    try:
        asked, hours = _asked(site, request)
    except QueryError as exc:
        return site.error(request, 400, said(exc))
    if asked.at is not None:
        return site.error(request, 400, "at: the queue as it stood then does not change; "
                          "leave at out to follow it")  # fmt: skip
    key = ("queue", tuple(sorted(request.query_params.multi_items())))
    subscription = site.feed.subscribe(Queue(key, asking_of(asked)), after=0)
    case_query = querystring(**{k: v for k, v in request.query_params.items() if k in CASE_KEYS})

    def message(found: Snapshot) -> str:
        now = shown(found, hours)
        html = template.render(zone=asked.zone, case_query=case_query, **now)
        data = {"html": html, "standing": now["standing"], "oldest": now["oldest"], "at": now["at"]}
        return f"event: queue\ndata: {json.dumps({**data, 'running': now['running']})}\n\n"

    return served(site, request, subscription, lambda found: message(found[-1]["snapshot"]))

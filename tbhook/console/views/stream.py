"""``/stream``: one server-sent event per new matching event, as the list shows its row."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from typing import Any

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse

from tbhook.console import query
from tbhook.console.site import Mistake, Site
from tbhook.output.describe import event_record

POLL_SECONDS = 0.1  # how often /stream asks the store (one indexed query: ~30 us)
KEEPALIVE_SECONDS = 15


def endpoint(site: Site) -> Callable[[Request], Awaitable[Response]]:
    """The route's endpoint: async, on the event loop (the store's reads go to threads)."""

    async def answer(request: Request) -> Response:
        return await stream(site, request)

    return answer


async def stream(site: Site, request: Request) -> Response:
    """One server-sent event per new matching event (``id:`` its id; a browser that
    reconnects sends Last-Event-ID, and what came meanwhile is sent first)."""
    try:
        filters, _limit, _before = query.list_query(site, request)
    except Mistake as exc:
        return site.error(request, 400, str(exc))
    last = request.headers.get("last-event-id") or request.query_params.get("after")
    after = int(last) if last and last.isdigit() else None
    row_template = site.env.get_template("_event_row.html")

    def message(record: dict) -> str:
        html = row_template.render(row=record)
        data = json.dumps({"id": record["id"], "html": html})
        return f"id: {record['id']}\nevent: delivery\ndata: {data}\n\n"

    async def events() -> AsyncIterator[str]:
        from tbhook.store import open_reader

        store = await run_in_threadpool(open_reader, site.target)

        def records(rows: Iterable[dict]) -> list[dict]:
            """The rows as the list shows them, their persons resolved together (and
            afresh: a merge since the last poll counts)."""
            rows = list(rows)
            canonical = store.persons.for_persons(
                row["personId"] if row["personId"] is not None else row["newPersonId"]
                for row in rows
            )
            return [event_record(row, canonical) for row in rows]

        def newer(cursor: Any) -> tuple[list[dict], Any]:
            rows, cursor = store.tail.more(filters, cursor)
            return (records(rows) if rows else []), cursor

        try:
            _backlog, cursor = await run_in_threadpool(store.tail.begin, filters, None)
            yield "retry: 1000\n\n"
            if after is not None:  # what came while the browser was away (up to 500)
                missed = await run_in_threadpool(
                    lambda: records(store.tail.missed(filters, after, cursor, 500))
                )
                for record in missed:
                    yield message(record)
            quiet = time.monotonic()
            while True:
                found, cursor = await run_in_threadpool(newer, cursor)
                for record in found:
                    yield message(record)
                    quiet = time.monotonic()
                if time.monotonic() - quiet > KEEPALIVE_SECONDS:
                    yield ": still here\n\n"
                    quiet = time.monotonic()
                await asyncio.sleep(POLL_SECONDS)
        finally:
            await run_in_threadpool(store.close)

    return StreamingResponse(
        events(),
        media_type="text/event-stream",
        headers={"cache-control": "no-store", "x-accel-buffering": "no"},
    )

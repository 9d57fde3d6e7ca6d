"""``/stream``: one server-sent event per new matching event, as the list shows its row.
Every client is a subscriber of the console's one feed (``tbhook.feed``): one read per
interval for all of them, whatever their number."""

from __future__ import annotations

import json
import time
from collections import OrderedDict
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

from starlette.requests import Request
from starlette.responses import Response, StreamingResponse

from tbhook.console import query
from tbhook.console.site import Site, said
from tbhook.feed import Events, Subscription
from tbhook.model.query import QueryError

KEEPALIVE_SECONDS = 15
RENDERED = 4096  # rows kept rendered: each new row is rendered once for every open page


def endpoint(site: Site) -> Callable[[Request], Awaitable[Response]]:
    """The route's endpoint: async, on the event loop (the feed reads on its own thread)."""
    rendered = Rendered(site)

    async def answer(request: Request) -> Response:
        return await stream(site, request, rendered)

    return answer


class Rendered:
    """Each row's server-sent event, rendered once for all the pages that show it (the same
    event, the same person now, the same zone: the same row)."""

    def __init__(self, site: Site):
        self.template = site.env.get_template("_event_row.html")
        self.kept: OrderedDict[tuple, str] = OrderedDict()

    def message(self, record: dict, zone: Any) -> str:
        key = (record["id"], record["canonicalPersonId"], zone)
        found = self.kept.get(key)
        if found is None:
            html = self.template.render(row=record, zone=zone)
            data = json.dumps({"id": record["id"], "html": html})
            found = self.kept[key] = f"id: {record['id']}\nevent: delivery\ndata: {data}\n\n"
            if len(self.kept) > RENDERED:
                self.kept.popitem(last=False)
        return found


async def stream(site: Site, request: Request, rendered: Rendered) -> Response:
    """One server-sent event per new matching event (``id:`` its id; a browser that
    reconnects sends Last-Event-ID, and what came meanwhile is sent first)."""
    last = request.headers.get("last-event-id")
    try:
        asked = query.asked(site, request, "stream", given={"after": last} if last else None)
    except QueryError as exc:
        return site.error(request, 400, said(exc))
    subscription = site.feed.subscribe(Events(asked.filters), after=asked.after)
    return served(
        site,
        request,
        subscription,
        lambda found: "".join(rendered.message(r, asked.zone) for r in found),
    )


def served(
    site: Site,
    request: Request,
    subscription: Subscription,
    message: Callable[[list[dict]], str],
) -> Response:
    """A subscription of the feed as server-sent events (what ``message`` makes of each
    batch), with a comment to keep a quiet connection open; it leaves the feed when the
    client goes. A page that came in by its session ends when the session does (signed
    out, or past its lifetime); the browser's reconnection is then asked to sign in."""
    sid = request.scope.get("state", {}).get("stream_session")
    sessions = site.guard.sessions if sid is not None else None
    forget = sessions.on_end(sid, subscription.wake) if sessions is not None else None

    def left() -> float:
        """Seconds the page may still be fed."""
        return sessions.left(sid) if sessions is not None else KEEPALIVE_SECONDS

    async def events() -> AsyncIterator[str]:
        try:
            yield "retry: 1000\n\n"
            quiet = time.monotonic()
            while not subscription.dropped and left() > 0:
                found = await subscription.wait(min(KEEPALIVE_SECONDS, left()))
                if left() <= 0:
                    break  # checked before each message and keep-alive
                if found:
                    yield message(found)
                    quiet = time.monotonic()
                elif time.monotonic() - quiet >= KEEPALIVE_SECONDS:
                    yield ": still here\n\n"
                    quiet = time.monotonic()
        finally:
            subscription.close()
            if forget is not None:
                forget()

    return StreamingResponse(
        events(),
        media_type="text/event-stream",
        headers={"cache-control": "no-store", "x-accel-buffering": "no"},
    )

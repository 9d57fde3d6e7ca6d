"""The console's routes: server-rendered pages (``views/``, one module per page family), each
list's ``.json`` and ``.csv`` twins written by the CLI's own writers from the same
``tbhook.questions`` answer, ``/stream`` (server-sent events) and the static assets. A reader:
each request opens the database read-only; the quarantine retry is its one write, through the
store call the CLI uses."""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from tbhook.console.site import Site
from tbhook.console.views import cases, events, health, quarantine, report, session, stream

STATIC = {
    "console.css": "text/css; charset=utf-8",
    "console.js": "text/javascript; charset=utf-8",
}


def routes(site: Site) -> list[Route]:
    r = site.route
    return [
        Route("/", r(events.listing)),
        Route("/events.{fmt:str}", r(events.listing_data)),
        Route("/events/{event_id:int}", r(events.page)),
        Route("/events/{event_id:int}.json", r(events.data)),
        Route("/events/{event_id:int}/raw", r(events.raw)),
        Route("/events/{event_id:int}/send", r(events.send), methods=["POST"]),
        Route("/persons/{person_id:int}", r(cases.person)),
        Route("/persons/{person_id:int}.json", r(cases.person_data)),
        Route("/cases", r(cases.listing)),
        Route("/cases.{fmt:str}", r(cases.listing_data)),
        Route("/cases/{case_id:int}", r(cases.page)),
        Route("/cases/{case_id:int}.json", r(cases.data)),
        Route("/report", r(report.page)),
        Route("/report.{fmt:str}", r(report.data)),
        Route("/quarantine", r(quarantine.listing)),
        Route("/quarantine.{fmt:str}", r(quarantine.listing_data)),
        Route("/quarantine/{item:int}", r(quarantine.page)),
        Route("/quarantine/{item:int}.json", r(quarantine.data)),
        Route("/quarantine/retry", r(quarantine.retry), methods=["POST"]),
        Route("/health", r(health.page)),
        Route("/health.json", r(health.data)),
        Route("/stream", stream.endpoint(site)),
        Route("/login", r(session.login), methods=["GET", "POST"]),
        Route("/logout", r(session.logout), methods=["POST"]),
        Route("/static/{name:str}", static),
    ]


async def static(request: Request) -> Response:
    from importlib import resources

    name = request.path_params["name"]
    if name not in STATIC:
        return Response("not found\n", status_code=404, media_type="text/plain")
    data = (resources.files("tbhook.console") / "static" / name).read_bytes()
    return Response(
        data, media_type=STATIC[name], headers={"cache-control": "public, max-age=3600"}
    )


def build(site: Site) -> Any:
    """The pages' Starlette app, whose 404 and 405 are pages in words too."""
    from starlette.applications import Starlette

    async def not_found(request: Any, exc: Any) -> Any:
        status = getattr(exc, "status_code", 404)
        words = {404: "There is no such page.", 405: "Not a way to ask for this page."}
        return site.error(request, status, words.get(status, "Something went wrong."))

    return Starlette(routes=routes(site), exception_handlers={404: not_found, 405: not_found})

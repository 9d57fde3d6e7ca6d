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
from tbhook.console.views import (
    cases,
    events,
    health,
    quarantine,
    queue,
    report,
    session,
    stream,
)

STATIC = {
    "console.css": "text/css; charset=utf-8",
    "console.js": "text/javascript; charset=utf-8",
    "icon.svg": "image/svg+xml",
}


def routes(site: Site) -> list[Route]:
    r = site.route
    return [
        *family(r, "/", "/events", events, "event_id"),
        Route("/events/{event_id:int}/raw", r(events.raw)),
        Route("/events/{event_id:int}/send", r(events.send), methods=["POST"]),
        Route("/persons/{person_id:int}", r(cases.person)),
        Route("/persons/{person_id:int}.json", r(cases.person_data)),
        *family(r, "/cases", "/cases", cases, "case_id"),
        Route("/queue", r(queue.page)),
        Route("/queue.{fmt:str}", r(queue.data)),
        Route("/queue/stream", queue.endpoint(site)),
        Route("/report", r(report.page)),
        Route("/report.{fmt:str}", r(report.data)),
        Route("/quarantine/retry", r(quarantine.retry), methods=["POST"]),
        *family(r, "/quarantine", "/quarantine", quarantine, "item"),
        Route("/health", r(health.page)),
        Route("/health.json", r(health.data)),
        Route("/stream", stream.endpoint(site)),
        Route("/login", r(session.login), methods=["GET", "POST"]),
        Route("/logout", r(session.logout), methods=["POST"]),
        Route("/static/{name:str}", static),
        Route("/favicon.ico", static),  # asked for by every browser: the icon, not a 404
    ]


def family(route: Any, listed: str, path: str, views: Any, key: str) -> list[Route]:
    """A page family's four routes (as datasette's table and row): the list, its twins, one
    of them by ``key``, and its JSON."""
    return [
        Route(listed, route(views.listing)),
        Route(path + ".{fmt:str}", route(views.listing_data)),
        Route(path + f"/{{{key}:int}}", route(views.page)),
        Route(path + f"/{{{key}:int}}.json", route(views.data)),
    ]


async def static(request: Request) -> Response:
    from importlib import resources

    name = request.path_params.get("name", "icon.svg")
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

    async def failed(request: Any, exc: Exception) -> Any:
        # A page in words; Starlette raises the error again after it, and the server logs
        # it (its type, its message and, in the JSON log, its traceback).
        return site.error(
            request,
            500,
            f"The console failed to answer this ({type(exc).__name__}); its log says more.",
        )

    return Starlette(
        routes=routes(site),
        exception_handlers={404: not_found, 405: not_found, Exception: failed},
    )

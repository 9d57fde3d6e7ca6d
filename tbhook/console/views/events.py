"""The live list of deliveries, one event in full (its JSON twin and raw body), and sending
it to a URL (`tbhook replay` of one event)."""

from __future__ import annotations

import shlex
from typing import Any
from urllib.parse import urlencode

from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from tbhook import questions
from tbhook.console import query
from tbhook.console.site import Mistake, Site, Unreached, shown_body, written
from tbhook.console.views import session
from tbhook.errors import TbhookError
from tbhook.model.query import QUESTIONS
from tbhook.output.formats import Answer


def listing(site: Site, request: Request, _form: Any) -> Response:
    asked = query.asked(site, request, "events")
    with site.reading() as store:
        newest = store.reads.max_id()  # the stream sends what comes after
        rows = list(questions.events(store, asked).records)
        empty = None
        if not rows:
            why = questions.why_empty(store, asked.filters, "events", asked.before)
            empty = f"No events: {why}." if why else "No events."
    following = QUESTIONS["stream"].keys
    return site.page(
        request,
        "events.html",
        rows=rows,
        query=dict(request.query_params),
        stream=urlencode([(k, v) for k, v in request.query_params.multi_items() if k in following]),
        zone=asked.zone,
        older=rows[-1]["id"] if asked.limit and len(rows) == asked.limit else None,
        live=asked.before is None,
        newest=newest,
        empty=empty,
    )


listing_data = query.twin("events", questions.events)


def _found(site: Site, request: Request, question: str = "event") -> tuple[int, Any]:
    query.asked(site, request, question)  # what `tbhook event` would refuse
    event_id = int(request.path_params["event_id"])
    return event_id, site.one(questions.event, event_id, f"No event #{event_id}.")


def page(site: Site, request: Request, _form: Any) -> Response:
    event_id, (record, _document, body) = _found(site, request)
    zone = query.asked(site, request, "event").zone
    state = request.scope["state"]
    here = site.guard.own_url(state["host"], state["secure"])
    token = ' -H "Authorization: Bearer $TBHOOK_UI_TOKEN"' if site.guard.token else ""
    curl = (
        f"curl -sS{token} {shlex.quote(f'{here}/events/{event_id}/raw')} | "
        "curl -sS -X POST -H 'Content-Type: application/json' --data-binary @- "
        f"{shlex.quote(site.receiver)}"
    )
    is_json, shown = shown_body(body)
    return site.page(
        request,
        "event.html",
        record=record,
        body=shown,
        is_json=is_json,
        size=len(body),
        curl=curl,
        sent=session.recall(site, request),
        zone=zone,
    )


def data(site: Site, request: Request, _form: Any) -> Response:
    _event_id, found = _found(site, request)
    return written(Answer(document=found[1]), "json")


def raw(site: Site, request: Request, _form: Any) -> Response:
    event_id, found = _found(site, request, "event raw")
    return Response(
        found[2],
        media_type="application/octet-stream",
        headers={"content-disposition": f'attachment; filename="event-{event_id}.json"'},
    )


def send(site: Site, request: Request, form: Any) -> Response:
    """POST the body, byte for byte, to a URL: `tbhook replay` of this one event."""
    from tbhook.transfer.client import Poster, PostFailed

    url = (form or {}).get("url", "").strip()
    event_id, found = _found(site, request)
    try:
        reply = Poster(url).post(found[2])
    except PostFailed as exc:
        raise Unreached(f"Could not send event #{event_id}: {exc}") from None
    except TbhookError as exc:
        raise Mistake(str(exc)) from None
    said = f"{url} answered {reply.status}"
    return RedirectResponse(
        f"/events/{event_id}?{session.remember(site, request, said)}", status_code=303
    )

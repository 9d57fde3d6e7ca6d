"""The live list of deliveries, one event in full (its JSON twin and raw body), and sending
it to a URL (`tbhook replay` of one event)."""

from __future__ import annotations

import shlex
from typing import Any

from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from tbhook import questions
from tbhook.console import query
from tbhook.console.site import Mistake, Site, shown_body, written
from tbhook.console.views import session
from tbhook.errors import TbhookError
from tbhook.model.filters import Filters
from tbhook.output.formats import Answer


def listing(site: Site, request: Request, _form: Any) -> Response:
    filters, limit, before = query.list_query(site, request)
    with site.reading() as store:
        found = questions.events(store, filters, limit, order_by="arrival", before=before)
        rows = list(found.records)
        empty = None if rows else why_empty(store, filters, before)
    newest = rows[0]["id"] if rows else before or 0
    return site.page(
        request,
        "events.html",
        rows=rows,
        filters=filters,
        query=dict(request.query_params),
        older=rows[-1]["id"] if len(rows) == limit else None,
        live=before is None,
        newest=newest,
        empty=empty,
    )


def listing_data(site: Site, request: Request, _form: Any) -> Response:
    fmt = query.machine_format(request)
    filters, limit, before = query.list_query(site, request)
    sort = request.query_params.get("sort", "arrival")
    if sort not in ("arrival", "time"):
        raise Mistake(f"sort={sort!r}: arrival or time")
    with site.reading() as store:
        found = questions.events(store, filters, limit, order_by=sort, before=before)
        return written(Answer(records=found.records, fields=found.fields), fmt)


def why_empty(store: Any, filters: Filters, before: int | None) -> str:
    if not store.reads.count():
        return "Nothing received yet: post to the receiver and it appears here."
    if before is not None:
        return "No older events."
    return "No event matches these filters."


def _found(site: Site, request: Request) -> tuple[int, Any]:
    event_id = int(request.path_params["event_id"])
    return event_id, site.one(questions.event, event_id, f"No event #{event_id}.")


def page(site: Site, request: Request, _form: Any) -> Response:
    event_id, (record, _document, body) = _found(site, request)
    here = str(request.base_url).rstrip("/")
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
    )


def data(site: Site, request: Request, _form: Any) -> Response:
    _event_id, found = _found(site, request)
    return written(Answer(document=found[1]), "json")


def raw(site: Site, request: Request, _form: Any) -> Response:
    event_id, found = _found(site, request)
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
        raise Mistake(f"Could not send event #{event_id}: {exc}") from None
    except TbhookError as exc:
        raise Mistake(str(exc)) from None
    said = f"{url} answered {reply.status}"
    return RedirectResponse(
        f"/events/{event_id}?{session.remember(site, request, said)}", status_code=303
    )

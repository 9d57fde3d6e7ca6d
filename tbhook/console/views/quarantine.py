"""The quarantine: deliveries kept but not readable, one in full, and retry (the console's
one write, through the store call `tbhook quarantine retry` makes)."""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from tbhook import questions
from tbhook.console import query
from tbhook.console.site import Mistake, Site, shown_body, written
from tbhook.console.views import session
from tbhook.model.filters import parse_id
from tbhook.output.formats import Answer


def listing(site: Site, request: Request, _form: Any) -> Response:
    limit = query.limit(request)
    with site.reading() as store:
        rows = list(questions.quarantined(store, limit).records)
    return site.page(request, "quarantine.html", rows=rows, retried=session.recall(site, request))


def listing_data(site: Site, request: Request, _form: Any) -> Response:
    fmt = query.machine_format(request)
    with site.reading() as store:
        found = questions.quarantined(store, query.limit(request))
        return written(Answer(records=found.records, fields=found.fields), fmt)


def _found(site: Site, request: Request) -> Any:
    number = int(request.path_params["item"])
    missing = f"No quarantined delivery #{number} (one moved by a retry is among the events now)."
    return site.one(questions.quarantine_item, number, missing)


def page(site: Site, request: Request, _form: Any) -> Response:
    record, _document, body = _found(site, request)
    _is_json, shown = shown_body(body)
    return site.page(request, "quarantine_item.html", record=record, body=shown)


def data(site: Site, request: Request, _form: Any) -> Response:
    return written(Answer(document=_found(site, request)[1]), "json")


def retry(site: Site, request: Request, form: Any) -> Response:
    """`tbhook quarantine retry [ID]`: the same store call, the console's one write."""
    from tbhook.model.events import parse
    from tbhook.store import open_store

    item = (form or {}).get("id", "").strip()  # none: every quarantined body
    try:
        numbers = [parse_id(item, "a quarantine id")] if item else None
    except ValueError as exc:
        raise Mistake(f"id={exc}; nothing was retried") from None
    store = open_store(site.target)
    try:
        results = list(questions.retried(store.upkeep.recover_quarantined(numbers, parse)))
    finally:
        store.close()
    moved = sum(r["eventId"] is not None for r in results)
    said = f"{moved} of {len(results)} moved into events"
    return RedirectResponse(f"/quarantine?{session.remember(site, request, said)}", status_code=303)

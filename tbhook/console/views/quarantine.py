"""The quarantine: deliveries kept but not readable, one in full, and retry (the console's
one write, through the store call `tbhook quarantine retry` makes)."""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from tbhook import questions
from tbhook.console import query
from tbhook.console.site import Mistake, NotFound, Site, shown_body, written
from tbhook.console.views import session
from tbhook.model.filters import parse_id
from tbhook.output.formats import Answer


def listing(site: Site, request: Request, _form: Any) -> Response:
    asked = query.asked(site, request, "quarantine")
    with site.reading() as store:
        rows = list(questions.quarantined(store, asked.limit).records)
    return site.page(
        request,
        "quarantine.html",
        rows=rows,
        retried=session.recall(site, request),
        zone=asked.zone,  # ?tz=, as --tz shows the times
    )


listing_data = query.twin(
    "quarantine", lambda store, asked: questions.quarantined(store, asked.limit)
)


def _found(site: Site, request: Request) -> Any:
    query.asked(site, request, "quarantine show")  # what `tbhook quarantine ID` would refuse
    number = int(request.path_params["item"])
    missing = f"No quarantined delivery #{number} (one moved by a retry is among the events now)."
    return site.one(questions.quarantine_item, number, missing)


def page(site: Site, request: Request, _form: Any) -> Response:
    record, _document, body = _found(site, request)
    _is_json, shown = shown_body(body)
    zone = query.asked(site, request, "quarantine show").zone
    return site.page(request, "quarantine_item.html", record=record, body=shown, zone=zone)


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
        missing = store.reads.not_quarantined(numbers) if numbers else []
        if missing:  # as `tbhook quarantine retry 0`: nothing is done, and that is said
            raise NotFound(
                f"No quarantined delivery #{missing[0]} (one moved by a retry is among the "
                "events now); nothing was retried."
            )
        results = list(questions.retried(store.upkeep.recover_quarantined(numbers, parse)))
    finally:
        store.close()
    moved = sum(r["eventId"] is not None for r in results)
    said = f"{moved} of {len(results)} moved into events"
    return RedirectResponse(f"/quarantine?{session.remember(site, request, said)}", status_code=303)

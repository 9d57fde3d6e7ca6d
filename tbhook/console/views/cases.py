"""Persons (every alias, their events) and cases (the list, one case's timeline)."""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from tbhook import questions
from tbhook.console import query
from tbhook.console.site import Site, written
from tbhook.model.filters import Filters
from tbhook.model.query import Asked
from tbhook.output.formats import Answer


def person(site: Site, request: Request, _form: Any) -> Response:
    zone = query.asked(site, request, "person").zone
    person_id = int(request.path_params["person_id"])
    with site.reading() as store:
        record = questions.person(store, person_id)
        found = questions.events(store, Asked(Filters(person=person_id), sort="arrival"))
        rows = list(found.records)
    return site.page(request, "person.html", person=record, rows=rows, zone=zone)


def person_data(site: Site, request: Request, _form: Any) -> Response:
    query.asked(site, request, "person")
    person_id = int(request.path_params["person_id"])
    with site.reading() as store:
        return written(Answer(document=questions.person(store, person_id)), "json")


def listing(site: Site, request: Request, _form: Any) -> Response:
    asked = query.asked(site, request, "cases")
    with site.reading() as store:
        found = questions.cases(store, asked)
        rows = list(found.records)
        why = None if rows else questions.why_empty(store, asked.filters, "cases", asked.past)
        # How many in all when the page is cut short, as `tbhook cases` says under its table.
        total = Answer(total=found.total, limit=asked.limit).total_if_cut(len(rows))
    return site.page(
        request,
        "cases.html",
        rows=rows,
        total=total,
        more=bool(rows) and len(rows) == asked.limit,  # a next page, past the last row's case
        query=dict(request.query_params),
        zone=asked.zone,  # ?tz=, as --tz shows the times
        limit=asked.limit,
        empty=f"No cases: {why}." if why else "No cases.",
    )


listing_data = query.twin("cases", questions.cases)


def _found(site: Site, request: Request) -> tuple[Asked, int, Any]:
    """The case, its durations in the business hours the query names (as `tbhook case`)."""
    asked = query.asked(site, request, "case")
    case_id = int(request.path_params["case_id"])
    duration = asked.clock.between if asked.clock else None
    found = site.one(
        lambda store, key: questions.case(store, key, duration),
        case_id,
        f"No event names case {case_id}.",
    )
    return asked, case_id, found


def page(site: Site, request: Request, _form: Any) -> Response:
    asked, case_id, (summary, records) = _found(site, request)
    return site.page(
        request, "case.html", summary=summary, rows=records, case_id=case_id, zone=asked.zone
    )


def data(site: Site, request: Request, _form: Any) -> Response:
    _asked, _case_id, (summary, records) = _found(site, request)
    return written(Answer(document={**summary, "events": records}), "json")

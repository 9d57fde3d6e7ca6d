"""Health: doctor's checks (without its test commit: the console is a reader), and what the
receiver says of itself."""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from tbhook import questions
from tbhook.console import query
from tbhook.console.site import Site, written
from tbhook.output.formats import Answer


def _report(site: Site, request: Request) -> dict[str, Any]:
    query.asked(site, request, "health")  # it takes nothing: a parameter is a mistake
    with site.reading() as store:
        return questions.health(store, quick=True)


def page(site: Site, request: Request, _form: Any) -> Response:
    from tbhook.console import receiver
    from tbhook.model import health as rules

    report = _report(site, request)
    return site.page(
        request,
        "health.html",
        report=report,
        notes=rules.notes(report),
        receiver=receiver.status(site.receiver),
    )


def data(site: Site, request: Request, _form: Any) -> Response:
    return written(Answer(document=_report(site, request)), "json")

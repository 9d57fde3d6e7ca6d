"""The console's query string read by the command line's own parser
(``tbhook.model.query``): the same keys as the options (``?case=`` is ``--case``), the same
defaults, the same sentences when a value cannot be read; and a list's machine twins."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response

from tbhook.console.site import Site, written
from tbhook.model.query import Asked, read
from tbhook.output.formats import Answer

MAX_PAGE = 1000  # rows a page or its twin shows at most (the command line: any number)
OWN = ("notice",)  # the console's own keys, on any page (a form's one-time notice)


def asked(
    site: Site,
    request: Request,
    question: str,
    given: dict[str, str] | None = None,
) -> Asked:
    """The arguments of ``question`` in the query string, moments without an offset read in
    the console's zone (--tz) unless it names one; ``given``: values the request carries
    elsewhere (a header). Raises QueryError, a 400 that names the parameter (``Site.route``)."""
    params = request.query_params
    found: dict[str, list[str]] = {key: params.getlist(key) for key in params if key not in OWN}
    found.update({key: [value] for key, value in (given or {}).items()})
    return read(question, found, site.zone, most=MAX_PAGE, files=False)


def machine_format(request: Request) -> str:
    fmt = request.path_params.get("fmt", "json")
    if fmt not in ("json", "csv"):
        raise HTTPException(404)
    return fmt


def twin(question: str, answer: Callable[[Any, Asked], Any]) -> Callable[..., Response]:
    """The ``.json``/``.csv`` view of a list question: ``answer(store, asked)`` (a Listing of
    ``tbhook.questions``) written as the command writes it with ``-f json`` or ``-f csv``."""

    def view(site: Site, request: Request, _form: Any) -> Response:
        fmt = machine_format(request)
        asked_for = asked(site, request, question)
        with site.reading() as store:
            found = answer(store, asked_for)
            return written(Answer(records=found.records, fields=found.fields), fmt)

    return view

"""The console's query string read into the questions' arguments: filters, a page's size and
where it starts, a machine format."""

from __future__ import annotations

from datetime import timezone
from typing import Any

from starlette.exceptions import HTTPException
from starlette.requests import Request

from tbhook.console.site import Mistake, Site
from tbhook.model.filters import Filters, parse_count, parse_id, parse_path, parse_sender
from tbhook.model.times import empty_range, parse_when

PAGE = 50  # rows of a list page, as the CLI's default -n
MAX_PAGE = 1000
EVENT_FILTERS = ("events", "case", "person", "source", "search_id", "sender", "path", "text")


def filters(
    site: Site, request: Request, allowed: tuple[str, ...] = EVENT_FILTERS, zone: Any = None
) -> Filters:
    """The filters in the query; a date or moment without an offset is read in ``zone``
    (the report's tz), else in the console's own (--tz), as the commands read them."""
    params = request.query_params
    values: dict[str, Any] = {}

    def number(key: str) -> int | None:
        text = params.get(key, "").strip()
        if not text:
            return None
        try:
            return parse_id(text)  # the command line's rule and words: ASCII digits, 64-bit
        except ValueError as exc:
            raise Mistake(f"{key}={exc}") from None

    if "events" in allowed:
        names = tuple(v for v in params.getlist("event") if v.strip())
        if names:
            values["events"] = names
    for field, key in (("case", "case"), ("person", "person"), ("source", "source"),
                       ("search_id", "search")):  # fmt: skip
        if field in allowed and (value := number(key)) is not None:
            values[field] = value
    try:
        if "sender" in allowed and params.get("sender", "").strip():
            values["sender"] = parse_sender(params["sender"])
        if "path" in allowed and params.get("path", "").strip():
            values["path"] = parse_path(params["path"])
        zone = zone or site.zone or timezone.utc
        if params.get("since", "").strip():
            values["since"] = parse_when(params["since"], zone=zone)
        if params.get("until", "").strip():
            values["until"] = parse_when(params["until"], until=True, zone=zone)
    except ValueError as exc:
        raise Mistake(str(exc)) from None
    if "text" in allowed and params.get("q", "").strip():
        values["text"] = params["q"]
    problem = empty_range(values.get("since"), values.get("until"), ("since", "until"))
    if problem:
        raise Mistake(problem)
    return Filters(**values)


def limit(request: Request) -> int:
    text = request.query_params.get("limit", "").strip()
    if not text:
        return PAGE
    try:
        return parse_count(text, 1, MAX_PAGE)
    except ValueError as exc:
        raise Mistake(f"limit={exc}") from None


def list_query(site: Site, request: Request) -> tuple[Filters, int, int | None]:
    before_text = request.query_params.get("before", "").strip()
    try:
        before = parse_id(before_text, "an event id") if before_text else None
    except ValueError as exc:
        raise Mistake(f"before={exc}") from None
    return filters(site, request), limit(request), before


def machine_format(request: Request) -> str:
    fmt = request.path_params.get("fmt", "json")
    if fmt not in ("json", "csv"):
        raise HTTPException(404)
    return fmt

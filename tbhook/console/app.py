"""The console's pages: server-rendered HTML (Jinja2, autoescaped), each list's ``.json`` and
``.csv`` twins written by the CLI's own writers from the same ``tbhook.questions`` answer,
and ``/stream`` (server-sent events, one per new event). A reader: each request opens the
database read-only; the quarantine retry is its one write, through the store call the CLI
uses."""

from __future__ import annotations

import asyncio
import contextlib
import io
import json
import re
import shlex
import time
from collections.abc import AsyncIterator, Callable, Iterable, Iterator
from dataclasses import dataclass
from datetime import timezone, tzinfo
from typing import Any

from jinja2 import Environment, PackageLoader
from markupsafe import Markup, escape
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response, StreamingResponse
from starlette.routing import Route

from tbhook import questions
from tbhook.errors import TbhookError
from tbhook.filters import (
    Filters,
    empty_range,
    fits_int64,
    parse_path,
    parse_sender,
    parse_when,
    parse_zone,
)
from tbhook.output.describe import duration, event_record, parsed_body, shown_time
from tbhook.output.formats import FORMATS, Answer
from tbhook.text import clean
from tbhook.words import describe, short

PAGE = 50  # rows of a list page, as the CLI's default -n
MAX_PAGE = 1000
POLL_SECONDS = 0.1  # how often /stream asks the store (one indexed query: ~30 us)
KEEPALIVE_SECONDS = 15
STATIC = {
    "console.css": "text/css; charset=utf-8",
    "console.js": "text/javascript; charset=utf-8",
}


class Mistake(Exception):
    """Something in the request that cannot be read: a 400 page that says what."""


class NotFound(Exception):
    """What the request names is not in the log: a 404 page that says what."""


@dataclass
class Console:
    """One console: the database it reads, the zone it shows times in."""

    target: str
    zone: tzinfo | None = None
    receiver: str = "http://127.0.0.1:8080/"  # where "copy as curl" posts a body
    guard: Any = None  # the Guard in front: the token, the login cookie

    def __post_init__(self) -> None:
        env = Environment(
            loader=PackageLoader("tbhook.console", "templates"),
            autoescape=True,
            trim_blocks=True,
            lstrip_blocks=True,
        )
        env.filters["clean"] = lambda value: "" if value is None else clean(value)
        env.filters["when"] = lambda value: shown_time(value, self.zone) or ""
        env.filters["duration"] = duration
        env.filters["percent"] = lambda v: "" if v is None else f"{v * 100:.1f}%"
        env.filters["describe"] = lambda record: clean(describe(record))
        env.filters["short"] = short
        env.globals["querystring"] = querystring
        self.env = env

    # -- plumbing -------------------------------------------------------------------------

    @contextlib.contextmanager
    def reading(self) -> Iterator[Any]:
        from tbhook.store import open_reader

        store = open_reader(self.target)
        try:
            yield store
        finally:
            store.close()

    def page(self, request: Request, name: str, status: int = 200, **context: Any) -> Response:
        template = self.env.get_template(name)
        html = template.render(
            request=request,
            csrf=request.scope.get("state", {}).get("csrf", ""),
            path=request.url.path,
            token=self.guard is not None and self.guard.token is not None,
            **context,
        )
        return HTMLResponse(html, status_code=status)

    def error(self, request: Request, status: int, message: str) -> Response:
        if request.url.path.endswith(".json"):
            return Response(
                json.dumps({"error": message}) + "\n",
                status_code=status,
                media_type="application/json",
            )
        if request.url.path.endswith(".csv"):
            return Response(f"error: {message}\n", status_code=status, media_type="text/plain")
        return self.page(request, "error.html", status=status, status_code=status, message=message)

    # -- the routes ------------------------------------------------------------------------

    def routes(self) -> list[Route]:
        r = self.route
        return [
            Route("/", r(self.events_page)),
            Route("/events.{fmt:str}", r(self.events_data)),
            Route("/events/{event_id:int}", r(self.event_page)),
            Route("/events/{event_id:int}.json", r(self.event_data)),
            Route("/events/{event_id:int}/raw", r(self.event_raw)),
            Route("/events/{event_id:int}/send", r(self.event_send), methods=["POST"]),
            Route("/persons/{person_id:int}", r(self.person_page)),
            Route("/persons/{person_id:int}.json", r(self.person_data)),
            Route("/cases", r(self.cases_page)),
            Route("/cases.{fmt:str}", r(self.cases_data)),
            Route("/cases/{case_id:int}", r(self.case_page)),
            Route("/cases/{case_id:int}.json", r(self.case_data)),
            Route("/report", r(self.report_page)),
            Route("/report.{fmt:str}", r(self.report_data)),
            Route("/quarantine", r(self.quarantine_page)),
            Route("/quarantine.{fmt:str}", r(self.quarantine_data)),
            Route("/quarantine/{item:int}", r(self.quarantine_item)),
            Route("/quarantine/{item:int}.json", r(self.quarantine_item_data)),
            Route("/quarantine/retry", r(self.quarantine_retry), methods=["POST"]),
            Route("/health", r(self.health_page)),
            Route("/health.json", r(self.health_data)),
            Route("/stream", self.stream),
            Route("/login", r(self.login), methods=["GET", "POST"]),
            Route("/static/{name:str}", self.static),
        ]

    def route(self, handler: Callable[..., Response]) -> Callable[[Request], Any]:
        """A page handler run in a worker thread (the store blocks), its mistakes and the
        store's errors turned into pages that say what is wrong."""

        async def endpoint(request: Request) -> Response:
            for value in request.path_params.values():  # an id no database could hold
                if isinstance(value, int) and not fits_int64(value):
                    return self.error(request, 404, f"{value} is larger than any id tbhook keeps.")
            form = _form(await request.body()) if request.method == "POST" else None
            try:
                return await run_in_threadpool(handler, request, form)
            except Mistake as exc:
                return self.error(request, 400, str(exc))
            except NotFound as exc:
                return self.error(request, 404, str(exc))
            except TbhookError as exc:
                return self.error(request, 503, str(exc))

        return endpoint

    def one(self, question: Callable[[Any, int], Any], key: int, missing: str) -> Any:
        """The answer to a question about one thing (an event, a case...), or NotFound."""
        with self.reading() as store:
            found = question(store, key)
        if found is None:
            raise NotFound(missing)
        return found

    @staticmethod
    def not_quarantined(number: int) -> str:
        return f"No quarantined delivery #{number} (one moved by a retry is among the events now)."

    # -- events ----------------------------------------------------------------------------

    def events_page(self, request: Request, _form: Any) -> Response:
        filters, limit, before = self.list_query(request)
        with self.reading() as store:
            listing = questions.events(store, filters, limit, order_by="arrival", before=before)
            rows = list(listing.records)
            empty = None if rows else self.why_empty(store, filters, before)
        newest = rows[0]["id"] if rows else before or 0
        return self.page(
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

    def events_data(self, request: Request, _form: Any) -> Response:
        fmt = self.machine_format(request)
        filters, limit, before = self.list_query(request)
        sort = request.query_params.get("sort", "arrival")
        if sort not in ("arrival", "time"):
            raise Mistake(f"sort={sort!r}: arrival or time")
        with self.reading() as store:
            listing = questions.events(store, filters, limit, order_by=sort, before=before)
            return written(Answer(records=listing.records, fields=listing.fields), fmt)

    def why_empty(self, store: Any, filters: Filters, before: int | None) -> str:
        if not store.reads.count():
            return "Nothing received yet: post to the receiver and it appears here."
        if before is not None:
            return "No older events."
        return "No event matches these filters."

    def event_page(self, request: Request, _form: Any) -> Response:
        event_id = int(request.path_params["event_id"])
        found = self.one(questions.event, event_id, f"No event #{event_id}.")
        record, document, body = found
        is_json, value = parsed_body(body)
        pretty = (
            highlight(json.dumps(value, indent=2, ensure_ascii=False))
            if is_json
            else Markup(escape(value))
        )
        here = str(request.base_url).rstrip("/")
        token = ' -H "Authorization: Bearer $TBHOOK_UI_TOKEN"' if self.guard.token else ""
        curl = (
            f"curl -sS{token} {shlex.quote(f'{here}/events/{event_id}/raw')} | "
            "curl -sS -X POST -H 'Content-Type: application/json' --data-binary @- "
            f"{shlex.quote(self.receiver)}"
        )
        return self.page(
            request,
            "event.html",
            record=record,
            body=pretty,
            is_json=is_json,
            size=len(body),
            curl=curl,
            sent=request.query_params.get("sent"),
        )

    def event_data(self, request: Request, _form: Any) -> Response:
        event_id = int(request.path_params["event_id"])
        found = self.one(questions.event, event_id, f"No event #{event_id}.")
        return written(Answer(document=found[1]), "json")

    def event_raw(self, request: Request, _form: Any) -> Response:
        event_id = int(request.path_params["event_id"])
        found = self.one(questions.event, event_id, f"No event #{event_id}.")
        return Response(
            found[2],
            media_type="application/octet-stream",
            headers={"content-disposition": f'attachment; filename="event-{event_id}.json"'},
        )

    def event_send(self, request: Request, form: Any) -> Response:
        """POST the body, byte for byte, to a URL: `tbhook replay` of this one event."""
        from tbhook.client import Poster, PostFailed

        event_id = int(request.path_params["event_id"])
        url = (form or {}).get("url", "").strip()
        found = self.one(questions.event, event_id, f"No event #{event_id}.")
        try:
            reply = Poster(url).post(found[2])
        except PostFailed as exc:
            raise Mistake(f"Could not send event #{event_id}: {exc}") from None
        except TbhookError as exc:
            raise Mistake(str(exc)) from None
        said = f"{url} answered {reply.status}"
        return RedirectResponse(f"/events/{event_id}?{querystring(sent=said)}", status_code=303)

    # -- persons and cases -----------------------------------------------------------------

    def person_page(self, request: Request, _form: Any) -> Response:
        person_id = int(request.path_params["person_id"])
        with self.reading() as store:
            record = questions.person(store, person_id)
            listing = questions.events(store, Filters(person=person_id), PAGE, order_by="arrival")
            rows = list(listing.records)
        return self.page(request, "person.html", person=record, rows=rows)

    def person_data(self, request: Request, _form: Any) -> Response:
        person_id = int(request.path_params["person_id"])
        with self.reading() as store:
            return written(Answer(document=questions.person(store, person_id)), "json")

    def cases_page(self, request: Request, _form: Any) -> Response:
        filters, limit, _before = self.list_query(request)
        with self.reading() as store:
            listing = questions.cases(store, filters, limit)
            rows = list(listing.records)
        return self.page(
            request, "cases.html", rows=rows, query=dict(request.query_params), limit=limit
        )

    def cases_data(self, request: Request, _form: Any) -> Response:
        fmt = self.machine_format(request)
        filters, limit, _before = self.list_query(request)
        with self.reading() as store:
            listing = questions.cases(store, filters, limit)
            return written(Answer(records=listing.records, fields=listing.fields), fmt)

    def case_page(self, request: Request, _form: Any) -> Response:
        case_id = int(request.path_params["case_id"])
        found = self.one(questions.case, case_id, f"No event names case {case_id}.")
        summary, records = found
        return self.page(request, "case.html", summary=summary, rows=records, case_id=case_id)

    def case_data(self, request: Request, _form: Any) -> Response:
        case_id = int(request.path_params["case_id"])
        found = self.one(questions.case, case_id, f"No event names case {case_id}.")
        summary, records = found
        return written(Answer(document={**summary, "events": records}), "json")

    # -- the report ------------------------------------------------------------------------

    def report_query(self, request: Request) -> tuple[Any, ...]:
        from tbhook.hours import Clock, ClosedDays, SpecError, parse_hours

        params = request.query_params
        by = params.get("by", "day")
        if by not in ("day", "week", "month", "source", "agent"):
            raise Mistake(f"by={by!r}: day, week, month, source or agent")
        try:
            zone = parse_zone(params["tz"]) if params.get("tz") else timezone.utc
        except ValueError as exc:
            raise Mistake(f"tz: {exc}") from None
        filters = self.filters(
            request, allowed=("case", "person", "source", "search_id", "path"), zone=zone
        )
        clock = None
        if params.get("hours"):
            try:
                closed = ClosedDays()
                for value in params.getlist("holidays"):
                    if value.strip():
                        closed.add(value.strip())
                clock = Clock(parse_hours(params["hours"]), zone, closed)
            except SpecError as exc:
                raise Mistake(f"hours: cannot read {params['hours']!r}: {exc}") from None
        if filters.since is None and filters.until is None and by in ("day",):
            filters = Filters(**{**filters.__dict__, "since": int(time.time()) - 30 * 86400})
        return by, zone, clock, filters

    def counted(self, request: Request) -> Any:
        from tbhook.report import TooManyPeriods

        by, zone, clock, filters = self.report_query(request)
        try:
            with self.reading() as store:
                return by, questions.report(store, filters, by, zone, clock, int(time.time()))
        except TooManyPeriods as exc:
            raise Mistake(
                f"{exc}: choose fewer with since and until, or by week or month"
            ) from None

    def report_page(self, request: Request, _form: Any) -> Response:
        from tbhook.console.charts import Series, chart

        by, counted = self.counted(request)
        rows = counted.rows
        labels = [
            str(row[counted.key]) if row[counted.key] is not None else "(none)" for row in rows
        ]

        def values(name: str) -> list[Any]:
            return [row[name] for row in rows]

        charts = []
        if counted.key == "period":
            charts = [
                chart("Cases opened and closed", labels, [
                    Series("new", values("newCases"), "s1"),
                    Series("closed", values("closedCases"), "s2"),
                ], kind="bars"),
                chart("Backlog: open at the end", labels, [
                    Series("open", values("openAtEnd"), "s3")]),
                chart("First response", labels, [
                    Series("median", values("firstResponseMedian"), "s1"),
                    Series("p90", values("firstResponseP90"), "s4"),
                ], unit="seconds"),
                chart("Replies", labels, [
                    Series("median", values("replyMedian"), "s1"),
                    Series("p90", values("replyP90"), "s4"),
                ], unit="seconds"),
                chart("Resolution", labels, [
                    Series("median", values("resolutionMedian"), "s2"),
                    Series("p90", values("resolutionP90"), "s4"),
                ], unit="seconds"),
            ]  # fmt: skip
        else:
            charts = [
                chart("Cases closed", labels, [
                    Series("closed", values("closedCases"), "s2")], kind="bars"),
                chart("Resolution", labels, [
                    Series("median", values("resolutionMedian"), "s2"),
                    Series("p90", values("resolutionP90"), "s4"),
                ], unit="seconds", kind="bars"),
            ]  # fmt: skip
        return self.page(
            request,
            "report.html",
            report=counted,
            charts=charts,
            query=dict(request.query_params),
            by=by,
        )

    def report_data(self, request: Request, _form: Any) -> Response:
        fmt = self.machine_format(request)
        _by, counted = self.counted(request)
        return written(Answer(records=counted.rows, fields=counted.fields), fmt)

    # -- quarantine --------------------------------------------------------------------------

    def quarantine_page(self, request: Request, _form: Any) -> Response:
        limit = self.limit(request)
        with self.reading() as store:
            rows = list(questions.quarantined(store, limit).records)
        return self.page(
            request, "quarantine.html", rows=rows, retried=request.query_params.get("retried")
        )

    def quarantine_data(self, request: Request, _form: Any) -> Response:
        fmt = self.machine_format(request)
        with self.reading() as store:
            listing = questions.quarantined(store, self.limit(request))
            return written(Answer(records=listing.records, fields=listing.fields), fmt)

    def quarantine_item(self, request: Request, _form: Any) -> Response:
        number = int(request.path_params["item"])
        found = self.one(questions.quarantine_item, number, self.not_quarantined(number))
        record, _document, body = found
        is_json, value = parsed_body(body)
        shown = (
            highlight(json.dumps(value, indent=2, ensure_ascii=False))
            if is_json
            else Markup(escape(value))
        )
        return self.page(request, "quarantine_item.html", record=record, body=shown)

    def quarantine_item_data(self, request: Request, _form: Any) -> Response:
        number = int(request.path_params["item"])
        found = self.one(questions.quarantine_item, number, self.not_quarantined(number))
        return written(Answer(document=found[1]), "json")

    def quarantine_retry(self, request: Request, form: Any) -> Response:
        """`tbhook quarantine retry [ID]`: the same store call, the console's one write."""
        from tbhook.events import parse
        from tbhook.store import open_store

        item = (form or {}).get("id", "").strip()  # none: every quarantined body
        if item and not (item.isdigit() and fits_int64(int(item))):
            raise Mistake(f"id={item[:40]!r} is not a quarantine id; nothing was retried")
        numbers = [int(item)] if item else None
        store = open_store(self.target)
        try:
            results = list(questions.retried(store.upkeep.recover_quarantined(numbers, parse)))
        finally:
            store.close()
        moved = sum(r["eventId"] is not None for r in results)
        said = f"{moved} of {len(results)} moved into events"
        return RedirectResponse(f"/quarantine?{querystring(retried=said)}", status_code=303)

    # -- health ------------------------------------------------------------------------------

    def health_report(self) -> dict[str, Any]:
        with self.reading() as store:
            return questions.health(store, quick=True)

    def health_page(self, request: Request, _form: Any) -> Response:
        from tbhook import health as rules
        from tbhook.console import receiver

        report = self.health_report()
        return self.page(
            request,
            "health.html",
            report=report,
            notes=rules.notes(report),
            receiver=receiver.status(self.receiver),
        )

    def health_data(self, request: Request, _form: Any) -> Response:
        return written(Answer(document=self.health_report()), "json")

    # -- login -------------------------------------------------------------------------------

    def login(self, request: Request, form: Any) -> Response:
        from tbhook.console.guard import same_secret, session_cookie

        guard = self.guard
        if guard is None or guard.token is None:
            return RedirectResponse("/", status_code=303)
        if request.method == "POST":
            given = (form or {}).get("token", "")
            if same_secret(given, guard.token):
                response = RedirectResponse("/", status_code=303)
                response.raw_headers.append((b"set-cookie", session_cookie(guard)))
                return response
            return self.page(request, "login.html", status=401, wrong=True)
        return self.page(request, "login.html", wrong=False)

    # -- the live stream ---------------------------------------------------------------------

    async def stream(self, request: Request) -> Response:
        """One server-sent event per new matching event (``id:`` its id; a browser that
        reconnects sends Last-Event-ID, and what came meanwhile is sent first)."""
        try:
            filters, _limit, _before = self.list_query(request)
        except Mistake as exc:
            return self.error(request, 400, str(exc))
        last = request.headers.get("last-event-id") or request.query_params.get("after")
        after = int(last) if last and last.isdigit() else None
        row_template = self.env.get_template("_event_row.html")

        def message(record: dict) -> str:
            html = row_template.render(row=record)
            data = json.dumps({"id": record["id"], "html": html})
            return f"id: {record['id']}\nevent: delivery\ndata: {data}\n\n"

        async def events() -> AsyncIterator[str]:
            from tbhook.store import open_reader

            store = await run_in_threadpool(open_reader, self.target)

            def records(rows: Iterable[dict]) -> list[dict]:
                """The rows as the list shows them, their persons resolved together (and
                afresh: a merge since the last poll counts)."""
                rows = list(rows)
                canonical = store.persons.for_persons(
                    row["personId"] if row["personId"] is not None else row["newPersonId"]
                    for row in rows
                )
                return [event_record(row, canonical) for row in rows]

            def newer(cursor: Any) -> tuple[list[dict], Any]:
                rows, cursor = store.tail.more(filters, cursor)
                return (records(rows) if rows else []), cursor

            try:
                _backlog, cursor = await run_in_threadpool(store.tail.begin, filters, None)
                yield "retry: 1000\n\n"
                if after is not None:  # what came while the browser was away (up to 500)
                    missed = await run_in_threadpool(
                        lambda: records(store.tail.missed(filters, after, cursor, 500))
                    )
                    for record in missed:
                        yield message(record)
                quiet = time.monotonic()
                while True:
                    found, cursor = await run_in_threadpool(newer, cursor)
                    for record in found:
                        yield message(record)
                        quiet = time.monotonic()
                    if time.monotonic() - quiet > KEEPALIVE_SECONDS:
                        yield ": still here\n\n"
                        quiet = time.monotonic()
                    await asyncio.sleep(POLL_SECONDS)
            finally:
                await run_in_threadpool(store.close)

        return StreamingResponse(
            events(),
            media_type="text/event-stream",
            headers={"cache-control": "no-store", "x-accel-buffering": "no"},
        )

    async def static(self, request: Request) -> Response:
        from importlib import resources

        name = request.path_params["name"]
        if name not in STATIC:
            return Response("not found\n", status_code=404, media_type="text/plain")
        data = (resources.files("tbhook.console") / "static" / name).read_bytes()
        return Response(
            data, media_type=STATIC[name], headers={"cache-control": "public, max-age=3600"}
        )

    # -- query parameters --------------------------------------------------------------------

    def filters(
        self,
        request: Request,
        allowed: tuple[str, ...] = (
            "events", "case", "person", "source", "search_id", "sender", "path", "text",
        ),
        zone: Any = None,
    ) -> Filters:  # fmt: skip
        """The filters in the query; a date or moment without an offset is read in ``zone``
        (the report's tz), else in the console's own (--tz), as the commands read them."""
        params = request.query_params
        values: dict[str, Any] = {}

        def number(key: str) -> int | None:
            text = params.get(key, "").strip()
            if not text:
                return None
            if not re.fullmatch(r"-?\d{1,19}", text):
                raise Mistake(f"{key}={text[:40]!r} is not a number")
            if not fits_int64(int(text)):
                raise Mistake(f"{key}={text} does not fit in a 64-bit integer")
            return int(text)

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
            zone = zone or self.zone or timezone.utc
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

    def limit(self, request: Request) -> int:
        text = request.query_params.get("limit", "").strip()
        if not text:
            return PAGE
        if not text.isdigit() or not 1 <= int(text) <= MAX_PAGE:
            raise Mistake(f"limit={text[:20]!r}: a number from 1 to {MAX_PAGE}")
        return int(text)

    def list_query(self, request: Request) -> tuple[Filters, int, int | None]:
        before_text = request.query_params.get("before", "").strip()
        if before_text and not (before_text.isdigit() and fits_int64(int(before_text))):
            raise Mistake(f"before={before_text[:20]!r} is not an event id")
        return self.filters(request), self.limit(request), int(before_text) if before_text else None

    @staticmethod
    def machine_format(request: Request) -> str:
        fmt = request.path_params.get("fmt", "json")
        if fmt not in ("json", "csv"):
            raise HTTPException(404)
        return fmt


def written(answer: Answer, fmt: str) -> Response:
    """An answer as the CLI writes it in ``fmt`` (json or csv), byte for byte."""
    out = io.StringIO()
    FORMATS[fmt](answer, out)
    kind = "application/json" if fmt == "json" else "text/csv; charset=utf-8"
    return Response(out.getvalue(), media_type=kind)


def querystring(**values: Any) -> str:
    from urllib.parse import urlencode

    return urlencode({k: v for k, v in values.items() if v not in (None, "")}, doseq=True)


_TOKEN = re.compile(
    r'(?P<key>"(?:[^"\\]|\\.)*")(?=\s*:)|(?P<string>"(?:[^"\\]|\\.)*")'
    r"|(?P<number>-?\d+(?:\.\d+)?(?:[eE][+-]?\d+)?)|(?P<literal>\btrue\b|\bfalse\b|\bnull\b)"
)


def highlight(text: str) -> Markup:
    """Pretty-printed JSON with its keys, strings, numbers and literals in spans, every
    piece escaped (a body is sender text)."""
    out: list[str] = []
    position = 0
    for match in _TOKEN.finditer(text):
        out.append(str(escape(clean_json(text[position : match.start()]))))
        kind = match.lastgroup or "string"
        out.append(f'<span class="j-{kind}">{escape(clean_json(match.group()))}</span>')
        position = match.end()
    out.append(str(escape(clean_json(text[position:]))))
    return Markup("".join(out))


def clean_json(text: str) -> str:
    """Control, bidi and other invisible characters shown escaped, newlines kept."""
    return "\n".join(clean(line) for line in text.split("\n"))


def _form(body: bytes) -> dict[str, str]:
    from urllib.parse import parse_qs

    return {k: v[0] for k, v in parse_qs(body.decode("utf-8", "replace")).items()}

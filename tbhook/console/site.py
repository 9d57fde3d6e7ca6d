"""What every page of the console shares: the templates, a read-only store per request, a
page or an error in words, and the route wrapper that runs a view off the event loop. The
pages themselves are in ``views/``, one module per page family (datasette's ``views/``)."""

from __future__ import annotations

import contextlib
import io
import json
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import tzinfo
from typing import Any

from jinja2 import Environment, PackageLoader, pass_context
from markupsafe import Markup, escape
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import HTMLResponse, Response

from tbhook.errors import TbhookError
from tbhook.feed import Feed
from tbhook.model.filters import fits_int64
from tbhook.model.persons import person_of
from tbhook.model.query import QueryError
from tbhook.model.text import clean
from tbhook.model.times import duration
from tbhook.model.words import describe, short
from tbhook.output.describe import shown_metric, shown_time
from tbhook.output.formats import FORMATS, Answer

View = Callable[["Site", Request, Any], Response]


class Mistake(Exception):
    """Something in the request that cannot be read: a 400 page that says what."""


class NotFound(Exception):
    """What the request names is not in the log: a 404 page that says what."""


class Unreached(Exception):
    """The URL the request named did not answer as asked (a send): a 502 page that says so."""


@dataclass
class Site:
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
        env.filters["when"] = pass_context(
            lambda context, value: shown_time(value, context.get("zone") or self.zone) or ""
        )
        env.filters["duration"] = duration
        env.filters["linked"] = linked
        env.filters["metric"] = pass_context(
            lambda context, value, key: shown_metric(key, value, context.get("zone") or self.zone)
        )
        env.filters["percent"] = lambda v: "" if v is None else f"{v * 100:.1f}%"
        env.filters["describe"] = lambda record: clean(describe(record))
        env.filters["short"] = short
        env.filters["person"] = person_of
        env.globals["querystring"] = querystring
        self.env = env
        self.feed = Feed.opened(self._open_reader)

    def _open_reader(self) -> Any:
        from tbhook.store import open_reader

        return open_reader(self.target)

    @contextlib.contextmanager
    def reading(self) -> Iterator[Any]:
        store = self._open_reader()
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
            signed_in=request.scope.get("state", {}).get("signed_in", False),
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
        back = _back(request.url.path) if status != 404 else None
        return self.page(
            request, "error.html", status=status, status_code=status, message=message, back=back
        )

    def route(self, view: View) -> Callable[[Request], Any]:
        """A view run in a worker thread (the store blocks), its mistakes and the store's
        errors turned into pages that say what is wrong."""

        async def endpoint(request: Request) -> Response:
            for value in request.path_params.values():  # an id no database could hold
                if isinstance(value, int) and not fits_int64(value):
                    return self.error(request, 404, f"{value} is larger than any id tbhook keeps.")
            form = _form(await request.body()) if request.method == "POST" else None
            try:
                return await run_in_threadpool(view, self, request, form)
            except Mistake as exc:
                return self.error(request, 400, str(exc))
            except QueryError as exc:
                return self.error(request, 400, said(exc))
            except NotFound as exc:
                return self.error(request, 404, str(exc))
            except Unreached as exc:
                return self.error(request, 502, str(exc))
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


def said(mistake: QueryError) -> str:
    """A value the query string could not give, in the command line's words, named as the
    query string names it: ``since: 'x' is not a date...``."""
    advised = mistake.advised(lambda key, value: f"{key}={value}", "&")
    return f"{', '.join(mistake.keys)}: {advised}"


def written(answer: Answer, fmt: str) -> Response:
    """An answer as the CLI writes it in ``fmt`` (json or csv), byte for byte."""
    out = io.StringIO()
    FORMATS[fmt](answer, out)
    kind = "application/json" if fmt == "json" else "text/csv; charset=utf-8"
    return Response(out.getvalue(), media_type=kind)


_ITEM = re.compile(r"/(events|cases|persons|quarantine)/(\d+)(?:/|$)")
_NAMES = {"events": "event", "cases": "case", "persons": "person", "quarantine": "delivery"}


def _back(path: str) -> tuple[str, str] | None:
    """Where a page that could not answer sends the reader back: the item it was about (a
    failed send's event), else None (the events)."""
    found = _ITEM.match(path)
    if found is None:
        return None
    kind, number = found.groups()
    return f"/{kind}/{number}", f"Back to {_NAMES[kind]} #{number}"


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


def shown_body(body: bytes) -> tuple[bool, Markup]:
    """A raw body for a page: whether it is JSON, and it pretty-printed and highlighted, or
    its text, escaped."""
    from tbhook.output.describe import parsed_body

    is_json, value = parsed_body(body)
    if is_json:
        return True, highlight(json.dumps(value, indent=2, ensure_ascii=False))
    return False, Markup(escape(value))


# The commands a message names (`tbhook quarantine`) that have a page here: a link to it.
PAGE_OF = {"tbhook quarantine": "/quarantine", "tbhook doctor": "/health"}


def linked(value: Any) -> Markup:
    """A message (doctor's, the receiver's) as a page shows it: escaped, a `command` as
    code, and as a link to its page when it has one."""

    def code(found: re.Match) -> str:
        command = found.group(1)
        page = PAGE_OF.get(command)
        return f'<a href="{page}"><code>{command}</code></a>' if page else f"<code>{command}</code>"

    return Markup(re.sub(r"`([^`<>]+)`", code, str(escape(clean(value)))))


def clean_json(text: str) -> str:
    """Control, bidi and other invisible characters shown escaped, newlines kept."""
    return "\n".join(clean(line) for line in text.split("\n"))


def _form(body: bytes) -> dict[str, str]:
    from urllib.parse import parse_qs

    return {k: v[0] for k, v in parse_qs(body.decode("utf-8", "replace")).items()}

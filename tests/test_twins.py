"""Every page of the console and its machine twins (.json, .csv, the raw body) against the
command that answers the same question, byte for byte: given no parameters, and given each
parameter the question takes; every page answers the same parameters; and a value that
cannot be read is refused by both faces in the same words. The pages are walked from the
console's own routes, so a new page without its command here fails the walk."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from urllib.parse import urlencode

import pytest
from test_console import a_log, start_console
from typer.testing import CliRunner

from tbhook.cli import app
from tbhook.console.app import routes
from tbhook.console.site import Site
from tbhook.model.query import PARAMS, QUESTIONS

runner = CliRunner(env={"COLUMNS": "200"})


@dataclass(frozen=True)
class Page:
    path: str  # the page, as a browser asks for it
    twins: tuple[str, ...]  # what a program asks for instead: the same answer, written
    command: tuple[str, ...]  # the command that answers the same question
    question: str  # whose parameters the page and the command take (tbhook.model.query)


PAGES = (
    Page("/", ("/events.json", "/events.csv"), ("events",), "events"),
    Page("/events/1", ("/events/1.json", "/events/1/raw"), ("event", "1"), "event"),
    Page("/persons/10", ("/persons/10.json",), ("person", "10"), "person"),
    Page("/cases", ("/cases.json", "/cases.csv"), ("cases",), "cases"),
    Page("/cases/501", ("/cases/501.json",), ("case", "501"), "case"),
    Page("/report", ("/report.json", "/report.csv"), ("report",), "report"),
    Page("/queue", ("/queue.json", "/queue.csv"), ("queue",), "queue"),
    Page("/quarantine", ("/quarantine.json", "/quarantine.csv"), ("quarantine",), "quarantine"),
    Page("/quarantine/1", ("/quarantine/1.json",), ("quarantine", "show", "1"), "quarantine show"),
    Page("/health", ("/health.json",), ("doctor", "--quick"), "health"),
)
# Not pages with a command's answer: assets, signing in, the live stream (tail's, tested in
# test_feed.py and test_console.py), and the two forms that post.
NOT_QUESTIONS = {"/static/{name:str}", "/favicon.ico", "/login", "/stream", "/queue/stream"}

# A value for each parameter, that the log of ``a_log`` answers with something.
SAMPLES = {
    "event": "newResult",
    "case": "501",
    "person": "20",
    "search-id": "1",
    "source": "14",
    "sender": "agent",
    "since": "2023-11-14",
    "until": "2023-11-15",
    "path": "/",
    "text": "onerror",
    "limit": "3",
    "before": "4",
    "past": "5",
    "sort": "arrival",
    "order": "asc",
    "by": "week",
    "tz": "Asia/Tokyo",
    "hours": "mon-fri 09:00-17:00",
    "holidays": "NL",
    "sla": "first=1h,reply=4h",
    "total": "no",
    "at": "2023-11-15T12:00",
}
WITH = {"holidays": {"hours": "mon-fri 09:00-17:00"}}  # closed days need open hours
# A report asked for no range shows its cases' days (at most the last 30): a report asked
# with anything else is pinned to the sample's month.
PINNED = {"since": "2023-11-01", "until": "2023-11-30"}
# The queue's seconds waited move on by the second: asked with anything else, it is pinned.
PINNED_QUEUE = {"at": "2023-11-16T08:00"}

# A value each parameter cannot take (path and text take any text; event any name).
BAD = {
    "case": "12abc",
    "person": "x",
    "search-id": "1.5",
    "source": "99999999999999999999",
    "sender": "bot",
    "since": "yesterdayish",
    "until": "2h30",
    "limit": "-1",
    "before": "x",
    "past": "5th",
    "sort": "random",
    "order": "up",
    "by": "year",
    "tz": "Mars/Olympus",
    "hours": "mon-fry 09:00-17:00",
    "holidays": "XX",
    "sla": "first=soon",
    "at": "soonish",
}


@pytest.fixture(scope="module")
def console(tmp_path_factory):
    target = str(tmp_path_factory.mktemp("twins") / "twins.db")
    a_log(target)
    started = start_console(target)
    yield started, target
    started.proc.terminate()
    started.proc.wait(10)


def test_every_page_of_the_console_is_walked_here():
    """The walk below covers every route that answers a GET, bar the few that are not a
    question (assets, signing in, the stream)."""
    pages = [path for page in PAGES for path in (page.path, *page.twins)]
    for route in routes(Site("unused.db")):
        if "GET" not in (route.methods or {"GET"}) or route.path in NOT_QUESTIONS:
            continue
        assert any(route.path_regex.match(path) for path in pages), route.path


def _command(page: Page, params: dict[str, str], fmt: str | None, target: str) -> bytes:
    args = [*page.command]
    for key, value in params.items():  # a flag (yes or no) is --key or --no-key there
        args += (
            [f"--{key}" if value == "yes" else f"--no-{key}"]
            if PARAMS[key].flag
            else [f"--{key}", value]
        )
    if fmt == "raw":
        args.append("--raw")
    elif fmt:
        args += ["-f", fmt]
    result = runner.invoke(app, [*args, "--db", target])
    assert result.exit_code in (0, 1), (args, result.output)  # doctor: 1 when not ok
    return result.stdout_bytes


def _twin_format(path: str) -> str:
    return "raw" if path.endswith("/raw") else path.rsplit(".", 1)[-1]


def _same(page: Page, twin: str, params: dict[str, str], console, target: str) -> None:
    status, _headers, body = console.get(twin + ("?" + urlencode(params) if params else ""))
    if page.question == "queue" and not params:
        body, expected = _same_second(
            twin, console, lambda: _command(page, {}, _twin_format(twin), target)
        )
        assert body == expected, twin
        return
    if twin.endswith("/raw") and params:  # --raw refuses what would change how it is shown
        assert status == 400 and b"not a parameter here" in body
        assert runner.invoke(app, [*page.command, "--raw", "--tz", "UTC"]).exit_code == 2
        return
    assert status == 200, (twin, params, body[:300])
    expected = _command(page, params, _twin_format(twin), target)
    if page.question == "health":
        # doctor adds a test commit the console (a reader) never makes, and the age of the
        # last delivery moves on by the second: the rest is the same document.
        body, expected = (_without_commit(json.loads(text)) for text in (body, expected))
    assert body == expected, (twin, params)


def _same_second(twin: str, console, command) -> tuple[bytes, bytes]:
    """The queue now, from the twin and from the command: asked again (up to five times)
    until both were asked within one second, as seconds waited are counted."""
    for _ in range(5):
        before = int(time.time())
        _status, _headers, body = console.get(twin)
        expected = command()
        if int(time.time()) == before:
            break
    return body, expected


def _without_commit(report: dict) -> dict:
    report["checks"] = [c for c in report["checks"] if c["check"] != "commit"]
    for check in report["checks"]:
        if check["check"] == "last delivery":
            check.pop("message")  # "3s ago", said a second apart
    report.pop("lastReceivedAgeSeconds")
    report.pop("ok")
    return report


def _cases() -> list:
    found = []
    for page in PAGES:
        asked = QUESTIONS[page.question]
        found.append(
            pytest.param(
                page,
                {},
                id=f"{page.path} with none",
            )
        )
        for key in asked.keys:
            if key in asked.refused:
                continue
            params = {**WITH.get(key, {}), key: SAMPLES[key]}
            if page.question == "report" and key not in ("since", "until", "by"):
                params = {**PINNED, **params}
            if page.question == "queue" and key != "at":
                params = {**PINNED_QUEUE, **params}
            found.append(pytest.param(page, params, id=f"{page.path} with {key}"))
    return found


@pytest.mark.parametrize("page, params", _cases())
def test_each_page_and_its_twins_say_what_the_command_says(console, page, params):
    started, target = console
    status, _headers, html = started.get(page.path + ("?" + urlencode(params) if params else ""))
    assert status == 200, (page.path, params, html[:300])
    for twin in page.twins:
        _same(page, twin, params, started, target)


def _mistakes() -> list:
    found = []
    for page in PAGES:
        asked = QUESTIONS[page.question]
        for key in asked.keys:
            if key in asked.refused:
                found.append(pytest.param(page, key, SAMPLES[key], id=f"{page.path} refuses {key}"))
            elif key in BAD:
                found.append(pytest.param(page, key, BAD[key], id=f"{page.path} {key}={BAD[key]}"))
    return found


@pytest.mark.parametrize("page, key, value", _mistakes())
def test_a_value_either_face_cannot_take_is_refused_in_the_same_words(console, page, key, value):
    started, target = console
    params = {**WITH.get(key, {}), key: value}
    status, _headers, body = started.get(page.twins[0] + "?" + urlencode(params))
    assert status == 400, body[:300]
    said = json.loads(body)["error"] if body.startswith(b"{") else body.decode()
    named, sentence = said.split(": ", 1)
    assert named == key
    args = [*page.command]
    for name, given in params.items():
        args += [f"--{name}", given]
    result = runner.invoke(app, [*args, "--db", target])
    assert result.exit_code == 2, result.output
    option = "'--limit' / '-n'" if key == "limit" else f"'--{key}'"
    assert f"Error: Invalid value for {option}: {sentence}\n" in result.stderr
    page_status, _headers, page_body = started.get(page.path + "?" + urlencode(params))
    assert page_status == 400 and b"Traceback" not in page_body

"""The console's /queue: its server-sent events over real sockets on SQLite and PostgreSQL (a
delivery that starts or ends a wait is sent to an open page), what the stream refuses, and
the page in a real Chromium: a wait appears without a reload, its time left counts down
until it breaches, an agent's answer takes it away, each row opens the case's timeline.
The twins against `tbhook queue -f json/csv` are walked in test_twins.py."""

from __future__ import annotations

import contextlib
import http.client
import json
import queue
import socket
import threading
import time
from urllib.parse import urlencode

import pytest
from test_console import start_console
from test_console_browser import browser, page  # noqa: F401 - the fixtures, shared
from test_report import agent, close, customer

SLA = {"sla": "first=1h,reply=4h"}


@pytest.fixture
def console_on():
    started = []

    def start(db):
        started.append(start_console(db))
        return started[-1]

    yield start
    for console in started:
        console.proc.terminate()
        console.proc.wait(10)


def post(receiver, event: dict) -> None:
    assert receiver.post(json.dumps(event).encode()).status == 200


class Stream:
    """``/queue/stream?QUERY`` read on a thread: each ``event: queue`` as it comes."""

    def __init__(self, port: int, params: dict):
        self.conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        self.conn.request("GET", "/queue/stream?" + urlencode(params))
        self.sock = self.conn.sock
        self.response = self.conn.getresponse()
        self.got: queue.Queue = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        with contextlib.suppress(OSError, ValueError, AttributeError):  # closed at the end
            kind = None
            for raw in self.response:
                line = raw.decode().rstrip("\n")
                if line.startswith("event: "):
                    kind = line[7:]
                elif line.startswith("data: ") and kind == "queue":
                    self.got.put(json.loads(line[6:]))

    def next(self, timeout: float = 20) -> dict:
        return self.got.get(timeout=timeout)

    def until(self, predicate, timeout: float = 20) -> dict:
        deadline = time.monotonic() + timeout
        while True:
            found = self.next(max(0.1, deadline - time.monotonic()))
            if predicate(found):
                return found

    def close(self) -> None:
        self.sock.shutdown(socket.SHUT_RDWR)
        self.conn.close()


def test_a_delivery_that_starts_or_ends_a_wait_is_sent_to_an_open_queue(target, serve, console_on):
    receiver = serve(db=target)
    now = int(time.time())
    post(receiver, customer(7401, now - 120))
    console = console_on(target)
    stream = Stream(console.port, SLA)
    assert stream.response.status == 200
    first = stream.next()  # the queue as it stands, at once
    assert 'href="/cases/7401"' in first["html"] and first["running"] is True
    assert first["standing"].startswith("1 waiting, 0 breached, 0 at risk")
    post(receiver, customer(7402, now - 60))
    began = stream.until(lambda m: 'href="/cases/7402"' in m["html"])
    assert began["standing"].startswith("2 waiting")
    post(receiver, agent(7401, now))
    post(receiver, close(7402, now))
    ended = stream.until(lambda m: m["standing"] == "nobody is waiting")
    assert "7401" not in ended["html"] and "Nobody is waiting" in ended["html"]
    stream.close()


def test_the_stream_refuses_what_it_cannot_follow(tmp_path, serve, console_on):
    db = tmp_path / "refuse.db"
    serve(db=db)
    console = console_on(db)
    status, _headers, body = console.get("/queue/stream?at=2h")
    assert status == 400 and b"at: the queue as it stood then does not change" in body
    status, _headers, body = console.get("/queue/stream?sla=first%3D4x")
    assert status == 400 and b"sla: cannot read &#39;first=4x&#39;: &#39;4x&#39; is not" in body
    status, _headers, body = console.get("/queue?at=2h")  # the page as it stood: not live
    assert status == 200 and b"data-stream" not in body and b"As it stood at" in body
    assert b'<a href="/queue" aria-current="page">Queue</a>' in body


def test_the_page_counts_down_marks_the_breach_and_drops_the_answered(tmp_path, serve, page):  # noqa: F811
    db = tmp_path / "live-queue.db"
    receiver = serve(db=db)
    console = start_console(db)
    try:
        base = f"http://127.0.0.1:{console.port}"
        page.goto(base + "/queue?" + urlencode(SLA))
        page.wait_for_selector("#queue-rows .empty")
        page.evaluate("window.stillTheSamePage = true")
        breaches = int(time.time()) - 3600 + 10  # its hour runs out 10 s from now
        post(receiver, customer(7501, breaches, person=9501))
        row = "#queue-rows tr[data-href^='/cases/7501']"
        page.wait_for_selector(row, timeout=15000)
        left = page.inner_text(row + " [data-shows=left]")
        assert left.endswith("s") and 0 < int(left[:-1]) <= 10
        assert "at-risk" in page.get_attribute(row, "class")
        page.wait_for_function(  # counted down on the page, before the server says more
            "([cell, was]) => { const now = document.querySelector(cell).textContent;"
            " return now !== was && !now.startsWith('-'); }",
            arg=[row + " [data-shows=left]", left],
        )
        page.wait_for_selector(row + ".breached", timeout=15000)
        assert page.inner_text(row + " [data-shows=state]") == "breached"
        assert page.inner_text(row + " [data-shows=left]").startswith("-")
        page.wait_for_function(
            "() => document.getElementById('standing').textContent"
            ".startsWith('1 waiting, 1 breached')",
            timeout=15000,
        )
        assert page.evaluate("window.stillTheSamePage") is True
        page.click(row + " a >> nth=0")
        page.wait_for_url("**/cases/7501")
        page.go_back()
        page.wait_for_selector(row)
        post(receiver, agent(7501, int(time.time()), person=9501))
        page.wait_for_selector(row, state="detached", timeout=15000)
        assert page.inner_text("#standing") == "nobody is waiting"
    finally:
        console.proc.terminate()
        console.proc.wait(10)


def test_the_page_takes_several_sources_as_the_command_does(tmp_path, console_on):
    """?source= more than once, as --source more than once: the same waits, the same bytes."""
    from test_queue import ASK, QUEUE, queue, store_log

    db = str(tmp_path / "queue.db")
    store_log(db, QUEUE)
    console = console_on(db)
    params = [("at", "2024-05-13T11:00"), ("tz", "Europe/Amsterdam")]
    for sources in (["3"], ["14"], ["14", "3"]):
        asked = params + [("source", s) for s in sources]
        status, _headers, body = console.get("/queue.json?" + urlencode(asked))
        command = queue(*ASK, *[a for s in sources for a in ("--source", s)], "-f", "json", db=db)
        assert status == 200 and body == command.stdout.encode(), sources
    both = {row["caseId"] for row in json.loads(body)}
    only_3 = console.get("/queue.json?" + urlencode(params + [("source", "3")]))[2]
    assert {row["caseId"] for row in json.loads(only_3)} == {6009} and 6009 in both
    assert len(both) > 1
    status, _headers, html = console.get("/queue?" + urlencode(params + [("source", "٣")]))
    assert status == 400 and "source" in html.decode() and "digits 0-9" in html.decode()


def test_the_form_keeps_the_sources_when_the_sla_is_changed(tmp_path, page):  # noqa: F811
    """?source= is in the page's form (the first in a field, the others kept with it), and
    the page says which sources it shows: changing the SLA drops none of them."""
    from test_queue import QUEUE, store_log

    db = str(tmp_path / "queue.db")
    store_log(db, QUEUE)
    console = start_console(db)
    try:
        base = f"http://127.0.0.1:{console.port}/queue?"
        moment = [("at", "2024-05-13T11:00"), ("tz", "Europe/Amsterdam")]
        page.goto(base + urlencode([*moment, ("source", "3")]))
        assert page.input_value("input[name=source]") == "3"
        assert page.inner_text("#sources") == "on source 3"
        page.fill("input[name=sla]", "first=2h")
        page.click("form.filters button")
        page.wait_for_url("**sla=first%3D2h**")
        assert "source=3" in page.url
        shown = page.eval_on_selector_all("#queue-rows tr", "rows => rows.map(r => r.dataset.href)")
        assert [href.split("?")[0] for href in shown] == ["/cases/6009"]
        assert page.inner_text("#sources") == "on source 3"

        page.goto(base + urlencode([*moment, ("source", "14"), ("source", "3")]))
        assert page.inner_text("#sources") == "on sources 14, 3"
        page.fill("input[name=sla]", "first=3h")
        page.click("form.filters button")
        page.wait_for_url("**sla=first%3D3h**")
        assert "source=14" in page.url and "source=3" in page.url
        assert page.inner_text("#sources") == "on sources 14, 3"
        twin = page.get_attribute("a[href^='/queue.json']", "href")
        assert "source=14" in twin and "source=3" in twin
        page.goto(base + urlencode([("source", "14"), ("source", "3")]))  # live: followed
        stream = page.get_attribute("#queue-state", "data-stream")
        assert "source=14" in stream and "source=3" in stream
    finally:
        console.proc.terminate()
        console.proc.wait(10)


def test_now_is_a_moment_on_both_faces(tmp_path, console_on):
    """``now``, as the help's "Default: now" and the page's placeholder call it: --at now
    and ?at=now are the queue now; --since/--until now read it too."""
    from test_queue import QUEUE, queue, runner, store_log

    from tbhook.cli import app

    db = str(tmp_path / "queue.db")
    store_log(db, QUEUE)

    def cases(text: str | bytes) -> set[int]:
        return {row["caseId"] for row in json.loads(text)}

    waiting = cases(queue("-f", "json", "-n", "0", db=db).stdout)
    assert waiting and cases(queue("--at", "now", "-f", "json", "-n", "0", db=db).stdout) == waiting
    until = runner.invoke(app, ["events", "--until", "now", "-f", "json", "-n", "0", "--db", db])
    assert until.exit_code == 0 and len(json.loads(until.stdout)) == len(QUEUE)
    since = runner.invoke(app, ["events", "--since", "NOW", "-f", "json", "--db", db])
    assert since.exit_code == 0 and json.loads(since.stdout) == []
    console = console_on(db)
    status, _headers, body = console.get("/queue.json?at=now")
    assert status == 200 and cases(body) == waiting
    status, _headers, html = console.get("/queue?at=now")
    assert status == 200 and b"As it stood at" in html
    status, _headers, body = console.get("/events.json?until=now")
    assert status == 200 and len(json.loads(body)) == len(QUEUE)


@pytest.mark.parametrize("sla", ["first=0", "first=0s", "first=1h,reply=0m"])
def test_a_zero_target_is_refused_in_the_same_words_on_both_faces(tmp_path, console_on, sla):
    from test_queue import ASK, QUEUE, runner, store_log

    from tbhook.cli import app

    db = str(tmp_path / "queue.db")
    store_log(db, QUEUE)
    result = runner.invoke(app, ["queue", *ASK, "--sla", sla, "--db", db])
    assert result.exit_code == 2 and "is a target of nothing" in result.stderr
    said = result.stderr.split("Invalid value for '--sla': ", 1)[1].strip()
    status, _headers, body = console_on(db).get("/queue.json?" + urlencode({"sla": sla}))
    assert status == 400 and json.loads(body)["error"] == f"sla: {said}"


def test_the_line_under_the_rows_counts_with_them(tmp_path, serve, page):  # noqa: F811
    """ "the oldest has waited ..." moves on with the rows' own count, between the server's
    answers (the seconds waited alone are no change it sends)."""
    db = tmp_path / "line.db"
    receiver = serve(db=db)
    console = start_console(db)
    try:
        page.goto(f"http://127.0.0.1:{console.port}/queue")
        page.wait_for_selector("#queue-rows .empty")
        post(receiver, customer(7601, int(time.time()) - 5, person=9601))
        row = "#queue-rows tr[data-href^='/cases/7601']"
        page.wait_for_selector(row, timeout=15000)
        first = page.inner_text("#standing")
        in_step = (
            "([row, was]) => { const line = document.getElementById('standing').textContent;"
            " const cell = document.querySelector(row + ' [data-shows=waited]').textContent;"
            " return line !== was && line.endsWith('the oldest has waited ' + cell); }"
        )
        page.wait_for_function(in_step, arg=[row, first], timeout=15000)
        assert page.inner_text("#standing").startswith("1 waiting; the oldest has waited ")
    finally:
        console.proc.terminate()
        console.proc.wait(10)

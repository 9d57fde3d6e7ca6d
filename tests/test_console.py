"""`tbhook ui` over real HTTP: its pages, its JSON twins (the CLI's --format json, byte for
byte), its doors (Host, token, CSRF, headers) and hostile sender text, on a real database.
The browser's side (live rows, clicks, keys, charts) is in test_console_browser.py."""

from __future__ import annotations

import contextlib
import http.client
import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading
from dataclasses import dataclass, field

import pytest
from conftest import CONSOLE, child_process, event_body, request, sample_bytes, wait_for
from test_timelines import stored
from typer.testing import CliRunner

from tbhook.cli import app
from tbhook.store import open_store

runner = CliRunner(env={"COLUMNS": "200"})
HOSTILE = '<img src=x onerror="document.title=1">'


@dataclass
class Console:
    proc: subprocess.Popen
    port: int
    lines: list[str] = field(default_factory=list)

    def get(self, path: str, headers: dict | None = None) -> tuple[int, dict, bytes]:
        return call(self.port, "GET", path, headers=headers)

    def post(self, path: str, form: str, headers: dict | None = None):
        return call(
            self.port,
            "POST",
            path,
            body=form.encode(),
            headers={"Content-Type": "application/x-www-form-urlencoded", **(headers or {})},
        )


def call(port, method, path, body=None, headers=None):
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        conn.request(method, path, body=body, headers=headers or {})
        response = conn.getresponse()
        return (
            response.status,
            {k.lower(): v for k, v in response.getheaders()},
            response.read(),
        )
    finally:
        conn.close()


def start_console(db, *args: str, env: dict | None = None, preexec_fn=None) -> Console:
    import os

    proc = subprocess.Popen(
        [sys.executable, "-m", "tbhook", "ui", "--db", str(db), "--port", "0", *args],
        stderr=subprocess.PIPE,
        stdout=subprocess.DEVNULL,
        text=True,
        env={**os.environ, **(env or {})},
        preexec_fn=preexec_fn,
    )
    console = Console(proc, 0)
    ready = threading.Event()

    def pump() -> None:
        for line in proc.stderr:
            console.lines.append(line)
            found = re.search(r"console on http://\S+:(\d+)/", line)
            if found:
                console.port = int(found.group(1))
                ready.set()
        ready.set()

    threading.Thread(target=pump, daemon=True).start()
    if not ready.wait(30) or not console.port:
        proc.kill()
        raise RuntimeError("tbhook ui did not start:\n" + "".join(console.lines))
    return console


@pytest.fixture
def consoles():
    started: list[Console] = []

    def factory(db, *args: str, env: dict | None = None, preexec_fn=None) -> Console:
        console = start_console(db, *args, env=env, preexec_fn=preexec_fn)
        started.append(console)
        return console

    yield factory
    for console in started:
        console.proc.terminate()
        console.proc.wait(10)


def a_log(target) -> None:
    """Two cases, a merge, a hostile event name, an unreadable body."""
    bodies = [
        event_body(caseId=501, personId=10, own=0, timestamp=1_700_000_000, uniqueId=1),
        event_body(caseId=501, personId=10, own=1, timestamp=1_700_000_090, uniqueId=2),
        event_body(caseId=502, personId=20, own=0, timestamp=1_700_000_100, uniqueId=3),
        sample_bytes("case-closed"),
        json.dumps(
            {
                "event": "profileMerged",
                "oldPersonId": 10,
                "newPersonId": 20,
                "timestamp": 1_700_000_200,
            }
        ).encode(),  # fmt: skip
        json.dumps({"event": HOSTILE, "caseId": 503, "timestamp": 1_700_000_300}).encode(),
        b"{not json",
    ]
    stored(str(target), bodies)


def quarantine_a_readable_body(db) -> None:
    """As an older tbhook kept it: a retry with today's rules moves it into the events (case
    777), so a retry that ran shows."""
    with open_store(str(db)).writing() as conn:
        body = event_body(caseId=777, uniqueId=77)
        conn.execute(
            'INSERT INTO quarantine ("receivedAt", "lastReceivedAt", deliveries, path, reason, '
            'body, "bodySha256") VALUES (?, ?, 1, ?, ?, ?, ?)',
            ["2026-01-01T00:00:00.000Z", "2026-01-01T00:00:00.000Z", "/", "older rules", body,
             __import__("hashlib").sha256(body).digest()],
        )  # fmt: skip


@pytest.fixture(params=["sqlite", "postgresql"])
def target(request, tmp_path):
    if request.param == "sqlite":
        return str(tmp_path / "console.db")
    return request.getfixturevalue("pg_url")


def cli_json(target, *args: str) -> bytes:
    result = runner.invoke(app, [*args, "-f", "json", "--db", target])
    assert result.exit_code == 0, result.output
    return result.stdout_bytes


def test_the_json_twins_are_the_cli_s_answers_byte_for_byte(target, consoles):
    a_log(target)
    console = consoles(target)
    twins = [
        ("/events.json", ["events"]),
        ("/events.json?case=501&sort=arrival", ["events", "--case", "501", "--sort", "arrival"]),
        ("/events.json?person=20&limit=3", ["events", "--person", "20", "-n", "3"]),
        ("/events.json?before=4&order=asc", ["events", "--before", "4", "--order", "asc"]),
        ("/events.json?text=onerror", ["events", "--text", "onerror"]),
        ("/events/1.json", ["event", "1"]),
        ("/persons/10.json", ["person", "10"]),
        ("/cases.json", ["cases"]),
        ("/cases.json?source=14", ["cases", "--source", "14"]),
        ("/cases/501.json", ["case", "501"]),
        ("/quarantine.json", ["quarantine"]),
        (
            "/report.json?by=week&since=2023-11-01&until=2023-11-30",
            ["report", "--by", "week", "--since", "2023-11-01", "--until", "2023-11-30"],
        ),  # noqa: E501
        (  # bare dates are days in the report's zone, as for the command
            "/report.json?by=day&since=2023-11-14&until=2023-11-14&tz=Asia/Tokyo",
            ["report", "--by", "day", "--since", "2023-11-14", "--until", "2023-11-14"]
            + ["--tz", "Asia/Tokyo"],
        ),
        (
            "/report.json?by=source&since=2023-11-01&until=2023-11-30&tz=Europe/Amsterdam&hours=mon-fri+09:00-17:00",
            [
                "report",
                "--by",
                "source",
                "--since",
                "2023-11-01",
                "--until",
                "2023-11-30",
                "--tz",
                "Europe/Amsterdam",
                "--hours",
                "mon-fri 09:00-17:00",
            ],
        ),  # noqa: E501
    ]
    for path, command in twins:
        status, headers, body = console.get(path)
        assert status == 200, (path, body)
        assert headers["content-type"].startswith("application/json")
        assert body == cli_json(target, *command), path
    status, headers, body = console.get("/events.csv?case=501")
    csv_cli = runner.invoke(
        app, ["events", "--case", "501", "--sort", "arrival", "-f", "csv", "--db", target]
    )  # noqa: E501
    assert body == csv_cli.stdout_bytes and headers["content-type"].startswith("text/csv")


def test_every_page_answers_and_says_what_is_wrong(tmp_path, consoles):
    db = tmp_path / "pages.db"
    a_log(str(db))
    console = consoles(db)
    for path in ("/", "/?case=501", "/events/1", "/persons/10", "/cases", "/cases/501",
                 "/report?by=week&since=2023-11-01&until=2023-11-30", "/quarantine",
                 "/quarantine/1", "/health", "/static/console.css", "/static/console.js"):  # fmt: skip
        status, _, body = console.get(path)
        assert status == 200, (path, body[:300])
    mistakes = {
        "/?since=yesterdayish": (400, b"is not a date"),
        "/?case=12abc": (400, b"is not a number"),
        "/?before=x": (400, b"is not an event id"),
        "/report?by=year": (400, b"day, week, month, source or agent"),
        "/report?hours=mon-fry+09:00-17:00": (400, b"&#39;fry&#39; is not a day"),
        "/report?tz=Mars/Olympus": (400, b"is not a time zone"),
        "/events/999": (404, b"No event #999"),
        "/cases/999": (404, b"No event names case 999"),
        "/events/99999999999999999999": (404, b"larger than any id tbhook keeps"),
        "/quarantine/99999999999999999999.json": (404, b"larger than any id tbhook keeps"),
        "/?since=2030-01-01&until=2020-01-01": (400, b"so nothing could match"),
        "/?case=9999999999999999999": (400, b"does not fit in a 64-bit integer"),
        "/cases?source=-9999999999999999999": (400, b"does not fit in a 64-bit integer"),
        "/?before=9999999999999999999": (400, b"is not an event id"),
        "/nowhere": (404, b"There is no such page"),
        "/static/../tbhook.db": (404, b""),
    }
    for path, (status, words) in mistakes.items():
        got, headers, body = console.get(path)
        assert got == status, (path, body[:300])
        assert words in body, (path, body[:500])
        assert b"Traceback" not in body
    got, headers, body = console.get("/report.json?by=year")
    assert got == 400 and json.loads(body) == {
        "error": "by: 'year' is not one of day, week, month, source or agent"
    }


def test_hostile_text_is_text_everywhere(tmp_path, consoles):
    db = tmp_path / "hostile.db"
    a_log(str(db))
    console = consoles(db)
    for path in ("/", "/events/6", "/cases/503", "/?text=onerror"):
        status, headers, body = console.get(path)
        assert status == 200
        assert HOSTILE.encode() not in body, path  # never as markup
        assert b"&lt;img src=x onerror=" in body, path
        policy = headers["content-security-policy"]
        assert "script-src 'self'" in policy and "unsafe-inline" not in policy
        assert "frame-ancestors 'none'" in policy
        assert headers["x-content-type-options"] == "nosniff"
        assert headers["referrer-policy"] == "same-origin"
        assert b"<script>" not in body and b" onclick=" not in body  # nothing inline at all
    status, headers, body = console.get("/events/6/raw")
    assert headers["content-type"] == "application/octet-stream"
    assert headers["content-disposition"] == 'attachment; filename="event-6.json"'
    assert (
        body == json.dumps({"event": HOSTILE, "caseId": 503, "timestamp": 1_700_000_300}).encode()
    )


def test_the_host_header_must_be_the_console_s_own(tmp_path, consoles):
    db = tmp_path / "hosts.db"
    a_log(str(db))
    console = consoles(db)
    for host in ("127.0.0.1", f"127.0.0.1:{console.port}", f"localhost:{console.port}"):
        assert console.get("/", {"Host": host})[0] == 200
    for host in (f"evil.example:{console.port}", "rebind.attacker.test", ""):
        status, _, body = console.get("/", {"Host": host})
        assert status == 421 and b"only to its own address" in body


def test_a_token_guards_every_page_and_the_login_sets_an_httponly_cookie(tmp_path, consoles):
    db = tmp_path / "token.db"
    a_log(str(db))
    token = "a-long-enough-secret-42"
    console = consoles(db, env={"TBHOOK_UI_TOKEN": token})
    status, headers, _ = console.get("/")
    assert status == 303 and headers["location"] == "/login"
    assert console.get("/events.json")[0] == 401
    assert console.get("/events.json", {"Authorization": "Bearer wrong"})[0] == 401
    assert console.get("/events.json", {"Authorization": f"Bearer {token}"})[0] == 200
    status, headers, page = console.get("/login")
    csrf = re.search(rb'name="csrf" value="([^"]+)"', page).group(1).decode()
    cookie = headers["set-cookie"].split(";")[0]
    status, _, _ = console.post("/login", f"csrf={csrf}&token=nope", {"Cookie": cookie})
    assert status == 401
    # Any text a client sends is a wrong secret, never a 500 (compare_digest takes only ASCII)
    assert console.get("/events.json", {"Authorization": "Bearer caf\xe9"})[0] == 401
    assert console.get("/", {"Cookie": f"{cookie}; tbhook_session=caf\xe9"})[0] == 303
    status, _, _ = console.post("/login", f"csrf={csrf}&token=caf%C3%A9", {"Cookie": cookie})
    assert status == 401
    status, _, _ = console.post("/login", "csrf=%C3%A9&token=x", {"Cookie": cookie})
    assert status == 403
    status, headers, _ = console.post("/login", f"csrf={csrf}&token={token}", {"Cookie": cookie})
    assert status == 303
    session = headers["set-cookie"]
    assert "HttpOnly" in session and "SameSite=Lax" in session and token not in session
    signed = session.split(";")[0]
    assert console.get("/", {"Cookie": f"{cookie}; {signed}"})[0] == 200


def test_a_console_off_loopback_needs_a_token(tmp_path):
    db = tmp_path / "off.db"
    open_store(str(db)).close()
    result = runner.invoke(
        app, ["ui", "--db", str(db), "--host", "0.0.0.0"], env={"TBHOOK_UI_TOKEN": None}
    )
    assert result.exit_code == 2
    assert "would show the log to anyone" in result.output
    empty = runner.invoke(  # set to nothing is no token either, and said so
        app, ["ui", "--db", str(db), "--host", "0.0.0.0"], env={"TBHOOK_UI_TOKEN": ""}
    )
    assert empty.exit_code == 2 and "the token is empty" in empty.output
    short = runner.invoke(app, ["ui", "--db", str(db), "--host", "0.0.0.0", "--token", "abc"])
    assert short.exit_code == 2 and "guessable" in short.output
    missing = runner.invoke(app, ["ui", "--db", str(tmp_path / "none.db")])
    assert missing.exit_code == 1 and "no database" in missing.output
    for option, value, words in (
        ("--receiver", "localhost:8080", "is not an http:// or https:// URL"),
        ("--receiver", "http://127.0.0.1:99999/", "has no valid port: a port is a number from 1"),
        ("--allow-host", "tbhook.example.com:443", "is not a host name"),
        ("--allow-host", "", "is not a host name"),
    ):
        wrong = runner.invoke(app, ["ui", "--db", str(db), option, value])
        assert wrong.exit_code == 2 and words in wrong.output, (option, value, wrong.output)


def test_posts_need_the_form_s_csrf_token_and_retry_moves_quarantined_bodies(tmp_path, consoles):
    db = tmp_path / "csrf.db"
    a_log(str(db))
    quarantine_a_readable_body(db)
    console = consoles(db)
    assert console.post("/quarantine/retry", "id=2")[0] == 403  # no cookie, no token
    status, headers, page = console.get("/quarantine")
    csrf = re.search(rb'name="csrf" value="([^"]+)"', page).group(1).decode()
    cookie = headers["set-cookie"].split(";")[0]
    assert console.post("/quarantine/retry", "csrf=forged&id=2", {"Cookie": cookie})[0] == 403
    for wrong in ("abc", "99999999999999999999", "١"):  # never "retry them all", never #1
        status, _, page = console.post("/quarantine/retry", f"csrf={csrf}&id={wrong}",
                                       {"Cookie": cookie})  # fmt: skip
        assert status == 400 and b"nothing was retried" in page
    status, headers, _ = console.post("/quarantine/retry", f"csrf={csrf}", {"Cookie": cookie})
    assert status == 303
    assert b"Retried: 1 of 2 moved into events." in console.get(headers["location"],
                                                                {"Cookie": cookie})[2]  # fmt: skip
    moved = json.loads(console.get("/events.json?case=777")[2])
    assert [e["caseId"] for e in moved] == [777]


def test_send_posts_the_body_byte_for_byte(tmp_path, consoles, serve):
    db = tmp_path / "send.db"
    a_log(str(db))
    receiver = serve(db=tmp_path / "other.db")
    console = consoles(db)
    status, headers, page = console.get("/events/1")
    csrf = re.search(rb'name="csrf" value="([^"]+)"', page).group(1).decode()
    cookie = headers["set-cookie"].split(";")[0]
    url = f"http://127.0.0.1:{receiver.port}/"
    from urllib.parse import quote

    status, headers, _ = console.post(
        "/events/1/send", f"csrf={csrf}&url={quote(url, safe='')}", {"Cookie": cookie}
    )
    assert status == 303
    said = f"{url} answered 200".encode()
    assert said in console.get(headers["location"], {"Cookie": cookie})[2]
    original = console.get("/events/1/raw")[2]
    copy = json.loads(cli_json(str(tmp_path / "other.db"), "event", "1"))
    assert copy["bodySha256"] == __import__("hashlib").sha256(original).hexdigest()


def test_stream_sends_each_new_event_once_and_resumes_after_the_last_id(target, consoles, serve):
    receiver = serve(db=target)  # on PostgreSQL the stream follows commits as tail does
    console = consoles(target)
    conn = http.client.HTTPConnection("127.0.0.1", console.port, timeout=30)
    conn.request("GET", "/stream?case=900", headers={"Last-Event-ID": "0"})
    sock = conn.sock
    response = conn.getresponse()
    assert response.status == 200 and response.getheader("content-type").startswith(
        "text/event-stream"
    )
    got: list[dict] = []

    def read() -> None:
        with contextlib.suppress(OSError, ValueError, AttributeError):  # closed at the end
            for raw in response:
                line = raw.decode()
                if line.startswith("data: "):
                    got.append(json.loads(line[6:]))

    threading.Thread(target=read, daemon=True).start()
    for n in range(3):
        assert receiver.post(event_body(caseId=900, uniqueId=n + 1)).status == 200
    assert receiver.post(event_body(caseId=901, uniqueId=9)).status == 200  # filtered out
    assert receiver.post(event_body(caseId=900, uniqueId=4)).status == 200  # the sentinel
    wait_for(lambda: len(got) >= 4, timeout=10)
    assert [m["id"] for m in got] == [1, 2, 3, 5]
    assert all("<tr data-id=" in m["html"] for m in got)
    sock.shutdown(socket.SHUT_RDWR)  # the reader wakes now, not at the next keep-alive
    conn.close()

    # A browser that reconnects says the last id it saw: it gets what came after, once.
    again = http.client.HTTPConnection("127.0.0.1", console.port, timeout=30)
    again.request("GET", "/stream?case=900", headers={"Last-Event-ID": "2"})
    resumed = again.getresponse()
    ids = []
    for raw in resumed:
        if raw.startswith(b"data: "):
            ids.append(json.loads(raw[6:])["id"])
        if len(ids) == 2:
            break
    assert ids == [3, 5]
    again.close()


def test_health_shows_the_receiver_s_refusals_against_tracebuzz_s_limit(tmp_path, consoles, serve):
    db = tmp_path / "health.db"
    receiver = serve("--metrics", "--max-body", "2000", db=db)
    assert receiver.post(event_body(caseId=1)).status == 200
    assert receiver.post(event_body(caseId=2, note="x" * 3000)).status == 413
    url = f"http://127.0.0.1:{receiver.port}/"
    status, _, page = consoles(db, "--receiver", url).get("/health")
    assert status == 200
    assert b"Up, and its store commits." in page and b'<small class="ok">ok</small>' in page
    assert re.search(rb'data-status="413">1<', page) and re.search(rb'data-status="503">0<', page)

    receiver.stop()  # gone: the page says so at once, and what it costs
    status, _, page = consoles(db, "--receiver", url).get("/health")
    assert status == 200 and b"not reachable" in page and b"10 failed deliveries" in page
    # The database's checks pass, but the verdict is the page's whole answer.
    assert b'<small class="fail">the receiver needs attention</small>' in page


def test_health_says_each_thing_once_in_words_with_a_link_to_the_quarantine(tmp_path, consoles):
    """One delivery kept unread: singular, and `tbhook quarantine` a link to its page; the
    outage budget in one sentence; no stray verdict under the table (the heading has it)."""
    db = tmp_path / "words.db"
    a_log(db)
    _status, _, page = consoles(db).get("/health")
    text = page.decode()
    assert "1 delivery was kept but could not be read" in text
    assert '<a href="/quarantine"><code>tbhook quarantine</code></a>' in text
    assert "`" not in text
    assert text.count("longer than about 29 hours (at most 73") == 1
    assert "retries span" not in text and "healthy" not in text and "something is wrong" not in text


def test_serve_ui_runs_the_console_beside_the_receiver_and_stops_it_with_it(tmp_path, serve):
    receiver = serve("--ui", "--ui-port", "0", db=tmp_path / "both.db")
    found = re.search(r"console: http://127\.0\.0\.1:(\d+)/", receiver.stderr())
    assert found, receiver.stderr()
    port = int(found.group(1))
    assert port != receiver.port  # never the receiver's port: Tracebuzz never sees the console
    assert receiver.post(event_body(caseId=77)).status == 200
    console = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    console.request("GET", "/events.json?case=77")
    listed = json.loads(console.getresponse().read())
    console.close()
    assert [row["caseId"] for row in listed] == [77]
    page = request(receiver.port, "GET", "/events.json")
    assert b"caseId" not in page.body  # the receiver's GETs are not the console's pages

    # A console that dies is started again on the same port, and the receiver's log says so.
    os.kill(child_process(receiver.proc.pid, CONSOLE), signal.SIGKILL)
    wait_for(lambda: "the console stopped (exit -9)" in receiver.stderr(), timeout=10)
    again = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    again.request("GET", "/events.json?case=77")  # waits in the port's queue if need be
    assert [row["caseId"] for row in json.loads(again.getresponse().read())] == [77]
    again.close()

    assert receiver.stop() == 0

    def gone() -> bool:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
        except OSError:
            return True
        return False

    wait_for(gone)  # the console stopped with the receiver

    same = runner.invoke(app, ["serve", "--db", str(tmp_path / "x.db"), "--port", "9999"]
                         + ["--ui", "--ui-port", "9999"])  # fmt: skip
    assert same.exit_code == 2 and "a port of its own" in same.output


def test_ctrl_c_stops_the_receiver_and_its_console_quietly(tmp_path):
    """Ctrl+C reaches the whole foreground group; the console, in a session of its own, is
    stopped by the receiver, never first (which once read as a console that had failed)."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "tbhook", "serve", "--db", str(tmp_path / "c.db"), "--port", "0"]
        + ["--ui", "--ui-port", "0"],
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,  # a group of its own, as a terminal's foreground job is
    )
    banner = []
    for line in proc.stderr:
        banner.append(line)
        if line.startswith("Press Ctrl+C"):
            break
    console = child_process(proc.pid, CONSOLE)
    os.killpg(proc.pid, signal.SIGINT)
    _, rest = proc.communicate(timeout=30)  # bounded: a receiver that hangs fails the test
    assert proc.returncode == 0
    assert "every acknowledged event is stored" in rest and "console stopped" not in rest, rest
    assert not os.path.exists(f"/proc/{console}")  # stopped, and reaped, by the receiver


def test_the_console_has_an_entry_point_of_its_own_that_needs_no_command_line(tmp_path):
    """`serve --ui` starts the console as `python -m tbhook.console` does: the command line
    (typer, every command's module) is never loaded for it."""
    db = tmp_path / "own.db"
    a_log(str(db))
    loaded = subprocess.run(
        [sys.executable, "-c", "import sys, tbhook.console.__main__; "
         "print(sorted(m for m in sys.modules if m.startswith('tbhook.cli') or m == 'typer'))"],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    assert loaded.stdout == "[]\n"
    proc = subprocess.Popen(
        [sys.executable, "-m", "tbhook.console", "--db", str(db), "--port", "0"],
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "TBHOOK_TZ": "Asia/Tokyo"},  # as `tbhook ui` reads it
    )
    try:
        line = proc.stderr.readline()
        found = re.search(r"tbhook console on http://127\.0\.0\.1:(\d+)/", line)
        assert found, line
        status, _, body = call(int(found.group(1)), "GET", "/events.json?case=501")
        assert status == 200 and [row["caseId"] for row in json.loads(body)] == [501, 501]
        status, _, page = call(int(found.group(1)), "GET", "/?case=501")
        # The date and the time of day are two spans (a phone wraps between them, not in them).
        assert status == 200 and b"2023-11-15 07:13:20 JST" in re.sub(rb"<[^>]+>", b"", page)
    finally:
        proc.terminate()
        proc.wait(10)

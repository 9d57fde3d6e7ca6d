"""The console's edge over real sockets: forms from another origin or without their session's
CSRF value, sessions that expire and end, failed sign-ins, tokens that are no secret, Host
headers and request targets a proxy might pass, notices from the server's own state, and
slow clients (deadlines, shedding, the cap on live pages). The browser's side of CSRF (a page
on another port tossing cookies) is in test_console_browser.py."""

from __future__ import annotations

import contextlib
import http.client
import json
import os
import re
import socket
import subprocess
import sys
import time
from urllib.parse import quote

import pytest
import test_console
from conftest import wait_for
from test_console import a_log, call, quarantine_a_readable_body

consoles = test_console.consoles  # the fixture: each console it starts is stopped after the test

TOKEN = "edge-token-0123456789"


class Browser:
    """A client that keeps the console's cookie, as a browser does; ``source``: the address
    it connects from (127.0.0.2 is another client)."""

    def __init__(self, port: int, source: str = "127.0.0.1") -> None:
        self.port, self.source, self.cookie = port, source, ""

    def send(self, method: str, path: str, form: str | None = None, headers=None):
        conn = http.client.HTTPConnection(
            "127.0.0.1", self.port, timeout=30, source_address=(self.source, 0)
        )
        sent = {"Cookie": self.cookie} if self.cookie else {}
        if form is not None:
            sent["Content-Type"] = "application/x-www-form-urlencoded"
        try:
            conn.request(method, path, body=form, headers={**sent, **(headers or {})})
            response = conn.getresponse()
            found = {k.lower(): v for k, v in response.getheaders()}
            body = response.read()
        finally:
            conn.close()
        if "set-cookie" in found:
            self.cookie = found["set-cookie"].split(";")[0]
        self.headers = found
        return response.status, found, body

    def get(self, path: str, headers=None):
        return self.send("GET", path, headers=headers)

    def post(self, path: str, form: str, headers=None):
        return self.send("POST", path, form, headers)

    def csrf(self, path: str = "/login") -> str:
        page = self.get(path)[2]
        return re.search(rb'name="csrf" value="([^"]+)"', page).group(1).decode()

    def sign_in(self, token: str = TOKEN) -> int:
        csrf = self.csrf("/login")
        return self.post("/login", f"csrf={csrf}&token={quote(token, safe='')}")[0]


def refused(db, *args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    """`tbhook ui` with settings it must refuse; one it accepted would serve, so it is run
    apart and bounded. A variable set to None in ``env`` is left out."""
    return subprocess.run(
        [sys.executable, "-m", "tbhook", "ui", "--db", str(db), "--port", "0", *args],
        capture_output=True,
        text=True,
        env={
            k: v
            for k, v in {**os.environ, "COLUMNS": "200", **(env or {})}.items()
            if v is not None
        },
        timeout=30,
    )


def passed(seconds: float) -> None:
    start = time.monotonic()
    wait_for(lambda: time.monotonic() - start > seconds, timeout=seconds + 5)


def raw(port: int, data: bytes, timeout: float = 10) -> bytes:
    """What the console answers to these bytes, up to its closing the connection."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        sock.sendall(data)
        out = b""
        with contextlib.suppress(ConnectionResetError):
            while chunk := sock.recv(65536):
                out += chunk
    return out


def quarantined(port: int, browser: Browser | None = None) -> int:
    answer = (browser or Browser(port)).get(
        "/quarantine.json", {"Authorization": f"Bearer {TOKEN}"}
    )
    return len(json.loads(answer[2]))


@pytest.fixture
def log_db(tmp_path):
    db = tmp_path / "edge.db"
    a_log(str(db))
    quarantine_a_readable_body(db)
    return db


# -- CSRF -------------------------------------------------------------------------------------


def test_a_post_from_another_origin_is_refused_and_does_nothing(log_db, consoles):
    console = consoles(log_db)
    port = console.port
    # The curl: a foreign Origin and a tossed cookie whose copy is in the form.
    status, _, page = call(port, "POST", "/quarantine/retry", b"csrf=a&id=1", {
        "Origin": "http://evil.example", "Cookie": "tbhook_csrf=a; tbhook_session=a",
        "Content-Type": "application/x-www-form-urlencoded"})  # fmt: skip
    assert status == 403 and b"came from another site: nothing was done" in page
    own = Browser(port)
    csrf = own.csrf("/quarantine")  # a real session and its real CSRF value: still refused
    for foreign in (
        {"Origin": "http://evil.example"},
        {"Origin": "http://127.0.0.1:1"},  # another port of the same host: cookies ignore ports
        {"Origin": f"https://127.0.0.1:{port}"},  # another scheme
        {"Origin": "null"},
        {"Sec-Fetch-Site": "same-site"},  # no Origin, but the browser says where from
        {"Sec-Fetch-Site": "cross-site"},
        {"Origin": f"http://127.0.0.1:{port}", "Sec-Fetch-Site": "cross-site"},
    ):
        status, _, page = own.post("/quarantine/retry", f"csrf={csrf}&id=2", foreign)
        assert status == 403 and b"another site" in page, foreign
    # A page can write a cookie, not the server's keyed hash of it.
    planted = Browser(port)
    planted.cookie = "tbhook_session=" + "A" * 43
    for value in ("pwn", "A" * 43, csrf):
        status, _, page = planted.post("/quarantine/retry", f"csrf={value}&id=2")
        assert status == 403 and b"stale or came from elsewhere" in page
    assert own.post("/quarantine/retry", "id=2")[0] == 403  # curl: no Origin, no CSRF value
    assert quarantined(port) == 2  # nothing was retried
    # The sentinel: the console's own form, from its own origin, is the first retry.
    status, headers, _ = own.post(
        "/quarantine/retry", f"csrf={csrf}&id=2", {"Origin": f"http://127.0.0.1:{port}"}
    )
    assert status == 303 and quarantined(port) == 1
    assert b"Retried: 1 of 1 moved into events." in own.get(headers["location"])[2]


def test_a_bearer_token_needs_no_csrf_value_but_the_origin_still_counts(log_db, consoles):
    console = consoles(log_db, "--allow-host", "tbhook.example.com",
                       env={"TBHOOK_UI_TOKEN": TOKEN})  # fmt: skip
    bearer = {"Authorization": f"Bearer {TOKEN}"}
    client = Browser(console.port)
    assert (
        client.post("/quarantine/retry", "id=99", bearer)[0] == 404
    )  # a script, with the token: no #99
    proxied = {**bearer, "Host": "tbhook.example.com"}
    for origin, status in (
        ("https://tbhook.example.com", 404),  # a proxy's name, by https or http: let in
        ("http://tbhook.example.com", 404),
        ("https://tbhook.example.com:8443", 403),  # another port of it
        ("https://evil.tbhook.example.com", 403),
        ("http://evil.example", 403),
    ):
        got = client.post("/quarantine/retry", "id=99", {**proxied, "Origin": origin})[0]
        assert got == status, origin


def test_with_https_only_an_https_page_may_post(log_db, consoles):
    console = consoles(log_db, "--allow-host", "tbhook.example.com", "--https",
                       env={"TBHOOK_UI_TOKEN": TOKEN})  # fmt: skip
    client = Browser(console.port)
    proxied = {"Authorization": f"Bearer {TOKEN}", "Host": "tbhook.example.com"}
    assert client.post("/quarantine/retry", "id=99",
                       {**proxied, "Origin": "https://tbhook.example.com"})[0] == 404  # fmt: skip
    assert client.post("/quarantine/retry", "id=99",
                       {**proxied, "Origin": "http://tbhook.example.com"})[0] == 403  # fmt: skip


# -- Sessions ---------------------------------------------------------------------------------


def test_signing_in_starts_a_new_session_and_signing_out_ends_it(log_db, consoles):
    console = consoles(log_db, env={"TBHOOK_UI_TOKEN": TOKEN})
    browser = Browser(console.port)
    browser.get("/login")
    anonymous = browser.cookie
    assert browser.sign_in() == 303
    signed = browser.cookie
    assert signed != anonymous and browser.get("/")[0] == 200
    assert Browser(console.port, "127.0.0.1").get("/", {"Cookie": anonymous})[0] == 303
    again = Browser(console.port)
    assert again.sign_in() == 303 and again.cookie != signed  # not a hash of the token
    status, headers, _ = browser.post("/logout", f"csrf={browser.csrf('/')}")
    assert status == 303 and headers["location"] == "/login"
    assert browser.cookie != signed
    status, headers, _ = Browser(console.port).get("/", {"Cookie": signed})
    assert status == 303 and headers["location"] == "/login"  # ended here, not only forgotten
    assert again.get("/")[0] == 200  # another session is untouched


def test_a_session_ends_when_idle_unless_a_live_page_is_open(log_db, consoles):
    console = consoles(log_db, "--session-idle", "2s", env={"TBHOOK_UI_TOKEN": TOKEN})
    browser = Browser(console.port)
    assert browser.sign_in() == 303 and browser.get("/")[0] == 200
    stream = socket.create_connection(("127.0.0.1", console.port), timeout=10)
    stream.sendall(f"GET /stream HTTP/1.1\r\nHost: 127.0.0.1\r\nCookie: {browser.cookie}\r\n\r\n"
                   .encode())  # fmt: skip
    assert stream.recv(65536).startswith(b"HTTP/1.1 200")
    # The behaviour is about time passing: each wait is twice the idle time (any request
    # made meanwhile would count as use).
    passed(4)
    assert browser.get("/")[0] == 200  # an open live page is use
    stream.close()
    passed(4)
    status, found, _ = browser.get("/")
    assert status == 303 and found["location"] == "/login"


def test_a_session_ends_after_its_lifetime_however_busy(log_db, consoles):
    console = consoles(log_db, "--session-max", "3s", env={"TBHOOK_UI_TOKEN": TOKEN})
    browser = Browser(console.port)
    assert browser.sign_in() == 303
    signed_in = time.monotonic()
    assert "; Max-Age=3" in browser.headers["set-cookie"]  # the browser forgets it too
    ended = wait_for(lambda: browser.get("/")[0] == 303 and time.monotonic(), timeout=15)
    assert ended - signed_in >= 2.5  # busy all along: only the lifetime ended it


@pytest.mark.parametrize(
    "args, headers, secure",
    [
        (["--https"], {}, True),
        (["--allow-host", "tbhook.example.com"],
         {"Host": "tbhook.example.com", "X-Forwarded-Proto": "https"}, True),
        (["--allow-host", "tbhook.example.com"], {"X-Forwarded-Proto": "https"}, False),
        (["--allow-host", "tbhook.example.com"], {"Host": "tbhook.example.com"}, False),
    ],
    ids=["--https", "a proxy's name, https", "not a proxy's name", "a proxy's name, http"],
)  # fmt: skip
def test_cookies_are_secure_when_the_console_is_reached_over_https(
    log_db, consoles, args, headers, secure
):
    console = consoles(log_db, *args, env={"TBHOOK_UI_TOKEN": TOKEN})
    browser = Browser(console.port)
    page = browser.get("/login", headers)[2]
    csrf = re.search(rb'name="csrf" value="([^"]+)"', page).group(1).decode()
    origin = ("https://" if secure else "http://") + headers.get(
        "Host", f"127.0.0.1:{console.port}"
    )
    status, found, _ = browser.post("/login", f"csrf={csrf}&token={TOKEN}",
                                    {**headers, "Origin": origin})  # fmt: skip
    assert status == 303
    cookie = found["set-cookie"]
    assert ("; Secure" in cookie) is secure and cookie.startswith("__Host-") is secure
    assert browser.get("/", headers)[0] == 200


def test_wrong_tokens_from_one_address_are_refused_for_a_while(log_db, consoles):
    console = consoles(log_db, env={"TBHOOK_UI_TOKEN": TOKEN})
    guesser = Browser(console.port)
    assert guesser.get("/events.json", {"Authorization": "Bearer wrong-guess-one"})[0] == 401
    for n in range(8):
        assert guesser.sign_in(f"wrong-guess-number-{n:04}") == 401
    assert guesser.sign_in("wrong-guess-number-ten") == 429  # the tenth
    status, found, page = guesser.post("/login", f"csrf={guesser.csrf()}&token={TOKEN}")
    assert status == 429 and b"Too many wrong tokens from your address" in page  # even right
    assert 0 < int(found["retry-after"]) <= 15 * 60
    status, found, _ = guesser.get("/events.json", {"Authorization": f"Bearer {TOKEN}"})
    assert status == 429 and "retry-after" in found
    wait_for(lambda: any("10 wrong tokens from 127.0.0.1" in line for line in console.lines))
    other = Browser(console.port, "127.0.0.2")  # another address signs in as ever
    assert other.sign_in() == 303 and other.get("/")[0] == 200


@pytest.mark.parametrize(
    "token, words",
    [
        ("            ", "the token is blank"),
        ("a-long-token with-a-space", "contains whitespace"),
        ("tab\tseparated-long-token", "contains whitespace"),
        ("caf\u00e9-caf\u00e9-caf\u00e9-caf\u00e9", "'\u00e9', which is not printable ASCII"),
        ("shortsecret", "the token is 11 characters; a secret needs at least 16"),
    ],
)
def test_a_token_that_is_no_secret_is_refused_at_start_up(tmp_path, token, words):
    db = tmp_path / "t.db"
    a_log(str(db))
    result = refused(db, env={"TBHOOK_UI_TOKEN": token})
    assert result.returncode == 2, result.stderr
    assert "Invalid value for '--token'" in result.stderr and words in result.stderr
    assert "secrets.token_urlsafe(24)" in result.stderr


def test_the_form_and_a_bearer_header_take_exactly_the_same_tokens(log_db, consoles):
    token = "p@ss;w,o=r+d%2&x'y\"z<>[]{}|~`!#$^*()?/\\"
    console = consoles(log_db, env={"TBHOOK_UI_TOKEN": token})
    assert Browser(console.port).sign_in(token) == 303
    assert Browser(console.port).get("/events.json", {"Authorization": f"Bearer {token}"})[0] == 200
    # Around it, a header's spaces are not part of its value (HTTP drops them): nor are a
    # form's (a pasted token often brings one).
    assert Browser(console.port).sign_in(f" {token} ") == 303
    assert call(console.port, "GET", "/events.json",
                headers={"Authorization": f"Bearer  {token} "})[0] == 200  # fmt: skip
    for wrong in (token[:-1], token + "x", token.upper()):
        assert Browser(console.port).sign_in(wrong) == 401
        assert call(console.port, "GET", "/events.json",
                    headers={"Authorization": f"Bearer {wrong}"})[0] == 401  # fmt: skip


# -- Host and target --------------------------------------------------------------------------


def test_host_headers_and_targets_a_proxy_might_pass_are_refused_in_words(log_db, consoles):
    console = consoles(log_db)
    own = f"127.0.0.1:{console.port}".encode()
    head = b"GET /events/1 HTTP/1.1\r\nConnection: close\r\n"
    assert raw(console.port, head + b"Host: " + own + b"\r\n\r\n").startswith(b"HTTP/1.1 200")
    for request in (
        head + b"Host: evil.example\r\nHost: " + own + b"\r\n\r\n",  # two: evil first
        head + b"Host: " + own + b"\r\nHost: evil.example\r\n\r\n",
        head + b"Host: 127.0.0.1:1@evil.example\r\n\r\n",  # userinfo
        head + b"Host: evil.example@127.0.0.1\r\n\r\n",
        head + b"Host: 127.0.0.1:" + str(console.port).encode() + b"/evil\r\n\r\n",
        head + b"Host: 127.0.0.1:80:80\r\n\r\n",
        head + b"Host: 127.0.0.1 evil\r\n\r\n",
        b"GET http://evil.example/events/1 HTTP/1.1\r\nHost: " + own + b"\r\n\r\n",
        b"GET http://" + own + b"/events/1 HTTP/1.1\r\nHost: " + own + b"\r\n\r\n",
    ):
        answer = raw(console.port, request)
        assert answer.startswith((b"HTTP/1.1 400", b"HTTP/1.1 421")), (request, answer[:200])
        body = answer.split(b"\r\n\r\n", 1)[1]
        assert body.startswith(b"<!doctype html>") and b"<p>" in body, answer
        assert b"evil" not in answer and b"curl" not in answer  # never in "copy as curl"


def test_on_every_address_any_name_is_served_but_never_no_name(log_db, consoles):
    console = consoles(log_db, "--host", "0.0.0.0", env={"TBHOOK_UI_TOKEN": TOKEN})
    bearer = f"Authorization: Bearer {TOKEN}\r\nConnection: close\r\n".encode()
    named = raw(console.port, b"GET / HTTP/1.1\r\nHost: receiver-host.lan\r\n" + bearer + b"\r\n")
    assert named.startswith(b"HTTP/1.1 200")  # the token guards it, not the name
    for request in (b"GET / HTTP/1.0\r\n", b"GET / HTTP/1.1\r\nHost: \r\n"):
        answer = raw(console.port, request + bearer + b"\r\n")
        assert answer.startswith(b"HTTP/1.1 421") and b"only to its own address" in answer


# -- Notices ----------------------------------------------------------------------------------


def test_a_notice_says_what_the_server_did_never_what_the_url_says(log_db, consoles, sink):
    console = consoles(log_db)
    lie = "Your session expired: sign in at evil.example"
    browser = Browser(console.port)
    for path in ("/events/1?notice=made-up", "/quarantine?notice=made-up"):
        status, _, page = browser.get(path)
        assert status == 200 and b'class="notice"' not in page
    # The old notice keys are parameters no page takes: refused by name, the lie not shown.
    for path in (f"/events/1?sent={quote(lie)}", f"/quarantine?retried={quote(lie)}"):
        status, _, page = browser.get(path)
        assert status == 400 and b"not a parameter here" in page
        assert b"evil.example" not in page and b'class="notice"' not in page
    target = sink()
    csrf = browser.csrf("/events/1")
    status, found, _ = browser.post("/events/1/send", f"csrf={csrf}&url={quote(target.url)}")
    assert status == 303 and "answered" not in found["location"]
    shown = f'<p class="notice">{target.url} answered 200</p>'.encode()
    other = Browser(console.port)
    other.get("/")
    assert shown not in other.get(found["location"])[2]  # another session's notice: nothing
    assert shown in browser.get(found["location"])[2]
    assert shown not in browser.get(found["location"])[2]  # once
    status, found, _ = browser.post("/quarantine/retry", f"csrf={csrf}")
    assert b"Retried: 1 of 2 moved into events." in browser.get(found["location"])[2]


def test_a_send_that_fails_leads_back_to_its_event_and_every_page_has_an_icon(log_db, consoles):
    console = consoles(log_db)
    browser = Browser(console.port)
    csrf = browser.csrf("/events/1")
    closed = socket.socket()
    closed.bind(("127.0.0.1", 0))
    port = closed.getsockname()[1]
    closed.close()  # nothing listens there now: the send is refused
    url = quote(f"http://127.0.0.1:{port}/in")
    status, _, page = browser.post("/events/1/send", f"csrf={csrf}&url={url}")
    assert status == 502 and b"Could not send event #1" in page  # the request was fine
    assert b"<h1>The other end did not answer</h1>" in page
    assert b'<a href="/events/1">Back to event #1</a>' in page
    status, headers, icon = browser.get("/favicon.ico")
    assert status == 200 and icon.startswith(b"<svg") and "svg" in headers["content-type"]
    assert b'rel="icon" href="/static/icon.svg"' in browser.get("/")[2]


# -- Slow clients -----------------------------------------------------------------------------


def _lower_soft_file_limit() -> None:
    """In the console's process: the soft open-file limit most systems start with."""
    import resource

    _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (min(1024, hard), hard))


def test_a_signed_in_request_is_answered_while_2000_slow_connections_are_open(log_db, consoles):
    import resource

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < 2500 <= hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    if resource.getrlimit(resource.RLIMIT_NOFILE)[0] < 2500:
        pytest.skip("this test process cannot open 2,000 connections (ulimit -n)")
    console = consoles(log_db, env={"TBHOOK_UI_TOKEN": TOKEN}, preexec_fn=_lower_soft_file_limit)
    browser = Browser(console.port)
    assert browser.sign_in() == 303
    slow: list[socket.socket] = []
    try:
        for _ in range(2000):
            sock = socket.create_connection(("127.0.0.1", console.port), timeout=10)
            sock.setblocking(False)
            with contextlib.suppress(OSError):  # shed already
                sock.send(b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n")
            slow.append(sock)
        for sock in slow:  # and one more header line each, never the end of the headers
            with contextlib.suppress(OSError):
                sock.send(b"X-Slow: 1\r\n")
        assert browser.get("/")[0] == 200
        shed = re.compile(r"at the limit of \d+ connections: closed the oldest")
        wait_for(lambda: any(shed.search(line) for line in console.lines))
    finally:
        for sock in slow:
            sock.close()


def test_silent_and_trickling_connections_are_closed_with_a_log_line(log_db, consoles):
    console = consoles(log_db)
    silent = socket.create_connection(("127.0.0.1", console.port), timeout=20)
    trickle = socket.create_connection(("127.0.0.1", console.port), timeout=20)
    try:
        trickle.sendall(b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n")
        trickle.settimeout(1)
        answer = b""
        started = time.monotonic()
        while not answer and time.monotonic() - started < 20:
            with contextlib.suppress(TimeoutError):
                answer = trickle.recv(4096)
            if not answer:
                with contextlib.suppress(OSError):
                    trickle.sendall(b"X-Trickle: 1\r\n")  # a line a second: never complete
        assert answer.startswith(b"HTTP/1.1 408") and b"not received within 10 s" in answer
        assert silent.recv(1) == b""  # closed long since (keep-alive: 5 s)
        wait_for(lambda: any("answered 408 and closed" in line for line in console.lines))
    finally:
        silent.close()
        trickle.close()


def test_live_pages_past_max_streams_are_answered_503_in_words(log_db, consoles):
    console = consoles(log_db, "--max-streams", "2")
    streams = []

    def open_stream() -> tuple[socket.socket, bytes]:
        sock = socket.create_connection(("127.0.0.1", console.port), timeout=10)
        sock.sendall(b"GET /stream HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        streams.append(sock)
        return sock, sock.recv(65536)

    try:
        for _ in range(2):
            assert open_stream()[1].startswith(b"HTTP/1.1 200")
        _sock, answer = open_stream()
        assert answer.startswith(b"HTTP/1.1 503") and b"retry-after: 30" in answer.lower()
        assert b"already feeds 2 live pages" in answer
        assert call(console.port, "GET", "/")[0] == 200  # pages are served meanwhile
        wait_for(lambda: any("2 live pages are open already" in line for line in console.lines))
        streams.pop(0).close()
        wait_for(lambda: open_stream()[1].startswith(b"HTTP/1.1 200"), timeout=10)
    finally:
        for sock in streams:
            sock.close()
    wrong = refused(log_db, "--max-streams", "600", "--max-connections", "500")
    assert wrong.returncode == 2 and "leaves no connection for pages" in wrong.stderr


def test_serve_ui_writes_the_console_s_warnings_into_the_receiver_s_log(tmp_path, serve):
    receiver = serve("--ui", "--ui-port", "0", "--log-format", "json", db=tmp_path / "j.db")
    port = int(re.search(r'"console": "http://127\.0\.0\.1:(\d+)/"', receiver.stderr()).group(1))
    answer = raw(port, b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Big: " + b"a" * 20000 + b"\r\n\r\n")
    assert answer.startswith(b"HTTP/1.1 431")

    def logged() -> dict | None:
        for line in receiver.lines:
            record = json.loads(line)
            if record.get("source") == "console" and "431" in record["message"]:
                return record
        return None

    record = wait_for(logged)
    assert record["level"] == "warning" and record["message"].startswith("console: answered 431")
    assert all(line.startswith('{"time"') for line in receiver.lines)  # one shape throughout

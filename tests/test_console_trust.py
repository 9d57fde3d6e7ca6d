"""Whom the console believes, over real sockets: an X-Forwarded-For header only from a
--trusted-proxy, a session only over the scheme it began on and a live page only while its
session lasts, no console reached from elsewhere without a token (serve --ui's too), and a
"copy as curl" that names the console's own address, never the one a request claimed."""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
import time

import pytest
import test_console
import test_console_edge
from conftest import event_body, start_serve, wait_for
from test_console_edge import TOKEN, Browser, refused

from tbhook.model.events import parse
from tbhook.store import Delivery
from tbhook.store.sqlite import SQLiteStore

consoles = test_console.consoles  # the fixtures
log_db = test_console_edge.log_db

GUESSES = 10  # wrong tokens from one address before it waits (console.sessions.SignIns)


def bearer(token: str, forwarded: str | None = None) -> dict:
    headers = {"Authorization": f"Bearer {token}"}
    return {**headers, "X-Forwarded-For": forwarded} if forwarded is not None else headers


# -- X-Forwarded-For --------------------------------------------------------------------------


def test_x_forwarded_for_from_anyone_but_a_trusted_proxy_is_ignored(log_db, consoles):
    console = consoles(log_db, env={"TBHOOK_UI_TOKEN": TOKEN})
    guesser = Browser(console.port)
    # A new address claimed for every guess does not get past the limit: it counts the peer.
    statuses = [
        guesser.get("/events.json", bearer(f"wrong-guess-{n:04}", f"203.0.113.{n}"))[0]
        for n in range(GUESSES)
    ]
    assert statuses == [401] * (GUESSES - 1) + [429]
    assert guesser.get("/events.json", bearer(TOKEN, "203.0.113.200"))[0] == 429
    line = wait_for(lambda: next((s for s in console.lines if "wrong tokens from" in s), None))
    assert f"{GUESSES} wrong tokens from 127.0.0.1 " in line and "203.0.113" not in line
    # Nor can a stranger lock someone else out by naming that one's address.
    stranger = Browser(console.port, "127.0.0.2")
    for n in range(GUESSES):
        stranger.get("/events.json", bearer(f"wrong-guess-{n:04}", "127.0.0.3"))
    assert Browser(console.port, "127.0.0.3").sign_in() == 303
    # And a header's text never reaches the log as an address.
    forged = "127.0.0.9 console: signed in from the office"
    Browser(console.port, "127.0.0.4").get("/events.json", bearer("wrong-guess", forged))
    assert Browser(console.port, "127.0.0.4").get("/events.json", bearer(TOKEN))[0] == 200
    assert not any("office" in s for s in console.lines)


def test_a_trusted_proxy_names_the_client_it_saw_last_in_x_forwarded_for(log_db, consoles):
    console = consoles(log_db, "--trusted-proxy", "127.0.0.1", env={"TBHOOK_UI_TOKEN": TOKEN})
    proxy = Browser(console.port)  # connects from 127.0.0.1
    for n in range(GUESSES):  # what the client wrote itself comes first: the proxy's entry counts
        proxy.get("/events.json", bearer(f"wrong-guess-{n:04}", f"10.9.9.{n}, 198.51.100.7"))
    assert proxy.get("/events.json", bearer(TOKEN, "198.51.100.7"))[0] == 429
    line = wait_for(lambda: next((s for s in console.lines if "wrong tokens from" in s), None))
    assert "wrong tokens from 198.51.100.7 " in line
    assert proxy.get("/events.json", bearer(TOKEN, "198.51.100.8"))[0] == 200  # another client
    assert proxy.get("/events.json", bearer(TOKEN))[0] == 200  # the proxy's own request
    # A peer that is no trusted proxy is itself, whatever it sends.
    direct = Browser(console.port, "127.0.0.2")
    assert direct.get("/events.json", bearer(TOKEN, "198.51.100.7"))[0] == 200


def test_a_trusted_proxy_must_be_an_address_and_needs_a_token(log_db):
    wrong = refused(log_db, "--trusted-proxy", "proxy.lan", env={"TBHOOK_UI_TOKEN": TOKEN})
    assert wrong.returncode == 2 and "'proxy.lan' is not an IP address" in wrong.stderr
    bare = refused(log_db, "--trusted-proxy", "127.0.0.1", env={"TBHOOK_UI_TOKEN": None})
    assert bare.returncode == 2 and "give it a --token" in bare.stderr


# -- Sessions and live pages ------------------------------------------------------------------


def open_stream(port: int, cookie: str, path: str = "/stream") -> socket.socket:
    """A live page of this session, its answer's head read (200)."""
    sock = socket.create_connection(("127.0.0.1", port), timeout=20)
    sock.sendall(f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nCookie: {cookie}\r\n"
                 "Connection: close\r\n\r\n".encode())  # fmt: skip
    assert sock.recv(65536).startswith(b"HTTP/1.1 200")
    return sock


def ends(sock: socket.socket) -> bytes:
    """What the console still sends on a live page until it closes it (a timeout fails)."""
    out = b""
    while chunk := sock.recv(65536):
        out += chunk
    return out


def append_event(db) -> None:
    store = SQLiteStore.open(db)
    body = event_body(caseId=777)
    store.append([Delivery(body, parse(body))])
    store.close()


def read_until(sock: socket.socket, marker: bytes) -> bytes:
    out = b""
    while marker not in out and (chunk := sock.recv(65536)):
        out += chunk
    return out


def test_signing_out_ends_the_session_s_open_live_page(log_db, consoles):
    console = consoles(log_db, env={"TBHOOK_UI_TOKEN": TOKEN})
    leaving, staying = Browser(console.port), Browser(console.port)
    assert leaving.sign_in() == 303 and staying.sign_in() == 303
    page, other = (
        open_stream(console.port, leaving.cookie),
        open_stream(console.port, staying.cookie),
    )
    try:
        assert leaving.post("/logout", f"csrf={leaving.csrf('/')}")[0] == 303
        assert ends(page).endswith(b"0\r\n\r\n")  # the chunked answer ended, well before 15 s
        append_event(log_db)  # another session's page is fed on
        other.settimeout(15)
        assert b"\ndata: " in read_until(other, b"\ndata: ")
        reconnect = Browser(console.port)
        reconnect.cookie = leaving.cookie
        assert reconnect.get("/stream")[0] == 401  # the browser's reconnection: refused
    finally:
        page.close()
        other.close()


@pytest.mark.parametrize("path", ["/stream", "/queue/stream"])
def test_a_live_page_ends_with_its_session_s_lifetime(log_db, consoles, path):
    console = consoles(log_db, "--session-max", "3s", env={"TBHOOK_UI_TOKEN": TOKEN})
    browser = Browser(console.port)
    assert browser.sign_in() == 303
    began = time.monotonic()
    page = open_stream(console.port, browser.cookie, path)
    try:
        ends(page)
        assert 1.5 <= time.monotonic() - began <= 15  # the lifetime ended it, not the test
    finally:
        page.close()


def test_a_session_begun_over_https_is_no_session_over_http(log_db, consoles):
    console = consoles(log_db, "--allow-host", "tbhook.example.com", env={"TBHOOK_UI_TOKEN": TOKEN})
    https = {"Host": "tbhook.example.com", "X-Forwarded-Proto": "https"}
    browser = Browser(console.port)
    page = browser.get("/login", https)[2]
    csrf = re.search(rb'name="csrf" value="([^"]+)"', page).group(1).decode()
    status, found, _ = browser.post("/login", f"csrf={csrf}&token={TOKEN}",
                                    {**https, "Origin": "https://tbhook.example.com"})  # fmt: skip
    assert status == 303 and found["set-cookie"].startswith("__Host-tbhook_session=")
    sid = browser.cookie.split("=", 1)[1]
    assert browser.get("/", https)[0] == 200
    # The same id as the plain cookie, over http (a proxy's http side, or a planted cookie).
    plain = {"Host": "tbhook.example.com", "Cookie": f"tbhook_session={sid}"}
    status, found, _ = Browser(console.port).get("/", plain)
    assert status == 303 and found["location"] == "/login"
    status, _, _ = Browser(console.port).get(
        "/", {**plain, "Cookie": f"__Host-tbhook_session={sid}"}
    )
    assert status == 303  # the secure cookie's name, but over http: still no


# -- Tokens -----------------------------------------------------------------------------------


def test_a_console_reached_from_elsewhere_never_runs_without_a_token(log_db):
    for args, env, words in (
        (["--token", ""], {}, "the token is empty"),
        ([], {"TBHOOK_UI_TOKEN": ""}, "the token is empty"),
        (["--allow-host", "tbhook.example.com"], {}, "--allow-host means browsers elsewhere"),
        (["--https"], {}, "--https means browsers elsewhere"),
    ):
        done = refused(log_db, *args, env={"TBHOOK_UI_TOKEN": None, **env})
        assert done.returncode == 2 and words in done.stderr, (args, env, done.stderr)
        assert "Traceback" not in done.stderr


def test_serve_ui_asks_for_the_token_in_tbhook_ui_token(tmp_path):
    receiver = start_serve(tmp_path / "s.db", "--ui", "--ui-port", "0",
                           env={"TBHOOK_UI_TOKEN": TOKEN})  # fmt: skip
    try:
        found = re.search(r"console: http://127\.0\.0\.1:(\d+)/ \(sign in with TBHOOK_UI_TOKEN\)",
                          receiver.stderr())  # fmt: skip
        assert found, receiver.stderr()
        port = int(found.group(1))
        status, headers, _ = Browser(port).get("/")
        assert status == 303 and headers["location"] == "/login"
        assert Browser(port).get("/events.json", bearer(TOKEN))[0] == 200
        assert Browser(port).sign_in() == 303
        assert TOKEN not in (tmp_path / "s.db").read_bytes().decode("latin-1")
    finally:
        receiver.stop()


def test_serve_ui_refuses_an_empty_token_and_creates_nothing(tmp_path):
    done = subprocess.run(
        [sys.executable, "-m", "tbhook", "serve", "--ui", "--port", "0", "--db",
         str(tmp_path / "new.db")],
        capture_output=True, text=True, timeout=30, stdin=subprocess.DEVNULL,
        env={**os.environ, "TBHOOK_UI_TOKEN": ""},
    )  # fmt: skip
    assert done.returncode == 2 and "TBHOOK_UI_TOKEN" in done.stderr
    assert "the token is empty" in done.stderr and list(tmp_path.iterdir()) == []


# -- Copy as curl -----------------------------------------------------------------------------


def curl_line(page: bytes) -> str:
    found = re.search(rb"curl -sS[^<]*", page)
    assert found, page[-2000:]
    return found.group(0).decode()


def test_copy_as_curl_names_the_console_s_own_address_not_the_request_s_host(log_db, consoles):
    console = consoles(log_db, "--host", "0.0.0.0", "--allow-host", "tbhook.example.com",
                       env={"TBHOOK_UI_TOKEN": TOKEN})  # fmt: skip
    client = Browser(console.port)
    status, _, page = client.get("/events/1", {**bearer(TOKEN), "Host": "evil.example"})
    assert status == 200  # every address: any name is served (the token guards it)
    line = curl_line(page)
    assert f"http://127.0.0.1:{console.port}/events/1/raw" in line and "evil" not in line
    page = client.get("/events/1", {**bearer(TOKEN), "Host": "tbhook.example.com",
                                     "X-Forwarded-Proto": "https"})[2]  # fmt: skip
    assert "https://tbhook.example.com/events/1/raw" in curl_line(page)

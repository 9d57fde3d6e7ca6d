"""The same connection limits on h11, the protocol of the single-file build (no httptools)."""

import asyncio
import threading

import pytest
import uvicorn
from conftest import event_body, request
from test_connections import HEAD, exchange

from tbhook.receiver import protocol
from tbhook.receiver.app import Receiver
from tbhook.receiver.server import bind
from tbhook.receiver.writer import BatchWriter
from tbhook.store.sqlite import SQLiteStore


@pytest.fixture
def h11_server(db_path, monkeypatch):
    monkeypatch.setattr(protocol, "REQUEST_DEADLINE_SECONDS", 1.0)
    store = SQLiteStore.open(db_path)
    writer = BatchWriter.for_target(str(db_path))
    writer.start()
    config = uvicorn.Config(
        Receiver(writer),
        http=protocol.GuardedH11Protocol,
        lifespan="off",
        log_level="warning",
        timeout_keep_alive=1,
    )
    server = uvicorn.Server(config)
    sock = bind("127.0.0.1", 0)
    thread = threading.Thread(target=lambda: asyncio.run(server.serve(sockets=[sock])), daemon=True)
    thread.start()
    while not server.started:
        threading.Event().wait(0.01)
    yield sock.getsockname()[1]
    server.should_exit = True
    thread.join(10)
    writer.close()
    store.close()


def test_h11_serves_normally(h11_server):
    response = request(h11_server, "POST", "/", event_body())
    assert response.status == 200 and response.json["id"] == 1


@pytest.mark.parametrize(
    "raw, expected",
    [
        (
            HEAD + b"".join(b"X-%d: v\r\n" % i for i in range(protocol.MAX_HEADERS + 1)) + b"\r\n",
            b"HTTP/1.1 431 Request Header Fields Too Large",
        ),
        (
            HEAD + b"X-Big: " + b"a" * 70_000 + b"\r\n\r\n",
            b"HTTP/1.1 431 Request Header Fields Too Large",
        ),
        (HEAD + b"Content-Length: 100\r\n\r\n{}", b"HTTP/1.1 408 Request Timeout"),
        (HEAD + b"Content-Length: -5\r\n\r\n{}", b"HTTP/1.1 400 Bad Request"),
    ],
    ids=[
        "101 headers",
        "70 kB header in one read",
        "body shorter than Content-Length",
        "negative CL",
    ],
)
def test_h11_limits(h11_server, raw, expected):
    status, _ = exchange(h11_server, raw, timeout=5)  # an answer; a hang raises a timeout
    assert status == expected


def test_h11_trickled_header_hits_the_deadline(h11_server):
    status, took = exchange(h11_server, b"POST / HTTP/1.1\r\nHost: x\r\nX-A: b\r\n", trickle=0.05)
    assert status == b"HTTP/1.1 408 Request Timeout"  # the 1 s deadline, though bytes came
    assert took >= protocol.REQUEST_DEADLINE_SECONDS


def test_h11_idle_connection_is_closed(h11_server):
    status, _ = exchange(h11_server, b"", timeout=5)  # closed; a connection left open raises
    assert status == b""

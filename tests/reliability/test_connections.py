"""4, 5, 6: bursts, idle and slow clients, and protocol abuse, over real sockets."""

import socket
import statistics
import threading
import time

import pytest
from conftest import Worker, event_body, request, run_all

from tbhook.receiver.protocol import MAX_HEADER_BYTES, MAX_HEADERS, REQUEST_DEADLINE_SECONDS
from tbhook.receiver.server import KEEP_ALIVE_SECONDS

SECRET = "k3y"


def exchange(
    port: int, data: bytes, timeout: float = 20.0, trickle: float = 0
) -> tuple[bytes, float]:
    """Send raw bytes (one piece at a time when trickling); return the status line and when
    the server closed the connection."""
    started = time.monotonic()
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        pieces = [data[i : i + 1] for i in range(len(data))] if trickle else [data]
        try:
            for piece in pieces:
                sock.sendall(piece)
                if trickle:
                    time.sleep(trickle)
        except (BrokenPipeError, ConnectionResetError):
            pass
        reply = b""
        while chunk := sock.recv(65536):
            reply += chunk
    return reply.split(b"\r\n", 1)[0], time.monotonic() - started


def test_burst_of_64_connections_at_once(server):
    barrier = threading.Barrier(64)

    def client(i):
        barrier.wait(30)
        return server.post(event_body(caseId=i)).status  # a reset raises, failing the test

    assert run_all([Worker(client, i) for i in range(64)]) == [200] * 64


@pytest.mark.parametrize("count", [pytest.param(200, id="fast")])
def test_idle_connections_are_closed_within_the_keep_alive_timeout(server, count):
    sockets = [socket.create_connection(("127.0.0.1", server.port)) for _ in range(count)]
    try:
        for sock in sockets:
            sock.settimeout(KEEP_ALIVE_SECONDS + 5)  # longer, and recv raises
            assert sock.recv(1) == b""  # closed by the server, nothing sent
    finally:
        for sock in sockets:
            sock.close()
    assert server.post(event_body()).status == 200


def test_header_trickled_every_few_seconds_hits_the_deadline(server):
    head = b"POST / HTTP/1.1\r\nHost: x\r\n" + b"".join(b"X-%d: v\r\n" % i for i in range(20))
    status, took = exchange(server.port, head, trickle=2.0 / len(head) * 8)
    assert status == b"HTTP/1.1 408 Request Timeout"
    assert REQUEST_DEADLINE_SECONDS - 1 <= took <= 15


def test_body_shorter_than_content_length_hits_the_deadline(server):
    status, took = exchange(
        server.port, b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n{}"
    )
    assert status == b"HTTP/1.1 408 Request Timeout"
    assert REQUEST_DEADLINE_SECONDS - 1 <= took <= 15


@pytest.mark.parametrize(
    "hold", [pytest.param(12, id="fast"), pytest.param(60, id="long", marks=pytest.mark.slow)]
)
def test_slow_clients_do_not_slow_other_deliveries(server, hold, timing):
    def latencies(n):
        out = []
        for i in range(n):
            started = time.monotonic()
            assert server.post(event_body(caseId=i, uniqueId=hold * 1000 + len(out))).status == 200
            out.append(time.monotonic() - started)
        return out

    baseline = latencies(200)

    def slow_client() -> socket.socket:
        sock = socket.create_connection(("127.0.0.1", server.port))
        sock.sendall(b"POST / HTTP/1.1\r\n")
        return sock

    # Eight slow clients hold sockets for the whole time, feeding a header byte now and
    # then; when the request deadline closes one, it comes straight back.
    slow = [slow_client() for _ in range(8)]
    deadline = time.monotonic() + hold
    during = []
    reconnects = 0
    while time.monotonic() < deadline:
        for i, sock in enumerate(slow):
            try:
                sock.sendall(b"X")
            except OSError:
                sock.close()
                slow[i] = slow_client()
                reconnects += 1
        during += latencies(20)
    for sock in slow:
        sock.close()
    p99 = lambda xs: statistics.quantiles(xs, n=100)[98]  # noqa: E731
    if timing:
        assert p99(during) - p99(baseline) < 0.1, (p99(baseline), p99(during))
    print(
        f"\n8 slow clients for {hold} s: p99 {p99(baseline) * 1000:.1f} ms before, "
        f"{p99(during) * 1000:.1f} ms during ({len(during)} deliveries, {reconnects} reconnects)"
    )


HEAD = b"POST / HTTP/1.1\r\nHost: x\r\nX-Key: k3y\r\n"


@pytest.mark.parametrize(
    "raw, expected",
    [
        (HEAD + b"Content-Length: -5\r\n\r\n{}", b"HTTP/1.1 400 Bad Request"),
        (HEAD + b"Content-Length: twelve\r\n\r\n{}", b"HTTP/1.1 400 Bad Request"),
        (HEAD + b"Content-Length: 2\r\nContent-Length: 2\r\n\r\n{}", b"HTTP/1.1 400 Bad Request"),
        (HEAD + b"Content-Length: 2\r\nContent-Length: 3\r\n\r\n{}", b"HTTP/1.1 400 Bad Request"),
        (
            HEAD + b"".join(b"X-%d: v\r\n" % i for i in range(MAX_HEADERS + 1)) + b"\r\n",
            b"HTTP/1.1 431 Request Header Fields Too Large",
        ),
        (
            HEAD + b"X-Big: " + b"a" * 70_000 + b"\r\n\r\n",
            b"HTTP/1.1 431 Request Header Fields Too Large",
        ),
        (
            HEAD + b"Content-Length: 10485760\r\n\r\n" + b"a" * 65536,
            b"HTTP/1.1 413 Request Entity Too Large",
        ),
        (
            b"POST / HTTP/1.1\r\nHost: x\r\nX-Key: \xc3\xa9\xff\r\nContent-Length: 2\r\n\r\n{}",
            b"HTTP/1.1 401 Unauthorized",
        ),
        (b"GARBAGE\r\n\r\n", b"HTTP/1.1 400 Bad Request"),
    ],
    ids=[
        "negative CL",
        "non-numeric CL",
        "duplicate CL",
        "conflicting CL",
        "101 headers",
        "70 kB header",
        "10 MB body",
        "non-ASCII auth",
        "not HTTP",
    ],
)
def test_protocol_abuse_gets_a_4xx_and_no_hang(serve, raw, expected):
    server = serve("--header-name", "X-Key", "--header-value", SECRET, "--quiet")
    status, _ = exchange(server.port, raw, timeout=5)  # an answer, not the 10 s deadline
    assert status == expected
    assert request(server.port, "GET").status == 200  # still serving


def test_a_header_that_never_ends_is_cut_off_at_the_limit(server):
    status, _ = exchange(
        server.port, b"POST / HTTP/1.1\r\nX-Big: " + b"a" * (MAX_HEADER_BYTES * 2), timeout=5
    )
    assert status == b"HTTP/1.1 431 Request Header Fields Too Large"

"""The receiver over a real socket, against a real SQLite file, in a real `tbhook serve`."""

import json
import socket
import sqlite3
import subprocess
import sys
import threading
from concurrent.futures import ThreadPoolExecutor

import pytest
from conftest import (
    SAMPLE_NAMES,
    WRITER,
    answered,
    child_process,
    event_body,
    post_raw,
    read_by_server,
    reply,
    request,
    sample_bytes,
    wait_for,
)

from tbhook.receiver.server import GRACEFUL_SHUTDOWN_SECONDS

SECRET = "s3cr3t-token-value-0123456789"


def rows(db, table="events"):
    conn = sqlite3.connect(db)
    conn.row_factory = sqlite3.Row
    try:
        return [dict(r) for r in conn.execute(f"SELECT * FROM {table} ORDER BY id")]
    finally:
        conn.close()


@pytest.mark.parametrize("name", SAMPLE_NAMES)
def test_each_sample_is_acknowledged_after_it_is_stored(server, name):
    response = server.post(sample_bytes(name))
    assert response.status == 200
    assert response.headers["content-type"] == "application/json"
    assert response.json == {"ok": True, "id": 1, "duplicate": False}
    [row] = rows(server.db)
    assert row["body"] == sample_bytes(name)
    assert row["event"] == json.loads(sample_bytes(name))["event"]


def test_retry_is_acknowledged_as_duplicate_and_counted(server):
    body = sample_bytes("case-closed")
    assert server.post(body).json == {"ok": True, "id": 1, "duplicate": False}
    assert server.post(body).json == {"ok": True, "id": 1, "duplicate": True}
    [row] = rows(server.db)
    assert row["deliveries"] == 2
    assert row["lastReceivedAt"] >= row["receivedAt"]
    assert row["externalPersonId"] is None


def test_path_is_recorded_so_webhooks_can_share_a_receiver(server):
    server.post(sample_bytes("case-closed"), path="/profile-a")
    server.post(sample_bytes("profile-merged"), path="/profile-b/hook?token=x")
    assert [r["path"] for r in rows(server.db)] == ["/profile-a", "/profile-b/hook"]


def test_unknown_event_is_stored_as_that_event(server):
    body = json.dumps(
        {"event": "caseAssigned", "caseId": 9, "personId": "p", "timestamp": 5}
    ).encode()
    assert server.post(body).json == {"ok": True, "id": 1, "duplicate": False}
    [row] = rows(server.db)
    assert (row["event"], row["caseId"], row["personId"], row["timestamp"]) == (
        "caseAssigned",
        9,
        None,
        5,
    )
    assert row["body"] == body


@pytest.mark.parametrize(
    "body, reason",
    [
        (b"", "empty body: the test Tracebuzz sends when a webhook is saved"),
        (
            b"{this is not json",
            "not valid JSON: Expecting property name enclosed in double quotes: line 1 column 2 (char 1)",
        ),
        (b"[1]", "JSON value is an array, not an object"),
        (b'{"caseId": 1}', 'object has no "event" key'),
        (event_body(own=True), 'newResult: "own" must be an integer, got true'),
        (event_body(caseId=10**30), 'newResult: "caseId" is too large for a 64-bit integer'),
        (b'{"event": "newResult", "caseId": NaN}', "NaN is not a JSON number"),
        (b"[" * 5000, "JSON nested too deeply"),
    ],
)
def test_authenticated_unreadable_body_is_kept_in_quarantine_with_200(server, body, reason):
    response = server.post(body, path="/q")
    assert response.status == 200
    assert response.json == {
        "ok": True,
        "quarantineId": 1,
        "duplicate": False,
        "quarantined": True,
        "reason": reason,
    }
    [row] = rows(server.db, "quarantine")
    assert (row["body"], row["reason"], row["path"]) == (body, reason, "/q")
    assert rows(server.db) == []


def test_wrong_or_missing_header_gets_401_and_stores_nothing(serve):
    server = serve("--header-name", "X-Tracebuzz-Token", "--header-value", SECRET)
    body = sample_bytes("case-closed")
    for headers in (
        {},
        {"X-Tracebuzz-Token": "wrong"},
        {"X-Tracebuzz-Token": SECRET + "x"},
        {"X-Other": SECRET},
    ):
        response = server.post(body, headers=headers)
        assert response.status == 401
        assert response.json == {"ok": False, "error": "missing or wrong X-Tracebuzz-Token header"}
    assert rows(server.db) == [] and rows(server.db, "quarantine") == []
    # The header name matches in any case.
    assert server.post(body, headers={"x-tracebuzz-token": SECRET}).status == 200
    assert server.post(b"", headers={"X-TRACEBUZZ-TOKEN": SECRET}).json["quarantined"] is True
    assert len(rows(server.db)) == 1
    server.stop()
    assert SECRET not in server.stderr()
    assert "rejected (401): missing or wrong X-Tracebuzz-Token header from 127.0.0.1" in (
        server.stderr()
    )


def test_header_settings_come_from_the_environment(db_path, monkeypatch):
    import os

    from conftest import start_serve

    env = dict(os.environ, TBHOOK_HEADER_NAME="X-Key", TBHOOK_HEADER_VALUE=SECRET)
    server = start_serve(db_path, env=env)
    try:
        assert server.post(sample_bytes("case-closed")).status == 401
        assert server.post(sample_bytes("case-closed"), headers={"X-Key": SECRET}).status == 200
    finally:
        assert server.stop() == 0
    assert SECRET not in server.stderr()


def test_body_over_max_body_gets_413_and_stores_nothing(serve):
    server = serve("--max-body", "100")
    response = server.post(b'{"event": "x", "pad": "' + b"a" * 200 + b'"}')
    assert response.status == 413
    assert response.json == {"ok": False, "error": "body larger than 100 bytes"}
    assert server.post(b"{}").status == 200  # at the limit or under is fine
    assert rows(server.db) == [] and len(rows(server.db, "quarantine")) == 1


def test_chunked_body_over_max_body_gets_413(serve):
    server = serve("--max-body", "100")
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
        chunk = b"a" * 80
        sock.sendall(
            b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
            + (b"50\r\n" + chunk + b"\r\n") * 3
            + b"0\r\n\r\n"
        )
        assert sock.recv(1024).startswith(b"HTTP/1.1 413 ")
    assert rows(server.db, "quarantine") == []


@pytest.mark.parametrize("method", ["GET", "HEAD"])
def test_get_and_head_answer_ok_on_any_path_and_store_nothing(server, method):
    response = request(server.port, method, "/any/path")
    assert response.status == 200
    assert response.body == (b'{"status": "ok"}' if method == "GET" else b"")
    assert rows(server.db) == [] and rows(server.db, "quarantine") == []


@pytest.mark.parametrize("method", ["PUT", "DELETE", "PATCH", "OPTIONS"])
def test_other_methods_get_405(server, method):
    response = request(server.port, method, "/", body=sample_bytes("case-closed"))
    assert response.status == 405
    assert response.headers["allow"] == "GET, HEAD, POST"
    assert response.json == {"ok": False, "error": f"method {method} not allowed"}
    assert rows(server.db) == []


def test_locked_database_gets_503_with_retry_after_then_recovers(server):
    body = sample_bytes("case-closed")
    holder = sqlite3.connect(server.db, isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")  # another writer holds the lock past the busy timeout
    try:
        waiting = post_raw(server.port, body)
        assert request(server.port, "GET").status == 200  # the receiver is not frozen
        assert not answered(waiting)  # ... while the delivery waits for the lock
        status, answer = reply(waiting)
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    assert status == 503
    assert answer["ok"] is False and "locked" in answer["error"]
    assert rows(server.db) == []
    response = server.post(body)
    assert response.json == {"ok": True, "id": 1, "duplicate": False}


def test_dedupe_race_32_identical_bodies_at_once(server):
    body = event_body(caseId=424242)
    barrier = threading.Barrier(32)

    def post(_):
        barrier.wait()
        return server.post(body)

    with ThreadPoolExecutor(32) as pool:
        responses = list(pool.map(post, range(32)))
    assert [r.status for r in responses] == [200] * 32
    assert sum(not r.json["duplicate"] for r in responses) == 1
    assert {r.json["id"] for r in responses} == {1}
    [row] = rows(server.db)
    assert row["deliveries"] == 32


def test_same_second_events_are_separate_rows(server):
    for case_id in (1, 2, 3):
        assert server.post(event_body(caseId=case_id, timestamp=1700000000)).status == 200
    assert [r["caseId"] for r in rows(server.db)] == [1, 2, 3]


def test_each_delivery_prints_one_readable_line(server):
    server.post(sample_bytes("new-incoming-message"))
    server.post(sample_bytes("include-own-message"), path="/b")
    server.post(sample_bytes("case-closed"))
    server.post(sample_bytes("case-closed"))
    server.post(b'{"event": "evil\\r\\nInjected: yes"}')
    server.post(b"nope")
    assert server.stop() == 0
    out = server.stderr()
    assert (
        "newResult     case 11111 person 11111 customer private message (result 11111, source 14)\n"
        in out
    )
    assert (
        "newResult     case 11111 person 11111 agent private message (result 11111, source 14) on /b\n"
        in out
    )
    assert "caseClosed    case 11111111 person 11111111 closed by agent 1 (reason 111111)\n" in out
    assert "(reason 111111) [retry: delivery 2 of #3]\n" in out
    assert "evil\\r\\nInjected: yes (undocumented event, kept)" in out
    assert "\nInjected" not in out
    assert "quarantined #1, unreadable: not valid JSON" in out


def test_quiet_prints_no_delivery_lines(serve):
    server = serve("--quiet")
    server.post(sample_bytes("case-closed"))
    assert server.stop() == 0
    assert "caseClosed" not in server.stderr()


def test_sigterm_answers_a_request_still_arriving_503_and_exits_at_once(server):
    """A sender still trickling its body is told to come back (503, Retry-After) instead of
    holding the shutdown for the graceful timeout, then being cut off with a 500."""
    assert server.post(sample_bytes("profile-merged")).status == 200
    body = sample_bytes("case-closed")
    with socket.create_connection(("127.0.0.1", server.port), timeout=15) as sock:
        sock.sendall(
            b"POST /slow HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n" % len(body) + body[:10]
        )
        read_by_server(sock)  # the server is reading this request's body
        server.proc.terminate()
        reply = b""
        while chunk := sock.recv(4096):
            reply += chunk
    assert reply.startswith(b"HTTP/1.1 503 Service Unavailable\r\n")
    assert b"retry-after: 5\r\n" in reply.lower()
    # At once: not held until the graceful timeout, whose end would cancel it with a 500.
    assert server.proc.wait(GRACEFUL_SHUTDOWN_SECONDS - 2) == 0
    assert "Traceback" not in server.stderr() and "CancelledError" not in server.stderr()
    assert "answered 503 (Retry-After 5 s) to a request still arriving at shutdown" in (
        server.stderr()
    )
    assert [r["event"] for r in rows(server.db)] == ["profileMerged"]  # the 200 is kept


def test_sigint_exits_0(server):
    import signal

    assert server.stop(signal.SIGINT) == 0
    assert "every acknowledged event is stored" in server.stderr()


def run_cli(*args, timeout=20):
    return subprocess.run(
        [sys.executable, "-m", "tbhook", *args], capture_output=True, text=True, timeout=timeout
    )


def test_start_up_fails_fast_when_the_database_cannot_be_written(tmp_path):
    result = run_cli("serve", "--db", str(tmp_path / "no" / "such" / "dir.db"), "--port", "0")
    assert result.returncode == 1
    assert result.stderr.startswith("Error: cannot open ")
    assert "dir.db for writing: No such file or directory\n" in result.stderr
    assert "Traceback" not in result.stderr


def test_start_up_fails_when_the_port_is_taken_and_creates_no_database(tmp_path):
    busy = socket.socket()
    busy.bind(("127.0.0.1", 0))
    busy.listen()
    port = busy.getsockname()[1]
    try:
        result = run_cli("serve", "--db", str(tmp_path / "x.db"), "--port", str(port))
    finally:
        busy.close()
    assert result.returncode == 1
    assert result.stderr == f"Error: cannot listen on 127.0.0.1:{port}: Address already in use\n"
    assert list(tmp_path.iterdir()) == []  # no tbhook.db left behind by a failed start


def test_serve_refuses_a_database_that_is_not_tbhooks(tmp_path):
    other = tmp_path / "other.db"
    conn = sqlite3.connect(other)
    conn.execute("CREATE TABLE invoices (id INTEGER PRIMARY KEY, total REAL)")
    conn.commit()
    conn.close()
    result = run_cli("serve", "--db", str(other), "--port", "0")
    assert result.returncode == 1
    assert result.stderr == (
        f"Error: {other} is not a tbhook database (it holds invoices); give --db a new file "
        "or an existing tbhook database\n"
    )
    tables = {r[0] for r in sqlite3.connect(other).execute("SELECT name FROM sqlite_master")}
    assert tables == {"invoices"}  # nothing of tbhook's added beside them


def scribble_over_the_index_counts_use(db) -> None:
    """Garbage over the root page of the index that `count(*)` reads, the header intact."""
    conn = sqlite3.connect(db)
    plan = " ".join(r[-1] for r in conn.execute("EXPLAIN QUERY PLAN SELECT count(*) FROM events"))
    index = plan.split("COVERING INDEX ")[1].split()[0]
    page = conn.execute("SELECT rootpage FROM sqlite_master WHERE name = ?", [index]).fetchone()[0]
    page_size = conn.execute("PRAGMA page_size").fetchone()[0]
    conn.close()
    with open(db, "r+b") as f:
        f.seek((page - 1) * page_size)
        f.write(b"\xff" * page_size)


def test_serve_on_a_damaged_database_says_so_plainly(tmp_path):
    from tbhook.model.events import parse
    from tbhook.store import Delivery
    from tbhook.store.sqlite import SQLiteStore

    db = tmp_path / "damaged.db"
    store = SQLiteStore.open(db)
    store.append([Delivery(event_body(caseId=i), parse(event_body(caseId=i))) for i in range(500)])
    store.close()
    scribble_over_the_index_counts_use(db)
    result = run_cli("serve", "--db", str(db), "--port", "0")
    assert result.returncode == 1
    assert result.stderr.startswith(f"Error: {db} is damaged (")
    assert "tbhook doctor" in result.stderr and "Traceback" not in result.stderr


@pytest.mark.parametrize(
    "args, message",
    [
        (["--header-name", "X-Key"], "give both --header-name and --header-value, or neither"),
        (
            ["--header-name", "X Key", "--header-value", "v"],
            "'X Key' is not a valid HTTP header name",
        ),
        (
            ["--port", "70000"],
            "Invalid value for '--port': 70000 is not a number from 0 to 65535",
        ),
    ],
)
def test_bad_serve_options_are_usage_errors(tmp_path, args, message):
    result = run_cli("serve", "--db", str(tmp_path / "x.db"), *args)
    assert result.returncode == 2
    assert message in result.stderr
    assert not (tmp_path / "x.db").exists()


def test_non_loopback_without_header_warns(serve):
    server = serve("--host", "0.0.0.0")
    wait_for(lambda: "Press Ctrl+C" in server.stderr())
    assert "Warning: listening on 0.0.0.0 with no --header-name/--header-value" in server.stderr()
    assert server.stop() == 0


def test_loopback_without_header_does_not_warn(server):
    wait_for(lambda: "Press Ctrl+C" in server.stderr())
    assert "Warning" not in server.stderr()


def test_a_short_lock_is_waited_out_and_later_deliveries_queue_behind_it(server):
    holder = sqlite3.connect(server.db, isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")  # e.g. a `tbhook import` batch or a sqlite3 shell
    waiting = [post_raw(server.port, event_body(caseId=i)) for i in range(4)]
    assert not any(answered(sock) for sock in waiting)  # no 200 before the commit
    holder.execute("ROLLBACK")
    holder.close()
    assert [reply(sock)[0] for sock in waiting] == [200] * 4
    assert sorted(r["caseId"] for r in rows(server.db)) == [0, 1, 2, 3]


def test_a_writer_process_that_dies_is_replaced_and_nothing_acknowledged_is_lost(server):
    import os
    import signal

    assert server.post(event_body(caseId=1)).status == 200
    first = child_process(server.proc.pid, WRITER)
    os.kill(first, signal.SIGKILL)
    statuses: dict[int, int] = {}

    def deliver(case: int) -> int:
        statuses[case] = server.post(event_body(caseId=case)).status
        return statuses[case]

    case = iter(range(2, 10_000))
    wait_for(lambda: deliver(next(case)) == 200)  # 503 until the new writer has the store
    assert [deliver(next(case)) for _ in range(10)] == [200] * 10
    assert set(statuses.values()) <= {200, 503}
    assert child_process(server.proc.pid, WRITER) != first  # a new one took over
    stored = {r["caseId"] for r in rows(server.db)}
    acknowledged = {case for case, status in statuses.items() if status == 200}
    assert acknowledged | {1} <= stored
    assert server.stop() == 0


def test_a_writer_killed_under_concurrent_clients_answers_every_request(server):
    """The batch in flight when the writer process dies is answered 503, never left waiting
    (once, the next batch was sent down the dead connection and forgotten: its clients waited
    forever, and SIGTERM then had to cancel them)."""
    import os
    import signal
    import threading

    from conftest import Worker, wait_for

    stop = threading.Event()
    answered: list[tuple[int, int]] = []  # (caseId, status)

    def client(n: int) -> None:
        case = n * 100_000
        while not stop.is_set():
            case += 1
            answered.append((case, server.post(event_body(caseId=case)).status))

    workers = [Worker(client, n) for n in range(8)]
    for worker in workers:
        worker.start()
    try:
        for _ in range(3):
            before = len(answered)
            wait_for(lambda before=before: len(answered) > before + 50, timeout=30)
            os.kill(child_process(server.proc.pid, WRITER), signal.SIGKILL)
        before = len(answered)
        wait_for(lambda: len(answered) > before + 50, timeout=30)  # a new writer stores again
    finally:
        stop.set()
    for worker in workers:
        worker.finish(60)  # every request answered: a lost one would time out here
    statuses = {status for _, status in answered}
    assert statuses <= {200, 503} and 503 in statuses
    stored = {r["caseId"] for r in rows(server.db)}
    assert {case for case, status in answered if status == 200} <= stored
    assert server.stop() == 0
    assert "Cancel" not in server.stderr()


@pytest.mark.parametrize("log_format", ["human", "json"])
def test_a_413_is_logged_even_quietly(serve, log_format):
    """A too-large Tracebuzz delivery is retried 10 times and then disables the webhook: the
    log must say so, in either format, even with --quiet."""
    server = serve("--max-body", "100", "--quiet", "--log-format", log_format)
    assert server.post(b"x" * 300, path="/hooks/a").status == 413
    line = wait_for(lambda: next((x for x in server.lines if "answered 413" in x), None))
    if log_format == "json":
        record = json.loads(line)
        assert (record["level"], record["kind"], record["status"]) == ("warning", "413", 413)
        assert record["client"] == "127.0.0.1"
        message = record["message"]
    else:
        message = line
    assert "answered 413: 300 bytes on /hooks/a from 127.0.0.1 is over --max-body (100 bytes)" in (
        message
    )
    assert "disables the webhook" in message

"""The one feed every follower shares (tbhook.feed): one read per interval and set of
filters whatever the number of subscribers, each event once to each, a subscriber too far
behind let go; and a console whose open /stream pages all read through one connection."""

from __future__ import annotations

import os
import socket

import psycopg
import pytest
from conftest import event_body, wait_for
from test_console import a_log, start_console
from test_timelines import stored

from tbhook.feed import Events, Feed
from tbhook.model.filters import Filters
from tbhook.store import open_reader


@pytest.fixture(params=["sqlite", "postgresql"])
def target(request, tmp_path):
    if request.param == "sqlite":
        return str(tmp_path / "feed.db")
    return request.getfixturevalue("pg_url")


def cases(records: list[dict]) -> list[int]:
    return [record["caseId"] for record in records]


def test_subscribers_with_the_same_filters_share_one_read_per_interval(tmp_path):
    db = str(tmp_path / "feed.db")
    stored(db, [event_body(caseId=1, uniqueId=1)])
    reader = open_reader(db)
    statements: list[str] = []
    reader.conn.set_trace_callback(statements.append)  # every statement the feed runs
    feed = Feed(reader)
    same = [feed.subscribe(Events(Filters(case=1)), bound=None) for _ in range(50)]
    other = feed.subscribe(Events(Filters(case=2)), bound=None)
    everything = feed.subscribe(Events(), bound=None)
    feed.step()  # they join; nothing after the cursor yet
    stored(db, [event_body(caseId=case, uniqueId=10 + n) for n, case in enumerate((1, 2, 3, 1))])
    statements.clear()
    feed.step()

    reads = [s for s in statements if s.startswith('SELECT e."id"')]
    assert len(reads) == 3  # one per set of filters, not one per subscriber
    assert all(cases(s.take()) == [1, 1] for s in same)
    assert cases(other.take()) == [2] and cases(everything.take()) == [1, 2, 3, 1]
    statements.clear()
    feed.step()  # nothing new: the cursor alone is asked, and nobody is given anything
    assert not [s for s in statements if s.startswith('SELECT e."id"')]
    assert all(s.take() == [] for s in [*same, other, everything])
    reader.close()


def test_each_event_reaches_each_subscriber_once_and_a_joiner_gets_what_it_missed(target):
    stored(target, [event_body(caseId=7, uniqueId=n) for n in range(1, 4)])  # ids 1-3
    reader = open_reader(target)
    feed = Feed(reader)
    early = feed.subscribe(Events(Filters(case=7)), bound=None)
    feed.step()
    stored(target, [event_body(caseId=7, uniqueId=4)])  # id 4
    late = feed.subscribe(Events(Filters(case=7)), after=2, bound=None)  # saw up to id 2
    for _ in range(3):
        feed.step()
    assert [r["id"] for r in early.take()] == [4]
    assert sorted(r["id"] for r in late.take()) == [3, 4]  # what it missed, then what came
    stored(target, [event_body(caseId=7, uniqueId=5)])
    feed.step()
    assert [r["id"] for r in early.take()] == [5] == [r["id"] for r in late.take()]
    reader.close()


def test_a_subscriber_too_far_behind_is_let_go_and_the_others_go_on(tmp_path):
    db = str(tmp_path / "feed.db")
    stored(db, [event_body(caseId=1, uniqueId=1)])
    reader = open_reader(db)
    feed = Feed(reader)
    slow = feed.subscribe(Events(), bound=3)
    quick = feed.subscribe(Events(), bound=3)
    feed.step()
    stored(db, [event_body(caseId=2, uniqueId=n) for n in range(2, 4)])
    feed.step()
    assert len(quick.take()) == 2  # quick reads; slow does not
    stored(db, [event_body(caseId=3, uniqueId=n) for n in range(4, 6)])
    feed.step()
    assert slow.dropped == "more than 3 events behind" and slow.take() == []
    assert quick.dropped is None and cases(quick.take()) == [3, 3]
    assert feed.subscribers == 2  # let go, not gone: the stream ends it (and the browser resumes)
    slow.close()
    assert feed.subscribers == 1
    reader.close()


def _connections(pid: int, target: str) -> int:
    """The console's open connections to the database: its file, on SQLite; its reader
    sessions, on PostgreSQL."""
    if target.startswith("postgresql://"):
        with psycopg.connect(target) as conn:
            return conn.execute(
                "SELECT count(*) FROM pg_stat_activity WHERE application_name = 'tbhook reader' "
                "AND datname = current_database()"
            ).fetchone()[0]
    found = 0
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            found += os.readlink(f"/proc/{pid}/fd/{fd}") == os.path.realpath(target)
        except OSError:  # closed meanwhile
            continue
    return found


def test_every_open_stream_reads_through_the_console_s_one_connection(target, serve):
    a_log(target)
    console = start_console(target)
    receiver = serve(db=target)
    try:
        opened = []
        for n in range(30):
            sock = socket.create_connection(("127.0.0.1", console.port), timeout=30)
            query = "" if n % 2 else "?case=4242"
            sock.sendall(f"GET /stream{query} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n".encode())
            opened.append(sock)
        for sock in opened:  # every stream has begun
            seen = b""
            while b"retry: 1000" not in seen:
                seen += sock.recv(4096)
        assert receiver.post(event_body(caseId=4242, uniqueId=4242)).status == 200
        for sock in opened:  # and each gets the new event, once
            seen = b""
            while b"event: delivery" not in seen:
                seen += sock.recv(65536)
            assert seen.count(b"event: delivery") == 1
        assert _connections(console.proc.pid, target) == 1  # 30 pages, one reader
        for sock in opened:
            sock.close()
        # The last page gone, the feed stops and lets go of the database.
        wait_for(lambda: _connections(console.proc.pid, target) == 0, timeout=20)
    finally:
        console.proc.terminate()
        console.proc.wait(10)


def test_a_subscriber_that_leaves_before_the_next_interval_is_never_followed(tmp_path):
    db = str(tmp_path / "feed.db")
    stored(db, [event_body(caseId=1, uniqueId=1)])
    reader = open_reader(db)
    feed = Feed(reader)
    staying = feed.subscribe(Events(), bound=None)
    leaving = feed.subscribe(Events(Filters(case=1)), after=0, bound=None)
    leaving.close()
    feed.step()
    assert feed.subscribers == 1 and leaving.take() == [] and staying.take() == []
    reader.close()


def test_a_window_is_read_by_id_whatever_the_filter(tmp_path):
    """SQLite took the event-name index for a window with an event filter, reading every
    such event in the log for the few ids the window holds (1 s at 10M events)."""
    import sqlite3

    from test_report import customer, store_log

    from tbhook.model.filters import Filters
    from tbhook.store import open_reader

    db = str(tmp_path / "plan.db")
    store_log(db, [customer(case, 1_700_000_000 + case) for case in range(1, 51)])
    store = open_reader(db)
    said: list[str] = []
    store.conn.set_trace_callback(said.append)
    found = store.tail.window(Filters(events=("newResult", "caseClosed")), 40, 45)
    store.close()
    assert [row["caseId"] for row in found] == [41, 42, 43, 44, 45]
    (sql,) = [line for line in said if "FROM events e" in line]
    plan = sqlite3.connect(db).execute("EXPLAIN QUERY PLAN " + sql).fetchall()
    assert "USING INTEGER PRIMARY KEY" in plan[0][3], plan

"""Reliability on PostgreSQL: kill -9 of one of two receivers under load, PostgreSQL restarting
under load, and tail while two receivers commit out of order. Every acknowledged event is
stored exactly once; tbhook recovers by itself when the server comes back."""

import json
import subprocess
import sys
import threading
import time

import psycopg
import pytest
from conftest import (
    WRITER,
    Worker,
    child_process,
    event_body,
    start_pg_cluster,
    start_serve,
    wait_for,
)
from test_crash import Client, bodies


def stored_bodies(url) -> list[bytes]:
    with psycopg.connect(url) as conn:
        return [bytes(row[0]) for row in conn.execute("SELECT body FROM events")]


@pytest.mark.parametrize(
    "kills, clients, events",
    [
        pytest.param(3, 32, 3000, id="fast"),
        pytest.param(20, 32, 30000, id="long", marks=pytest.mark.slow),
    ],
)
def test_kill_9_of_one_of_two_receivers_loses_nothing(pg_url, kills, clients, events):
    work = bodies(events, seed=40 + kills)
    steady, victim = start_serve(pg_url, "--quiet"), start_serve(pg_url, "--quiet")
    acked: set[bytes] = set()
    lock = threading.Lock()
    ports = [steady.port, victim.port]
    threads = [Client(ports[i % 2], work[i::clients], acked, lock) for i in range(clients)]
    for thread in threads:
        thread.start()
    try:
        for kill in range(kills):
            seen = len(acked)
            wait_for(lambda seen=seen: len(acked) >= seen + 100, timeout=60)  # under load
            with lock:
                before = set(acked)
            victim.proc.kill()  # SIGKILL: no drain
            victim.proc.wait(10)
            missing = before - set(stored_bodies(pg_url))
            assert not missing, f"{len(missing)} acknowledged events lost after kill {kill + 1}"
            victim = start_serve(pg_url, "--quiet", "--port", str(ports[1]))
        for thread in threads:
            thread.join(180)
            assert not thread.is_alive()
    finally:
        victim.stop()
        steady.stop()
    stored = stored_bodies(pg_url)
    assert len(acked) == len(work) and set(stored) >= acked  # 0 lost
    assert len(stored) == len(set(stored)) == len(set(work))  # each exactly once
    print(
        f"\n{kills} kills of one of two receivers: {len(acked)} acked, {len(stored)} rows, 0 lost"
    )


@pytest.fixture
def own_cluster():
    """A server of this test's own: it is stopped and started under load."""
    cluster = start_pg_cluster()
    yield cluster
    cluster.close()


# Twice in about 30 runs of the whole suite it went wrong: a client did not finish within
# 120 s, and the pytest worker grew to 24 GB. One cause: the server ended the writer's session
# in the middle of a pipelined batch, psycopg left it "in pipeline mode" without marking it
# broken, and the writer kept it: every batch after was a 503, and libpq logged each refusal
# (millions of lines, all kept by the test's reader of the receiver's stderr). The writer now
# opens a new session (test_postgres_sessions.py), and a test keeps at most MAX_LINES lines.
def test_postgresql_restarting_under_load_gets_503s_and_recovers_by_itself(own_cluster):
    url = own_cluster.new_database()
    server = start_serve(url, "--quiet")
    work = bodies(4000, seed=77)
    acked: set[bytes] = set()
    statuses: list[tuple[int, str | None]] = []
    lock = threading.Lock()
    stop = threading.Event()

    def client(part):
        import http.client

        for body in part:
            while not stop.is_set():
                conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)
                try:
                    conn.request("POST", "/", body=body)
                    response = conn.getresponse()
                    response.read()
                    with lock:
                        statuses.append((response.status, response.getheader("retry-after")))
                    if response.status == 200:
                        with lock:
                            acked.add(body)
                        break
                except OSError:
                    pass
                finally:
                    conn.close()
                time.sleep(0.05)

    workers = [Worker(client, work[i::8]) for i in range(8)]
    for worker in workers:
        worker.start()
    try:
        wait_for(lambda: len(acked) >= 100, timeout=60)  # under load
        own_cluster.stop("fast")  # a restart: the server is down until the receiver says so
        wait_for(lambda: "NOT STORED" in server.stderr(), timeout=60)
        with lock:
            during = [s for s in statuses]
        own_cluster.start()
        for worker in workers:
            try:
                worker.finish(120)
            except AssertionError as exc:  # what the receiver said, and the last answers
                with lock:
                    last = statuses[-5:]
                raise AssertionError(
                    f"{exc}; last answers {last}; receiver:\n{server.stderr()}"
                ) from None
    finally:
        stop.set()
        assert server.proc.poll() is None  # the receiver never went down
        server.stop()
    refused = [s for s in statuses if s[0] != 200]
    assert refused and {s for s, _ in refused} == {503}
    assert all(retry == "5" for _, retry in refused)  # every 503 says when to come back
    stored = stored_bodies(url)
    assert len(acked) == len(work) and set(stored) == acked  # 0 lost, all in after the restart
    assert len(stored) == len(set(stored))
    assert "NOT STORED" in server.stderr()
    print(
        f"\nrestart under load: {len(refused)} x 503 during the outage, {len(acked)} acked, 0 lost"
    )
    assert during  # the load was running when the server went away


def test_tail_shows_every_event_exactly_once_while_two_receivers_commit(pg_url):
    first, second = start_serve(pg_url, "--quiet"), start_serve(pg_url, "--quiet")
    tail = subprocess.Popen(
        [sys.executable, "-m", "tbhook", "tail", "--db", pg_url, "--format", "ndjson", "-n", "all"],
        stdout=subprocess.PIPE,
        text=True,
    )
    seen: list[int] = []
    reader = Worker(lambda: [seen.append(json.loads(line)["id"]) for line in tail.stdout])
    reader.start()
    try:  # -n all: every event, from before tail began following or after
        work = bodies(2000, seed=5)
        acked: set[bytes] = set()
        lock = threading.Lock()
        threads = [
            Client([first.port, second.port][i % 2], work[i::16], acked, lock) for i in range(16)
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(120)
        with psycopg.connect(pg_url) as conn:
            ids = sorted(row[0] for row in conn.execute("SELECT id FROM events"))
        sentinel = first.post(bodies(1, seed=6)[0]).json["id"]  # shown after all the rest
        wait_for(lambda: sentinel in seen, timeout=30)
        assert seen.pop() == sentinel
    finally:
        tail.terminate()
        tail.wait(10)
        first.stop()
        second.stop()
    assert len(ids) == 2000
    assert sorted(seen) == ids  # every event, exactly once
    out_of_order = sum(1 for a, b in zip(seen, seen[1:], strict=False) if b < a)
    print(f"\ntail saw {len(seen)} events from two receivers, {out_of_order} after a higher id")


def test_a_writer_replaced_while_postgresql_is_down_stores_again_when_it_is_back(own_cluster):
    """The new writer process cannot open the store while the server is down; it must try
    again with the next batch, not answer "not open" until the receiver is restarted."""
    import os
    import signal

    url = own_cluster.new_database()
    server = start_serve(url, "--quiet")
    try:
        assert server.post(event_body(caseId=1)).status == 200
        own_cluster.stop("fast")
        os.kill(child_process(server.proc.pid, WRITER), signal.SIGKILL)
        # 503s until the new process has tried to open the store, and failed
        answers: list = []

        def tried_to_open() -> bool:
            answers.append(server.post(event_body(caseId=2)))
            return b"open" in answers[-1].body

        wait_for(tried_to_open)
        assert {a.status for a in answers} == {503}
        own_cluster.start()
        wait_for(lambda: server.post(event_body(caseId=3)).status == 200, timeout=30)
    finally:
        server.stop()
    assert len(stored_bodies(url)) == 2  # caseId 1, and 3 (sent until it was stored: once)

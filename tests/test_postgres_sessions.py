"""A PostgreSQL session the server ends in the middle of a pipelined batch: the writer opens a
new one for the next batch. psycopg leaves such a session "in pipeline mode" without marking it
broken; kept, it failed every later batch (503 until the receiver was restarted) while libpq
logged each refusal, gigabytes of them (the restart-under-load test's stall and 24 GB)."""

import threading

import psycopg
from conftest import event_body

from tbhook.errors import StoreUnavailable
from tbhook.model.events import parse
from tbhook.store import Delivery, open_store


def test_a_session_ended_mid_batch_is_replaced_for_the_next_one(pg_url, capfd):
    store = open_store(pg_url)
    stop = threading.Event()
    ended = [0]

    def end_the_writers_session() -> None:
        with psycopg.connect(pg_url, autocommit=True) as admin:
            while not stop.is_set():
                ended[0] += admin.execute(
                    "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
                    "WHERE application_name = 'tbhook writer' AND datname = current_database()"
                ).fetchone()[0]
                stop.wait(0.003)

    killer = threading.Thread(target=end_the_writers_session)
    killer.start()
    stuck = None
    try:
        for n in range(5000):  # batches of 50, until one is ended halfway through
            bodies = [event_body(caseId=n * 100 + i, uniqueId=n * 100 + i) for i in range(50)]
            try:
                store.append([Delivery(b, parse(b)) for b in bodies])
            except StoreUnavailable as exc:
                if "pipeline mode" in str(exc):
                    stuck = str(exc)
                    break
    finally:
        stop.set()
        killer.join(10)
    assert stuck, f"no session was ended mid-batch ({ended[0]} ended)"
    body = event_body(caseId=999_999, uniqueId=999_999)
    stored = store.append([Delivery(body, parse(body))])  # the next batch: a new session
    assert stored[0].id > 0
    store.close()
    assert "not allowed in pipeline mode" not in capfd.readouterr().err

"""A receiver meets a database of another schema: an older one is migrated while deliveries
wait in the listening socket's queue (answered 200 once migrated, never 503); a newer one is
refused in words naming both versions, by writers and readers, on both backends."""

import socket
import sqlite3
import subprocess
import sys
import threading
import time

import pytest
from conftest import event_body, request, wait_for
from oldlogs import at_m013
from typer.testing import CliRunner

from tbhook import __version__
from tbhook.cli import app
from tbhook.errors import NotReady
from tbhook.store import open_reader, open_store
from tbhook.store.postgres.migrations import STEPS
from tbhook.store.sqlite.steps import STEP_NAMES


def test_sqlite_from_a_newer_tbhook_is_refused_naming_both_versions(db_path):
    open_store(db_path).close()
    conn = sqlite3.connect(db_path)
    conn.execute(
        "INSERT INTO _sqlite_migrations (migration_set, name, applied_at) "
        "VALUES ('tbhook', 'm099_from_the_future', '2030-01-01')"
    )
    conn.commit()
    conn.close()
    words = (
        f"{db_path} was written by a newer tbhook (its schema is at m099_from_the_future; this "
        f"tbhook {__version__} knows up to {STEP_NAMES[-1]}): upgrade tbhook to use it"
    )
    with pytest.raises(NotReady) as raised:
        open_store(db_path)
    assert str(raised.value) == words
    with pytest.raises(NotReady) as raised:
        open_reader(db_path)
    assert str(raised.value) == words
    result = CliRunner().invoke(app, ["serve", "--db", str(db_path), "--port", "0"])
    assert result.exit_code == 1 and result.stderr == f"Error: {words}\n"


def test_postgresql_from_a_newer_tbhook_is_refused_naming_both_versions(pg_url):
    import psycopg

    open_store(pg_url).close()
    with psycopg.connect(pg_url) as conn:
        conn.execute("INSERT INTO tbhook_migrations VALUES ('p099_from_the_future', 'then')")
    with pytest.raises(NotReady, match=r"its schema is at p099_from_the_future; this tbhook "):
        open_store(pg_url)
    with pytest.raises(NotReady, match=rf"knows up to {STEPS[-1][0]}\): upgrade tbhook"):
        open_reader(pg_url)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_an_older_database_is_migrated_while_deliveries_wait(tmp_path):
    """200k events at m013: the m014 rebuild takes seconds; deliveries sent meanwhile wait in
    the socket's queue and are answered 200 once it is done."""
    old = at_m013(tmp_path / "old.db", 200_000)
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "tbhook", "serve", "--db", str(old), "--port", str(port)],
        stderr=subprocess.PIPE,
        text=True,
    )
    lines: list[str] = []
    threading.Thread(target=lambda: lines.extend(proc.stderr), daemon=True).start()
    answers: list[tuple[int, float]] = []

    def deliver(case: int) -> None:
        while True:  # until the port listens (it does before the migration starts)
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                time.sleep(0.01)
        started = time.monotonic()
        answers.append(
            (request(port, "POST", "/", event_body(caseId=case)).status, time.monotonic() - started)
        )

    try:
        senders = [threading.Thread(target=deliver, args=(case,)) for case in range(8)]
        for sender in senders:
            sender.start()
        wait_for(lambda: any(" Upgrading " in line for line in lines), timeout=30)
        for sender in senders:
            sender.join(120)
        assert [status for status, _ in answers] == [200] * 8  # held, then stored: no 503
    finally:
        proc.terminate()
        proc.wait(30)
    reader = open_reader(old)
    assert reader.reads.count() == 200_008
    reader.close()
    print(
        f"\nmigration of 200k events: deliveries held up to {max(s for _, s in answers):.2f} s, none refused"
    )

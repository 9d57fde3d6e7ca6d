"""``case_timelines``, the summaries `report` and `queue` read, and ``case_tallies``, the
report's counts per quarter-hour, are kept by every write: after a real receiver, an import,
a merge, a prune, a quarantine retry and an upgrade, each stored row (each case's wait now
among its columns) is exactly what recounting the case from its events gives, and each tally
what counting those cases again gives, on SQLite and on PostgreSQL."""

import hashlib
import json
import random
import sqlite3
import subprocess
import sys

import pytest
from conftest import start_serve, wait_for
from typer.testing import CliRunner

from tbhook.cli import app
from tbhook.model.cases import SUMMARY_COLUMNS, summaries
from tbhook.model.events import parse
from tbhook.model.tallies import COLUMNS as TALLY_COLUMNS
from tbhook.model.tallies import COUNTS, key_text, pack, tallies_of, unpack
from tbhook.store import Delivery, open_reader, open_store
from tbhook.store.sql import names
from tbhook.store.timelines import case_sql
from tbhook.transfer.generate import Generator

runner = CliRunner()


@pytest.fixture(params=["sqlite", "postgresql"])
def target(request, tmp_path):
    if request.param == "sqlite":
        return str(tmp_path / "kept.db")
    return request.getfixturevalue("pg_url")


def lines(seed: int, count: int, shuffle: bool = True) -> list[bytes]:
    """Generated events (cases interleave; several seeds share caseIds), out of order."""
    found = [line.encode() for line in Generator(seed=seed, persons=50).lines(count)]
    if shuffle:
        random.Random(seed).shuffle(found)
    return found


def settled(rows: dict) -> dict:
    """Tally rows as what they hold: a row's values in any order, a row of nothing as none."""
    found = {}
    for key, row in rows.items():
        values = [
            *row[: len(COUNTS)],
            *(pack(sorted(unpack(bytes(v)))) for v in row[len(COUNTS) :]),
        ]
        if any(values):
            found[key] = tuple(values)
    return found


def kept_tallies(store) -> dict:
    return settled(
        {
            row[0]: row[1:]
            for row in store.query(f'SELECT "key", {names(TALLY_COLUMNS)} FROM case_tallies')
        }
    )


def assert_kept(target: str) -> int:
    """Every stored summary equals the recount from the events, and every tally the count of
    those cases; how many cases."""
    store = open_reader(target)
    try:
        assert store.timelines.pending() == set()
        kept = {
            row[0]: tuple(bytes(v) if isinstance(v, memoryview) else v for v in row)
            for row in store.query(f"SELECT {names(SUMMARY_COLUMNS)} FROM case_timelines")
        }
        found = list(summaries(store.query(case_sql('e."caseId" IS NOT NULL'))))
        tallies = kept_tallies(store)
    finally:
        store.close()
    assert kept == {s.caseId: s.row() for s in found}
    counted = tallies_of((s.sourceId, s.entries) for s in found)
    assert tallies == settled({key_text(*key): row for key, row in counted.items()})
    waiting = SUMMARY_COLUMNS.index("waitAt")
    assert any(row[waiting] is not None for row in kept.values())  # some case waits (the queue)
    return len(kept)


def stored(target: str, bodies: list[bytes]) -> None:
    """Through the store, one delivery a transaction, as a receiver stores them."""
    store = open_store(target)
    try:
        for body in bodies:
            store.append([Delivery(body, parse(body))])
    finally:
        store.close()


def tbhook(*args: str) -> subprocess.CompletedProcess:
    done = subprocess.run(
        [sys.executable, "-m", "tbhook", *args], capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr
    return done


def test_kept_through_a_receiver_an_import_a_merge_a_prune_and_a_retry(target, tmp_path):
    open_store(target).close()
    # A real receiver, given events out of order (a case's old event after its newer ones),
    # retries among them.
    server = start_serve(target, "--quiet")
    try:
        bodies = lines(1, 400)
        for body in bodies + bodies[:40]:
            assert server.post(body).status == 200
    finally:
        assert server.stop() == 0
    assert assert_kept(target) > 20

    # An import, overlapping the same cases.
    source = tmp_path / "more.ndjson"
    source.write_bytes(b"\n".join(lines(2, 600)) + b"\n")
    tbhook("import", str(source), "--db", target)
    cases = assert_kept(target)

    # A merge of another log whose caseIds are the same ones.
    other = tmp_path / "other.db"
    stored(str(other), lines(3, 500))
    tbhook("merge", str(other), "--db", target)
    assert assert_kept(target) >= cases

    # A prune through the middle of cases: some lose their first events, some all.
    tbhook("prune", "--before", "2024-01-01T00:00:30Z", "--no-archive", "--yes", "--db", target)
    assert assert_kept(target) > 0

    # Bodies an older tbhook quarantined, readable now: a retry moves them into events.
    store = open_store(target)
    later = [json.loads(body) for body in lines(4, 30, shuffle=False) if b'"caseId"' in body]
    with store.writing() as conn:
        for n, event in enumerate(later):
            body = json.dumps({**event, "timestamp": event["timestamp"] - 10}).encode()
            conn.execute(
                'INSERT INTO quarantine ("receivedAt", "lastReceivedAt", deliveries, path, '
                'reason, body, "bodySha256") VALUES (?, ?, ?, ?, ?, ?, ?)',
                ["2025-01-01T00:00:00.000Z", "2025-01-01T00:00:00.000Z", 1, "/old",
                 f"an older rule ({n})", body, hashlib.sha256(body).digest()],
            )  # fmt: skip
    store.close()
    moved = json.loads(tbhook("quarantine", "retry", "-f", "json", "--db", target).stdout)
    assert sum(r["outcome"] == "moved" for r in moved) > 10
    assert_kept(target)


def test_an_upgraded_database_is_summarized_once_when_a_writer_opens_it(target):
    stored(target, lines(5, 300))
    store = open_store(target)
    # As a database from before the summaries: none kept, and no note that they are current.
    with store.writing() as conn:
        conn.execute("DELETE FROM case_timelines")
        conn.execute("DELETE FROM tbhook_meta WHERE key = 'timelinesVersion'")
    store.close()
    reader = open_reader(target)
    try:
        assert reader.one("SELECT count(*) FROM case_timelines")[0] == 0
    finally:
        reader.close()
    open_store(target).close()
    assert assert_kept(target) > 20


def test_a_reader_counts_a_case_a_write_has_not_folded_from_its_events(tmp_path):
    """A stale case (an event deleted by hand, the trigger's note still there) reads right,
    and the next write brings its row up to date."""
    db = str(tmp_path / "stale.db")
    stored(db, lines(6, 200, shuffle=False))

    conn = sqlite3.connect(db)
    case_id = conn.execute(
        "SELECT \"caseId\" FROM events WHERE event = 'caseClosed' ORDER BY id LIMIT 1"
    ).fetchone()[0]
    conn.execute("DELETE FROM events WHERE \"caseId\" = ? AND event = 'caseClosed'", [case_id])
    conn.commit()
    conn.close()
    reader = open_reader(db)
    try:
        assert reader.timelines.pending() == {case_id}
    finally:
        reader.close()
    result = runner.invoke(app, ["report", "-f", "json", "--db", db])
    after = runner.invoke(app, ["cases", "--case", str(case_id), "-f", "json", "--db", db])
    assert json.loads(after.stdout)[0]["closed"] is False
    assert sum(row["newCases"] for row in json.loads(result.stdout)) > 0
    store = open_store(db)
    with store.writing():
        pass  # any write folds what is stale
    store.close()
    assert assert_kept(db) > 0
    # Counted from the events before, from the row now: the same report.
    assert runner.invoke(app, ["report", "-f", "json", "--db", db]).stdout == result.stdout


def test_a_database_from_before_the_queue_is_upgraded_and_counted_once(target):
    """A database as the tbhook before the queue left it (no wait columns, no tallies, the
    summaries' meaning 1): the next writer adds them and fills them from the events."""
    stored(target, lines(7, 300))
    sqlite = not target.startswith("postgresql")
    if sqlite:
        conn = sqlite3.connect(target, isolation_level=None)
    else:
        import psycopg

        conn = psycopg.connect(target, autocommit=True)
    with conn:
        conn.execute("DROP INDEX case_timelines_waiting")
        conn.execute("DROP TABLE case_tallies")
        for column in ("waitAt", "waitKind", "waitMessages", "waitSourceId", "waitPath",
                       "firstAskedAt", "firstAnsweredAt"):  # fmt: skip
            conn.execute(f'ALTER TABLE case_timelines DROP COLUMN "{column}"')
        if sqlite:
            conn.execute("DELETE FROM _sqlite_migrations WHERE name = 'm016_queue_and_tallies'")
        else:
            conn.execute("DELETE FROM tbhook_migrations WHERE name = 'p007_queue_and_tallies'")
        conn.execute("UPDATE tbhook_meta SET value = '1' WHERE key = 'timelinesVersion'")
    conn.close()
    cases = runner.invoke(app, ["cases", "-n", "0", "-f", "csv", "--db", target])
    assert cases.exit_code == 0, cases.output
    before = runner.invoke(app, ["report", "-f", "csv", "--db", target])
    assert before.exit_code == 0, before.output  # a reader copes with the old schema
    queue = runner.invoke(app, ["queue", "-n", "0", "-f", "csv", "--db", target])
    assert queue.exit_code == 0, queue.output
    open_store(target).close()
    assert assert_kept(target) > 20
    assert runner.invoke(app, ["report", "-f", "csv", "--db", target]).stdout == before.stdout
    assert runner.invoke(app, ["cases", "-n", "0", "-f", "csv", "--db", target]).stdout == (
        cases.stdout
    )
    after = runner.invoke(app, ["queue", "-n", "0", "-f", "csv", "--db", target])
    assert after.stdout.splitlines()[0] == queue.stdout.splitlines()[0]
    assert len(after.stdout.splitlines()) == len(queue.stdout.splitlines()) > 2


def test_writers_at_once_on_postgresql_keep_every_summary_and_tally(pg_url, monkeypatch):
    """Four writers on one PostgreSQL database, the same cases between them, out of order:
    the rows they lock (the cases', the tallies') are locked in one order by all, so none
    waits for another in a circle, and every kept row is what a recount gives."""
    from concurrent.futures import ThreadPoolExecutor

    from tbhook.store.postgres import PostgresStore

    deadlocks = []
    real = PostgresStore._deadlock

    def seen(exc):
        found = real(exc)
        deadlocks.append(found)
        return found

    monkeypatch.setattr(PostgresStore, "_deadlock", staticmethod(seen))
    open_store(pg_url).close()
    bodies = lines(8, 800)

    def write(part: list[bytes]) -> None:
        store = open_store(pg_url)
        try:
            for start in range(0, len(part), 3):
                store.append([Delivery(b, parse(b)) for b in part[start : start + 3]])
        finally:
            store.close()

    with ThreadPoolExecutor(4) as pool:
        list(pool.map(write, [bodies[i::4] for i in range(4)]))
    assert not any(deadlocks)
    assert assert_kept(pg_url) > 20


def test_a_writer_counting_a_case_again_locks_the_tallies_in_the_order_others_add_to_them(
    pg_url,
):
    """A writer that counts a case again locks its tally rows one key after the other, in
    the order every writer adds to them: while an early key is held by a writer adding in
    order, it waits there before touching a later one, so that writer takes the later key
    and commits (found once in a loop under load: the new keys were locked first, and two
    writers waited for each other)."""
    import threading

    import psycopg

    open_store(pg_url).close()
    early, late = "1,14", "2,14"
    adding = psycopg.connect(pg_url)
    adding.execute(
        'INSERT INTO case_tallies ("key", bucket, "sourceId") VALUES (%s, 1, 14)', [early]
    )
    adding.commit()
    add = (
        'INSERT INTO case_tallies ("key", bucket, "sourceId") VALUES (%s, %s, 14) '
        'ON CONFLICT ("key") DO UPDATE SET opened = case_tallies.opened + 1'
    )
    # Held until this writer commits, by a lock that a new key's insert does not wait for
    # (the moment a writer adding in order has just taken it): only a writer that locks
    # key after key waits here before it touches the late key.
    adding.execute('SELECT 1 FROM case_tallies WHERE "key" = %s FOR SHARE', [early])
    recounting = open_store(pg_url)
    failed: list[Exception] = []

    def recount() -> None:
        try:
            with recounting.writing() as conn:
                recounting.tallies.locked(conn, [early, late])
        except Exception as exc:  # noqa: BLE001 - the test says which
            failed.append(exc)

    thread = threading.Thread(target=recount)
    thread.start()
    try:
        watching = psycopg.connect(pg_url, autocommit=True)
        wait_for(  # the recount waits for the early key
            lambda: (
                watching.execute(
                    "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' "
                    "AND datname = current_database()"
                ).fetchone()[0]
                == 1
            )
        )
        watching.close()
        adding.execute(add, [late, 2])  # a deadlock here, had the recount taken it first
        adding.commit()
    finally:
        adding.close()
        thread.join(30)
        recounting.close()
    assert failed == []

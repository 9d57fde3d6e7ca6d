"""``case_timelines``, the summaries `report` reads, are kept by every write: after a real
receiver, an import, a merge, a prune, a quarantine retry and an upgrade, each stored row is
exactly what recounting the case from its events gives, on SQLite and on PostgreSQL."""

import hashlib
import json
import random
import sqlite3
import subprocess
import sys

import pytest
from conftest import start_serve
from typer.testing import CliRunner

from tbhook.cli import app
from tbhook.model.cases import SUMMARY_COLUMNS, summaries
from tbhook.model.events import parse
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


def assert_kept(target: str) -> int:
    """Every stored summary equals the recount from the events; how many cases."""
    store = open_reader(target)
    try:
        assert store.timelines.pending() == set()
        kept = {
            row[0]: tuple(row)
            for row in store.query(f"SELECT {names(SUMMARY_COLUMNS)} FROM case_timelines")
        }
        recounted = {
            s.caseId: s.row() for s in summaries(store.query(case_sql('e."caseId" IS NOT NULL')))
        }
    finally:
        store.close()
    assert kept == recounted
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

"""Promise 3: no tbhook command destroys data, even when the user makes a mistake. Each
mistake here was obeyed once; each is refused now, in words, with everything left as it was."""

from __future__ import annotations

import gzip
import sqlite3

import pytest
from conftest import event_body, sample_bytes
from typer.testing import CliRunner

from tbhook.cli import app
from tbhook.model.events import parse
from tbhook.store import Delivery
from tbhook.store.sqlite import SQLiteStore

runner = CliRunner(env={"COLUMNS": "200"})


def run(*args):
    return runner.invoke(app, list(args), catch_exceptions=False)


def fill(db, bodies):
    store = SQLiteStore.open(db)
    for body in bodies:
        store.append([Delivery(body, parse(body))])
    store.close()


def count(db, table="events"):
    conn = sqlite3.connect(db)
    try:
        return conn.execute(f"SELECT count(*) FROM {table}").fetchone()[0]
    finally:
        conn.close()


def old_and_new(db):
    fill(db, [event_body(caseId=i, timestamp=1_600_000_000 + i) for i in range(5)])
    fill(db, [event_body(caseId=100, timestamp=1_800_000_000)])


@pytest.fixture
def live(db_path):
    """The database with a connection open, as a receiver keeps it: its -wal and -shm exist."""
    old_and_new(db_path)
    conn = sqlite3.connect(db_path)
    conn.execute("SELECT count(*) FROM events").fetchone()
    assert (db_path.parent / f"{db_path.name}-wal").exists()
    yield conn
    conn.close()


# -- export --output ------------------------------------------------------------------------


def test_export_refuses_an_existing_file_without_force(db_path, tmp_path):
    fill(db_path, [sample_bytes("case-closed")])
    out = tmp_path / "events.csv"
    out.write_bytes(b"yesterday's export")
    result = run("export", "--output", str(out), "--db", str(db_path))
    assert result.exit_code == 1
    assert result.stderr == f"Error: {out} exists (use --force to replace it)\n"
    assert out.read_bytes() == b"yesterday's export"
    assert run("export", "--output", str(out), "--force", "--db", str(db_path)).exit_code == 0
    assert out.read_bytes().startswith(b"id,receivedAt")


def test_export_never_replaces_another_tbhook_database_even_with_force(db_path, tmp_path):
    fill(db_path, [sample_bytes("case-closed")])
    other = tmp_path / "other.db"
    fill(other, [event_body(caseId=i) for i in range(3)])
    before = other.read_bytes()
    result = run("export", "--output", str(other), "--force", "--db", str(db_path))
    assert result.exit_code == 1
    assert result.stderr.startswith(f"Error: {other} is another tbhook database (log ")
    assert "tbhook never writes over one, even with --force" in result.stderr
    assert other.read_bytes() == before and count(other) == 3


def test_export_force_may_replace_a_sqlite_file_that_is_not_tbhooks(db_path, tmp_path):
    fill(db_path, [sample_bytes("case-closed")])
    scratch = tmp_path / "scratch.sqlite"
    sqlite3.connect(scratch).execute("CREATE TABLE t (x)").connection.commit()
    assert run("export", "-o", str(scratch), "--db", str(db_path)).exit_code == 1
    assert run("export", "-o", str(scratch), "--force", "--db", str(db_path)).exit_code == 0


def test_force_without_output_is_a_usage_error(db_path):
    fill(db_path, [sample_bytes("case-closed")])
    result = run("export", "--force", "--db", str(db_path))
    assert result.exit_code == 2 and "--force replaces an --output file" in result.stderr


# -- the database's own files --------------------------------------------------------------

SIDE = ["-wal", "-shm", "-journal"]


@pytest.mark.parametrize("suffix", SIDE)
def test_export_onto_a_side_file_of_the_database_is_refused(db_path, live, suffix):
    side = f"{db_path}{suffix}"
    result = run("export", "--output", side, "--force", "--db", str(db_path))
    assert result.exit_code == 1
    assert result.stderr.startswith(f"Error: {side} is the database's ")
    assert f"({suffix}): export to another file" in result.stderr
    assert count(db_path) == 6


@pytest.mark.parametrize("suffix", SIDE)
def test_backup_onto_a_side_file_of_the_database_is_refused(db_path, live, suffix):
    side = f"{db_path}{suffix}"
    result = run("backup", side, "--force", "--db", str(db_path))
    assert result.exit_code == 1 and f"({suffix}): a backup must be another file" in result.stderr
    assert count(db_path) == 6


@pytest.mark.parametrize("suffix", SIDE)
def test_prune_archive_onto_a_side_file_of_the_database_is_refused(db_path, live, suffix):
    side = f"{db_path}{suffix}"
    result = run(
        "prune", "--before", "2025-01-01", "--archive", side, "--append", "--yes",
        "--db", str(db_path),
    )  # fmt: skip
    assert (
        result.exit_code == 1 and f"({suffix}): the archive must be another file" in result.stderr
    )
    assert count(db_path) == 6


def test_a_link_to_the_write_ahead_log_is_refused(db_path, live, tmp_path):
    link = tmp_path / "innocent.csv"
    link.symlink_to(f"{db_path}-wal")
    result = run("export", "--output", str(link), "--force", "--db", str(db_path))
    assert result.exit_code == 1 and "is the database's write-ahead log (-wal)" in result.stderr
    hard = tmp_path / "hard.csv"
    hard.hardlink_to(f"{db_path}-wal")
    result = run("export", "--output", str(hard), "--force", "--db", str(db_path))
    assert result.exit_code == 1 and "is the database's write-ahead log (-wal)" in result.stderr


def test_the_wal_of_another_sqlite_database_is_refused(db_path, tmp_path):
    fill(db_path, [sample_bytes("case-closed")])
    other = tmp_path / "other.db"
    fill(other, [sample_bytes("case-closed")])
    result = run("export", "--output", f"{other}-wal", "--force", "--db", str(db_path))
    assert result.exit_code == 1
    assert f"is the write-ahead log of the SQLite database {other}" in result.stderr


# -- prune ----------------------------------------------------------------------------------


def test_prune_without_an_archive_or_no_archive_is_refused(db_path):
    old_and_new(db_path)
    result = run("prune", "--before", "2025-01-01", "--yes", "--db", str(db_path))
    assert result.exit_code == 2
    assert "give --archive FILE.ndjson.gz to keep what is deleted, or --no-archive" in (
        result.stderr
    )
    assert count(db_path) == 6
    done = run("prune", "--before", "2025-01-01", "--no-archive", "--yes", "--db", str(db_path))
    assert done.exit_code == 0 and count(db_path) == 1


def test_prune_archive_and_no_archive_together_is_a_usage_error(db_path, tmp_path):
    old_and_new(db_path)
    result = run(
        "prune", "--before", "2025-01-01", "--archive", str(tmp_path / "a.gz"), "--no-archive",
        "--yes", "--db", str(db_path),
    )  # fmt: skip
    assert result.exit_code == 2 and "contradict" in result.stderr and count(db_path) == 6


@pytest.mark.parametrize(
    "content, why",
    [
        (b"notes I keep\n", "not gzip"),
        (None, "exported row"),  # an export, gzipped
        (gzip.compress(b"just some text\n", mtime=0), "not a Tracebuzz event"),
        (gzip.compress(b'{"event": "newResult", "caseId": 1}\n', mtime=0)[:-6], "damaged"),
    ],
    ids=["text", "export", "not-events", "cut-short"],
)
def test_prune_append_onto_a_file_that_is_not_an_archive_deletes_nothing(
    db_path, tmp_path, content, why
):
    old_and_new(db_path)
    target = tmp_path / "target.ndjson.gz"
    if content is None:
        exported = run("export", "--format", "ndjson", "--db", str(db_path)).stdout
        content = gzip.compress(exported.encode())
    target.write_bytes(content)
    result = run(
        "prune", "--before", "2025-01-01", "--archive", str(target), "--append", "--yes",
        "--db", str(db_path),
    )  # fmt: skip
    assert result.exit_code == 1
    assert result.stderr.startswith(f"Error: {target} is not a tbhook archive (")
    assert why in result.stderr and "nothing was deleted" in result.stderr
    assert target.read_bytes() == content
    assert count(db_path) == 6


def test_prune_run_again_after_an_interruption_archives_each_body_once(db_path, tmp_path):
    """A prune interrupted while deleting leaves events that are already in the archive: run
    again with --append, it deletes them without writing them twice."""
    old_and_new(db_path)
    archive = tmp_path / "old.ndjson.gz"
    args = ["--archive", str(archive), "--yes", "--db", str(db_path)]
    assert run("prune", "--before", "2025-01-01", *args).exit_code == 0
    # The state an interruption leaves: archived, but (some) not deleted.
    assert run("import", str(archive), "--db", str(db_path)).exit_code == 0
    assert count(db_path) == 6
    fill(db_path, [event_body(caseId=50, timestamp=1_600_000_500)])  # and one more, new
    result = run("prune", "--before", "2025-01-01", "--append", *args)
    assert result.exit_code == 0
    assert "archived to" in result.stdout and "(5 of them already there" in result.stdout
    lines = gzip.decompress(archive.read_bytes()).splitlines()
    assert len(lines) == 6 and len(set(lines)) == 6
    assert count(db_path) == 1


def test_prune_into_a_missing_directory_names_it_and_deletes_nothing(db_path, tmp_path):
    old_and_new(db_path)
    target = tmp_path / "nowhere" / "old.ndjson.gz"
    result = run(
        "prune", "--before", "2025-01-01", "--archive", str(target), "--yes", "--db", str(db_path)
    )
    assert result.exit_code == 1
    assert result.stderr == (
        f"Error: cannot write {target}: the directory {target.parent} does not exist; "
        "nothing was deleted\n"
    )
    assert count(db_path) == 6


# -- backup ---------------------------------------------------------------------------------


def test_backup_into_a_directory_that_does_not_exist_is_refused(db_path, tmp_path, monkeypatch):
    fill(db_path, [sample_bytes("case-closed")])
    monkeypatch.chdir(tmp_path)
    result = run("backup", "bk/", "--db", str(db_path))
    assert result.exit_code == 1
    assert result.stderr == "Error: bk/ is not a directory (create it first)\n"
    assert not (tmp_path / "bk").exists()


def test_backup_with_a_missing_parent_names_the_directory_not_a_temp_file(db_path, tmp_path):
    fill(db_path, [sample_bytes("case-closed")])
    dest = tmp_path / "missing" / "copy.db"
    result = run("backup", str(dest), "--db", str(db_path))
    assert result.exit_code == 1
    assert result.stderr == (
        f"Error: cannot write {dest}: the directory {dest.parent} does not exist\n"
    )
    assert ".tmp" not in result.stderr


def test_backup_never_replaces_another_log_but_replaces_its_own_earlier_backup(db_path, tmp_path):
    fill(db_path, [sample_bytes("case-closed")])
    nightly = tmp_path / "nightly.db"
    assert run("backup", str(nightly), "--db", str(db_path)).exit_code == 0
    fill(db_path, [event_body(caseId=7)])
    assert run("backup", str(nightly), "--force", "--db", str(db_path)).exit_code == 0
    assert count(nightly) == 2
    other = tmp_path / "other.db"
    fill(other, [event_body(caseId=i) for i in range(10, 14)])
    before = other.read_bytes()
    result = run("backup", str(other), "--force", "--db", str(db_path))
    assert result.exit_code == 1 and "is another tbhook database (log " in result.stderr
    assert other.read_bytes() == before


# -- merge ----------------------------------------------------------------------------------


def test_merging_back_the_other_way_is_refused(tmp_path):
    a, b = tmp_path / "a.db", tmp_path / "b.db"
    fill(a, [event_body(caseId=1), event_body(caseId=2)])
    fill(b, [event_body(caseId=2), event_body(caseId=3)])
    assert run("merge", str(a), "--db", str(b)).exit_code == 0
    deliveries = sqlite3.connect(a).execute("SELECT sum(deliveries) FROM events").fetchone()[0]
    result = run("merge", str(b), "--db", str(a))
    assert result.exit_code == 1
    assert result.stderr.startswith(f"Error: {b} already holds this log's events (")
    assert "merging it back would count their deliveries twice" in result.stderr
    assert sqlite3.connect(a).execute("SELECT sum(deliveries) FROM events").fetchone()[0] == (
        deliveries
    )

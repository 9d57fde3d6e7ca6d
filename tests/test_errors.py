"""Every mistake gets a sentence: `Error: ...` naming what is wrong (exit 1, or 2 for a usage
error), never a traceback, never silence, never a wait that cannot end."""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
import threading

import pytest
from conftest import event_body, wait_for
from typer.testing import CliRunner

from tbhook.cli import app
from tbhook.model.events import parse
from tbhook.store import Delivery
from tbhook.store.sqlite import SQLiteStore

runner = CliRunner(env={"COLUMNS": "200"})


def run(*args, input=None):
    return runner.invoke(app, list(args), input=input, catch_exceptions=False)


def tbhook(*args: str, timeout: float = 30) -> subprocess.CompletedProcess:
    """The real program in a process of its own: a hang fails the test at ``timeout``."""
    return subprocess.run(
        [sys.executable, "-m", "tbhook", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        stdin=subprocess.DEVNULL,
    )


@pytest.fixture
def filled(db_path):
    store = SQLiteStore.open(db_path)
    store.append([Delivery(b, parse(b)) for b in (event_body(caseId=1), event_body(caseId=2))])
    store.close()
    return db_path


# -- a malformed PostgreSQL URL ---------------------------------------------------------------

BAD_URLS = [
    ("postgresql://tb:s3cret@db.example:notaport/tbhook", "its port is not a number"),
    ("postgresql://tb@db.example:99999/tbhook", "its port is not between 1 and 65535"),
    ("postgresql://[::1/tbhook", "its IPv6 address lacks a bracket"),
]


@pytest.mark.parametrize("command", [["events"], ["serve", "--port", "0"], ["tail"], ["doctor"]])
@pytest.mark.parametrize("url, why", BAD_URLS)
def test_a_malformed_postgresql_url_is_a_usage_error_in_words(command, url, why):
    result = tbhook(*command, "--db", url)
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr and "ValueError" not in result.stderr
    assert "Invalid value for '--db'" in result.stderr and why in result.stderr
    assert "s3cret" not in result.stderr


# -- tail -----------------------------------------------------------------------------------


def test_tail_on_someone_elses_sqlite_file_fails_at_once(tmp_path):
    other = tmp_path / "other.db"
    sqlite3.connect(other).execute("CREATE TABLE t (x)").connection.commit()
    result = tbhook("tail", "--db", str(other))
    assert result.returncode == 1
    assert result.stderr == f"Error: {other} is not a tbhook database\n"


def test_tail_on_a_directory_fails_at_once(tmp_path):
    result = tbhook("tail", "--db", str(tmp_path))
    assert result.returncode == 1
    assert result.stderr == f"Error: {tmp_path} is a directory, not a database file\n"


def test_tail_in_a_directory_that_does_not_exist_fails_at_once(tmp_path):
    target = tmp_path / "no" / "such" / "x.db"
    result = tbhook("tail", "--db", str(target))
    assert result.returncode == 1
    assert result.stderr == (
        f"Error: no directory {target.parent}: `tbhook serve --db {target}` could not create "
        "the database there\n"
    )


def follow_stderr(*args: str) -> tuple[subprocess.Popen, list[str]]:
    proc = subprocess.Popen(
        [sys.executable, "-m", "tbhook", "tail", *args],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    lines: list[str] = []
    threading.Thread(target=lambda: lines.extend(proc.stderr), daemon=True).start()
    return proc, lines


def test_tail_with_an_event_no_one_sends_says_so_while_it_waits(filled):
    proc, lines = follow_stderr("--event", "newresult", "--db", str(filled))
    try:
        wait_for(lambda: lines, timeout=20)
        assert lines[0] == (
            'No events: no event named "newresult" (did you mean "newResult"? names are '
            "case-sensitive); known: newResult, caseClosed, profileMerged; waiting for new ones\n"
        )
    finally:
        proc.terminate()
        assert proc.wait(20) == 0


def test_tail_of_an_empty_file_says_what_it_waits_for(tmp_path):
    empty = tmp_path / "new.db"
    empty.touch()
    proc, lines = follow_stderr("--db", str(empty))
    try:
        wait_for(lambda: lines, timeout=20)
        assert (
            lines[0] == f"Waiting: {empty} is not a tbhook database (yet: it holds no tables)...\n"
        )
    finally:
        proc.terminate()
        assert proc.wait(20) == 0


# -- the rest ---------------------------------------------------------------------------------


def test_serve_on_an_address_that_cannot_be_resolved(tmp_path):
    db = tmp_path / "never.db"
    result = tbhook("serve", "--host", "999.1.1.1", "--db", str(db))
    assert result.returncode == 1
    assert result.stderr == (
        "Error: cannot listen on 999.1.1.1:8080: 999.1.1.1 is neither an IP address nor a host "
        "name this machine can resolve\n"
    )
    assert not db.exists()


@pytest.mark.parametrize("command", ["events", "cases", "quarantine"])
def test_a_limit_too_large_for_any_log_names_the_option(filled, command):
    result = run(command, "-n", "99999999999999999999", "--db", str(filled))
    assert result.exit_code == 2
    assert "Invalid value for '--limit' / '-n'" in result.stderr
    assert "datatype mismatch" not in result.output


@pytest.mark.parametrize(
    "command, what",
    [
        (["events"], "events"),
        (["cases"], "cases"),
        (["export"], "events"),
        (["stats"], "events"),
        (["tail", "--no-follow"], "events"),
        (["events", "--case", "5"], "events"),
    ],
)
def test_an_empty_database_says_it_is_empty(db_path, command, what):
    SQLiteStore.open(db_path).close()
    result = run(*command, "--db", str(db_path))
    assert result.exit_code == 0
    assert result.stderr == f"No {what}: the database is empty (nothing received yet)\n"


def test_quarantine_retry_of_an_unknown_id_says_one_thing(filled):
    result = run("quarantine", "retry", "999", "--db", str(filled))
    assert result.exit_code == 1
    assert result.stdout == ""
    assert result.stderr == (
        "Error: not in quarantine: #999 (see `tbhook quarantine`; one moved by an earlier "
        "retry is among the events now)\n"
    )


def test_sending_nothing_is_an_error(tmp_path):
    result = run("send", "-", "--to", "http://127.0.0.1:9/", input="\n\n")
    assert result.exit_code == 1
    assert result.stderr == (
        "Error: nothing to send: stdin holds no body (only blank lines, or nothing)\n"
    )
    empty = tmp_path / "empty.ndjson"
    empty.write_text("")
    result = run("send", str(empty), "--to", "http://127.0.0.1:9/")
    assert result.exit_code == 1 and "holds no body" in result.stderr


def test_no_tbhook_command_prints_a_traceback_for_a_file_that_is_not_a_database(tmp_path):
    text = tmp_path / "notes.db"
    text.write_text("not a database\n" * 100)
    for command in (["events"], ["cases"], ["stats"], ["doctor"], ["export"], ["tail"]):
        result = tbhook(*command, "--db", str(text))
        assert result.returncode == 1, (command, result.stderr)
        assert result.stderr.startswith("Error: ") and "Traceback" not in result.stderr
    assert os.path.getsize(text) == len("not a database\n") * 100

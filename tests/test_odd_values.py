"""Odd values, answered in words: moments no calendar holds, numbers that are no Unix time,
a --db that is no database or a scheme tbhook does not speak, digits of other scripts. Each is
an `Error: ...` sentence on the command line (exit 2 for usage) and a 400 page (or
``{"error": ...}``) in the console: never a traceback, a 500 or nonsense."""

from __future__ import annotations

import json
import os
import socket
import sqlite3
import subprocess
import sys
from urllib.parse import quote

import pytest
from conftest import event_body, wait_for
from test_console import a_log, consoles  # noqa: F401 - the fixture
from test_console_edge import Browser
from typer.testing import CliRunner

from tbhook.cli import app
from tbhook.model.events import parse
from tbhook.store import Delivery
from tbhook.store.sqlite import SQLiteStore

runner = CliRunner(env={"COLUMNS": "200"})


def run(*args):
    return runner.invoke(app, list(args), catch_exceptions=False)


def tbhook(*args: str, timeout: float = 30, cwd=None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "tbhook", *args], capture_output=True,
                          text=True, timeout=timeout, stdin=subprocess.DEVNULL,
                          cwd=cwd)  # fmt: skip


@pytest.fixture
def filled(db_path):
    store = SQLiteStore.open(db_path)
    bodies = [event_body(caseId=i, timestamp=1_710_720_000 + i * 60) for i in range(1, 4)]
    store.append([Delivery(b, parse(b)) for b in bodies])
    store.close()
    return db_path


# -- moments: the whole calendar, and nothing past it ----------------------------------------


@pytest.mark.parametrize("command", [["events"], ["export", "-f", "ndjson"], ["stats"]])
def test_the_last_day_of_the_calendar_is_a_moment_like_any_other(filled, command):
    for bounds in (["--until", "9999-12-31"], ["--since", "0001-01-01", "--until", "9999-12-31"]):
        result = run(*command, *bounds, "--db", str(filled))
        assert result.exit_code == 0, result.output
    assert run("export", "-f", "ndjson", "--until", "9999-12-31").stdout.count("\n") == 3


@pytest.mark.parametrize(
    "value",
    ["10000-01-01", "0000-12-31", "@99999999999999", "@-99999999999999", "99999999999999d"],
)
@pytest.mark.parametrize("option", ["--since", "--until"])
def test_a_moment_no_calendar_holds_is_refused_naming_the_range(filled, value, option):
    for command in (["events"], ["export"], ["report"]):
        result = run(*command, option, value, "--db", str(filled))
        assert result.exit_code == 2, (command, result.output)
        assert (
            f"Invalid value for '{option}': '{value}' is outside the moments tbhook can place "
            "(from 0001-01-01 to 9999-12-31)"
        ) in result.stderr


def test_milliseconds_are_read_as_such_and_said(filled):
    result = run("events", "--since", "1710720063000", "-f", "ndjson")
    assert result.exit_code == 0
    assert result.stderr == (
        "Note: --since 1710720063000 read as milliseconds: 2024-03-18T00:01:03Z\n"
    )
    assert [json.loads(line)["caseId"] for line in result.stdout.splitlines()] == [3, 2]
    until = run("events", "--until", "1710720060000", "-f", "ndjson")  # its second included
    assert [json.loads(line)["caseId"] for line in until.stdout.splitlines()] == [1]


@pytest.mark.parametrize(
    "value, hint",
    [
        ("2025", ": did you mean 2025-01-01?"),
        ("20250317", ": did you mean 2025-03-17?"),
        ("0", "; write @0 for that exact second, or a date such as 2024-05-01"),
        ("99999999999999", "; tbhook places moments from 0001-01-01 to 9999-12-31"),
    ],
)
def test_a_bare_number_that_is_no_unix_time_of_this_century_is_refused_with_a_hint(
    filled, value, hint
):
    for command in (["events"], ["report", "--by", "month"], ["prune", "--no-archive"]):
        option = "--before" if command[0] == "prune" else "--since"
        result = run(*command, option, value, "--db", str(filled))
        assert result.exit_code == 2, result.output
        assert (
            f"'{value}' is not a Unix time of this century (seconds from 946684800 to "
            f"4102444799, or 13 digits of milliseconds){hint}"
        ) in result.stderr
    assert run("events", "--since", "@0").exit_code == 0  # any second, said exactly


def test_a_moment_that_cannot_be_shown_is_said_as_a_number_never_none(filled):
    result = run("events", "--until", "@-62135596850")  # before the year 1, by a minute
    assert result.exit_code == 0
    assert result.stderr == (
        "No events: no event has a timestamp up to Unix second -62135596850 (outside the "
        "years 1 to 9999)\n"
    )
    assert "None" not in run("events", "--since", "2030-01-01").stderr


def test_the_console_answers_the_whole_calendar_and_refuses_past_it(tmp_path, consoles):  # noqa: F811
    db = tmp_path / "console.db"
    a_log(str(db))
    console = consoles(db)
    whole = "since=0001-01-01&until=9999-12-31"
    for path in (f"/?{whole}", f"/events.json?{whole}", f"/report?by=source&{whole}",
                 f"/report.json?by=agent&{whole}", f"/cases?{whole}"):  # fmt: skip
        status, _, body = console.get(path)
        assert status == 200, (path, body[:300])
    status, _, body = console.get(f"/report.json?by=day&{whole}")
    assert status == 400
    assert json.loads(body)["error"].startswith(
        "by: from 0001-01-01 to 9999-12-31 is more than 10,000 days"
    )
    status, _, body = console.get(f"/report?{whole}")
    assert status == 400 and b"is more than 10,000 days" in body
    status, _, body = console.get("/events.json?until=10000-01-01")
    assert status == 400 and json.loads(body) == {
        "error": "until: '10000-01-01' is outside the moments tbhook can place (from 0001-01-01 "
        "to 9999-12-31)"
    }


# -- what --db names -----------------------------------------------------------------------

COMMANDS = [["events"], ["tail"], ["doctor"], ["report"], ["backup", "copy.db"],
            ["prune", "--before", "2030-01-01", "--no-archive", "--yes"], ["import", "-"],
            ["quarantine"], ["serve", "--port", "0"], ["ui", "--port", "0"]]  # fmt: skip


@pytest.mark.parametrize("command", COMMANDS, ids=lambda c: c[0])
def test_a_file_that_is_not_sqlite_is_no_tbhook_database_and_needs_no_backup(tmp_path, command):
    readme = tmp_path / "README.md"
    readme.write_text("# tbhook\n\nReceive, keep and read Tracebuzz webhooks.\n" * 50)
    before = readme.read_bytes()
    done = tbhook(*command, "--db", str(readme))
    assert done.returncode == 1, done.stderr
    assert done.stderr == f"Error: {readme} is not a tbhook database (not a SQLite file at all)\n"
    assert readme.read_bytes() == before and sorted(tmp_path.iterdir()) == [readme]


def test_merging_a_file_that_is_not_sqlite_says_so(filled, tmp_path):
    readme = tmp_path / "README.md"
    readme.write_text("# tbhook\n" * 100)
    result = run("merge", str(readme))
    assert result.exit_code == 1
    assert result.stderr == f"Error: {readme} is not a tbhook database (not a SQLite file at all)\n"


def test_a_damaged_sqlite_file_keeps_the_backup_advice(tmp_path):
    damaged = tmp_path / "damaged.db"
    damaged.write_bytes(b"SQLite format 3\x00" + bytes(range(256)) * 40)
    done = tbhook("events", "--db", str(damaged))
    assert done.returncode == 1
    assert done.stderr.startswith(f"Error: {damaged} is damaged (")
    assert done.stderr.endswith("and restore the last backup\n")


SCHEMES = [
    ("mysql://tb:s3cret@h/db", "mysql://tb:***@h/db: tbhook does not speak mysql://, only "
     "SQLite files and PostgreSQL (postgresql:// or postgres://)"),
    ("sqlite:///tbhook.db", "sqlite:///tbhook.db: tbhook does not speak sqlite://"),
    ("file:tbhook.db", "file:tbhook.db: tbhook does not speak file:, only SQLite files and "
     "PostgreSQL (postgresql:// or postgres://); for a file whose name has a colon, write "
     "./file:tbhook.db"),
    ("postgresql:/h/db", "postgresql:/h/db is not a valid PostgreSQL URL: it must begin with "
     "postgresql:// or postgres:// (in lower case, two slashes)"),
    ("postgres:/x", "postgres:/x is not a valid PostgreSQL URL"),
    ("POSTGRESQL://h/db", "POSTGRESQL://h/db is not a valid PostgreSQL URL"),
]  # fmt: skip


@pytest.mark.parametrize("command", [["events"], ["tail"], ["backup", "copy.db"],
                                     ["serve", "--port", "0"], ["ui", "--port", "0"]],
                         ids=lambda c: c[0])  # fmt: skip
@pytest.mark.parametrize("url, words", SCHEMES, ids=[s[0].split(":")[0] for s in SCHEMES])
def test_a_scheme_tbhook_does_not_speak_is_a_usage_error_naming_it(tmp_path, command, url, words):
    assert "s3cret" not in db_refused(tmp_path, command, url, words)


def db_refused(where, command: list[str], db: str, words: str) -> str:
    """`tbhook COMMAND --db DB` run in ``where``: a usage error with ``words`` that leaves
    nothing behind; its stderr."""
    done = tbhook(*command, "--db", db, cwd=where)
    assert done.returncode == 2, done.stderr
    assert "Invalid value for '--db'" in done.stderr and words in done.stderr
    assert list(where.iterdir()) == []
    return done.stderr


# -- ids and counts: ASCII digits, on both faces --------------------------------------------

DIGITS = "(written in the digits 0-9)"


@pytest.mark.parametrize(
    "args, option, value, what",
    [
        (["events", "--case"], "--case", "٣", "a number"),
        (["events", "--person"], "--person", "３", "a number"),
        (["export", "--source"], "--source", "١٢", "a number"),
        (["events", "--before"], "--before", "٣", "an event id"),
        (["events", "--case"], "--case", "1_000", "a number"),
        (["event"], "ID", "١٢", "a number"),
        (["person"], "PERSON_ID", "٣", "a number"),
        (["case"], "CASE_ID", "٣", "a number"),
        (["events", "-n"], "--limit' / '-n", "١", "a number"),
        (["generate", "--count"], "--count' / '-c", "٣", "a number"),
    ],
)
def test_digits_of_other_scripts_are_no_id_on_the_command_line(filled, args, option, value, what):
    result = run(*args, value)
    assert result.exit_code == 2, result.output
    assert f"Invalid value for '{option}': '{value}' is not {what} {DIGITS}" in result.stderr


def test_a_port_is_ascii_digits_too(tmp_path):
    done = tbhook("serve", "--port", "٨٠٨٠", "--db", str(tmp_path / "new.db"))  # not 8080
    assert done.returncode == 2
    assert f"Invalid value for '--port': '٨٠٨٠' is not a number {DIGITS}" in done.stderr
    assert list(tmp_path.iterdir()) == []


def test_quarantine_ids_and_tail_counts_are_ascii_digits_too(filled):
    result = run("quarantine", "retry", "١")
    assert result.exit_code == 2
    assert f"'١' is not a quarantine id {DIGITS}" in result.stderr
    assert run("quarantine", "١").exit_code == 2  # not `quarantine show 1`
    assert "'١' is not a number of events or all" in run("tail", "-n", "١").stderr


def test_the_console_reads_ids_and_limits_by_the_command_line_s_rule(tmp_path, consoles):  # noqa: F811
    db = tmp_path / "console.db"
    a_log(str(db))
    console = consoles(db)
    cli = run("events", "--person", "٣", "--db", str(db)).stderr
    for path, words in (
        ("/events.json?person=٣", f"person: '٣' is not a number {DIGITS}"),
        ("/events.json?limit=１", f"limit: '１' is not a number {DIGITS}"),
        ("/cases.json?case=١٢", f"case: '١٢' is not a number {DIGITS}"),
        ("/events.json?before=٣", f"before: '٣' is not an event id {DIGITS}"),
        ("/events.json?limit=5000", "limit: a page shows from 1 to 1000 rows"),
    ):
        status, _, body = console.get(quote(path, safe="/?=&."))
        assert status == 400, (path, body)
        assert json.loads(body) == {"error": words}
    assert f"'٣' is not a number {DIGITS}" in cli  # the same words on both faces
    status, _, page = console.get("/?person=%D9%A3")
    assert status == 400 and b"is not a number" in page


@pytest.mark.parametrize(
    "command", [["queue", "--tz"], ["report", "--tz"], ["report", "--hours", "mon 09:00-17:00",
                                                         "--holidays"]],
    ids=["queue --tz", "report --tz", "report --holidays"],
)  # fmt: skip
def test_a_long_zone_or_holiday_value_is_refused_quoting_40_characters(filled, command):
    value = "Europe/" + "A" * 5000  # longer than any file name: no OSError escapes
    result = tbhook(*command, value, "--db", str(filled))
    assert result.returncode == 2 and "Traceback" not in result.stderr, result.stderr
    option = command[-1]
    assert f"Invalid value for '{option}': {value[:40]!r}... is " in result.stderr
    assert "A" * 41 not in result.stderr


# -- a full disk --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "args", [["events"], ["events", "-f", "json"], ["export", "-f", "csv"],
             ["export", "-f", "ndjson", "-o", "/dev/full"]],
    ids=["events", "events json", "export csv", "export -o /dev/full"],
)  # fmt: skip
def test_output_the_disk_has_no_room_for_is_an_error_line(filled, args):
    if not os.path.exists("/dev/full"):
        pytest.skip("no /dev/full on this system")
    with open("/dev/full", "w") as full:
        done = subprocess.run([sys.executable, "-m", "tbhook", *args, "--db", str(filled)],
                              stdout=full, stderr=subprocess.PIPE, text=True, timeout=30,
                              stdin=subprocess.DEVNULL)  # fmt: skip
    assert done.returncode == 1
    assert done.stderr == (
        "Error: the output could not be written: No space left on device; what was written "
        "of it is incomplete\n"
    )


# -- numbers a person types: ASCII digits ------------------------------------------------------


@pytest.mark.parametrize(
    "args, words",
    [
        (["serve", "--port", "0", "--max-db-size", "٣M"],
         "Invalid value for '--max-db-size': '٣M' is not a size"),
        (["serve", "--port", "0", "--retry-scale", "٣"],
         "Invalid value for '--retry-scale': '٣' is not a number (written in the digits 0-9"),
        (["serve", "--port", "0", "--retry-scale", "inf"],
         "Invalid value for '--retry-scale': 'inf' is not a number"),
        (["generate", "-c", "2", "--seed", "٣"],
         f"Invalid value for '--seed': '٣' is not a number {DIGITS}"),
        (["generate", "-c", "2", "--rate", "٣/s"],
         "Invalid value for '--rate': '٣/s' is not a positive rate such as 20/s"),
        (["generate", "-c", "2", "--rate", "nan/s"],
         "Invalid value for '--rate': 'nan/s' is not a positive rate such as 20/s"),
    ],
    ids=["max-db-size", "retry-scale", "retry-scale inf", "seed", "rate", "rate nan"],
)  # fmt: skip
def test_sizes_rates_and_seeds_are_ascii_digits_too(tmp_path, args, words):
    done = tbhook(*args, cwd=tmp_path)
    assert done.returncode == 2 and words in done.stderr, done.stderr
    assert done.stdout == "" and list(tmp_path.iterdir()) == []


# -- --db that names no file --------------------------------------------------------------------


@pytest.mark.parametrize(
    "value, words",
    [
        (" ", "' ' is no file name: give a database file (tbhook.db) or a postgresql:// URL"),
        ("", "'' is no file name"),
        ("-", "'-' is not a database: tbhook opens its database by name, again and again"),
        ("--x", "'--x' looks like an option, not a file name (was the database's name left "
         "out?); for a file whose name begins with -, write ./--x"),
        (" tbhook.db", "' tbhook.db' begins or ends with white space"),
        ("/dev/null", "/dev/null is a character device, not a database file"),
    ],
    ids=["blank", "empty", "dash", "an option", "spaces", "/dev/null"],
)  # fmt: skip
@pytest.mark.parametrize("command", [["events"], ["serve", "--port", "0"], ["backup", "c.db"]],
                         ids=lambda c: c[0])  # fmt: skip
def test_a_db_that_names_no_file_is_a_usage_error(tmp_path, command, value, words):
    db_refused(tmp_path, command, value, words)


def test_backup_to_a_dash_is_refused_and_writes_nothing(filled):
    done = subprocess.run([sys.executable, "-m", "tbhook", "backup", "-", "--db", str(filled)],
                          capture_output=True, timeout=30, cwd=filled.parent,
                          stdin=subprocess.DEVNULL)  # fmt: skip
    assert done.returncode == 1 and done.stdout == b""
    assert b"Error: DEST is -, which is not a file" in done.stderr
    side = {filled.name + suffix for suffix in ("", "-wal", "-shm")}  # as any reader leaves
    assert {p.name for p in filled.parent.iterdir()} <= side


# -- the console: odd requests, each a page in words ---------------------------------------------

OFFICE = quote("mon-fri 09:00-17:00")


def test_a_page_names_holiday_countries_never_a_file_of_the_machine(tmp_path, consoles):  # noqa: F811
    db = tmp_path / "console.db"
    a_log(str(db))
    dates = tmp_path / "NL"  # a file named as a country is, in the console's directory too
    dates.write_text("2023-11-14\n")
    console = consoles(db)
    assert console.get(f"/report.json?hours={OFFICE}&holidays=NL")[0] == 200
    for value in (str(dates), "/etc/passwd", "../" * 20 + "etc/hostname"):
        status, _, body = console.get(f"/report.json?hours={OFFICE}&holidays={quote(value)}")
        assert status == 400, body
        assert json.loads(body)["error"].startswith(
            f"holidays: {value[:40]!r}{'...' if len(value) > 40 else ''} names a file, and a "
            "page takes only country codes the holidays package knows"
        )
    # The command line may name a file of dates, as ever.
    assert run("report", "--hours", "mon-fri 09:00-17:00", "--holidays", str(dates),
               "--db", str(db)).exit_code == 0  # fmt: skip


def test_long_values_are_quoted_at_most_40_characters_on_a_page(tmp_path, consoles):  # noqa: F811
    db = tmp_path / "console.db"
    a_log(str(db))
    console = consoles(db)
    long = "Z" * 3000
    for path in (f"/report?tz=Europe/{long}", f"/report?hours={OFFICE}&holidays={long}",
                 f"/?sender={long}", f"/?{long}=1", f"/?since={long}", f"/report?by={long}",
                 f"/events/1?tz={long}"):  # fmt: skip
        status, _, page = console.get(path)
        assert status == 400, (path[:60], page[-500:])
        assert b"Z" * 30 in page and b"Z" * 41 not in page, path[:60]


@pytest.mark.parametrize(
    "after",
    ["%C2%B2", "%D9%A3%D9%A0%D9%A0", "9" * 5000, "1" * 25, "abc"],
    ids=["superscript two", "arabic 300", "5000 digits", "past 64 bits", "letters"],
)
def test_a_live_page_after_an_id_that_is_no_id_is_a_400_in_words(tmp_path, consoles, after):  # noqa: F811
    db = tmp_path / "console.db"
    a_log(str(db))
    console = consoles(db)
    status, _, page = console.get(f"/stream?after={after}")
    assert status == 400 and b"after: " in page and b"Traceback" not in page, page[-400:]
    assert b"9" * 41 not in page
    status, _, page = console.get("/stream", {"Last-Event-ID": after[:200]})
    assert status == 400 and b"after: " in page


def test_an_unexpected_failure_is_a_page_in_words_and_one_log_line(tmp_path, consoles):  # noqa: F811
    db = tmp_path / "console.db"
    a_log(str(db))
    console = consoles(db)
    assert console.get("/events/1")[0] == 200
    with sqlite3.connect(db) as conn:  # a row no tbhook wrote: a value of the wrong type
        conn.execute("UPDATE events SET timestamp = 'not-a-time' WHERE id = 1")
    conn.close()
    status, headers, page = console.get("/events/1")
    assert status == 500 and headers["content-type"].startswith("text/html")
    assert b"The console failed to answer this (TypeError); its log says more." in page
    status, _, body = console.get("/events/1.json")
    assert status == 500 and json.loads(body) == {
        "error": "The console failed to answer this (TypeError); its log says more."
    }
    wait_for(lambda: sum("TypeError" in line for line in console.lines) == 2)
    assert console.get("/health")[0] == 200  # and it answers on
    failures = [line for line in console.lines if "TypeError" in line]
    assert len(failures) == 2 and all(line.count("\n") == 1 for line in failures)
    assert not any("Traceback" in line or line.startswith("  ") for line in console.lines)


def test_a_body_that_never_comes_is_one_408_never_a_403_besides(tmp_path, consoles):  # noqa: F811
    db = tmp_path / "console.db"
    a_log(str(db))
    console = consoles(db)
    with socket.create_connection(("127.0.0.1", console.port), timeout=30) as sock:
        sock.sendall(f"POST /quarantine/retry HTTP/1.1\r\nHost: 127.0.0.1:{console.port}\r\n"
                     f"Origin: http://127.0.0.1:{console.port}\r\nContent-Length: 50\r\n"
                     "Content-Type: application/x-www-form-urlencoded\r\n\r\nid=1".encode())  # fmt: skip
        assert sock.recv(65536).startswith(b"HTTP/1.1 408")
    wait_for(lambda: any("answered 408" in line for line in console.lines))
    assert console.get("/")[0] == 200  # whatever the 408 would log has been logged by now
    assert [line for line in console.lines if "403" in line or "CSRF" in line] == []


def test_ids_retried_or_read_are_worded_whatever_their_spelling(tmp_path, consoles):  # noqa: F811
    db = tmp_path / "console.db"
    a_log(str(db))
    console = consoles(db)
    origin = {"Origin": f"http://127.0.0.1:{console.port}"}
    browser = Browser(console.port)
    csrf = browser.csrf("/quarantine")
    for value, status, words in (
        ("0", 404, "No quarantined delivery #0"),
        ("-1", 404, "No quarantined delivery #-1"),
        ("%D9%A3", 400, "is not a quarantine id (written in the digits 0-9); nothing was retried"),
    ):
        got, _, page = browser.post("/quarantine/retry", f"csrf={csrf}&id={value}", origin)
        assert got == status and words.encode() in page.replace(b"&#39;", b"'"), page[-500:]
    padded = "0" * 34 + "1"  # 35 digits, zero-padded: the id 1, as on the command line
    status, _, body = console.get(f"/events/{padded}.json")
    assert status == 200 and json.loads(body)["id"] == 1
    assert json.loads(run("event", padded, "--db", str(db), "-f", "json").stdout)["id"] == 1
    assert run("quarantine", "retry", "0", "--db", str(db)).exit_code == 1
    wrong = run("quarantine", "٣", "--db", str(db))
    assert wrong.exit_code == 2 and f"'٣' is not a quarantine id {DIGITS}" in wrong.stderr

"""Sender text is hostile: every read command, in every format, over a database of hostile
values. Nothing crashes, no markup or escape sequence reaches the terminal, and every CSV reads
back as the same rows, with no cell a spreadsheet would run as a formula."""

import csv
import io
import json
import re

import pytest
from conftest import on_a_terminal
from typer.testing import CliRunner

from tbhook.cli import app
from tbhook.model.events import parse
from tbhook.model.text import FORMULA_STARTS
from tbhook.store import Delivery
from tbhook.store.sqlite import SQLiteStore

T0 = 1_700_000_000
NAMES = [
    "[/x]",  # once made stats and doctor exit with rich.errors.MarkupError
    "[link=https://evil.example]click[/link]",
    "[bold red]loud[/]",
    "\x1b]0;owned\x07\x1b[2J",  # a title change and a cleared screen
    "\r=cmd|' /C calc'!A0",  # splits a CSV row in two if a bare CR is not quoted
    '=HYPERLINK("http://x")',
    "\uff1dSUM(A1)",  # a full-width equals sign
    "line\nbreak",
    "\x9b31mC1 CSI",
    "tab\tin",
]


def hostile_bodies() -> list[bytes]:
    bodies = []
    for i, name in enumerate(NAMES):
        bodies.append(
            json.dumps(
                {"event": name, "caseId": 900 + i, "personId": 77, "timestamp": T0 + i}
            ).encode()
        )
    # Documented events with values the spec does not list.
    bodies.append(
        json.dumps(
            {
                "event": "newResult",
                "searchId": 1,
                "uniqueId": 5,
                "resultId": 5,
                "personId": 77,
                "caseId": 950,
                "handlerId": 0,
                "sourceId": 14,
                "connectionId": 111,
                "typeId": 9,
                "own": 2,
                "timestamp": T0 + 50,
            }
        ).encode()
    )
    # A customer waiting for an answer, on the hostile path (the queue shows the path).
    waiting = json.loads(bodies[-1])
    waiting.update(caseId=951, own=0, typeId=4, uniqueId=6, resultId=6, timestamp=T0 + 60)
    bodies.append(json.dumps(waiting).encode())
    return bodies


QUARANTINED = [b"", b"[/x] \x1b[2J", b"=1+1\r\nnext", "\u202eevil".encode(), b"\xff\xfe"]


@pytest.fixture
def hostile_db(db_path):
    store = SQLiteStore.open(db_path)
    store.append([Delivery(b, parse(b), path="/[red]p\x1b[2J\r\n") for b in hostile_bodies()])
    store.append([Delivery(b, parse(b), path="/[link=x]q") for b in QUARANTINED])
    store.close()
    return db_path


# FORCE_COLOR makes rich write as it would to a terminal: escape sequences and hyperlinks.
runner = CliRunner(env={"COLUMNS": "200", "FORCE_COLOR": "1"})
FORMATS = ["table", "json", "ndjson", "csv"]
COMMANDS = [
    ["events", "--limit", "0"],
    ["tail", "--no-follow", "-n", "100"],
    ["person", "77"],
    ["case", "903"],
    ["cases"],
    ["export"],
    ["stats"],
    ["quarantine"],
    ["doctor"],
    ["queue", "--at", "2030-01-01", "--sla", "first=1h"],
]
# Only rich's own colour codes (SGR: ESC [ ... m) may reach the terminal.
ALLOWED_ESCAPE = re.compile(r"\x1b\[[0-9;]*m")


def formats_of(command):
    if command[0] == "tail":
        return ["text", "ndjson"]
    if command[0] == "export":
        return ["csv", "ndjson"]
    return FORMATS


CASES = [(c, f) for c in COMMANDS for f in formats_of(c)]


@pytest.mark.parametrize("command, fmt", CASES, ids=[f"{c[0]}-{f}" for c, f in CASES])
def test_every_read_command_in_every_format_survives_hostile_values(hostile_db, command, fmt):
    result = runner.invoke(app, [*command, "--format", fmt, "--db", str(hostile_db)])
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    # doctor warns (quarantine, unknown values) but does not fail
    assert result.exit_code == 0, result.output
    out = result.stdout_bytes.decode()  # Click's .stdout turns CRLF into LF
    stray = ALLOWED_ESCAPE.sub("", out)
    if fmt in ("json", "ndjson"):  # JSON escapes C0 controls (C1 ones are valid JSON text)
        assert "\x1b" not in stray and "\x07" not in stray, repr(out)
    if fmt in ("table", "text"):
        assert "\x1b" not in stray and "\x07" not in stray and "\x9b" not in stray, repr(out)
        # markup is shown as text, never applied; no hyperlink reaches the terminal
        assert "\x1b]8;" not in out
        if command[0] in ("events", "stats"):
            assert "[/x]" in out and "[link=https://evil.example]click[/link]" in out
        if command[0] == "queue":
            assert "/[red]p" in out and "1 waiting, 1 breached" in out
    elif fmt == "csv":
        assert_safe_csv(out)
    elif fmt == "json":
        json.loads(out)
    else:
        for line in out.splitlines():
            json.loads(line)


def assert_safe_csv(out: str) -> None:
    assert out.endswith("\r\n")
    rows = list(csv.reader(io.StringIO(out, newline="")))
    header, body = rows[0], rows[1:]
    assert all(len(row) == len(header) for row in body)  # no row split by a CR or an LF
    for row in body:
        for value in row:
            # A negative whole number (the queue's slaLeftSeconds once breached) is read as
            # a number, never run as a formula; anything else starting so would be.
            number = re.fullmatch(r"-\d+", value) is not None
            assert number or not value.startswith(FORMULA_STARTS), (value, row)


def test_hostile_event_names_keep_their_text_in_csv(hostile_db):
    out = runner.invoke(app, ["export", "--db", str(hostile_db)]).stdout_bytes.decode()
    rows = list(csv.DictReader(io.StringIO(out, newline="")))
    names = [row["event"] for row in rows[: len(NAMES)]]
    assert names[4] == "'\r=cmd|' /C calc'!A0"  # one cell, guarded, the CR kept inside quotes
    assert names[5] == '\'=HYPERLINK("http://x")'
    assert names[6] == "'\uff1dSUM(A1)"
    assert names[7] == "line\nbreak"


def test_quarantine_lists_an_empty_body(hostile_db):
    """Tracebuzz's test POST on save is empty; listing it once crashed with AttributeError."""
    result = runner.invoke(app, ["quarantine", "-f", "ndjson", "--db", str(hostile_db)])
    assert result.exit_code == 0
    rows = [json.loads(line) for line in result.stdout.splitlines()]
    first = next(row for row in rows if row["bodySize"] == 0)  # newest first
    assert (first["bodyStart"], first["reason"]) == (
        "",
        "empty body: the test Tracebuzz sends when a webhook is saved",
    )


def test_unknown_values_are_labelled_and_listed(hostile_db):
    events = runner.invoke(
        app, ["events", "-f", "ndjson", "--case", "950", "--db", str(hostile_db)]
    )
    [row] = [json.loads(line) for line in events.stdout.splitlines()]
    assert (row["typeId"], row["own"]) == (9, 2)
    table = runner.invoke(app, ["events", "--case", "950", "--db", str(hostile_db)]).stdout
    assert "unknown (2)" in table and "unknown (9)" in table
    stats = json.loads(runner.invoke(app, ["stats", "-f", "json", "--db", str(hostile_db)]).stdout)
    assert stats["unknownValues"] == {"typeId": {"9": 1}, "own": {"2": 1}}
    assert stats["byType"]["unknown (9)"] == 1
    doctor = json.loads(
        runner.invoke(app, ["doctor", "-f", "json", "--db", str(hostile_db)]).stdout
    )
    assert doctor["unknownValues"] == [
        {"field": "typeId", "value": 9, "events": 1},
        {"field": "own", "value": 2, "events": 1},
    ]
    [check] = [c for c in doctor["checks"] if c["check"] == "unknown values"]
    assert check["status"] == "warn" and "typeId 9 (1 event)" in check["message"]


TERMINAL_CASES = [
    ["export"],
    ["export", "--format", "ndjson"],
    ["events", "-n", "0", "-f", "csv"],
    ["events", "-n", "0", "-f", "ndjson"],
    ["stats", "-f", "csv"],
    ["doctor", "-f", "csv"],
    ["quarantine", "-f", "csv"],
    ["quarantine", "2", "--raw"],
]


@pytest.mark.parametrize("command", TERMINAL_CASES, ids=" ".join)
def test_machine_formats_on_a_terminal_escape_sender_escape_sequences(hostile_db, command):
    """An OSC sequence in an event name once retitled the terminal through `export`."""
    out = on_a_terminal(*command, "--db", str(hostile_db))
    assert out, command
    for byte in (b"\x1b", b"\x07", b"\xc2\x9b", b"\xe2\x80\xae"):  # ESC, BEL, C1 CSI, RLO
        assert byte not in ALLOWED_ESCAPE.sub("", out.decode("utf-8", "replace")).encode()


def test_machine_formats_through_a_pipe_keep_the_bytes(hostile_db):
    import subprocess
    import sys

    piped = subprocess.run(
        [sys.executable, "-m", "tbhook", "export", "--db", str(hostile_db)],
        capture_output=True,
        check=True,
    ).stdout
    assert b"\x1b]0;owned\x07" in piped  # data, kept as it came
    raw = subprocess.run(
        [sys.executable, "-m", "tbhook", "event", "4", "--raw", "--db", str(hostile_db)],
        capture_output=True,
        check=True,
    ).stdout
    assert raw == hostile_bodies()[3]

"""What a person sees at the terminal and a program reads: one event in full, tables that fit
60, 80 and 120 columns, one limit with a footer, empty answers explained, a quarantine that can
be acted on, and one filter bundle and one format registry behind every command."""

import csv
import io
import json
import sqlite3
import subprocess
import sys

import pytest
from conftest import event_body
from typer.testing import CliRunner

from tbhook.cli import app
from tbhook.model.events import parse
from tbhook.store import Delivery, ForwardOutcome
from tbhook.store.sqlite import SQLiteStore

runner = CliRunner()
HOSTILE = b'\x1b[2J\x1b]8;;http://evil\x07[bold]click[/bold]\xff\n=HYPERLINK("x")'
BIG_CASE, BIG_PERSON = 9_000_000_123, 8_000_000_456


def run(*args, width=None):
    env = {"COLUMNS": str(width)} if width else None
    return runner.invoke(app, list(args), env=env)


@pytest.fixture
def db(db_path):
    """Events with long ids, a merge, a forward that failed, a quarantined hostile body."""
    store = SQLiteStore.open(db_path)
    bodies = [
        event_body(caseId=BIG_CASE, personId=BIG_PERSON, own=0, timestamp=1_700_000_000),
        event_body(caseId=BIG_CASE, personId=BIG_PERSON, own=1, typeId=6, timestamp=1_700_000_090),
    ]
    stored = store.append(
        [Delivery(b, parse(b), path="/hook") for b in bodies], forward_to="http://app/in"
    )
    store.forwards.record(
        ForwardOutcome(stored[0].id, "http://app/in", 3, "pending", 503, "HTTP 503", 1.0)
    )
    merge = {"event": "profileMerged", "oldPersonId": BIG_PERSON, "newPersonId": 77, "timestamp": 2}
    pretty = json.dumps(merge, indent=4).encode()  # stored byte for byte, spaces and all
    store.append([Delivery(pretty, parse(pretty))])
    store.append([Delivery(HOSTILE, parse(HOSTILE), path="/x\x1b[31m")])
    for case in range(30):
        body = event_body(caseId=1000 + case, uniqueId=case)
        store.append([Delivery(body, parse(body))])
    store.close()
    return db_path


# -- one event in full -----------------------------------------------------------------------


def test_event_shows_every_column_the_person_now_the_forward_and_the_body(db):
    result = run("event", "1", width=120)
    assert result.exit_code == 0, result.output
    out = result.stdout
    for expected in (
        "event #1",
        "receivedAt",
        "lastReceivedAt",
        "/hook",
        "1700000000 (2023-11-14T22:13:20Z)",
        str(BIG_CASE),
        "canonicalPersonId  77 (person 8000000456 was merged into it)",
        "pending after 3 attempts to http://app/in, last answer 503, last error: HTTP 503",
        "body (JSON):",
        '  "caseId": 9000000123,',
    ):
        assert expected in out, expected
    document = json.loads(run("event", "1", "-f", "json").stdout)
    assert document["canonicalPersonId"] == 77 and document["forwardState"] == "pending"
    assert document["body"]["caseId"] == BIG_CASE and document["bodySize"] > 100


def test_event_raw_is_the_body_byte_for_byte(db):
    merge_id = 3
    raw = subprocess.run(
        [sys.executable, "-m", "tbhook", "event", str(merge_id), "--raw", "--db", str(db)],
        capture_output=True,
        check=True,
    ).stdout
    assert (
        raw
        == json.dumps(
            {
                "event": "profileMerged",
                "oldPersonId": BIG_PERSON,
                "newPersonId": 77,
                "timestamp": 2,
            },
            indent=4,
        ).encode()
    )


def test_event_that_does_not_exist_is_a_clean_error(db):
    result = run("event", "999")
    assert result.exit_code == 1
    assert result.stderr == "Error: no event #999 (ids run to 33)\n"


def test_quarantined_body_is_shown_escaped_and_raw_on_request(db):
    result = run("quarantine", "1", width=80)
    assert result.exit_code == 0, result.output
    out = result.stdout
    assert "\x1b" not in out and "\x07" not in out  # nothing reaches the terminal raw
    assert "body (not JSON):" in out and "\\x1b[2J" in out and "[bold]click[/bold]" in out
    assert "\\xff" in out and "body is not valid UTF-8" in out  # the full reason
    raw = subprocess.run(
        [sys.executable, "-m", "tbhook", "quarantine", "1", "--raw", "--db", str(db)],
        capture_output=True,
        check=True,
    ).stdout
    assert raw == HOSTILE
    assert run("quarantine", "5").exit_code == 1


# -- tables that fit ---------------------------------------------------------------------------


@pytest.mark.parametrize("width", [60, 80, 120])
def test_tables_fit_the_terminal_and_never_cut_ids_times_or_numbers(db, width):
    for args in (
        ("events", "--case", str(BIG_CASE)),
        ("cases", "--case", str(BIG_CASE)),
        ("quarantine",),
        ("person", str(BIG_PERSON)),
        ("case", str(BIG_CASE)),
        ("doctor",),
        ("stats",),
    ):
        result = run(*args, width=width)
        assert result.exit_code in (0, 1), (args, result.output)
        lines = result.stdout.splitlines()
        assert all(len(line.rstrip()) <= width for line in lines), (args, width, lines)
    out = run("events", "--case", str(BIG_CASE), width=width).stdout
    assert str(BIG_CASE) in out and str(BIG_PERSON) in out
    assert "2023-11-14T22:13:20Z" in out and "2023-11-14T22:14:50Z" in out
    rows = [line for line in out.splitlines() if str(BIG_CASE) in line]
    assert [row.split()[0] for row in rows] == ["2", "1"]  # ids whole, newest first
    header = out.splitlines()[0].split()
    if width >= 120:
        assert header == ["id", "time", "event", "case", "person", "now", "what"]
        assert "agent system message" in out and "customer private message" in out
    elif width >= 80:  # "now" went first, then "what"; the numbers stay whole
        assert header == ["id", "time", "event", "case", "person"]
    else:
        assert header == ["id", "time", "event", "case", "person"]
        assert "newRe…" in out  # the text column is cut with an ellipsis, not the ids


@pytest.mark.parametrize("width", [40, 50])
def test_below_the_width_of_the_numbers_each_row_is_a_block(db, width):
    """Rather than cut an id, each row becomes `name: value` lines."""
    for args in (("events", "--case", str(BIG_CASE)), ("cases",), ("quarantine",), ("doctor",)):
        result = run(*args, width=width)
        assert result.exit_code in (0, 1), result.output
        assert all(len(line.rstrip()) <= width for line in result.stdout.splitlines()), args
    out = run("events", "--case", str(BIG_CASE), width=width).stdout
    assert "    id: 2\n" in out and "    id: 1\n" in out
    assert f"  case: {BIG_CASE}\n" in out and f"person: {BIG_PERSON}\n" in out
    assert "  time: 2023-11-14T22:14:50Z\n" in out
    assert "…" not in out


# -- one way to ask for how many ----------------------------------------------------------------


@pytest.mark.parametrize("command", ["events", "cases", "quarantine"])
def test_every_listing_takes_the_same_limit_and_says_when_it_cut(db, command):
    default = run(command, width=200)
    assert default.exit_code == 0
    one = run(command, "-n", "1", width=200)
    everything = run(command, "--limit", "0", width=200)
    total = {"events": 33, "cases": 31, "quarantine": 1}[command]
    if total > 1:
        assert one.stdout.rstrip().endswith(f"1 of {total} shown; -n 0 for all")
    assert "shown; -n 0 for all" not in everything.stdout
    if command != "quarantine":  # 33 and 31 are under the default of 50
        assert "shown" not in default.stdout
    machine = run(command, "-n", "1", "-f", "ndjson")
    assert len(machine.stdout.splitlines()) == 1
    if total > 1:
        assert machine.stderr == f"1 of {total} shown; -n 0 for all\n"  # never in the data


def test_cases_first_page_reads_only_its_cases(db_path):
    """The limit goes to the store: the first page does not summarize every case."""
    store = SQLiteStore.open(db_path)
    for case in range(200):
        body = event_body(caseId=case, uniqueId=case)
        store.append([Delivery(body, parse(body))])
    from tbhook.model.filters import Filters

    rows = list(store.reads.case_events(Filters(), descending=True, limit=3))
    store.close()
    assert sorted({row[0] for row in rows}) == [197, 198, 199]  # rows of CASE_COLUMNS
    out = run("cases", "-n", "3", "-f", "csv").stdout
    assert [r["caseId"] for r in csv.DictReader(io.StringIO(out))] == ["199", "198", "197"]


# -- empty answers explained ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("args", "said"),
    [
        (
            ("--event", "newresult"),
            'No events: no event named "newresult" (did you mean "newResult"? names are '
            "case-sensitive); known: newResult, caseClosed, profileMerged\n",
        ),
        (("--case", "5"), "No events: no event has caseId 5\n"),
        (("--person", "424242"), "No events: no event names person 424242 or anyone merged"),
        (
            ("--since", "2099-01-01"),
            "No events: no event has a timestamp from 2099-01-01T00:00:00Z",
        ),
        (
            ("--case", str(BIG_CASE), "--event", "profileMerged"),
            "No events: each filter matches events, but no event matches them all\n",
        ),
    ],
)
def test_an_empty_answer_says_why_on_stderr(db, args, said):
    for command in ("events", "export"):
        result = run(command, *args, "-f", "ndjson")
        assert result.exit_code == 0 and result.stdout == ""
        assert result.stderr.startswith(said)


def test_since_after_until_is_a_usage_error(db):
    for command in ("events", "cases", "stats", "export", "tail"):
        result = run(command, "--since", "2024-05-02", "--until", "2024-05-01")
        assert result.exit_code == 2, command
        assert "since (2024-05-02T00:00:00Z) is not before until" in result.stderr


# -- quarantine you can act on ------------------------------------------------------------------


def _quarantine_as_an_older_tbhook(db, body, received, deliveries=1):
    """A body an older tbhook kept in quarantine (before unknown typeIds were kept as events)."""
    import hashlib

    conn = sqlite3.connect(db)
    conn.execute(
        "INSERT INTO quarantine (receivedAt, lastReceivedAt, deliveries, path, reason, body, "
        "bodySha256) VALUES (?, ?, ?, '/old', 'newResult: \"typeId\" 9 is not listed', ?, ?)",
        (received, received, deliveries, body, hashlib.sha256(body).digest()),
    )
    conn.commit()
    conn.close()


def test_quarantine_lists_with_the_full_reason(db):
    rows = [json.loads(line) for line in run("quarantine", "-f", "ndjson").stdout.splitlines()]
    assert rows[0]["reason"] == "body is not valid UTF-8" and rows[0]["bodySize"] == len(HOSTILE)
    table = run("quarantine", width=120).stdout
    assert "\x1b" not in table and rows[0]["reason"].split()[0] in table
    # Received as every other time is shown: ISO, to the second, with Z.
    assert rows[0]["receivedAt"][:19] + "Z" in table.replace("\n", "")


def test_quarantine_retry_moves_what_is_readable_now_keeps_the_rest_and_is_idempotent(db):
    readable = event_body(caseId=4242, typeId=9)
    already = event_body(caseId=BIG_CASE, personId=BIG_PERSON, own=0, timestamp=1_700_000_000)
    _quarantine_as_an_older_tbhook(db, readable, "2024-02-01T10:00:00.000Z", deliveries=2)
    _quarantine_as_an_older_tbhook(db, already, "2020-01-01T00:00:00.000Z", deliveries=3)
    before = run("events", "-n", "0", "-f", "ndjson").stdout.count("\n")

    result = run("quarantine", "retry", "-f", "ndjson")
    assert result.exit_code == 0, result.output
    outcomes = sorted(
        (r["quarantineId"], r["outcome"]) for r in map(json.loads, result.stdout.splitlines())
    )
    assert outcomes == [(1, "unreadable"), (2, "moved"), (3, "merged")]
    assert "Moved 2 of 3 quarantined deliveries into events; 1 still unreadable" in result.stderr
    moved = json.loads(run("events", "--case", "4242", "-f", "json").stdout)
    assert len(moved) == 1
    assert (moved[0]["receivedAt"], moved[0]["deliveries"], moved[0]["typeId"]) == (
        "2024-02-01T10:00:00.000Z",
        2,
        9,
    )
    first = json.loads(run("event", "1", "-f", "json").stdout)  # the same body, deduped
    assert (first["deliveries"], first["receivedAt"]) == (4, "2020-01-01T00:00:00.000Z")
    after = run("events", "-n", "0", "-f", "ndjson").stdout.count("\n")
    assert after == before + 1
    with sqlite3.connect(db) as conn:  # the merged body used up no id: the next follows on
        used, highest = conn.execute(
            "SELECT seq, (SELECT max(id) FROM events) FROM sqlite_sequence WHERE name = 'events'"
        ).fetchone()
    assert used == highest == moved[0]["id"]
    assert [
        r["id"] for r in map(json.loads, run("quarantine", "-f", "ndjson").stdout.splitlines())
    ] == [1]

    again = run("quarantine", "retry")  # idempotent: nothing moves twice
    assert again.exit_code == 0 and "Moved 0 of 1" in again.stderr
    assert run("events", "-n", "0", "-f", "ndjson").stdout.count("\n") == after
    assert json.loads(run("event", "1", "-f", "json").stdout)["deliveries"] == 4


def test_quarantine_retry_of_named_ids_and_of_an_id_not_there(db):
    _quarantine_as_an_older_tbhook(db, event_body(caseId=5151, typeId=9), "2024-02-01T10:00:00Z")
    result = run("quarantine", "retry", "2", "#77")
    assert result.exit_code == 1 and result.stdout == ""  # a mistyped id: nothing is retried
    assert result.stderr.startswith("Error: not in quarantine: #77 (")
    assert run("events", "--case", "5151").stdout == ""
    result = run("quarantine", "retry", "2")
    assert result.exit_code == 0 and "moved" in result.stdout
    assert json.loads(run("events", "--case", "5151", "-f", "json").stdout)[0]["caseId"] == 5151
    bad = run("quarantine", "retry", "seven")
    assert bad.exit_code == 2 and "'seven' is not a quarantine id" in bad.stderr


# -- one bundle, one registry --------------------------------------------------------------------


def _options(command: str) -> set[str]:
    import typer.main

    click_command = typer.main.get_command(app).commands[command]  # type: ignore[attr-defined]
    return {name for param in click_command.params for name in param.opts}


FILTERS = {
    "--event",
    "--case",
    "--person",
    "--search-id",
    "--source",
    "--sender",
    "--since",
    "--until",
}


@pytest.mark.parametrize("command", ["events", "tail", "cases", "export", "stats", "replay"])
def test_every_filtering_command_takes_the_one_filter_bundle(command):
    assert _options(command) >= FILTERS


def test_every_listing_takes_n_and_limit():
    for command in ("events", "cases", "quarantine", "tail"):
        assert {"-n", "--limit"} <= _options(command), command


def test_doctor_csv_is_csv_through_the_registry(db):
    result = run("doctor", "-f", "csv")
    rows = list(csv.DictReader(io.StringIO(result.stdout)))
    assert list(rows[0]) == ["check", "status", "detail"]
    assert {"integrity", "quarantine"} <= {row["check"] for row in rows}


@pytest.mark.parametrize("command", ["events", "cases", "quarantine", "stats", "doctor"])
def test_json_and_ndjson_agree_for_every_command(db, command):
    as_json = json.loads(run(command, "-f", "json").stdout)
    lines = [json.loads(line) for line in run(command, "-f", "ndjson").stdout.splitlines()]
    assert (as_json if isinstance(as_json, list) else [as_json]) == lines


def test_sender_text_is_escaped_in_every_format(db):
    table = run("quarantine", width=200).stdout
    assert "\x1b" not in table
    rows = list(csv.reader(io.StringIO(run("quarantine", "-f", "csv").stdout)))
    body_start = rows[1][-1]
    assert not body_start.startswith(("=", "+", "-", "@"))
    assert "\\u001b" in run("quarantine", "-f", "json").stdout  # JSON escapes it
    assert "\x1b" not in run("tail", "--no-follow", "--quarantine", width=200).stdout


# -- tables stream -------------------------------------------------------------------------------


def test_a_table_is_written_while_its_rows_are_still_being_read():
    """The first rows reach the terminal before the store has yielded the rest (a rich table
    read all 200,000 rows before drawing the first, for 75 s)."""
    import io

    from tbhook.output import listings
    from tbhook.output.formats import Answer, write

    out = io.StringIO()
    seen_when: dict[int, int] = {}

    def rows():
        for n in range(1, 1001):
            seen_when[n] = out.getvalue().count("\n")
            yield {
                "id": n, "time": "2024-01-01T00:00:00Z", "event": "newResult", "caseId": n,
                "personId": 7, "newPersonId": None, "own": 0, "typeId": 4,
                "canonicalPersonId": 7,
            }  # fmt: skip

    widths = {"id": 4, "case": 4, "person": 1, "quarantine": 1}
    spec = listings.events(widths, ["newResult"], merged=False)
    assert write(Answer(records=rows(), spec=spec), "table", out) == 1000
    assert seen_when[500] >= 200  # rows were out long before the last was read
    lines = out.getvalue().splitlines()
    assert len(lines) == 1002 and lines[2].split()[0] == "1" and lines[-1].split()[0] == "1000"


def test_a_table_piped_into_head_ends_when_head_does(db_path):
    import json as _json

    store = SQLiteStore.open(db_path)
    bodies = [
        _json.dumps({**_json.loads(event_body()), "caseId": i, "uniqueId": i}).encode()
        for i in range(20_000)
    ]
    store.append([Delivery(b, parse(b)) for b in bodies])
    store.close()
    proc = subprocess.Popen(
        [sys.executable, "-m", "tbhook", "events", "-n", "0", "--db", str(db_path)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    header, rule, first = (proc.stdout.readline() for _ in range(3))
    assert header.split()[:2] == [b"id", b"time"] and rule.startswith("─".encode())
    assert first.split()[0] == b"20000"
    proc.stdout.close()  # what `head -3` does after its third line
    assert proc.wait(60) in (0, 1, -13)  # ends: by the broken pipe, never a hang
    assert b"Traceback" not in proc.stderr.read()


# -- times in a zone on request ------------------------------------------------------------------


@pytest.mark.parametrize(
    "args",
    [
        ("events", "--case", str(BIG_CASE)),
        ("tail", "--no-follow", "--case", str(BIG_CASE)),
        ("case", str(BIG_CASE)),
        ("event", "1"),
    ],
    ids=lambda a: a[0],
)
def test_tables_and_tail_show_times_in_a_zone_on_request(db, args):
    local = run(*args, "--tz", "Europe/Amsterdam", width=160).stdout
    assert "2023-11-14 23:13:20 CET" in local  # 22:13:20 UTC, an hour ahead in November
    assert "2023-11-14T22:13:20Z" not in local
    assert "2023-11-14T22:13:20Z" in run(*args, width=160).stdout  # UTC stays the default


def test_local_is_this_machines_zone_and_json_stays_utc(db):
    env = {"COLUMNS": "160", "TBHOOK_DB": str(db), "TZ": "America/New_York"}
    table = CliRunner(env=env).invoke(app, ["events", "--case", str(BIG_CASE), "--local"])
    assert "2023-11-14 17:13:20 EST" in table.stdout
    rows = json.loads(
        CliRunner(env=env)
        .invoke(app, ["events", "--case", str(BIG_CASE), "--local", "-f", "json"])
        .stdout
    )
    assert {row["time"] for row in rows} == {"2023-11-14T22:13:20Z", "2023-11-14T22:14:50Z"}


def test_summer_time_is_named(db_path):
    store = SQLiteStore.open(db_path)
    body = event_body(timestamp=1_719_831_600)  # 2024-07-01T11:00:00Z
    store.append([Delivery(body, parse(body))])
    store.close()
    out = run("events", "--tz", "Europe/Amsterdam", "--db", str(db_path), width=160).stdout
    assert "2024-07-01 13:00:00 CEST" in out


def test_a_zone_that_does_not_exist_is_a_usage_error(db):
    result = run("events", "--tz", "Europe/Amsterdm")
    assert result.exit_code == 2
    assert "'Europe/Amsterdm' is not a time zone (an IANA name such as Europe/Amsterdam" in (
        result.stderr
    )


def test_at_80_columns_the_event_name_is_whole_and_a_hidden_column_is_named(db):
    """The optional "what" is cut before the event's name; a report too wide for the
    terminal names the columns it leaves out rather than dropping them silently."""
    table = run("events", width=80).stdout
    assert "profileMerged" in table and "profileMerg…" not in table
    assert all(len(line) <= 80 for line in table.splitlines())
    report = run("report", "--by", "source", width=40).stdout
    assert "not shown at this width: " in " ".join(report.split())
    wide = run("report", "--by", "source", width=300).stdout
    assert "not shown" not in wide


def test_at_80_columns_the_optional_what_is_cut_before_the_event_name(tmp_path):
    from conftest import sample_bytes

    path = tmp_path / "short.db"
    store = SQLiteStore.open(path)
    # Four-digit ids and eight-digit cases and persons: what is left for text is narrow.
    bodies = [event_body(caseId=11111111, personId=11111111, uniqueId=n) for n in range(1200)]
    bodies.append(sample_bytes("profile-merged"))
    store.append([Delivery(b, parse(b)) for b in bodies])
    store.close()
    table = run("events", "--db", str(path), "-n", "3", width=80).stdout
    assert "profileMerged" in table and "what" in table.splitlines()[0], table

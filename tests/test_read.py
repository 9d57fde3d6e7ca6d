"""The read commands against a real database built through the store."""

import csv
import io
import json
import subprocess
import sys

import pytest
from typer.testing import CliRunner

from tbhook.cli import app
from tbhook.model.events import parse
from tbhook.store import Delivery
from tbhook.store.sqlite import SQLiteStore

T0 = 1_700_000_000  # 2023-11-14T22:13:20Z


def msg(unique, case, person, own, ts, type_id=4, source=14, search=1):
    return {
        "event": "newResult",
        "searchId": search,
        "uniqueId": unique,
        "resultId": unique,
        "personId": person,
        "caseId": case,
        "handlerId": 0,
        "sourceId": source,
        "connectionId": 111,
        "typeId": type_id,
        "own": own,
        "timestamp": ts,
    }


def close(case, person, ts, reason=3, external_person=False):
    return {
        "event": "caseClosed",
        "searchId": 1,
        "caseId": case,
        "externalCaseId": None,
        "reasonId": reason,
        "personId": person,
        "externalPersonId": external_person,
        "agentId": 7,
        "resultId": 1,
        "connectionId": 111,
        "timestamp": ts,
    }


def merge(old, new, ts):
    return {"event": "profileMerged", "oldPersonId": old, "newPersonId": new, "timestamp": ts}


# A hand-made log with known answers.
# Case 500 (person 10): customer at T0, agent at +90, customer at +200, closed at +600.
# Case 501 (person 20): customer, closed, then the customer writes again: reopened.
# Case 502 (person 30): agent first (outbound), customer later, never closed.
# Person 10 merged into 20 at +700; 20's case 501 then belongs to the same person.
LOG = [
    msg(101, 500, 10, 0, T0),
    msg(102, 500, 10, 1, T0 + 90),
    msg(103, 500, 10, 0, T0 + 200, type_id=3),
    close(500, 10, T0 + 600),
    merge(10, 20, T0 + 700),
    msg(201, 501, 20, 0, T0 + 86400, type_id=2, source=3),
    close(501, 20, T0 + 86400 + 60, reason=None, external_person=55),
    msg(202, 501, 20, 0, T0 + 86400 + 120, source=3),
    msg(301, 502, 30, 1, T0 + 2 * 86400, search=2),
    msg(302, 502, 30, 0, T0 + 2 * 86400 + 30, search=2),
    {"event": "caseAssigned", "caseId": 502, "agentId": 9, "timestamp": T0 + 2 * 86400 + 40},
]


@pytest.fixture
def log_db(db_path):
    store = SQLiteStore.open(db_path)
    bodies = [json.dumps(e).encode() for e in LOG]
    store.append([Delivery(b, parse(b), path="/tb") for b in bodies])
    store.append([Delivery(b"=HYPERLINK(1)", parse(b"=HYPERLINK(1)"), path="/tb")])
    store.close()
    return db_path


runner = CliRunner(env={"COLUMNS": "200"})  # wide enough that tables do not wrap


@pytest.fixture(params=["one core", "two cores"])
def split(request, monkeypatch):
    """Big reads (export, stats) go through both paths: alone, and split over two processes."""
    monkeypatch.setenv("TBHOOK_SPLIT_ROWS", "1" if request.param == "two cores" else "1000000")
    return request.param


def run(*args):
    return runner.invoke(app, list(args), catch_exceptions=False)


def ndjson(result):
    assert result.exit_code == 0, result.output
    return [json.loads(line) for line in result.stdout.splitlines()]


def test_events_default_is_newest_first_limited(log_db):
    rows = ndjson(run("events", "--format", "ndjson", "--limit", "3"))
    assert [r["timestamp"] for r in rows] == [
        T0 + 2 * 86400 + 40,
        T0 + 2 * 86400 + 30,
        T0 + 2 * 86400,
    ]


def test_events_ascending_and_unlimited(log_db):
    rows = ndjson(run("events", "-f", "ndjson", "--order", "asc", "--limit", "0"))
    assert [r["id"] for r in rows] == [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11]


def test_before_pages_back_by_id_and_says_when_the_pages_end(log_db):
    rows = ndjson(run("events", "-f", "ndjson", "--sort", "arrival", "--before", "4"))
    assert [r["id"] for r in rows] == [3, 2, 1]
    past = runner.invoke(app, ["events", "--before", "1", "--db", str(log_db)])
    assert past.exit_code == 0 and "No events: none has an id below 1" in past.stderr


def test_event_keys_are_tracebuzz_names_plus_ours(log_db):
    [row] = ndjson(run("events", "-f", "ndjson", "--case", "501", "--event", "caseClosed"))
    assert row == {
        "id": 7,
        "receivedAt": row["receivedAt"],
        "event": "caseClosed",
        "timestamp": T0 + 86460,
        "time": "2023-11-15T22:14:20Z",
        "searchId": 1,
        "uniqueId": None,
        "resultId": 1,
        "personId": 20,
        "caseId": 501,
        "handlerId": None,
        "sourceId": None,
        "connectionId": 111,
        "typeId": None,
        "own": None,
        "externalCaseId": None,
        "reasonId": None,
        "externalPersonId": 55,
        "agentId": 7,
        "oldPersonId": None,
        "newPersonId": None,
        "canonicalPersonId": 20,
        "deliveries": 1,
        "forwardState": None,
        "forwardAttempts": None,
        "forwardStatus": None,
    }
    assert row["receivedAt"].endswith("Z")


@pytest.mark.parametrize(
    "args, ids",
    [
        (["--event", "caseClosed"], [4, 7]),
        (["--event", "caseClosed", "--event", "profileMerged"], [4, 5, 7]),
        (["--event", "caseAssigned"], [11]),
        (["--case", "500"], [1, 2, 3, 4]),
        (["--person", "20"], [1, 2, 3, 4, 5, 6, 7, 8]),  # 10 was merged into 20
        (["--person", "10"], [1, 2, 3, 4, 5, 6, 7, 8]),
        (["--person", "30"], [9, 10]),
        (["--search-id", "2"], [9, 10]),
        (["--source", "3"], [6, 8]),
        (["--sender", "agent"], [2, 9]),
        (["--sender", "Customer", "--case", "501"], [6, 8]),
        (["--since", "2023-11-16"], [9, 10, 11]),
        (["--until", "2023-11-14"], [1, 2, 3, 4, 5]),  # a bare date includes that day
        (["--since", "2023-11-15T00:00:00+01:00", "--until", "2023-11-15T22:15:20Z"], [6, 7, 8]),
        (["--since", "2023-11-14T22:14:50", "--until", "2023-11-14T22:14:50"], [2]),
        (["--since", "3650d"], list(range(1, 12))),
        (["--until", "3650d"], []),
    ],
)
def test_filters(log_db, args, ids):
    rows = ndjson(run("events", "-f", "ndjson", "--order", "asc", *args))
    assert [r["id"] for r in rows] == ids


@pytest.mark.parametrize(
    "args, message",
    [
        (
            ["--since", "yesterday"],
            "Invalid value for '--since': 'yesterday' is not a date, a datetime, Unix seconds, an age or now",
        ),
        (["--until", "2h30"], "Invalid value for '--until'"),
        (["--sender", "bot"], "Invalid value for '--sender': 'bot' is not customer or agent"),
        (["--case", "abc"], "Invalid value for '--case'"),
        (["--person", str(2**64)], "Invalid value for '--person'"),
        (["--format", "xml"], "Invalid value for '--format'"),
        (["--limit", "-1"], "Invalid value for '--limit'"),
    ],
)
def test_bad_filter_values_are_usage_errors_naming_the_option(log_db, args, message):
    result = run("events", *args)
    assert result.exit_code == 2
    assert message in " ".join(result.stderr.split())


@pytest.mark.parametrize(
    "command",
    [
        ["events"],
        ["tail", "--no-follow"],
        ["person", "1"],
        ["case", "1"],
        ["cases"],
        ["export"],
        ["stats"],
        ["quarantine"],
    ],
)
def test_missing_database_is_an_error_and_is_not_created(tmp_path, command):
    missing = tmp_path / "missing.db"
    result = run(*command, "--db", str(missing))
    assert result.exit_code == 1
    assert result.stderr == f"Error: no database at {missing} (run `tbhook serve` to create one)\n"
    assert not missing.exists()


def test_json_is_one_array_and_matches_ndjson(log_db):
    result = run("events", "-f", "json", "--limit", "0")
    assert json.loads(result.stdout) == ndjson(run("events", "-f", "ndjson", "--limit", "0"))
    assert json.loads(run("events", "-f", "json", "--case", "999").stdout) == []


def test_table_shows_labels_and_canonical_person(log_db):
    result = run("events", "--case", "500")
    assert result.exit_code == 0
    out = result.stdout
    assert "customer" in out and "agent" in out and "private message" in out and "comment" in out
    first = next(line for line in out.splitlines() if line.split()[:1] == ["1"])
    assert first.split()[4:6] == ["10", "20"]  # person 10, now 20 (the "now" column)
    assert "closed by agent 7, reason 3" in out


def test_person_json(log_db):
    result = run("person", "10", "--format", "json")
    assert json.loads(result.stdout) == {
        "personId": 10,
        "canonicalPersonId": 20,
        "aliases": [10, 20],
        "merges": [
            {
                "oldPersonId": 10,
                "newPersonId": 20,
                "timestamp": T0 + 700,
                "time": "2023-11-14T22:25:00Z",
            }
        ],
    }


def test_unknown_person_is_its_own_canonical_id(log_db):
    assert json.loads(run("person", "777", "-f", "json").stdout) == {
        "personId": 777,
        "canonicalPersonId": 777,
        "aliases": [777],
        "merges": [],
    }
    assert "person 777 is now 777" in run("person", "777").stdout


def test_case_metrics_on_a_known_conversation(log_db):
    document = json.loads(run("case", "500", "--format", "json").stdout)
    events = document.pop("events")
    assert document == {
        "caseId": 500,
        "personId": 10,
        "canonicalPersonId": 20,
        "source": 14,
        "messages": 3,
        "customerMessages": 2,
        "agentMessages": 1,
        "firstMessageAt": "2023-11-14T22:13:20Z",
        "firstResponseSeconds": 90,
        "replies": 1,
        "unanswered": 1,  # the customer's second message (+200) was never answered
        "firstClosedAt": "2023-11-14T22:23:20Z",
        "closedBy": 7,
        "resolutionSeconds": 600,
        "closedAt": "2023-11-14T22:23:20Z",
        "secondsToClose": 600,
        "reopens": 0,
        "closed": True,
        "reopened": False,
    }
    assert [e["id"] for e in events] == [1, 2, 3, 4]


def test_reopened_case(log_db):
    document = json.loads(run("case", "501", "-f", "json").stdout)
    assert (document["closed"], document["reopened"]) == (False, True)
    assert document["secondsToClose"] == 60 and document["firstResponseSeconds"] is None


def test_agent_first_case_has_no_response_time_and_is_open(log_db):
    document = json.loads(run("case", "502", "-f", "json").stdout)
    assert document["firstResponseSeconds"] is None
    assert (document["closed"], document["closedAt"], document["secondsToClose"]) == (
        False,
        None,
        None,
    )
    assert [e["event"] for e in document["events"]][-1] == "caseAssigned"


def test_case_table_shows_timeline_and_metrics(log_db):
    out = run("case", "500").stdout
    assert "firstResponseSeconds" in out and "90" in out and "closed by agent 7, reason 3" in out


def test_unknown_case_is_an_error(log_db):
    result = run("case", "404")
    assert result.exit_code == 1
    assert result.stderr == "Error: no events for case 404\n"


def test_cases_one_row_per_case(log_db):
    rows = ndjson(run("cases", "-f", "ndjson", "--order", "asc"))
    assert [(r["caseId"], r["messages"], r["closed"], r["reopened"]) for r in rows] == [
        (500, 3, True, False),
        (501, 2, False, True),
        (502, 2, False, False),
    ]
    assert [r["caseId"] for r in ndjson(run("cases", "-f", "ndjson", "--person", "20"))] == [
        501,
        500,
    ]  # highest caseId first, unless --order asc


def test_cases_csv_has_header_and_booleans(log_db):
    rows = list(csv.DictReader(io.StringIO(run("cases", "-f", "csv", "--order", "asc").stdout)))
    assert rows[0]["caseId"] == "500" and rows[0]["closed"] == "true"
    assert rows[2]["closedAt"] == ""


def test_export_csv_round_trips_through_the_csv_module(log_db, split):
    result = run("export")
    reader = csv.DictReader(io.StringIO(result.stdout))
    assert reader.fieldnames[:5] == ["id", "receivedAt", "event", "timestamp", "time"]
    assert reader.fieldnames[-2:] == ["canonicalPersonId", "deliveries"]
    rows = list(reader)
    assert len(rows) == 11
    expected = ndjson(run("events", "-f", "ndjson", "--order", "asc", "--limit", "0"))
    by_id = {r["id"]: r for r in expected}
    for row in rows:
        for key, value in row.items():
            original = by_id[int(row["id"])][key]
            assert value == ("" if original is None else str(original))


def test_export_cannot_inject_spreadsheet_formulas(db_path, split):
    store = SQLiteStore.open(db_path)
    for name in ('=HYPERLINK("http://x")', "+1", "-2", "@SUM(A1)"):
        body = json.dumps({"event": name, "caseId": -5, "timestamp": T0}).encode()
        store.append([Delivery(body, parse(body))])
    store.close()
    rows = list(csv.reader(io.StringIO(run("export").stdout)))[1:]
    assert [r[2] for r in rows] == ['\'=HYPERLINK("http://x")', "'+1", "'-2", "'@SUM(A1)"]
    assert {r[9] for r in rows} == {"-5"}  # numbers stay numbers


def test_export_ndjson_and_filters(log_db, split):
    rows = ndjson(run("export", "--format", "ndjson", "--event", "profileMerged"))
    assert [(r["oldPersonId"], r["newPersonId"], r["canonicalPersonId"]) for r in rows] == [
        (10, 20, 20)
    ]


def test_export_to_a_file_is_atomic_and_complete(log_db, split, tmp_path):
    target = tmp_path / "out.csv"
    target.write_text("old contents")
    result = run("export", "--output", str(target), "--force")
    assert result.exit_code == 0
    assert result.stderr.endswith(f"Wrote 11 events to {target}\n")
    assert len(list(csv.DictReader(target.open()))) == 11
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []


def test_export_to_an_unwritable_place_is_an_error(log_db, tmp_path):
    result = run("export", "--output", str(tmp_path / "no" / "dir" / "out.csv"))
    assert result.exit_code == 1
    assert result.stderr.startswith("Error: cannot write ")


def test_stats_counts(log_db, split):
    counts = json.loads(run("stats", "--format", "json").stdout)
    assert counts == {
        "events": 11,
        "byEvent": {"newResult": 7, "caseClosed": 2, "profileMerged": 1, "caseAssigned": 1},
        "bySender": {"customer": 5, "agent": 2},
        "byType": {"private message": 5, "comment": 1, "post": 1},
        "bySource": {"14": 5, "3": 2},
        "perDay": {"2023-11-14": 5, "2023-11-15": 3, "2023-11-16": 3},
        "unknownValues": {"typeId": {}, "own": {}},
    }
    filtered = json.loads(run("stats", "-f", "json", "--case", "501").stdout)
    assert filtered["events"] == 3 and filtered["perDay"] == {"2023-11-15": 3}


def test_stats_table_has_a_bar_chart(log_db):
    out = run("stats").stdout
    assert "11 events" in out
    assert "2023-11-14  " + "█" * 40 + " 5" in out


def test_quarantine_lists_kept_unreadable_deliveries(log_db):
    [row] = ndjson(run("quarantine", "-f", "ndjson"))
    assert row["path"] == "/tb" and row["reason"].startswith("not valid JSON")
    assert row["bodyStart"] == "=HYPERLINK(1)" and row["bodySize"] == 13
    [line] = list(csv.reader(io.StringIO(run("quarantine", "-f", "csv").stdout)))[1:]
    assert line[-1] == "'=HYPERLINK(1)"


def test_tail_no_follow_prints_last_n_in_arrival_order(log_db):
    result = run("tail", "--no-follow", "-n", "2")
    assert result.exit_code == 0
    lines = result.stdout.splitlines()
    assert len(lines) == 2
    assert "#10" in lines[0] and "customer private message" in lines[0]
    assert "caseAssigned (undocumented event, kept)" in lines[1]
    rows = ndjson(run("tail", "--no-follow", "-n", "3", "--format", "ndjson", "--sender", "agent"))
    assert [r["id"] for r in rows] == [2, 9]


def test_piping_into_head_ends_quietly(log_db):
    big = SQLiteStore.open(log_db)
    bodies = [json.dumps(msg(1000 + i, 900, 90, 0, T0 + i)).encode() for i in range(20000)]
    big.append([Delivery(b, parse(b)) for b in bodies])
    big.close()
    for command in (
        ["export"],
        ["events", "-f", "ndjson", "--limit", "0"],
        ["tail", "--no-follow", "-n", "20000"],
    ):
        proc = subprocess.run(
            f"{sys.executable} -m tbhook {' '.join(command)} --db {log_db} | head -n 2",
            shell=True,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert proc.stdout.count("\n") == 2
        assert proc.stderr == "", proc.stderr


def test_readers_never_write(log_db):
    before = log_db.stat().st_mtime_ns
    for command in (
        ["events"],
        ["cases"],
        ["export"],
        ["stats"],
        ["person", "10"],
        ["case", "500"],
    ):
        assert run(*command, "--db", str(log_db)).exit_code == 0
    assert log_db.stat().st_mtime_ns == before


def test_cases_never_show_a_negative_time_to_close_nor_cases_of_only_unknown_events(db_path):
    store = SQLiteStore.open(db_path)
    bodies = [
        close(600, 60, T0),  # a close stamped before the first message
        msg(601, 600, 60, 0, T0 + 100),
        {"event": "caseAssigned", "caseId": 700, "agentId": 9, "timestamp": T0},
    ]
    store.append([Delivery(json.dumps(b).encode(), parse(json.dumps(b).encode())) for b in bodies])
    store.close()
    rows = ndjson(run("cases", "-f", "ndjson"))
    assert [r["caseId"] for r in rows] == [600]  # 700 has no message and no close
    # The close before the first message is ignored: not a resolution, and the message after
    # it does not reopen the case.
    assert rows[0]["secondsToClose"] is None and rows[0]["resolutionSeconds"] is None
    assert (rows[0]["reopened"], rows[0]["reopens"]) == (False, 0)
    line = run("cases").stdout.split("600", 1)[1].split("\n")[0]
    assert __import__("re").search(r"-\d+[smhd]", line) is None, line


def test_stats_shares_add_up_to_100(db_path):
    store = SQLiteStore.open(db_path)
    for i in range(3):
        body = json.dumps(msg(800 + i, 1, 1, 0, T0 + i, type_id=i + 1)).encode()
        store.append([Delivery(body, parse(body))])
    store.close()
    out = run("stats").stdout
    shares = [
        int(s) for s in __import__("re").findall(r"(\d+)%", out.split("type")[1].split("\n\n")[0])
    ]
    assert sorted(shares)[:3] == [33, 33, 34]

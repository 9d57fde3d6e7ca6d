"""The developer loop against a real `serve` on port 0 or a real HTTP sink."""

import json
import socket
import sqlite3

import pytest
from conftest import SAMPLE_NAMES, event_body, sample_bytes, start_serve, wait_for
from typer.testing import CliRunner

from tbhook.cli import app
from tbhook.model.events import SCHEDULE_MINUTES

runner = CliRunner()


def run(*args, input=None):
    return runner.invoke(app, list(args), input=input, catch_exceptions=False)


def rows(db, sql="SELECT * FROM events ORDER BY id"):
    conn = sqlite3.connect(db)
    conn.row_factory = sqlite3.Row
    try:
        return [dict(r) for r in conn.execute(sql)]
    finally:
        conn.close()


# -- send ---------------------------------------------------------------------------


@pytest.mark.parametrize("name", SAMPLE_NAMES)
def test_send_a_sample_by_name_sends_it_byte_for_byte(server, name):
    result = run("send", name, "--to", f"http://127.0.0.1:{server.port}/")
    assert result.exit_code == 0
    assert result.stdout.startswith("200 ") and result.stdout.endswith(" -> #1\n")
    assert rows(server.db)[0]["body"] == sample_bytes(name)


def test_send_twice_shows_the_duplicate(server):
    url = f"http://127.0.0.1:{server.port}/"
    run("send", "case-closed", "--to", url)
    assert run("send", "case-closed", "--to", url).stdout.endswith(" -> #1 (duplicate)\n")


def test_send_conversation_with_overrides_and_now(server):
    result = run(
        "send",
        "conversation",
        "--set",
        "caseId=42",
        "--add",
        'note="hi"',
        "--now",
        "--to",
        f"http://127.0.0.1:{server.port}/hook",
    )
    assert result.exit_code == 0
    lines = result.stdout.splitlines()
    assert len(lines) == 5 and all(line.startswith("200 ") for line in lines)
    stored = rows(server.db)
    assert [r["event"] for r in stored] == ["newResult"] * 3 + ["caseClosed", "profileMerged"]
    assert {r["caseId"] for r in stored[:4]} == {42}
    assert all(r["timestamp"] > 1_700_000_000 for r in stored)
    assert json.loads(stored[0]["body"])["note"] == "hi"
    # --set changes only keys an event has: the merge is sent as Tracebuzz sends it.
    assert "caseId" not in json.loads(stored[4]["body"])
    assert result.stderr == ""


def test_send_set_of_a_key_no_event_has_warns(server):
    result = run(
        "send", "case-closed", "--set", "caseid=42", "--to", f"http://127.0.0.1:{server.port}/"
    )
    assert result.exit_code == 0
    assert result.stderr == (
        "Warning: no event sent had 'caseid', so --set caseid=... changed nothing "
        "(--add adds a field)\n"
    )
    assert json.loads(rows(server.db)[0]["body"])["caseId"] == 11111111


def test_send_a_file_and_stdin(server, tmp_path):
    url = f"http://127.0.0.1:{server.port}/"
    path = tmp_path / "two.ndjson"
    path.write_bytes(event_body(caseId=1) + b"\n\n" + event_body(caseId=2) + b"\n")
    assert run("send", str(path), "--to", url).exit_code == 0
    result = run("send", "-", "--to", url, input=event_body(caseId=3).decode())
    assert result.exit_code == 0
    assert [r["caseId"] for r in rows(server.db)] == [1, 2, 3]


def test_send_shows_quarantine_and_401_and_exits_1(serve):
    server = serve("--header-name", "X-Key", "--header-value", "k")
    url = f"http://127.0.0.1:{server.port}/"
    denied = run("send", "case-closed", "--to", url)
    assert denied.exit_code == 1
    assert (
        denied.stdout.startswith("401 caseClosed")
        and "(missing or wrong X-Key header)" in denied.stdout
    )
    kept = run(
        "send", "-", "--to", url, "--header-name", "X-Key", "--header-value", "k", input="{oops\n"
    )
    assert kept.exit_code == 0
    assert (
        kept.stdout.startswith("200 unreadable: not valid JSON")
        and "-> quarantined #1" in kept.stdout
    )


def test_send_to_nothing_listening_exits_1():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    result = run("send", "case-closed", "--to", f"http://127.0.0.1:{port}/")
    assert result.exit_code == 1
    assert result.stdout.startswith("ERR caseClosed") and "Connection refused" in result.stdout


@pytest.mark.parametrize(
    "args, code, message",
    [
        (
            ["nope"],
            1,
            "Error: nope is neither a file nor a sample (samples: case-closed, conversation, ",
        ),
        (["case-closed", "--set", "caseId"], 2, "'caseId' is not key=value"),
        (
            ["case-closed", "--to", "ftp://x"],
            1,
            "Error: 'ftp://x' is not an http:// or https:// URL",
        ),
    ],
)
def test_send_bad_input(args, code, message):
    result = run("send", *args)
    assert result.exit_code == code
    assert message in " ".join(result.stderr.split())


def test_samples_ship_inside_the_package():
    from tbhook.transfer.payloads import sample_names

    assert sample_names() == [
        "case-closed",
        "conversation",
        "include-own-message",
        "new-incoming-message",
        "profile-merged",
    ]


# -- generate -------------------------------------------------------------------------


def test_generate_is_deterministic_and_valid(tmp_path):
    from tbhook.model.events import Event, parse

    first = run("generate", "--count", "3000", "--seed", "7").stdout
    assert first == run("generate", "--count", "3000", "--seed", "7").stdout
    assert first != run("generate", "--count", "3000", "--seed", "8").stdout
    lines = first.splitlines()
    assert len(lines) == 3000
    events = [parse(line.encode()) for line in lines]
    assert all(isinstance(e, Event) for e in events)
    payloads = [json.loads(line) for line in lines]
    kinds = {p["event"] for p in payloads}
    assert kinds == {"newResult", "caseClosed", "profileMerged"}
    messages = [p for p in payloads if p["event"] == "newResult"]
    assert {p["typeId"] for p in messages} == {1, 2, 3, 4, 5, 6}
    assert {p["own"] for p in messages} == {0, 1}
    assert len({p["sourceId"] for p in messages}) >= 4
    closes = [p for p in payloads if p["event"] == "caseClosed"]
    assert {p["externalPersonId"] is False for p in closes} == {True, False}
    assert {p["reasonId"] is None for p in closes} == {True, False}
    assert {p["externalCaseId"] is None for p in closes} == {True, False}
    stamps = [p["timestamp"] for p in payloads]
    assert stamps == sorted(stamps) and stamps[0] == 1_704_067_200
    assert 200 <= stamps[-1] - stamps[0] <= 400  # about 10 events per second


def test_generate_merges_include_chains_and_reversals():
    payloads = [
        json.loads(line)
        for line in run("generate", "--count", "20000", "--seed", "3").stdout.splitlines()
    ]
    merges = [
        (p["oldPersonId"], p["newPersonId"]) for p in payloads if p["event"] == "profileMerged"
    ]
    news = {new for _, new in merges}
    assert any(old in news for old, _ in merges), "no chain"
    assert any((new, old) in merges for old, new in merges), "no reversal"


def test_generate_start_rate_and_persons():
    payloads = [
        json.loads(line)
        for line in run(
            "generate",
            "--count",
            "500",
            "--start",
            "2025-03-01T00:00:00Z",
            "--rate",
            "1/s",
            "--persons",
            "3",
        ).stdout.splitlines()
    ]
    assert payloads[0]["timestamp"] == 1740787200
    assert 400 <= payloads[-1]["timestamp"] - payloads[0]["timestamp"] <= 600
    assert len({p["personId"] for p in payloads if p["event"] == "newResult"}) <= 3
    result = run("generate", "--count", "1", "--rate", "fast")
    assert result.exit_code == 2
    assert "Invalid value for '--rate': 'fast' is not a positive rate such as 20/s" in " ".join(
        result.stderr.split()
    )


# -- import -------------------------------------------------------------------------


def test_import_counts_and_quarantines_bad_lines_with_their_number(db_path, tmp_path):
    lines = run("generate", "--count", "50", "--seed", "1").stdout.splitlines()
    lines.insert(10, "this is not json")
    lines.insert(20, '{"event": "newResult", "caseId": true}')
    path = tmp_path / "log.ndjson"
    path.write_text("\n".join(lines) + "\n")
    result = run("import", str(path), "--db", str(db_path))
    assert result.exit_code == 0
    assert (
        result.stdout
        == f"Imported {path}: 50 inserted, 0 duplicates, 2 quarantined (lines 11, 21)\n"
    )
    quarantined = rows(db_path, "SELECT line, path, reason FROM quarantine ORDER BY line")
    assert [(q["line"], q["path"]) for q in quarantined] == [
        (11, f"import:{path}"),
        (21, f"import:{path}"),
    ]
    again = run("import", str(path), "--db", str(db_path))
    assert again.stdout == (
        f"Imported {path}: 0 inserted, 50 duplicates, 0 quarantined, 2 already in quarantine\n"
    )
    assert len(rows(db_path, "SELECT id FROM quarantine")) == 2
    assert {r["deliveries"] for r in rows(db_path)} == {1}  # an import is not a delivery


def test_import_from_stdin_and_a_json_array_matches_the_receiver(server, db_path, tmp_path):
    bodies = [sample_bytes(n) for n in SAMPLE_NAMES]
    for body in bodies:
        server.post(body)
    other = tmp_path / "other.db"
    result = run(
        "import", "-", "--db", str(other), input="[" + ",".join(b.decode() for b in bodies) + "]"
    )
    assert result.stdout == "Imported stdin: 4 inserted, 0 duplicates, 0 quarantined\n"
    columns = "event, timestamp, caseId, personId, own, externalPersonId, oldPersonId"
    assert rows(other, f"SELECT {columns} FROM events ORDER BY id") == rows(
        server.db, f"SELECT {columns} FROM events ORDER BY id"
    )


def test_import_of_a_missing_file_is_an_error(db_path):
    result = run("import", "nope.ndjson", "--db", str(db_path))
    assert result.exit_code == 1 and result.stderr == "Error: no file at nope.ndjson\n"


# -- replay ---------------------------------------------------------------------------


def test_replay_resends_raw_bodies_byte_for_byte_in_arrival_order(server, sink):
    bodies = [
        sample_bytes("case-closed"),
        b'{"event": "x",  "spacing": "kept"}',
        sample_bytes("profile-merged"),
    ]
    for body in bodies:
        server.post(body)
    target = sink()
    result = run(
        "replay",
        "--to",
        target.url,
        "--db",
        str(server.db),
        "--header-name",
        "X-K",
        "--header-value",
        "v",
    )
    assert result.exit_code == 0
    assert result.stdout == f"Replayed 3 events to {target.url}: 3 x 200\n"
    assert [body for body, _ in target.received] == bodies
    assert {headers["x-k"] for _, headers in target.received} == {"v"}


def test_replay_with_filters_and_failures_exits_1(server, sink):
    for case_id in (1, 2, 3):
        server.post(event_body(caseId=case_id))
    target = sink(fail=1)
    result = run(
        "replay", "--to", target.url, "--db", str(server.db), "--case", "2", "--rate", "50/s"
    )
    assert result.exit_code == 1
    assert result.stdout == f"Replayed 0 of 1 events to {target.url}: 1 x 500\n"


def test_replay_to_nothing_listening_says_nothing_was_replayed(server):
    for case_id in (1, 2, 3):
        server.post(event_body(caseId=case_id))
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    url = f"http://127.0.0.1:{port}/"
    result = run("replay", "--to", url, "--db", str(server.db))
    assert result.exit_code == 1
    assert result.stdout == ""
    assert result.stderr == f"Error: {url}: Connection refused; 0 of 3 events replayed\n"


# -- serve --forward-to ------------------------------------------------------------------


def forwards(db):
    return rows(db, "SELECT * FROM forwards ORDER BY eventId")


def test_forward_retries_on_the_schedule_until_the_app_accepts(serve, sink):
    app_ = sink(fail=3)
    server = serve(
        "--forward-to",
        app_.url,
        "--retry-scale",
        "0.0001",
        "--header-name",
        "X-Key",
        "--header-value",
        "k",
    )
    body = sample_bytes("case-closed")
    response = server.post(body, headers={"X-Key": "k"})
    assert response.json == {"ok": True, "id": 1, "duplicate": False}
    server.post(body, headers={"X-Key": "k"})  # a duplicate is not forwarded again
    server.post(b"{oops", headers={"X-Key": "k"})  # nor is quarantine
    wait_for(lambda: forwards(server.db) and forwards(server.db)[0]["state"] == "delivered", 20)
    [row] = forwards(server.db)
    assert (row["attempts"], row["lastStatus"], row["target"]) == (4, 200, app_.url)
    assert [b for b, _ in app_.received] == [body] * 4
    assert {h["x-key"] for _, h in app_.received} == {"k"}
    server.stop()
    assert "forward #1 failed (HTTP 500); retry 1 in 0.03s" in server.stderr()


def test_forward_gives_up_after_the_last_retry(serve, sink):
    app_ = sink(fail=100)
    server = serve("--forward-to", app_.url, "--retry-scale", "0.00001", "-q")
    server.post(sample_bytes("profile-merged"))
    wait_for(lambda: forwards(server.db)[0]["state"] == "failed", 30)
    assert forwards(server.db)[0]["attempts"] == len(SCHEDULE_MINUTES) + 1
    assert len(app_.received) == len(SCHEDULE_MINUTES) + 1


def test_forward_resumes_after_a_restart_and_never_delays_the_ack(db_path, sink):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    down = f"http://127.0.0.1:{port}/app"
    server = start_serve(db_path, "--forward-to", down, "--retry-scale", "0.00001")
    try:
        for case_id in (1, 2):
            assert server.post(event_body(caseId=case_id)).status == 200  # the app is down
        wait_for(lambda: all(f["attempts"] >= 1 for f in forwards(db_path)))
    finally:
        assert server.stop() == 0
    assert {f["state"] for f in forwards(db_path)} == {"pending"}
    assert "Connection refused" in forwards(db_path)[0]["lastError"]
    app_ = sink()  # the app is back, on another port
    server = start_serve(db_path, "--forward-to", app_.url)
    try:
        wait_for(lambda: {f["state"] for f in forwards(db_path)} == {"delivered"})
        assert {f["target"] for f in forwards(db_path)} == {app_.url}
    finally:
        server.stop()
    assert sorted(json.loads(b)["caseId"] for b, _ in app_.received) == [1, 2]


def test_events_show_forward_status(serve, sink):
    app_ = sink()
    server = serve("--forward-to", app_.url)
    server.post(sample_bytes("case-closed"))
    wait_for(lambda: forwards(server.db) and forwards(server.db)[0]["state"] == "delivered")
    [row] = [
        json.loads(line)
        for line in run("events", "--db", str(server.db), "-f", "ndjson").stdout.splitlines()
    ]
    assert (row["forwardState"], row["forwardAttempts"], row["forwardStatus"]) == (
        "delivered",
        1,
        200,
    )


@pytest.mark.parametrize("layout", ["one line", "pretty"])
def test_import_and_send_take_a_json_array_on_one_line_or_many(server, db_path, tmp_path, layout):
    bodies = [sample_bytes(n) for n in SAMPLE_NAMES]
    items = [json.dumps(json.loads(b)) for b in bodies]
    text = (
        "[" + ",".join(items) + "]"
        if layout == "one line"
        else "[\n  " + ",\n  ".join(items) + "\n]\n"
    )
    path = tmp_path / "events.json"
    path.write_text(text)
    result = run("import", str(path), "--db", str(tmp_path / "other.db"))
    assert result.stdout == f"Imported {path}: 4 inserted, 0 duplicates, 0 quarantined\n"
    sent = run("send", str(path), "--to", f"http://127.0.0.1:{server.port}/")
    assert sent.exit_code == 0 and len(sent.stdout.splitlines()) == 4
    assert [r["body"] for r in rows(server.db)] == [i.encode() for i in items]  # as written


def test_import_of_a_truncated_gzip_keeps_every_complete_line_and_says_so(db_path, tmp_path):
    import gzip

    lines = [event_body(caseId=i).replace(b"\n", b"") for i in range(400)]
    whole = gzip.compress(b"\n".join(lines) + b"\n")
    cut = tmp_path / "cut.ndjson.gz"
    cut.write_bytes(whole[: len(whole) * 2 // 3])
    result = run("import", str(cut), "--db", str(db_path))
    assert result.exit_code == 1
    imported = len(rows(db_path))
    assert 0 < imported < 400
    assert result.stdout == f"Imported {cut}: {imported} inserted, 0 duplicates, 0 quarantined\n"
    assert result.stderr == (
        f"Error: {cut} is incomplete: it ends in the middle of a gzip member; read the "
        f"{imported} complete lines before that point\n"
    )
    assert rows(db_path, "SELECT count(*) AS n FROM quarantine")[0]["n"] == 0  # no half line
    # The whole file later adds the rest.
    (tmp_path / "whole.ndjson.gz").write_bytes(whole + gzip.compress(lines[0] + b"\n"))
    again = run("import", str(tmp_path / "whole.ndjson.gz"), "--db", str(db_path))
    assert again.exit_code == 0 and len(rows(db_path)) == 400


def test_import_of_a_damaged_gzip_says_so(db_path, tmp_path):
    import gzip

    data = bytearray(gzip.compress(b"\n".join(event_body(caseId=i) for i in range(50))))
    data[40:60] = b"\x00" * 20
    bad = tmp_path / "bad.gz"
    bad.write_bytes(bytes(data))
    result = run("import", str(bad), "--db", str(db_path))
    assert result.exit_code == 1 and "Traceback" not in result.output
    assert result.stderr.startswith(f"Error: {bad} is incomplete: it is damaged (")

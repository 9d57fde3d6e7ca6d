"""8, 12, 13 and the security defaults."""

import json
import os
import random
import sqlite3
import stat
import subprocess
import sys

import pytest
from conftest import event_body, request, sample_bytes
from typer.testing import CliRunner

from tbhook.cli import app

SECRET = "tb-" + "0123456789abcdef" * 3


def count(db, table="events"):
    conn = sqlite3.connect(db)
    try:
        return conn.execute(f"SELECT count(*) FROM {table}").fetchone()[0]
    finally:
        conn.close()


def test_cr_lf_in_a_payload_never_reaches_a_header_or_a_raw_log_line(server):
    evil = "x\r\nSet-Cookie: stolen=1\r\n\r\n<html>"
    body = json.dumps({"event": evil, "caseId": 1, "note": evil}).encode()
    response = server.post(body, path="/p%0d%0aInjected:%20yes")
    assert response.status == 200
    assert "set-cookie" not in response.headers and "injected" not in response.headers
    assert server.stop() == 0
    log = server.stderr()
    assert "\nSet-Cookie" not in log and "\nInjected" not in log and "\r" not in log
    assert "x\\r\\nSet-Cookie: stolen=1" in log
    tail = CliRunner().invoke(app, ["tail", "--no-follow", "--db", str(server.db)]).stdout
    assert "\r" not in tail and "x\\r\\nSet-Cookie" in tail


@pytest.mark.parametrize("count_", [pytest.param(1000, id="fast")])
def test_bad_tokens_get_401_write_nothing_and_never_echo_the_secret(serve, count_):
    server = serve("--header-name", "X-Tracebuzz-Token", "--header-value", SECRET)
    rng = random.Random(5)
    wrong = [
        {},
        {"X-Tracebuzz-Token": ""},
        {"X-Tracebuzz-Token": SECRET[:-1]},
        {"X-Tracebuzz-Token": SECRET + " "},
        {"X-Tracebuzz-Token": SECRET.upper()},
        {"X-Other": SECRET},
        {"X-Tracebuzz-Token": "é" + SECRET},
    ]
    outputs = []
    for i in range(count_):
        headers = dict(wrong[i % len(wrong)])
        if i % 11 == 0:
            printable = [*range(0x21, 0x7F), *range(0xA0, 0x300)]  # DEL and controls are a 400
            headers = {"X-Tracebuzz-Token": "".join(chr(rng.choice(printable)) for _ in range(20))}
        encoded = {k: v.encode("utf-8") for k, v in headers.items()}
        response = request(server.port, "POST", "/", event_body(caseId=i), encoded)
        assert response.status == 401
        outputs.append(response.body)
    assert count(server.db) == 0 and count(server.db, "quarantine") == 0
    assert (
        server.post(sample_bytes("case-closed"), headers={"X-Tracebuzz-Token": SECRET}).status
        == 200
    )
    assert server.stop() == 0
    assert all(SECRET.encode() not in body for body in outputs)
    assert SECRET not in server.stderr()


def test_the_secret_from_the_environment_stays_out_of_ps(db_path):
    from conftest import start_serve

    env = dict(os.environ, TBHOOK_HEADER_NAME="X-K", TBHOOK_HEADER_VALUE=SECRET)
    server = start_serve(db_path, env=env)
    try:
        ps = subprocess.run(["ps", "-eo", "args"], capture_output=True, text=True).stdout
        assert SECRET not in ps
    finally:
        server.stop()
    assert SECRET not in server.stderr()


@pytest.mark.parametrize(
    "body, where",
    [
        (json.dumps({"event": "somethingNew", "caseId": 5, "timestamp": 1}).encode(), "events"),
        (b'{"event": "newResult", "caseId": ', "quarantine"),
        (b"", "quarantine"),
    ],
    ids=["unknown event", "malformed JSON", "empty POST"],
)
def test_keep_what_we_can(server, body, where):
    response = server.post(body)
    assert response.status == 200
    assert count(server.db, where) == 1
    other = "quarantine" if where == "events" else "events"
    assert count(server.db, other) == 0
    conn = sqlite3.connect(server.db)
    assert conn.execute(f"SELECT body FROM {where}").fetchone()[0] == body


def test_binds_loopback_by_default_and_creates_a_private_file(server):
    assert "receiving on http://127.0.0.1:" in server.stderr()
    assert stat.S_IMODE(os.stat(server.db).st_mode) == 0o600


def test_read_commands_open_the_file_read_only(server):
    server.post(sample_bytes("case-closed"))
    code = (
        "import sys; from tbhook.store.sqlite import SQLiteStore; s = SQLiteStore.open_readonly(sys.argv[1]);"
        "s.db.conn.execute('DELETE FROM events')"
    )
    result = subprocess.run(
        [sys.executable, "-c", code, str(server.db)], capture_output=True, text=True
    )
    assert result.returncode != 0 and "attempt to write a readonly database" in result.stderr
    assert count(server.db) == 1


@pytest.mark.parametrize(
    "args",
    [
        ["--event", "x' OR '1'='1"],
        ["--event", "newResult'); DROP TABLE events; --"],
        ["--sender", "agent", "--event", '" OR 1=1 --'],
    ],
)
def test_filters_are_parameterized(server, args):
    server.post(sample_bytes("case-closed"))
    result = CliRunner().invoke(app, ["events", "--db", str(server.db), "-f", "ndjson", *args])
    assert result.exit_code == 0 and result.stdout == ""
    assert count(server.db) == 1

"""`tbhook queue --follow` against a real receiver over real sockets, on SQLite and on
PostgreSQL: one ndjson line per change as deliveries start and end waits, and as time alone
moves a wait past its target; the table drawn again in place on a terminal; Ctrl-C and
SIGTERM end it quietly."""

from __future__ import annotations

import json
import os
import queue
import signal
import subprocess
import sys
import threading
import time

import pytest
from test_report import agent, close, customer
from test_tail import _ignore_sigint

from tbhook.model.queue import SLA_FIELDS

SLA = ("--sla", "first=1h,reply=4h")


class Following:
    """`tbhook queue --follow ARGS` with its stdout piped, read line by line."""

    def __init__(self, db: str, *args: str):
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "tbhook", "queue", "--follow", "--db", db, *args],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            preexec_fn=_ignore_sigint,  # as a test runner or a shell's background job does
        )
        self.lines: queue.Queue = queue.Queue()
        self.err: list[str] = []
        for stream, put in (
            (self.proc.stdout, self.lines.put),
            (self.proc.stderr, self.err.append),
        ):
            threading.Thread(target=lambda s=stream, p=put: [p(x) for x in s], daemon=True).start()

    def next(self, timeout: float = 20) -> dict:
        return json.loads(self.lines.get(timeout=timeout))

    def stop(self, sig: int) -> int:
        self.proc.send_signal(sig)
        return self.proc.wait(15)


@pytest.fixture
def follow():
    started: list[Following] = []

    def start(db: str, *args: str) -> Following:
        started.append(Following(db, *args))
        return started[-1]

    yield start
    for following in started:
        if following.proc.poll() is None:
            following.proc.kill()
            following.proc.wait(10)


def post(server, event: dict) -> None:
    assert server.post(json.dumps(event).encode()).status == 200


def test_a_line_per_change_as_deliveries_start_and_end_waits_and_as_time_passes(
    target, serve, follow
):
    server = serve(db=target)
    now = int(time.time())
    post(server, customer(7001, now - 600))
    post(server, customer(7003, now - 300))
    following = follow(target, *SLA, "-n", "0")
    first = following.next()  # the queue as it stands, each row waiting: now following
    assert (first["change"], first["caseId"], first["breached"]) == ("waiting", 7001, False)
    assert list(first) == ["change", "caseId", "personId", "sourceId", "path", "kind",
                           "waitingSince", "waitingSeconds", "messages", *SLA_FIELDS]  # fmt: skip
    second = following.next()
    assert (second["change"], second["caseId"]) == ("waiting", 7003)
    # A wait that breaches its hour 8 s from now, with no delivery in between.
    breaches = int(time.time()) - 3600 + 8
    post(server, customer(7002, breaches))
    began = following.next()
    assert (began["change"], began["caseId"], began["breached"]) == ("waiting", 7002, False)
    assert 0 < began["slaLeftSeconds"] <= 8
    post(server, agent(7001, now))  # an agent answers 7001
    post(server, close(7003, now))  # a close ends 7003's wait
    found = {}
    while len(found) < 3:  # in whatever order a slow machine brings them
        line = following.next(timeout=30)
        found[(line["change"], line["caseId"])] = line
    assert set(found) == {("left", 7001), ("left", 7003), ("breached", 7002)}
    assert found[("left", 7001)] == {**first, "change": "left"} | {
        key: found[("left", 7001)][key] for key in ("waitingSeconds", "slaLeftSeconds")
    }  # the row as it was last seen
    assert found[("breached", 7002)]["breached"] is True
    assert time.time() >= breaches + 3600
    assert following.stop(signal.SIGTERM) == 0
    assert following.err == []


def test_ctrl_c_ends_it_quietly_even_when_started_with_sigint_ignored(db_path, serve, follow):
    server = serve()
    post(server, customer(7101, int(time.time()) - 60))
    following = follow(str(db_path), "-n", "0")
    assert following.next()["caseId"] == 7101
    assert following.stop(signal.SIGINT) == 0
    assert following.err == []


def test_on_a_terminal_the_table_is_drawn_again_in_place(db_path, serve):
    import fcntl
    import pty
    import struct
    import termios

    server = serve()
    post(server, customer(7201, int(time.time()) - 60))
    leader, follower = pty.openpty()
    fcntl.ioctl(follower, termios.TIOCSWINSZ, struct.pack("HHHH", 40, 160, 0, 0))
    environment = {k: v for k, v in os.environ.items() if k not in ("COLUMNS", "LINES")}
    proc = subprocess.Popen(
        [sys.executable, "-m", "tbhook", "queue", "--follow", *SLA, "--db", str(db_path)],
        stdout=follower,
        stderr=subprocess.PIPE,
        stdin=subprocess.DEVNULL,
        env=environment,
    )
    os.close(follower)
    seen = bytearray()

    def until(found: bytes, timeout: float = 20) -> None:
        deadline = time.monotonic() + timeout
        while found not in seen:
            assert time.monotonic() < deadline, seen.decode(errors="replace")[-2000:]
            seen.extend(os.read(leader, 65536))

    try:
        until(b"1 waiting, 0 breached, 0 at risk")
        start = len(seen)
        post(server, customer(7202, int(time.time()) - 30))
        until(b"2 waiting, 0 breached, 0 at risk")
        frame = bytes(seen[start:])
        assert b"\x1b[1A\x1b[2K" in frame  # the lines before, taken back
        assert b"7202" in frame and frame.count(b"waiting at ") == 1  # one title: in place
        proc.send_signal(signal.SIGINT)
        assert proc.wait(15) == 0
        assert proc.stderr.read() == b""
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
        os.close(leader)


@pytest.mark.parametrize(
    "args, said",
    [
        (("--at", "2h"), "--at is the queue as it stood at one moment, --follow keeps it "
         "current from now on: give one of them"),
        (("-f", "csv"), "--follow draws the table again in place, or writes one ndjson line "
         "per change; -f csv writes one answer"),
    ],
)  # fmt: skip
def test_what_follow_cannot_do_is_a_usage_error(db_path, args, said):
    from typer.testing import CliRunner

    from tbhook.cli import app

    result = CliRunner().invoke(app, ["queue", "--follow", *args, "--db", str(db_path)])
    assert result.exit_code == 2
    assert f"Error: Invalid value for '--follow': {said}" in " ".join(result.stderr.split())

"""`tbhook tail` following a real `tbhook serve` over a real socket."""

import json
import queue
import re
import signal
import subprocess
import sys
import threading

import pytest
from conftest import event_body, sample_bytes, wait_for

SENTINEL = 9_000_000  # caseIds of the events that prove what tail shows next


def _sentinel(line: str) -> bool:
    return re.search(r"\b9000\d{3}\b", line) is not None


def _ignore_sigint() -> None:
    # As a test runner or a shell's background job may start it: SIGINT ignored.
    signal.signal(signal.SIGINT, signal.SIG_IGN)


class Tail:
    def __init__(self, db, *args):
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "tbhook", "tail", "--db", str(db), *args],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            preexec_fn=_ignore_sigint,
        )
        self.lines: queue.Queue = queue.Queue()
        self.err: list[str] = []
        self._pumps = [
            threading.Thread(target=self._pump, args=(stream, put), daemon=True)
            for stream, put in (
                (self.proc.stdout, self.lines.put),
                (self.proc.stderr, self.err.append),
            )
        ]
        for pump in self._pumps:
            pump.start()

    @staticmethod
    def _pump(stream, put):
        for line in stream:
            put(line)

    def everything(self, timeout=20) -> list[str]:
        """Every line, once the command has ended by itself (--no-follow)."""
        assert self.proc.wait(timeout) == 0, self.err
        for pump in self._pumps:
            pump.join(timeout)  # the pipes are at their end: the pumps finish
        return [self.lines.get() for _ in range(self.lines.qsize())]

    def next_line(self, timeout=10) -> str:
        """The next line, past any sentinel another tail's readiness check posted."""
        while True:
            line = self.lines.get(timeout=timeout)
            if not _sentinel(line):
                return line

    def following(self, server) -> None:
        """Wait until tail follows: post sentinel events (new ones, until one is shown: one
        posted before tail began following is backlog, which --new skips), then drain."""
        for n in range(1, 200):
            server.post(event_body(caseId=SENTINEL + n, uniqueId=SENTINEL + n))
            try:
                line = self.lines.get(timeout=0.5)
            except queue.Empty:
                continue
            assert _sentinel(line), line  # nothing but sentinels came before
            return
        raise AssertionError("tail never started following")

    def interrupt(self, sig: int = signal.SIGINT) -> int:
        self.proc.send_signal(sig)
        return self.proc.wait(10)


_started: list[Tail] = []


@pytest.fixture(autouse=True)
def _kill_leftover_tails():
    """Whatever a test started, it does not outlive the test."""
    yield
    while _started:
        tail = _started.pop()
        if tail.proc.poll() is None:
            tail.proc.kill()
            tail.proc.wait(10)


def shows_next(server, case: int, *tails: Tail) -> None:
    """Post a sentinel (caseId ``case``) and prove it is each tail's next line: nothing else
    was shown before it, however slow the machine."""
    server.post(event_body(caseId=case, uniqueId=case))
    for tail in tails:
        line = tail.next_line()
        assert (f'"caseId": {case},' in line) or (f"case {case} " in line), line


def start_tail(db, *args) -> Tail:
    tail = Tail(db, *args)
    _started.append(tail)
    return tail


def test_tail_follows_events_posted_to_a_running_serve(server):
    server.post(sample_bytes("case-closed"))
    tail = start_tail(server.db, "--format", "ndjson", "-n", "5")
    try:
        assert json.loads(tail.next_line())["event"] == "caseClosed"  # the backlog first
        server.post(event_body(caseId=77, own=1))
        row = json.loads(tail.next_line())
        assert (row["caseId"], row["own"], row["canonicalPersonId"]) == (77, 1, 11111)
    finally:
        assert tail.interrupt() == 0
    assert "".join(tail.err) == ""


def test_tail_filters_while_following(server):
    tail = start_tail(server.db, "--sender", "agent")
    try:
        server.post(event_body(caseId=1, own=0))
        server.post(event_body(caseId=2, own=1))
        line = tail.next_line()
        assert "case 2 " in line and "agent private message" in line
        server.post(event_body(caseId=3, own=0))
        server.post(event_body(caseId=4, own=1))
        assert "case 4 " in tail.next_line()  # the customer's message 3 was never shown
    finally:
        assert tail.interrupt() == 0


def test_tail_waits_for_a_database_that_does_not_exist_yet(serve, tmp_path):
    db = tmp_path / "later.db"
    tail = start_tail(db, "--format", "ndjson")
    try:
        wait_for(lambda: tail.err)
        assert tail.err[0] == f"Waiting for {db} to appear (start `tbhook serve --db {db}`)...\n"
        server = serve(db=db)
        server.post(sample_bytes("profile-merged"))
        assert json.loads(tail.next_line())["event"] == "profileMerged"
    finally:
        assert tail.interrupt() == 0
    assert "Traceback" not in "".join(tail.err)


def test_tail_picks_up_merges_for_canonical_ids(server):
    server.post(sample_bytes("case-closed"))
    tail = start_tail(server.db, "--format", "ndjson", "-n", "1")
    try:
        assert json.loads(tail.next_line())["event"] == "caseClosed"  # now it is following
        merge = {"event": "profileMerged", "oldPersonId": 11111, "newPersonId": 222, "timestamp": 5}
        server.post(json.dumps(merge).encode())
        assert json.loads(tail.next_line())["canonicalPersonId"] == 222
        server.post(event_body(caseId=9))
        assert json.loads(tail.next_line())["canonicalPersonId"] == 222
    finally:
        assert tail.interrupt() == 0


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_tail_stops_on_a_signal_even_when_started_with_sigint_ignored(server, sig):
    server.post(sample_bytes("case-closed"))
    tail = start_tail(server.db, "--format", "ndjson", "-n", "1")
    assert json.loads(tail.next_line())["event"] == "caseClosed"  # following now
    assert tail.interrupt(sig) == 0  # within interrupt's 10 s: a hang fails here
    assert "Traceback" not in "".join(tail.err)


def test_tail_shows_redeliveries_and_quarantined_deliveries_as_they_come(server):
    """`--retries` and `--quarantine`: what the serve log says, as it happens, in both forms."""
    first = event_body(caseId=31)
    server.post(first)
    server.post(first)  # a retry from before tail started: not news
    tail = start_tail(server.db, "--format", "ndjson", "-n", "1", "--retries", "--quarantine")
    text = start_tail(server.db, "-n", "0", "--new", "--retries", "--quarantine")
    try:
        assert json.loads(tail.next_line())["kind"] == "event"  # the backlog
        tail.following(server)
        text.following(server)
        old = server.post(first).json["id"]  # its delivery 3
        fresh = event_body(caseId=32)
        new = server.post(fresh).json["id"]
        server.post(fresh)  # its delivery 2
        kept = server.post(b"{not json").json["quarantineId"]
        server.post(b"{not json")  # its delivery 2
        seen = [json.loads(tail.next_line()) for _ in range(5)]
        kinds = sorted(
            (r["kind"], r.get("id", r.get("quarantineId")), r.get("delivery")) for r in seen
        )
        assert kinds == sorted(
            [
                ("event", new, None),
                ("retry", old, 3),
                ("retry", new, 2),
                ("quarantined", kept, None),
                ("retry", kept, 2),
            ]
        )
        retry = next(r for r in seen if r["kind"] == "retry" and r.get("id") == old)
        assert retry["caseId"] == 31 and retry["deliveries"] == 3 and retry["lastReceivedAt"]
        joined = "".join(text.next_line() for _ in range(5))
        assert f"[retry: delivery 3 of #{old}]" in joined
        assert f"[retry: delivery 2 of #{new}]" in joined
        assert f"quarantined #{kept}, unreadable: " in joined
        assert f"[retry: delivery 2 of #{kept}]" in joined
        shows_next(server, 77, tail, text)  # each delivery was shown once: this comes next
    finally:
        assert tail.interrupt() == 0 and text.interrupt() == 0
    assert "".join(tail.err) == "" and "".join(text.err) == ""


def test_tail_without_the_flags_shows_neither_retries_nor_quarantine(server):
    tail = start_tail(server.db, "--format", "ndjson", "--new")
    try:
        tail.following(server)
        body = event_body(caseId=41)
        server.post(body)
        server.post(body)
        server.post(b"{not json")
        server.post(event_body(caseId=42))
        assert [json.loads(tail.next_line())["caseId"] for _ in range(2)] == [41, 42]
        shows_next(server, 43, tail)  # neither the retry nor the quarantined body came
    finally:
        assert tail.interrupt() == 0


def test_tail_backlog_takes_the_same_limit_as_every_listing(server):
    for case in range(60):
        server.post(event_body(caseId=case))
    server.post(b"{nope")
    rows = [
        json.loads(line)
        for line in start_tail(server.db, "-f", "ndjson", "--no-follow").everything()
    ]
    assert len(rows) == 50 and rows[-1]["caseId"] == 59  # the default: the last 50
    got = [
        json.loads(line)
        for line in start_tail(
            server.db, "-f", "ndjson", "--no-follow", "-n", "all", "--quarantine"
        ).everything()
    ]
    assert len(got) == 61 and got[-1]["kind"] == "quarantined"  # by receive time
    # As Unix `tail -n 0`: no backlog at all.
    assert start_tail(server.db, "-f", "ndjson", "--no-follow", "-n", "0").everything() == []


def test_tail_n_is_a_number_or_all(server):
    tail = start_tail(server.db, "-n", "lots")
    assert tail.proc.wait(20) == 2
    for pump in tail._pumps:
        pump.join(20)
    assert "Invalid value for '-n' / '--limit': 'lots' is not a number of events or all" in "".join(
        tail.err
    )


@pytest.mark.parametrize("columns", [80, 60])
def test_tail_on_a_narrow_terminal_wraps_between_words_and_never_splits_a_number(db_path, columns):
    from conftest import on_a_terminal

    from tbhook.model.events import parse
    from tbhook.store import Delivery
    from tbhook.store.sqlite import SQLiteStore

    body = event_body(caseId=123456789012, personId=987654321098, resultId=55555555555)
    store = SQLiteStore.open(db_path)
    store.append([Delivery(body, parse(body), path="/tracebuzz/profile-amsterdam")])
    store.close()
    out = on_a_terminal("tail", "--no-follow", "--db", str(db_path), columns=columns)
    import re

    text = re.sub(r"\x1b\[[0-9;]*m", "", out.decode())  # rich's colours
    lines = text.replace("\r\n", "\n").rstrip("\n").split("\n")
    assert len(lines) > 1  # it did not fit on one
    assert all(len(line) <= columns for line in lines), lines
    assert all(line.startswith(" " * 29) for line in lines[1:])  # under the description
    for number in (
        "#1",
        "123456789012",
        "987654321098",
        "55555555555",
        "/tracebuzz/profile-amsterdam",
    ):
        assert any(number in line for line in lines), number  # whole, never cut across lines

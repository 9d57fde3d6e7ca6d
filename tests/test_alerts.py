"""Alerts: the notifier over real HTTP (once firing, once resolved, flapping held, retries,
kept across runs), `notify test`, the receiver's alerts (failing, stale, writer) over real
sockets, and `doctor --notify`."""

import contextlib
import json
import os
import signal

import pytest
from conftest import WRITER, child_process, event_body, wait_for
from typer.testing import CliRunner

from tbhook.cli import app
from tbhook.model import alerts
from tbhook.notify import FileState, Notifier

runner = CliRunner(env={"COLUMNS": "200"})


class Lines:
    def __init__(self):
        self.lines: list[str] = []

    def warning(self, message, **facts):
        self.lines.append(message)


def sent(sink) -> list[tuple[str, str]]:
    return [(m["alert"], m["state"]) for m in (json.loads(body) for body, _ in sink.received)]


def test_an_alert_is_sent_once_firing_and_once_resolved(sink):
    target = sink()
    notifier = Notifier([target.url]).start()
    notifier.fire("stale", "", "no delivery for 3h", {"seconds": 10800})
    notifier.fire("stale", "", "no delivery for 4h", {"seconds": 14400})  # still true
    notifier.resolve("stale", "", "deliveries are coming in again")
    notifier.resolve("stale", "")  # already resolved
    assert notifier.flush(10)
    notifier.close()
    assert sent(target) == [("stale", "firing"), ("stale", "resolved")]
    first, second = (json.loads(body) for body, _ in target.received)
    assert set(first) == {"alert", "state", "text", "at", "details"}
    host = os.uname().nodename
    assert first["text"] == f"tbhook on {host} (stale): no delivery for 3h"
    assert first["details"] == {"seconds": 10800, "host": host}
    assert second["text"] == f"tbhook on {host} (stale, resolved): deliveries are coming in again"
    assert target.received[0][1]["content-type"] == "application/json"


def test_a_flapping_condition_is_sent_at_most_once_in_ten_minutes(sink):
    target = sink()
    now = [1_000_000.0]
    notifier = Notifier([target.url], clock=lambda: now[0]).start()
    notifier.fire("size", "database", "at 91%")
    notifier.resolve("size", "database", "at 84%")
    now[0] += 60
    notifier.fire("size", "database", "at 92%")  # back within 10 minutes: held
    notifier.resolve("size", "database")  # and gone again: never said
    notifier.fire("size", "database", "at 93%")  # back again, and it stays
    assert notifier.flush(10)
    assert sent(target) == [("size", "firing"), ("size", "resolved")]
    now[0] += 600  # ten minutes after the last firing that was sent: sent now
    wait_for(lambda: len(target.received) == 3)
    notifier.resolve("size", "database", "at 80%")
    assert notifier.flush(10)
    notifier.close()
    assert sent(target) == [("size", "firing"), ("size", "resolved")] * 2
    assert json.loads(target.received[2][0])["text"].endswith("(size): at 93%")


def test_delivery_retries_with_backoff_and_logs_what_was_lost(sink):
    flaky, dead = sink(fail=2), sink(fail=100)
    log = Lines()
    notifier = Notifier([flaky.url, dead.url], log, backoff=(0.01, 0.01, 0.01)).start()
    notifier.fire("writer", "", "the writer process stopped")
    wait_for(lambda: any("could not send the alert" in line for line in log.lines))
    assert notifier.flush(10) is False or not notifier._pending()
    notifier.close()
    assert sent(flaky) == [("writer", "firing")] * 3  # 500, 500, then 200
    assert len(dead.received) == 4  # the first try and 3 more, then given up
    assert (
        f"could not send an alert to {dead.url} (answered 500); trying again 3 times" in log.lines
    )
    assert log.lines[-1] == (
        f"could not send the alert to {dead.url} (answered 500): "
        f"tbhook on {os.uname().nodename} (writer): the writer process stopped"
    )


def test_what_was_sent_is_kept_across_runs(sink, tmp_path):
    target = sink()
    state = FileState(tmp_path / "alerts.json")
    first = Notifier([target.url], state=state).start()
    first.fire("retention", "", "a pass failed")
    assert first.flush(10)
    first.close()
    assert oct(os.stat(tmp_path / "alerts.json").st_mode & 0o777) == "0o600"
    second = Notifier([target.url], state=FileState(tmp_path / "alerts.json")).start()
    assert second.firing() == [("retention", "")]
    second.fire("retention", "", "a pass failed")  # firing already: not sent again
    second.resolve("retention", "", "a pass worked")
    assert second.flush(10)
    second.close()
    assert sent(target) == [("retention", "firing"), ("retention", "resolved")]


def test_an_alert_not_yet_sent_is_sent_by_the_next_run(sink, tmp_path):
    target = sink(fail=100)
    state = FileState(tmp_path / "alerts.json")
    first = Notifier([target.url], state=state, backoff=(30,)).start()
    first.fire("stale", "", "no delivery for 3h")
    wait_for(lambda: len(target.received) == 1)
    first.close(0.1)  # the URL is failing: kept for later
    target.fail = 0
    second = Notifier([target.url], state=FileState(tmp_path / "alerts.json")).start()
    assert second.flush(10)
    second.close()
    assert sent(target) == [("stale", "firing")] * 2  # the failed try, then the next run's


def test_failing_counts_the_tries_tracebuzz_has_left():
    streak = alerts.Streak()
    start = 1_700_000_000.0
    assert streak.answered(503, "full", start) is None
    assert streak.answered(503, "full", start + 5 * 60) is None
    alert = streak.answered(503, "full", start + 13 * 60)  # after the 5- and 7-minute tries
    assert isinstance(alert, alerts.Alert)
    assert alert.details["triesLeft"] == 8 and alert.details["inARow"] == 3
    assert alert.details["disablesAt"] == "2023-11-17T23:28:20Z"  # 4,395 minutes on
    assert "answered 503 (full)" in alert.text and "tried 8 more times" in alert.text
    assert streak.answered(200, "", start + 14 * 60) is True  # resolved
    assert streak.answered(200, "", start + 15 * 60) is None
    assert streak.answered(404, "", start + 16 * 60) is None  # not a failure Tracebuzz counts


def test_notify_test_says_what_the_url_answered(sink):
    good, bad = sink(), sink(fail=1)
    result = runner.invoke(app, ["notify", "test", good.url])
    assert result.exit_code == 0
    assert result.stdout == f"Sent a test alert to {good.url}: it answered 200 ok\n"
    message = json.loads(good.received[0][0])
    assert message["alert"] == "test" and message["state"] == "firing"
    assert message["text"].startswith(f"tbhook on {os.uname().nodename} (test): a test alert")
    result = runner.invoke(app, ["notify", "test", bad.url])
    assert result.exit_code == 1
    assert result.stderr == f"Error: {bad.url} answered 500 ok: alerts sent there are lost\n"


def test_notify_test_refuses_what_it_cannot_send_to():
    result = runner.invoke(app, ["notify", "test", "http://127.0.0.1:9/hook"])
    assert result.exit_code == 1
    assert result.stderr == "Error: no answer from http://127.0.0.1:9/hook: Connection refused\n"
    result = runner.invoke(app, ["notify", "test", "ftp://example.org/"])
    assert result.exit_code == 2 and "'ftp://example.org/' is not an http:// or https:// URL" in (
        result.stderr
    )


def test_three_refusals_in_a_row_fire_failing_and_a_200_resolves_it(serve, sink):
    target = sink()
    server = serve("--notify", target.url, "--header-name", "X-Key", "--header-value", "s3cret")
    for case in (1, 2, 3, 4):
        assert server.post(event_body(caseId=case)).status == 401
    assert server.post(event_body(caseId=5), headers={"X-Key": "s3cret"}).status == 200
    wait_for(lambda: len(target.received) == 2)
    firing, resolved = (json.loads(body) for body, _ in target.received)
    assert (firing["alert"], firing["state"]) == ("failing", "firing")
    assert firing["details"]["cause"] == "missing or wrong X-Key header"
    assert firing["details"]["triesLeft"] == 10 and firing["details"]["status"] == 401
    assert "Tracebuzz counts each as a failure" in firing["text"]
    assert (resolved["alert"], resolved["state"]) == ("failing", "resolved")
    # A sentinel: the next alert to arrive is this one, nothing came in between.
    os.kill(child_process(server.proc.pid, WRITER), signal.SIGKILL)
    wait_for(lambda: server.post(event_body(caseId=6), headers={"X-Key": "s3cret"}).status == 200)
    wait_for(lambda: len(target.received) == 4)
    assert sent(target)[2:] == [("writer", "firing"), ("writer", "resolved")]
    assert "killed by signal 9" in json.loads(target.received[2][0])["text"]


def test_stale_fires_once_survives_a_restart_and_resolves_once(serve, sink, db_path):
    target = sink()
    server = serve("--notify", target.url, "--stale", "1s")
    wait_for(lambda: len(target.received) == 1)
    assert sent(target) == [("stale", "firing")]
    server.stop()
    again = serve("--notify", target.url, "--stale", "1s")  # still stale: not sent again
    wait_for(lambda: "stale" in again.stderr())  # it looked, and found it stale
    assert again.post(event_body(caseId=1)).status == 200
    wait_for(lambda: len(target.received) == 2)
    assert sent(target) == [("stale", "firing"), ("stale", "resolved")]


def test_doctor_notify_sends_its_failures_once(db_path, sink, tmp_path, monkeypatch):
    from tbhook.store.sqlite import SQLiteStore

    SQLiteStore.open(db_path).close()
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "state"))
    target = sink()
    args = ["doctor", "--db", str(db_path), "--stale", "1h", "--notify", target.url]
    assert runner.invoke(app, args).exit_code == 1  # nothing received yet: stale fails
    assert runner.invoke(app, args).exit_code == 1  # the cron job's next run: not sent again
    assert sent(target) == [("stale", "firing")]
    assert "nothing received yet" in json.loads(target.received[0][0])["text"]
    store = SQLiteStore.open(db_path)
    from tbhook.model.events import parse
    from tbhook.store import Delivery

    store.append([Delivery(event_body(caseId=1), parse(event_body(caseId=1)))])
    store.close()
    assert runner.invoke(app, args).exit_code == 0
    assert sent(target) == [("stale", "firing"), ("stale", "resolved")]


def test_doctor_notify_tells_of_a_database_it_cannot_read(tmp_path, sink, monkeypatch):
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "state"))
    target = sink()
    missing = tmp_path / "gone.db"
    result = runner.invoke(app, ["doctor", "--db", str(missing), "--notify", target.url])
    assert result.exit_code == 1 and result.stderr.startswith(f"Error: no database at {missing}")
    message = json.loads(target.received[0][0])
    assert (message["alert"], message["state"]) == ("doctor", "firing")
    assert f"no database at {missing}" in message["text"]


def test_serve_refuses_retain_without_an_archive_directory(db_path, tmp_path):
    result = runner.invoke(app, ["serve", "--db", str(db_path), "--retain", "90d"])
    assert result.exit_code == 2 and "give --archive-dir DIR too" in result.stderr
    result = runner.invoke(
        app, ["serve", "--db", str(db_path), "--retain", "soon", "--archive-dir", str(tmp_path)]
    )
    assert result.exit_code == 2 and "'soon' is not a duration" in result.stderr
    result = runner.invoke(app, ["serve", "--db", str(db_path), "--notify", "nope"])
    assert result.exit_code == 2 and "'nope' is not an http:// or https:// URL" in result.stderr


@pytest.mark.parametrize(
    "args, said",
    [
        (["--prune-every", "1m"], "--prune-every is how often --retain runs a pass: give --retain"),
        (["--stale", "1mo"], "2d or 2w; months and years are not taken: write 30d, 365d)"),
        (["--notify", "http://127.0.0.1:99999/"], "has no valid port: a port is a number from 1"),
        (["--max-db-size", "64K"], "'64K' is too small: an empty database already takes about"),
        (["--max-db-size", "1023K"], "deliveries need room; give at least 1M"),
    ],
)
def test_serve_refuses_options_that_cannot_work_in_words(db_path, args, said):
    import subprocess
    import sys

    command = [sys.executable, "-m", "tbhook", "serve", "--db", str(db_path), "--port", "0"]
    result = subprocess.run([*command, *args], capture_output=True, text=True, timeout=30)
    assert result.returncode == 2 and said in " ".join(result.stderr.split())
    assert not db_path.exists()


def test_size_fires_at_90_percent_of_the_cap_and_resolves_when_room_comes_back(
    serve, sink, db_path
):
    from conftest import fill_to_the_cap

    filler, cap = fill_to_the_cap(db_path)  # 16 pages left under the cap: past 90% already
    target = sink()
    serve("--max-db-size", str(cap), "--notify", target.url, "--stale", "1h")
    wait_for(lambda: len(target.received) == 1)
    firing = json.loads(target.received[0][0])
    assert (firing["alert"], firing["state"]) == ("size", "firing")
    assert firing["details"]["key"] == "database" and firing["details"]["capBytes"] == cap
    assert "at the cap every delivery is answered 503" in firing["text"]
    filler.execute("DELETE FROM filler")  # room again (free pages count as room)
    filler.commit()
    wait_for(lambda: len(target.received) == 2, timeout=30)
    assert sent(target) == [("size", "firing"), ("size", "resolved")]
    filler.close()


def test_the_rules_of_the_size_and_stale_alerts():
    assert alerts.size(89, 100) is None
    assert alerts.size(90, 100).key == "database"
    assert alerts.size(90, None) is None  # no cap, no size alert
    low = alerts.disk("/var/lib/tbhook", "database", 4, 100)
    assert low.key == "disk:/var/lib/tbhook" and "has 4 bytes free of 100 bytes (4.0%)" in low.text
    assert alerts.disk("/var/lib/tbhook", "database", 5, 100) is None
    assert alerts.stale(7200, 7200) is None
    assert alerts.stale(7201, 7200).details == {"seconds": 7201, "limit": 7200}
    assert alerts.stale(None, 60) is None


def test_alerts_an_earlier_run_left_firing_resolve_in_the_next(serve, sink, db_path):
    """Killed while `failing` and `writer` were firing: the next run resolves each once (its
    writer runs; its first 200), and sends neither again."""
    import sqlite3

    target = sink()
    args = ("--notify", target.url, "--header-name", "X-Key", "--header-value", "k")
    server = serve(*args)
    for case in (1, 2, 3):
        assert server.post(event_body(caseId=case)).status == 401
    wait_for(lambda: len(target.received) == 1)
    assert sent(target) == [("failing", "firing")]

    def kept() -> bool:  # the notifier keeps what it sent just after it was answered
        with contextlib.closing(sqlite3.connect(db_path)) as conn:
            return bool(conn.execute("SELECT 1 FROM tbhook_meta WHERE key = 'alerts'").fetchall())

    wait_for(kept)
    server.proc.kill()  # before any 200
    server.proc.wait(10)
    conn = sqlite3.connect(db_path)  # and a writer alert firing, as a run killed with it left it
    (state,) = conn.execute("SELECT value FROM tbhook_meta WHERE key = 'alerts'").fetchone()
    state = json.loads(state)
    state["alerts"]["writer"] = {
        **state["alerts"]["failing"],
        "name": "writer",
        "text": "the writer process stopped",
    }
    conn.execute("UPDATE tbhook_meta SET value = ? WHERE key = 'alerts'", [json.dumps(state)])
    conn.commit()
    conn.close()
    again = serve(*args)
    wait_for(lambda: len(target.received) == 2)
    assert sent(target)[1] == ("writer", "resolved")
    assert again.post(event_body(caseId=4), headers={"X-Key": "k"}).status == 200
    wait_for(lambda: len(target.received) == 3)
    assert sent(target)[2] == ("failing", "resolved")


def test_a_500_from_a_bug_counts_toward_failing(db_path):
    """uvicorn answers 500 when the app raises; Tracebuzz counts it as a failure, so the
    streak must see it too (here a parser that breaks stands for the bug)."""
    import asyncio

    from tbhook.receiver.app import Receiver
    from tbhook.receiver.writer import BatchWriter

    class Broken:
        async def parse(self, body):
            raise RuntimeError("parser broke")

    answers = []
    writer = BatchWriter.for_target(str(db_path))

    async def post() -> None:
        app = Receiver(writer, parser=Broken(), answered=lambda s, c: answers.append((s, c)))
        scope = {"type": "http", "method": "POST", "path": "/", "headers": []}
        messages = iter([{"type": "http.request", "body": event_body(caseId=1)}])

        async def receive():
            return next(messages)

        async def send(message):
            pass

        with pytest.raises(RuntimeError):  # still raised: uvicorn answers the 500
            await app(scope, receive, send)

    try:
        asyncio.run(post())
    finally:
        writer.close()
    assert answers == [(500, "a bug in tbhook: RuntimeError: parser broke")]


class Hang:
    """A URL that takes each connection and never answers (a chat service that hangs)."""

    def __init__(self):
        import socket
        import threading

        self.sock = socket.create_server(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self.sock.getsockname()[1]}/hook"
        self.taken: list = []
        threading.Thread(target=self._take, daemon=True).start()

    def _take(self):
        with __import__("contextlib").suppress(OSError):
            while True:
                self.taken.append(self.sock.accept()[0])

    def close(self):
        self.sock.close()
        for conn in self.taken:
            conn.close()


@pytest.fixture
def hang():
    made: list[Hang] = []

    def factory() -> Hang:
        made.append(Hang())
        return made[-1]

    yield factory
    for each in made:
        each.close()


def test_a_url_that_hangs_delays_no_other(sink, hang):
    stuck, target = hang(), sink()
    notifier = Notifier([stuck.url, target.url]).start()
    notifier.fire("writer", "", "the writer process stopped")
    wait_for(lambda: stuck.taken)
    wait_for(lambda: target.received, timeout=5)  # not after the stuck URL's 10 s timeout
    notifier.close(0.5)
    assert sent(target) == [("writer", "firing")]


def test_a_url_added_since_an_alert_fired_is_told_of_it(sink, tmp_path):
    """Fired with no URL (the log only), then a URL given: the next run sends it the alert,
    once; what waited for a URL no longer given is dropped, said once."""
    refused = sink()
    refused.close()  # nothing listens there any more
    state = tmp_path / "alerts.json"
    log = Lines()
    first = Notifier([], log, FileState(state)).start()
    first.fire("stale", "", "no delivery for 3h")
    first.close()
    target = sink()
    second = Notifier([target.url], log, FileState(state)).start()
    assert second.flush(10)
    second.close()
    assert sent(target) == [("stale", "firing")]
    third = Notifier([target.url, refused.url], log, FileState(state), backoff=(30,)).start()
    wait_for(lambda: any("could not send an alert" in line for line in log.lines))
    third.close(0.1)  # the refused URL keeps the alert in the outbox for the next run
    assert [url for url, _ in json.loads(state.read_text())["outbox"]] == [refused.url]
    fourth = Notifier([target.url], log, FileState(state)).start()
    fourth.resolve("stale", "", "deliveries are coming in again")
    assert fourth.flush(10)
    fourth.close()
    Notifier([target.url], log, FileState(state)).start().close()
    assert sent(target) == [("stale", "firing"), ("stale", "resolved")]
    dropped = f"dropped 1 alerts waiting to be sent to {refused.url}: no longer a --notify URL"
    assert log.lines.count(dropped) == 1
    assert json.loads(state.read_text())["outbox"] == []


def test_serve_tells_a_new_notify_url_of_an_alert_already_firing(serve, sink, db_path):
    server = serve("--stale", "1s")  # no --notify: the log only
    wait_for(lambda: "(stale): no delivery for" in server.stderr())
    server.stop()
    target = sink()
    serve("--stale", "1s", "--notify", target.url)
    wait_for(lambda: target.received)
    # (then resolved: a restart of a receiver that never had a delivery starts --stale again)
    assert sent(target)[0] == ("stale", "firing")


def test_doctor_notify_tells_a_new_url_and_resolves_in_words_of_what_cleared(
    db_path, sink, tmp_path, monkeypatch
):
    from tbhook.model.events import parse
    from tbhook.store import Delivery
    from tbhook.store.sqlite import SQLiteStore

    SQLiteStore.open(db_path).close()
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "state"))
    old, fixed = sink(), sink()
    args = ["doctor", "--db", str(db_path), "--stale", "1h", "--notify"]
    assert runner.invoke(app, [*args, old.url]).exit_code == 1
    assert runner.invoke(app, [*args, fixed.url]).exit_code == 1  # the cron line, corrected
    assert runner.invoke(app, [*args, fixed.url]).exit_code == 1  # told once
    assert sent(old) == sent(fixed) == [("stale", "firing")]
    store = SQLiteStore.open(db_path)
    store.append([Delivery(event_body(caseId=1), parse(event_body(caseId=1)))])
    store.close()
    assert runner.invoke(app, [*args, fixed.url]).exit_code == 0
    assert sent(fixed) == [("stale", "firing"), ("stale", "resolved")] and len(old.received) == 1
    text = json.loads(fixed.received[1][0])["text"]
    assert (
        "the last delivery check passes again (0s ago)" in text
        and "nothing received yet" not in text
    )


def test_a_stop_with_urls_that_hang_takes_a_few_seconds(serve, hang, db_path):
    """Each post in flight would wait its 10 s timeout: the stop gives the notifier a few
    seconds in all (under a unit's TimeoutStopSec=15), and what was not sent is kept."""
    import sqlite3

    stuck = [hang() for _ in range(3)]
    server = serve("--stale", "1s", *(arg for h in stuck for arg in ("--notify", h.url)))
    wait_for(lambda: stuck[0].taken)  # a post in flight
    assert server.stop(timeout=10) == 0
    conn = sqlite3.connect(db_path)
    (state,) = conn.execute("SELECT value FROM tbhook_meta WHERE key = 'alerts'").fetchone()
    conn.close()
    assert sorted(url for url, _ in json.loads(state)["outbox"]) == sorted(h.url for h in stuck)

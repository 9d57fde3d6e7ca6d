"""Retention: a pass archives each day's old events to its own file, checks it, then deletes
them; a pass stopped anywhere loses nothing; near --max-db-size the oldest days go first; on
PostgreSQL one pass at a time; and `serve --retain` does it in the background."""

import gzip
import json
import os
import threading

import pytest
from conftest import event_body, wait_for
from typer.testing import CliRunner

from tbhook.cli import app
from tbhook.model.events import parse
from tbhook.receiver.retention import describe
from tbhook.store import Delivery, open_reader, open_store
from tbhook.transfer import archive as archives
from tbhook.transfer.retention import PRUNE_TO, day_file, run_pass, state_of

DAY = 86400
NOW = 1_790_000_000  # 2026-09-21T...: the clock these tests give the pass
runner = CliRunner(env={"COLUMNS": "200"})


def add(store, days_old: list[float], per_day: int = 3, start: int = 0) -> list[bytes]:
    bodies = [
        event_body(
            caseId=start + i * 100 + n,
            uniqueId=start + i * 100 + n,
            timestamp=int(NOW - d * DAY) + n,
        )
        for i, d in enumerate(days_old)
        for n in range(per_day)
    ]
    store.append([Delivery(body, parse(body)) for body in bodies])
    return bodies


def archived(directory) -> list[bytes]:
    found = []
    for path in sorted(directory.glob("tbhook-*.ndjson.gz")):
        with gzip.open(path) as stream:
            found += [line.rstrip(b"\n") for line in stream]
    return found


def left(store) -> list[int]:
    return sorted(row[0] for row in store.query('SELECT "timestamp" FROM events'))


@pytest.fixture(params=["sqlite", "postgresql"])
def target(request, db_path):
    if request.param == "sqlite":
        return str(db_path)
    return request.getfixturevalue("pg_url")


def test_a_pass_archives_each_day_to_its_file_then_deletes(target, tmp_path):
    store = open_store(target)
    old = add(store, [40, 40.5, 35])  # 3 events each, on 2 days... and one more
    young = add(store, [10, 1], start=10_000)
    result = run_pass(store, tmp_path, 30 * DAY, now=NOW)
    assert result.error is None and result.deleted == 9 and result.archived == 9
    names = sorted(p.name for p in tmp_path.glob("tbhook-*.ndjson.gz"))
    assert names == sorted({day_file(tmp_path, NOW - d * DAY).name for d in (40, 40.5, 35)})
    assert result.files == sorted(result.files)
    assert sorted(archived(tmp_path)) == sorted(old)
    assert all(oct(os.stat(p).st_mode & 0o777) == "0o600" for p in tmp_path.glob("tbhook-*"))
    assert len(left(store)) == len(young)
    state = json.loads(store.reads.meta()["retention"])
    assert state["window"] == 30 * DAY and state["lastPass"]["deleted"] == 9
    assert state["lastOk"] == state["lastPass"]["finishedAt"]
    assert run_pass(store, tmp_path, 30 * DAY, now=NOW).deleted == 0  # nothing more
    store.close()


def test_a_pass_stopped_after_archiving_deletes_next_time_without_writing_twice(db_path, tmp_path):
    store = open_store(db_path)
    old = add(store, [40], per_day=5)
    path = day_file(tmp_path, NOW - 40 * DAY)
    archives.write(path, old[:3], set())  # a pass killed after archiving three of them
    left_over = tmp_path / f".{path.name}.tbhook-prune-4999999.tmp"  # ... killed while writing
    left_over.write_bytes(b"half a gzip member")
    result = run_pass(store, tmp_path, 30 * DAY, now=NOW)
    assert (result.archived, result.skipped, result.deleted) == (2, 3, 5)
    assert sorted(archived(tmp_path)) == sorted(old)  # each body once
    assert left(store) == [] and not left_over.exists()
    result = runner.invoke(app, ["import", str(path), "--db", str(db_path)])  # loads back
    assert result.stdout.startswith(f"Imported {path}: 5 inserted, 0 duplicates")
    store.close()


def test_a_pass_that_cannot_archive_deletes_nothing_and_says_why(db_path, tmp_path):
    store = open_store(db_path)
    add(store, [40])
    result = run_pass(store, tmp_path / "gone", 30 * DAY, now=NOW)
    assert result.deleted == 0
    assert result.error == f"the archive directory {tmp_path / 'gone'} does not exist"
    (tmp_path / "full").mkdir()
    day = day_file(tmp_path / "full", NOW - 40 * DAY)
    day.write_bytes(b"not gzip")  # what is there is not an archive: never appended to
    result = run_pass(store, tmp_path / "full", 30 * DAY, now=NOW)
    assert result.deleted == 0 and "is not a tbhook archive (not gzip" in result.error
    assert len(left(store)) == 3
    state = json.loads(store.reads.meta()["retention"])
    assert state["lastPass"]["error"] == result.error and "lastOk" not in state
    report = json.loads(runner.invoke(app, ["doctor", "--db", str(db_path), "-f", "json"]).stdout)
    check = next(c for c in report["checks"] if c["check"] == "retention")
    assert check["status"] == "warn" and "failed: " in check["message"]
    assert "the last pass that worked: never" in check["message"]
    store.close()


def test_near_the_cap_the_oldest_days_go_first(db_path, tmp_path):
    store = open_store(db_path)
    add(store, [20, 15, 10, 5, 1], per_day=400)  # all inside the window
    used = store.space()["usedBytes"]
    result = run_pass(store, tmp_path, 90 * DAY, cap=int(used / 0.9), now=NOW)
    assert result.error is None and result.forSize
    assert store.space()["usedBytes"] < PRUNE_TO * int(used / 0.9)
    stamps = left(store)
    gone = sorted(json.loads(b)["timestamp"] for b in archived(tmp_path))
    assert gone and stamps and max(gone) < min(stamps)  # the oldest went, whole days first
    assert len(gone) % 400 == 0
    assert result.deletedForSize == result.deleted == len(gone)  # none older than the window
    assert describe(result.as_dict(), 90 * DAY) == (
        f"retention: archived and deleted the oldest {len(gone)} events (to keep under "
        f"--max-db-size) into {len(result.files)} archive files"
    )
    store.close()


def test_two_passes_on_postgresql_run_one_at_a_time(pg_url, tmp_path):
    first, second = open_store(pg_url), open_store(pg_url)
    add(first, [40])
    with first.exclusive("retention") as mine:
        assert mine
        result = run_pass(second, tmp_path, 30 * DAY, now=NOW)  # another receiver's pass
        assert result.busy and result.deleted == 0
    assert run_pass(second, tmp_path, 30 * DAY, now=NOW).deleted == 3
    first.close()
    second.close()


def test_serve_retain_prunes_in_the_background(serve, db_path, tmp_path, sink):
    archive = tmp_path / "archive"
    archive.mkdir()
    target = sink()
    server = serve(
        "--retain",
        "30d",
        "--archive-dir",
        str(archive),
        "--prune-every",
        "1s",
        "--notify",
        target.url,
    )
    old = event_body(caseId=1, timestamp=1_600_000_000)  # 2020
    assert server.post(old).status == 200
    assert server.post(event_body(caseId=2, timestamp=int(__import__("time").time()))).status == 200
    wait_for(lambda: archived(archive) == [old], timeout=20)
    wait_for(lambda: "retention: archived and deleted 1 events older than 30d" in server.stderr())
    report = json.loads(runner.invoke(app, ["doctor", "--db", str(db_path), "-f", "json"]).stdout)
    assert report["events"] == 1 and report["retention"]["archiveFiles"] == 1
    check = next(c for c in report["checks"] if c["check"] == "retention")
    assert check["status"] == "ok" and "window 30d" in check["message"]
    # The archive directory goes away: the pass fails, nothing is deleted, an alert says so.
    archive.rename(tmp_path / "moved")
    assert server.post(event_body(caseId=3, timestamp=1_600_000_100)).status == 200
    wait_for(lambda: len(target.received) == 1, timeout=20)
    firing = json.loads(target.received[0][0])
    assert (firing["alert"], firing["state"]) == ("retention", "firing")
    assert "does not exist" in firing["text"]
    (tmp_path / "moved").rename(archive)
    wait_for(lambda: len(target.received) == 2, timeout=20)
    assert json.loads(target.received[1][0])["state"] == "resolved"
    assert len(archived(archive)) == 2


def test_serve_retain_keeps_the_file_under_the_cap_without_a_503(serve, db_path, tmp_path):
    """Deliveries inside the window, more than the cap holds, at 200 a second (a busy account
    is a few a second): the oldest days are archived and deleted for size, never a 503."""
    import time

    archive = tmp_path / "archive"
    archive.mkdir()
    store = open_store(db_path)
    add(store, [3], per_day=10)
    store.close()
    cap = os.path.getsize(db_path) + 1536 * 1024
    server = serve(
        "--retain", "90d", "--archive-dir", str(archive), "--max-db-size", str(cap), "--quiet"
    )
    statuses: list[int] = []
    start = int(time.time()) - 60 * DAY  # 60 days inside the 90-day window, in order
    lock = threading.Lock()
    due = [time.monotonic()]

    def post_days(part: int) -> None:
        for day in range(part, 60, 4):
            for n in range(50):
                with lock:  # 200 a second over the four senders
                    due[0] = max(due[0] + 0.005, time.monotonic())
                    wait = due[0] - time.monotonic()
                time.sleep(max(0.0, wait))
                key = day * 1000 + n
                body = event_body(caseId=key, uniqueId=key, timestamp=start + day * DAY + n)
                statuses.append(server.post(body).status)

    workers = [threading.Thread(target=post_days, args=(part,)) for part in range(4)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(120)
    assert statuses.count(200) == 60 * 50  # never a 503 for size
    assert os.path.getsize(db_path) <= cap
    stop_then_finish(server, db_path, archive, 90 * DAY, cap)
    kept = json.loads(runner.invoke(app, ["doctor", "--db", str(db_path), "-f", "json"]).stdout)
    assert archived(archive) and kept["usedBytes"] < cap  # the oldest days went to the archive
    assert len(archived(archive)) + kept["events"] == 60 * 50 + 10  # each event in one place


def test_two_receivers_on_postgresql_prune_once(serve, pg_url, tmp_path):
    archive = tmp_path / "archive"
    archive.mkdir()
    args = ("--retain", "30d", "--archive-dir", str(archive), "--prune-every", "1s", "--quiet")
    first, second = serve(*args, db=pg_url), serve(*args, db=pg_url)
    old = [event_body(caseId=n, uniqueId=n, timestamp=1_600_000_000 + n) for n in range(300)]
    for n, body in enumerate(old):
        assert (first if n % 2 else second).post(body).status == 200
    wait_for(lambda: len(archived(archive)) == 300, timeout=30)
    store = open_store(pg_url)
    wait_for(lambda: store.reads.count() == 0, timeout=30)
    state = json.loads(store.reads.meta()["retention"])
    store.close()
    assert sorted(archived(archive)) == sorted(old)  # each once, whichever receiver's pass
    assert state["lastPass"]["error"] is None


def stop_then_finish(server, db_path, archive, window: int, cap: int) -> None:
    """Stop the receiver, then run one pass to its end: a pass the stop ended after it
    archived a day and before it deleted it leaves that day in both places until the next
    (which deletes it without archiving it again)."""
    server.stop()
    store = open_store(db_path)
    try:
        run_pass(store, archive, window, cap=cap)
    finally:
        store.close()


def past_prune_at(db_path) -> int:
    """A cap the database is already past PRUNE_AT of (under the size alert), by a table of
    its own that no pass may delete."""
    import sqlite3

    open_store(db_path).close()
    filler = sqlite3.connect(db_path)
    filler.execute("CREATE TABLE filler (data BLOB)")
    filler.executemany("INSERT INTO filler VALUES (?)", [(os.urandom(4000),) for _ in range(300)])
    filler.commit()
    filler.close()
    store = open_store(db_path)
    try:
        return int(store.space()["usedBytes"] / 0.8)
    finally:
        store.close()


def test_a_failing_pass_near_the_cap_backs_off_instead_of_restarting(
    serve, db_path, tmp_path, sink
):
    """Past PRUNE_AT of the cap the size watch asks for a pass four times a second: a pass
    that cannot archive (here the archive's lock cannot be opened) is tried again seconds
    later, not at each ask (a process and a log line each), and its alert is sent once."""
    import time

    from tbhook.receiver.retention import retry_after

    cap = past_prune_at(db_path)
    archive = tmp_path / "archive"
    archive.mkdir()
    (archive / ".tbhook-retention.lock").mkdir()  # every pass fails, even as root
    target = sink()
    server = serve(
        "--max-db-size", str(cap), "--retain", "30d", "--archive-dir", str(archive),
        "--prune-every", "1m", "--notify", target.url,
    )  # fmt: skip
    failed = "retention: the pass failed"
    seen = []
    for count in (1, 2):
        wait_for(lambda: server.stderr().count(failed) >= count, timeout=30)  # noqa: B023
        seen.append(time.monotonic())
    assert seen[1] - seen[0] >= retry_after(1, 60) - 1  # not a quarter of a second
    assert server.stderr().count(failed) == 2
    assert [json.loads(body)["alert"] for body, _ in target.received] == ["retention"]
    assert [retry_after(n, 3600) for n in range(6)] == [0, 5, 10, 20, 40, 60]
    assert retry_after(3, 15) == 15  # never longer than --prune-every


def test_a_pass_near_the_cap_with_nothing_to_delete_is_not_started_again_at_each_ask(
    serve, db_path, tmp_path
):
    """Past PRUNE_AT with nothing a pass may delete (here a table of the file's own), a pass
    woken by the size watch that deleted nothing waits as a failed one does."""
    import time

    from tbhook.receiver.retention import retry_after

    cap = past_prune_at(db_path)
    archive = tmp_path / "archive"
    archive.mkdir()
    serve("--max-db-size", str(cap), "--retain", "30d", "--archive-dir", str(archive),
          "--prune-every", "1m")  # fmt: skip

    def last_pass() -> str | None:
        reader = open_reader(str(db_path))
        try:
            return (state_of(reader).get("lastPass") or {}).get("startedAt")
        finally:
            reader.close()

    starts: list[tuple[str, float]] = []
    for _ in range(3):
        wait_for(lambda: (s := last_pass()) and s not in [x for x, _ in starts], timeout=30)
        starts.append((last_pass(), time.monotonic()))
    # The first pass, then one woken at once (it deletes nothing), then one held back.
    assert starts[2][1] - starts[1][1] >= retry_after(1, 60) - 1


def test_a_receiver_stopped_during_a_pass_records_what_the_pass_deleted(serve, db_path, tmp_path):
    import sqlite3

    store = open_store(db_path)
    bodies = [b for d in range(4) for b in add(store, [400 + d], 2500, start=d * 10_000)]
    total = len(set(bodies))  # in 2025, on 4 days
    store.close()
    archive = tmp_path / "archive"
    archive.mkdir()
    server = serve("--retain", "30d", "--archive-dir", str(archive), "--quiet")

    def count() -> int:
        conn = sqlite3.connect(db_path)
        try:
            return conn.execute("SELECT count(*) FROM events").fetchone()[0]
        finally:
            conn.close()

    wait_for(lambda: count() < total, timeout=30)  # the first pass is deleting
    assert server.stop() == 0
    left_over = count()
    store = open_store(db_path)
    state = json.loads(store.reads.meta()["retention"])
    store.close()
    assert 0 < state["lastPass"]["deleted"] == total - left_over  # not "0 events"
    kept = archived(archive)
    assert len(kept) >= total - left_over  # each deleted event was archived first


def test_old_events_arriving_fast_near_the_cap_get_no_503(serve, db_path, tmp_path):
    """Events from a year ago, as fast as four senders go, under a 2 MiB cap: near the cap a
    pass deletes what is past the window without yielding to the writer, and keeps up."""
    archive = tmp_path / "archive"
    archive.mkdir()
    server = serve("--retain", "30d", "--archive-dir", str(archive), "--max-db-size", "2M", "-q")
    year_ago = int(__import__("time").time()) - 365 * DAY
    statuses: list[int] = []

    def post(part: int) -> None:
        for n in range(part, 8000, 4):
            body = event_body(caseId=n, uniqueId=n, timestamp=year_ago + n)
            statuses.append(server.post(body).status)

    workers = [threading.Thread(target=post, args=(part,)) for part in range(4)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(180)
    assert statuses.count(200) == 8000, f"{statuses.count(503)} answered 503"
    stop_then_finish(server, db_path, archive, 30 * DAY, 2 * 1024 * 1024)
    kept = json.loads(runner.invoke(app, ["doctor", "--db", str(db_path), "-f", "json"]).stdout)
    assert len(archived(archive)) + kept["events"] == 8000  # each event in one place

"""Long operations (prune, merge of a big log) share the database with a live receiver: they
write in short transactions, so live deliveries keep getting their 200 (no 503 "database is
locked") and wait at most a fraction of a second for the lock."""

import io
import itertools
import shutil
import sqlite3
import subprocess
import sys
import threading
import time

import pytest
from conftest import Worker, event_body, start_serve, wait_for

from tbhook.store.sqlite import SQLiteStore
from tbhook.transfer.generate import Generator
from tbhook.transfer.importer import import_stream

# At 1.2M events one transaction for all of them held the lock for more than 5 s (the
# receiver's wait): the long form, run by `make test-reliability`. The fast form checks the
# same at 150k events.
SIZES = [
    pytest.param(150_000, id="fast"),
    pytest.param(1_200_000, id="long", marks=pytest.mark.slow),
]


def build(path, seed, events):
    store = SQLiteStore.open(path)
    lines = Generator(seed=seed).lines(events)
    while part := list(itertools.islice(lines, 200_000)):
        import_stream(store, io.BytesIO("\n".join(part).encode()), "fixture")
    store.close()
    return path


_built: dict = {}


@pytest.fixture
def big_logs(tmp_path_factory, request):
    """Two logs of ``request.param`` events each, built once per size."""
    events = request.param
    if events not in _built:
        where = tmp_path_factory.mktemp(f"big{events}")
        _built[events] = build(where / "one.db", 11, events), build(where / "two.db", 12, events)
    return _built[events]


def deliver_while(server, running: threading.Event, delivered: list[int]) -> Worker:
    """Deliver until ``running`` is cleared; ``delivered`` counts the answers as they come."""

    def deliver():
        statuses, waits, i = [], [], 0
        while running.is_set():
            started = time.monotonic()
            statuses.append(server.post(event_body(caseId=10_000_000 + i, uniqueId=i)).status)
            waits.append(time.monotonic() - started)
            i += 1
            delivered[0] = i
        return statuses, waits

    worker = Worker(deliver)
    worker.start()
    return worker


def lock_probe(db, running: threading.Event) -> Worker:
    """How long, at most, the write lock stayed out of reach: a probe takes and drops it every
    few milliseconds, never waiting (a long transaction shows as one long stretch)."""

    def probe():
        conn = sqlite3.connect(db, isolation_level=None, timeout=0)
        longest, blocked_since = 0.0, None
        while running.is_set():
            try:
                conn.execute("BEGIN IMMEDIATE")
                conn.execute("ROLLBACK")
                if blocked_since is not None:
                    longest = max(longest, time.monotonic() - blocked_since)
                blocked_since = None
            except sqlite3.OperationalError:
                blocked_since = blocked_since or time.monotonic()
            time.sleep(0.005)
        conn.close()
        return longest

    worker = Worker(probe)
    worker.start()
    return worker


def run_beside_a_receiver(db, command):
    server = start_serve(db, "--quiet")
    running = threading.Event()
    running.set()
    try:
        delivered = [0]
        worker = deliver_while(server, running, delivered)
        probe = lock_probe(db, running)
        wait_for(lambda: delivered[0] >= 20)  # deliveries are flowing
        done = subprocess.run(
            [sys.executable, "-m", "tbhook", *command, "--db", str(db)],
            capture_output=True,
            text=True,
            timeout=600,
        )
        after = delivered[0]
        wait_for(lambda: delivered[0] >= after + 20)  # and still flow once it is done
        running.clear()
        statuses, waits = worker.finish(60)
        held = probe.finish(60)
    finally:
        server.stop()
    print(
        f"\n{done.stdout.strip()}; {len(statuses)} deliveries meanwhile, longest wait "
        f"{max(waits):.2f} s; longest hold of the write lock {held:.2f} s"
    )
    return done, statuses, waits, held


@pytest.mark.parametrize("big_logs", SIZES, indirect=True)
def test_prune_of_a_big_log_does_not_lock_the_receiver_out(big_logs, tmp_path, timing):
    db = tmp_path / "live.db"
    shutil.copy(big_logs[0], db)
    done, statuses, waits, held = run_beside_a_receiver(
        db, ["prune", "--before", "2024-02-01", "--no-archive", "--yes"]
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("Pruned ")
    assert set(statuses) == {200}
    if timing:
        assert max(waits) < 1.5 and held < 0.4


@pytest.mark.parametrize("big_logs", SIZES, indirect=True)
def test_merge_of_a_big_log_does_not_lock_the_receiver_out(big_logs, tmp_path, timing):
    db = tmp_path / "live.db"
    shutil.copy(big_logs[0], db)
    done, statuses, waits, held = run_beside_a_receiver(db, ["merge", str(big_logs[1])])
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("Merged ")
    assert set(statuses) == {200}
    if timing:
        assert max(waits) < 1.5 and held < 0.4

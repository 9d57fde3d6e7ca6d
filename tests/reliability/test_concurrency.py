"""9, 10, 11: the dedupe race, readers during writes, and a WAL that stays bounded."""

import os
import sqlite3
import statistics
import subprocess
import sys
import threading
import time

import pytest
from conftest import Worker, event_body, run_all

from tbhook.store.sqlite import WAL_SIZE_LIMIT, SQLiteStore
from tbhook.transfer.generate import Generator
from tbhook.transfer.importer import import_stream


@pytest.mark.parametrize(
    "rounds", [pytest.param(10, id="fast"), pytest.param(50, id="long", marks=pytest.mark.slow)]
)
def test_dedupe_race(server, rounds):
    oks: dict[bytes, int] = {}
    for round_ in range(rounds):
        body = event_body(caseId=round_, uniqueId=round_)
        barrier = threading.Barrier(32)

        def post(body=body, barrier=barrier):
            barrier.wait(30)
            return server.post(body).status

        statuses = run_all([Worker(post) for _ in range(32)])
        oks[body] = statuses.count(200)
    conn = sqlite3.connect(server.db)
    rows = dict(conn.execute("SELECT body, deliveries FROM events"))
    assert rows == oks  # one row per body, deliveries == the number of 200s
    assert set(oks.values()) == {32}
    print(
        f"\n{rounds} rounds x 32 identical posts: {len(rows)} rows, deliveries {set(rows.values())}"
    )


def load(db, count: int) -> None:
    store = SQLiteStore.open(db)
    data = "\n".join(Generator(seed=4).lines(count)).encode()
    import io

    import_stream(store, io.BytesIO(data), "fixture")
    store.close()


@pytest.mark.parametrize(
    "form", [pytest.param("fast"), pytest.param("timed", marks=pytest.mark.slow)]
)
def test_readers_during_writes(db_path, serve, form, timing):
    load(db_path, 150_000)
    server = serve("--quiet")
    latencies: list[float] = []
    stop = threading.Event()

    def deliver():
        i = 0
        while not stop.is_set():
            t0 = time.monotonic()
            status = server.post(event_body(caseId=1_000_000 + i)).status
            assert status == 200, f"delivery {i} got {status} while exports read"
            latencies.append(time.monotonic() - t0)
            i += 1

    writer = Worker(deliver)
    writer.start()
    started = time.monotonic()
    exports = 0
    try:
        while time.monotonic() - started < 3:  # keep a reader going for several seconds
            export = subprocess.run(
                [sys.executable, "-m", "tbhook", "export", "--db", str(db_path), "-f", "ndjson"],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.PIPE,
                timeout=60,
            )
            assert export.returncode == 0 and export.stderr == b"", export.stderr
            exports += 1
    finally:
        stop.set()
    writer.finish(30)  # a failed delivery fails the test here
    took = time.monotonic() - started
    p99 = statistics.quantiles(latencies, n=100)[98]
    if timing:
        assert p99 < 0.25, f"writer p99 {p99 * 1000:.0f} ms while exports read for {took:.1f} s"
    print(
        f"\n{exports} exports read for {took:.1f} s; {len(latencies)} deliveries, "
        f"p99 {p99 * 1000:.1f} ms, 0 locked"
    )


def test_wal_returns_under_the_limit_after_a_long_reader(db_path, serve):
    server = serve("--quiet")
    wal = f"{db_path}-wal"
    reader = sqlite3.connect(f"file:{db_path}?mode=ro", uri=True, isolation_level=None)
    reader.execute("BEGIN")
    reader.execute(
        "SELECT count(*) FROM events"
    ).fetchone()  # holds a snapshot: no checkpoint can finish
    writer = SQLiteStore.open(db_path)
    data = "\n".join(Generator(seed=6).lines(250_000)).encode()
    import io

    import_stream(writer, io.BytesIO(data), "bulk")
    grown = os.path.getsize(wal)
    assert grown > WAL_SIZE_LIMIT, f"the WAL only reached {grown} bytes"
    reader.execute("COMMIT")  # the long reader finishes
    reader.close()
    writer.close()
    for i in range(5):  # the next commits checkpoint and reset the WAL
        assert server.post(event_body(caseId=i)).status == 200
    deadline = time.monotonic() + 10
    while os.path.getsize(wal) > WAL_SIZE_LIMIT and time.monotonic() < deadline:
        server.post(event_body(caseId=int(time.monotonic() * 1000)))
    assert os.path.getsize(wal) <= WAL_SIZE_LIMIT
    print(
        f"\nWAL grew to {grown / 2**20:.0f} MiB under a reader, back to "
        f"{os.path.getsize(wal) / 2**20:.1f} MiB after it (limit {WAL_SIZE_LIMIT / 2**20:.0f} MiB)"
    )

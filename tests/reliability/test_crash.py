"""1 and 14: kill -9 and SIGTERM under load. Every delivery that got a 200 is stored."""

import http.client
import signal
import sqlite3
import threading
import time

import pytest
from conftest import start_serve, wait_for

from tbhook.transfer.generate import Generator


def bodies(count: int, seed: int) -> list[bytes]:
    return [line.encode() for line in Generator(seed=seed).lines(count)]


class Client(threading.Thread):
    """Posts its bodies; resends whatever got no 200, as Tracebuzz would."""

    def __init__(self, port: int, todo: list[bytes], acked: set, lock: threading.Lock):
        super().__init__(daemon=True)
        self.port, self.todo, self.acked, self.lock = port, todo, acked, lock
        self.oks = self.retries = 0

    def run(self):
        conn = None
        for body in self.todo:
            while True:
                try:
                    conn = conn or http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)
                    conn.request("POST", "/", body=body)
                    response = conn.getresponse()
                    response.read()
                    if response.status == 200:
                        with self.lock:
                            self.acked.add(body)
                        self.oks += 1
                        break
                except (OSError, http.client.HTTPException):
                    if conn:
                        conn.close()
                    conn = None
                self.retries += 1
                time.sleep(0.02)
        if conn:
            conn.close()


def stored_bodies(db) -> list[bytes]:
    conn = sqlite3.connect(db)
    try:
        assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        return [row[0] for row in conn.execute("SELECT body FROM events")]
    finally:
        conn.close()


@pytest.mark.parametrize(
    "kills, clients, events",
    [
        pytest.param(3, 16, 4000, id="fast"),
        pytest.param(20, 64, 40000, id="long", marks=pytest.mark.slow),
    ],
)
def test_kill_9_under_load_loses_nothing_acknowledged(tmp_path, kills, clients, events):
    db = tmp_path / "crash.db"
    work = bodies(events, seed=kills)
    server = start_serve(db, "--quiet")
    port = server.port
    acked: set[bytes] = set()
    lock = threading.Lock()
    threads = [Client(port, work[i::clients], acked, lock) for i in range(clients)]
    for thread in threads:
        thread.start()
    killed = 0
    try:
        for _ in range(kills):
            seen = len(acked)
            wait_for(lambda seen=seen: len(acked) >= seen + 100, timeout=60)  # under load
            with lock:
                before = set(acked)
            server.proc.kill()  # SIGKILL: no drain, no cleanup
            server.proc.wait(10)
            killed += 1
            missing = before - set(stored_bodies(db))
            assert not missing, f"{len(missing)} acknowledged events lost after kill {killed}"
            server = start_serve(db, "--quiet", "--port", str(port))
        for thread in threads:
            thread.join(120)
    finally:
        server.stop()
    stored = stored_bodies(db)
    assert len(acked) == len(work)  # every client got through in the end
    assert set(stored) >= acked  # 0 lost
    assert len(stored) == len(set(work))  # resent events deduplicated: 0 extra rows
    oks = sum(t.oks for t in threads)
    retries = sum(t.retries for t in threads)
    print(f"\n{killed} kills, {oks} acked, {retries} resends, {len(stored)} rows, 0 lost")


@pytest.mark.parametrize(
    "clients, events",
    [pytest.param(16, 5000, id="fast"), pytest.param(64, 40000, id="long", marks=pytest.mark.slow)],
)
def test_sigterm_during_load_stores_every_200_and_exits_0_within_10s(tmp_path, clients, events):
    db = tmp_path / "term.db"
    work = bodies(events, seed=99)
    server = start_serve(db, "--quiet")
    acked: set[bytes] = set()
    lock = threading.Lock()
    threads = [Client(server.port, work[i::clients], acked, lock) for i in range(clients)]
    for t in threads:
        t.start()
    wait_for(lambda: len(acked) >= 100, timeout=60)  # under load
    server.proc.send_signal(signal.SIGTERM)
    assert server.proc.wait(10) == 0  # a longer drain raises here
    with lock:
        acknowledged = set(acked)
    stored = set(stored_bodies(db))
    assert acknowledged and acknowledged <= stored
    assert len(acknowledged) < len(work), "the load ended before SIGTERM: nothing was in flight"
    print(f"\nSIGTERM after {len(acknowledged)} acked: {len(stored)} stored, 0 lost")
    # The clients keep retrying against a dead port; restart to let them finish and exit.
    server = start_serve(db, "--quiet", "--port", str(server.port))
    for t in threads:
        t.join(120)
    server.stop()

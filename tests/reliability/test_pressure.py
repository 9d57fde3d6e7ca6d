"""A valid delivery gets its 200 while someone else misbehaves: thousands of slow connections,
a low open-file limit, a thousand huge bodies at once, bodies that are slow to parse, a disk
that stalls, and long operations on the same database. Real sockets, a real `tbhook serve`."""

import asyncio
import contextlib
import json
import os
import resource
import shutil
import socket
import sqlite3
import statistics
import subprocess
import threading
import time

import pytest
from conftest import (
    Worker,
    answered,
    event_body,
    fault_not_run,
    post_raw,
    reply,
    request,
    start_serve,
    wait_for,
)

from tbhook.receiver import protocol


def rss_mib(pid: int) -> float:
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    raise AssertionError("no VmRSS")


def open_files_limit(pid: int) -> int:
    with open(f"/proc/{pid}/limits") as limits:
        for line in limits:
            if line.startswith("Max open files"):
                return int(line.split()[3])
    raise AssertionError("no open-file limit")


class SlowCrowd:
    """``count`` connections that each send half a request line and stall, reconnecting as
    soon as the server closes one: an attacker holding as many places as it can."""

    def __init__(self, port: int, count: int):
        self.port, self.count = port, count
        self.reconnects = 0
        self.opened = 0  # connections made so far, first round included
        self._stop = threading.Event()
        self._thread = Worker(self._run)

    def __enter__(self):
        self._thread.start()
        wait_for(lambda: self.opened >= self.count, timeout=60)  # the crowd is all there
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.finish(30)

    def _connect(self) -> socket.socket | None:
        try:
            sock = socket.create_connection(("127.0.0.1", self.port), timeout=1)
            sock.sendall(b"POST / HTTP/1.1\r\nHost: x\r\n")
            sock.setblocking(False)
            self.opened += 1
            return sock
        except OSError:
            return None

    def _run(self) -> None:
        import selectors

        selector = selectors.DefaultSelector()
        for _ in range(self.count):
            sock = self._connect()
            if sock:
                selector.register(sock, selectors.EVENT_READ)
        while not self._stop.is_set():
            for key, _ in selector.select(0.05):
                sock = key.fileobj
                with contextlib.suppress(OSError):
                    if sock.recv(4096):  # a 503 or 408: it will close next
                        continue
                selector.unregister(sock)
                sock.close()
                self.reconnects += 1
                fresh = self._connect()
                if fresh:
                    selector.register(fresh, selectors.EVENT_READ)
        for key in list(selector.get_map().values()):
            key.fileobj.close()


def deliveries(server, count: int, start: int = 0) -> list[int]:
    return [
        server.post(event_body(caseId=start + i, uniqueId=start + i)).status for i in range(count)
    ]


def test_slow_connections_are_shed_so_complete_requests_get_their_200(tmp_path):
    server = start_serve(tmp_path / "a.db", "--max-connections", "200")
    try:
        with SlowCrowd(server.port, 600) as crowd:
            statuses = deliveries(server, 100)
        assert statuses == [200] * 100
        assert crowd.reconnects > 300  # they were shed, and came back
        assert "closed the oldest connection that had not sent a complete request" in (
            server.stderr()
        )
    finally:
        assert server.stop() == 0


def test_the_open_file_limit_is_raised_to_the_hard_limit(tmp_path):
    hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    if hard != resource.RLIM_INFINITY and hard <= 512:
        pytest.skip(f"the hard open-file limit here is {hard}")

    def low_soft_limit():
        resource.setrlimit(resource.RLIMIT_NOFILE, (256, hard))

    server = start_serve(tmp_path / "a.db", preexec_fn=low_soft_limit)
    try:
        assert open_files_limit(server.proc.pid) == min(hard, 1 << 20)
    finally:
        server.stop()


def test_under_a_hard_limit_of_1024_files_1100_slow_connections_do_not_block_deliveries(tmp_path):
    def systemd_default():  # soft and hard 1024, as a unit without LimitNOFILE may get
        resource.setrlimit(resource.RLIMIT_NOFILE, (1024, 1024))

    server = start_serve(tmp_path / "a.db", "--quiet", preexec_fn=systemd_default)
    try:
        assert "leaves room for 924 connections" in server.stderr()
        with SlowCrowd(server.port, 1100):
            statuses = deliveries(server, 100)
        assert statuses == [200] * 100
        assert "at the limit of 924 connections" in server.stderr()
    finally:
        assert server.stop() == 0


async def _post_raw(port: int, body: bytes) -> str:
    """POST ``body``; the status, or how the connection ended without one."""
    try:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
    except OSError:
        return "refused"
    try:
        writer.write(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n" % len(body))
        writer.write(body)
        with contextlib.suppress(OSError):
            await writer.drain()
        line = await asyncio.wait_for(reader.readline(), 60)
        return line.split(b" ")[1].decode() if line else "closed"
    except OSError:
        return "reset"
    finally:
        writer.close()


@pytest.mark.alone  # peak memory: other tests running beside it would be counted
def test_a_thousand_huge_bodies_at_once_stay_within_the_memory_budget(tmp_path):
    server = start_serve(tmp_path / "a.db", "--quiet")
    try:
        baseline = rss_mib(server.proc.pid)
        peak = [baseline]
        done = threading.Event()

        def watch():
            while not done.is_set():
                peak.append(rss_mib(server.proc.pid))
                time.sleep(0.02)

        watcher = Worker(watch)
        watcher.start()
        bodies = [event_body(caseId=i, pad="x" * (1024 * 1024 - 300)) for i in range(1000)]

        async def burst():
            return await asyncio.gather(*(_post_raw(server.port, b) for b in bodies))

        outcomes = asyncio.run(burst())
        done.set()
        watcher.finish(10)
        # The receiver hands the memory back once the burst is over (malloc_trim).
        after = wait_for(
            lambda: (rss := rss_mib(server.proc.pid)) - baseline < 64 + 40 and rss, fail=False
        ) or rss_mib(server.proc.pid)
        counts = {o: outcomes.count(o) for o in set(outcomes)}
        print(
            f"\nRSS {baseline:.0f} MiB, peak {max(peak):.0f} MiB, after {after:.0f} MiB: {counts}"
        )
        assert counts.get("200", 0) > 0 and set(counts) <= {"200", "503", "reset", "closed"}
        # The budget (64 MiB) plus SQLite's page cache (64 MiB, which fills with the stored
        # bodies and stays: it is bounded) plus uvicorn's read-ahead for refused connections.
        assert max(peak) - baseline < 230, "bodies in flight were not capped"
        assert after - baseline < 64 + 40, "the memory of the burst was not returned"
        stored = sqlite3.connect(server.db).execute("SELECT count(*) FROM events").fetchone()[0]
        assert stored == counts["200"]
        assert server.post(event_body(caseId=5000)).status == 200  # and it still serves
    finally:
        assert server.stop() == 0


def nested_body(size: int = 1024 * 1024) -> bytes:
    """A megabyte of small nested objects: the slowest JSON there is to parse."""
    items = size // 40
    return json.dumps(
        {"event": "newResult", "junk": [{"a": i, "b": [1, {"c": "x"}]} for i in range(items)]}
    ).encode()


@pytest.mark.parametrize(
    "senders", [pytest.param(4, id="fast"), pytest.param(4, id="timed", marks=pytest.mark.slow)]
)
def test_senders_of_slow_to_parse_bodies_do_not_stall_other_deliveries(tmp_path, senders, timing):
    server = start_serve(tmp_path / "a.db", "--quiet")
    try:
        baseline = []
        for i in range(50):
            started = time.monotonic()
            assert server.post(event_body(caseId=i)).status == 200
            baseline.append(time.monotonic() - started)
        stop = threading.Event()
        big = nested_body()

        def heavy(n):
            conn_body = big.replace(b'"junk"', b'"junk%d"' % n)
            while not stop.is_set():
                request(server.port, "POST", "/", conn_body)

        workers = [Worker(heavy, n) for n in range(senders)]
        for worker in workers:
            worker.start()
        during = []
        for i in range(50):
            started = time.monotonic()
            assert server.post(event_body(caseId=1000 + i)).status == 200
            during.append(time.monotonic() - started)
        stop.set()
        for worker in workers:
            worker.finish(30)
        p50 = statistics.median(during)
        print(
            f"\np50 {statistics.median(baseline) * 1000:.1f} ms alone, {p50 * 1000:.1f} ms "
            "beside four senders of 1 MiB nested bodies"
        )
        if timing:
            assert p50 < 0.2, f"p50 {p50 * 1000:.0f} ms beside four heavy senders"
    finally:
        assert server.stop() == 0


@pytest.fixture
def freezable_dir(tmp_path):
    """A small ext4 file system on a loop device, which `fsfreeze` can stall like a dying disk."""
    if os.geteuid() != 0 or not shutil.which("fsfreeze") or not shutil.which("mkfs.ext4"):
        fault_not_run("a frozen file system: needs root, fsfreeze and mkfs.ext4")
    image, mount = tmp_path / "disk.img", tmp_path / "mnt"
    mount.mkdir()
    subprocess.run(["truncate", "-s", "64M", str(image)], check=True)
    subprocess.run(["mkfs.ext4", "-q", "-F", str(image)], check=True)
    mounted = subprocess.run(["mount", "-o", "loop", str(image), str(mount)], capture_output=True)
    if mounted.returncode != 0:
        fault_not_run(f"a frozen file system: {mounted.stderr.decode().strip()}")
    try:
        yield mount
    finally:
        subprocess.run(["fsfreeze", "-u", str(mount)], capture_output=True)
        subprocess.run(["umount", "-l", str(mount)], check=False)


@pytest.mark.alone  # a frozen file system, and how long the loop takes to answer beside it
def test_a_stalled_disk_stalls_the_acknowledgements_not_the_loop(freezable_dir):
    server = start_serve(freezable_dir / "frozen.db", "--quiet")
    try:
        assert server.post(event_body(caseId=1)).status == 200
        subprocess.run(["fsfreeze", "-f", str(freezable_dir)], check=True)
        try:
            pending = post_raw(server.port, event_body(caseId=2))  # read by the server
            assert request(server.port, "GET", "/").status == 200  # the loop still answers
            assert not answered(pending), "a 200 went out while the disk could not commit"
        finally:
            subprocess.run(["fsfreeze", "-u", str(freezable_dir)], check=True)
        assert reply(pending)[0] == 200  # its commit finished once the disk came back
        cases = sqlite3.connect(server.db).execute("SELECT caseId FROM events ORDER BY id")
        assert [c for (c,) in cases] == [1, 2]
    finally:
        assert server.stop() == 0


def test_an_unknown_uvicorn_fails_loudly(tmp_path):
    site = tmp_path / "site"
    site.mkdir()
    (site / "sitecustomize.py").write_text("import uvicorn\nuvicorn.__version__ = '0.99.1'\n")
    env = {**os.environ, "PYTHONPATH": str(site)}
    import sys

    result = subprocess.run(
        [sys.executable, "-m", "tbhook", "serve", "--db", str(tmp_path / "a.db"), "--port", "0"],
        capture_output=True,
        text=True,
        env=env,
        timeout=30,
    )
    assert result.returncode == 1
    assert result.stderr.startswith(
        "Error: uvicorn 0.99.1 is installed, but tbhook's connection guards"
    )
    assert not (tmp_path / "a.db").exists()


def test_uvicorn_hooks_are_checked():
    protocol.check_uvicorn()  # the installed one passes
    with pytest.raises(Exception, match="tested on uvicorn 0.54.x only"):
        protocol.check_uvicorn("0.55.0")

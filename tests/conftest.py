"""Shared fixtures: a temp database for every test, and a real `tbhook serve` on port 0."""

from __future__ import annotations

import contextlib
import http.client
import json
import os
import re
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from pgcluster import PgCluster

from tbhook.store.sqlite import SQLiteStore

CHECKOUT = Path(__file__).resolve().parent.parent
SAMPLES = CHECKOUT / "samples"
SAMPLE_NAMES = ["new-incoming-message", "include-own-message", "case-closed", "profile-merged"]


def sample_bytes(name: str) -> bytes:
    return (SAMPLES / f"{name}.json").read_bytes()


def event_body(**fields) -> bytes:
    """A valid newResult body, with fields overridden."""
    payload = json.loads(sample_bytes("new-incoming-message"))
    payload.update(fields)
    return json.dumps(payload).encode()


def _checkout_status() -> set[str] | None:
    """`git status --porcelain` of the checkout (untracked files included), or None outside
    a git checkout."""
    try:
        found = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=all"],
            cwd=CHECKOUT,
            capture_output=True,
            text=True,
            timeout=60,
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    return set(found.stdout.splitlines()) if found.returncode == 0 else None


def pytest_sessionstart(session: pytest.Session) -> None:
    if not hasattr(session.config, "workerinput"):  # the controller, with pytest-xdist
        session.config.stash[_STATUS] = _checkout_status()


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """A test or benchmark that leaves a file in the checkout fails the run (a 71 MB
    database named "None" was once committed that way)."""
    before = session.config.stash.get(_STATUS, None)
    after = _checkout_status()
    if before is None or after is None:
        return
    left = sorted(after - before)
    if left:
        session.config.stash[_LEFT] = left
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


_FAULTS_NOT_RUN: list[str] = []


def fault_not_run(why: str) -> None:
    """Skip a test whose fault cannot be made here (no chattr, no loop mount, no fsfreeze),
    and name it in the summary: a run that did not exercise a fault path says so."""
    _FAULTS_NOT_RUN.append(why)
    pytest.skip(why)


def pytest_terminal_summary(terminalreporter, exitstatus: int, config: pytest.Config) -> None:
    if _FAULTS_NOT_RUN:
        terminalreporter.section("fault paths not exercised on this machine", sep="=")
        for why in sorted(set(_FAULTS_NOT_RUN)):
            terminalreporter.write_line(why)
    left = config.stash.get(_LEFT, None)
    if left:
        terminalreporter.section("files left in the checkout", sep="=", red=True)
        for line in left:
            terminalreporter.write_line(line)
        terminalreporter.write_line("The run fails: tests must write only under tmp_path.")


_STATUS = pytest.StashKey[set | None]()
_LEFT = pytest.StashKey[list]()


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    return tmp_path / "tbhook.db"


@pytest.fixture(autouse=True)
def env_setup(monkeypatch: pytest.MonkeyPatch, db_path: Path) -> None:
    # No test may touch a real ./tbhook.db or inherit a real secret.
    monkeypatch.setenv("TBHOOK_DB", str(db_path))
    monkeypatch.delenv("TBHOOK_HEADER_NAME", raising=False)
    monkeypatch.delenv("TBHOOK_HEADER_VALUE", raising=False)


@pytest.fixture
def store(db_path: Path):
    store = SQLiteStore.open(db_path)
    yield store
    store.close()


@dataclass
class Response:
    status: int
    headers: dict[str, str]
    body: bytes

    @property
    def json(self):
        return json.loads(self.body)


def request(
    port: int, method: str, path: str = "/", body: bytes | None = None, headers=None
) -> Response:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        conn.request(method, path, body=body, headers=headers or {})
        resp = conn.getresponse()
        return Response(resp.status, {k.lower(): v for k, v in resp.getheaders()}, resp.read())
    finally:
        conn.close()


@dataclass
class Served:
    """A running `tbhook serve` process and what it printed on stderr."""

    proc: subprocess.Popen
    port: int
    db: Path
    lines: list[str] = field(default_factory=list)

    def post(self, body: bytes, path: str = "/", headers=None) -> Response:
        return request(self.port, "POST", path, body, headers)

    def stderr(self) -> str:
        return "".join(self.lines)

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 15) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        return self.proc.wait(timeout)


MAX_LINES = 100_000  # of a receiver's stderr kept by a test


def start_serve(db: Path, *args: str, env: dict | None = None, preexec_fn=None) -> Served:
    """Start `tbhook serve --port 0` and wait until it says where it listens."""
    cmd = [sys.executable, "-m", "tbhook", "serve", "--db", str(db), "--port", "0", *args]
    proc = subprocess.Popen(
        cmd,
        stderr=subprocess.PIPE,
        stdout=subprocess.DEVNULL,
        text=True,
        env=env or os.environ,
        preexec_fn=preexec_fn,
    )
    served = Served(proc, 0, db)
    ready = threading.Event()

    def pump() -> None:
        for line in proc.stderr:
            served.lines.append(line)
            if len(served.lines) > MAX_LINES:  # a receiver that floods its log cannot fill
                dropped = len(served.lines) - MAX_LINES // 2  # the test's memory: the middle
                del served.lines[100:dropped]  # goes, the start and the end stay
                served.lines.insert(100, f"[... {dropped - 100} lines dropped ...]\n")
            found = re.search(r"receiving on http://\S+:(\d+)/", line)
            if found:
                served.port = int(found.group(1))
            if line.startswith("Press Ctrl+C") or line.startswith('{"time"'):  # banner out
                ready.set()
        ready.set()

    threading.Thread(target=pump, daemon=True).start()
    if not ready.wait(20) or not served.port:
        proc.kill()
        raise RuntimeError("tbhook serve did not start:\n" + served.stderr())
    return served


@pytest.fixture
def serve(db_path: Path):
    """Factory: start a real server with extra CLI args; every one is stopped afterwards."""
    started: list[Served] = []

    def factory(*args: str, db: Path | str | None = None) -> Served:
        served = start_serve(db or db_path, *args)
        started.append(served)
        return served

    yield factory
    for served in started:
        if served.proc.poll() is None:
            served.proc.kill()
            served.proc.wait(10)


@pytest.fixture
def server(serve) -> Served:
    return serve()


def on_a_terminal(*args: str, columns: int = 200, env: dict | None = None) -> bytes:
    """What `tbhook ARGS` writes when its stdout is a real terminal (a pseudo-terminal of
    ``columns`` columns)."""
    import fcntl
    import pty
    import struct
    import termios

    leader, follower = pty.openpty()
    fcntl.ioctl(follower, termios.TIOCSWINSZ, struct.pack("HHHH", 50, columns, 0, 0))
    environment = {k: v for k, v in os.environ.items() if k not in ("COLUMNS", "LINES")}
    proc = subprocess.Popen(
        [sys.executable, "-m", "tbhook", *args],
        stdout=follower,
        stderr=subprocess.PIPE,
        stdin=subprocess.DEVNULL,
        env={**environment, **(env or {})},
    )
    os.close(follower)
    out = bytearray()
    while True:
        try:
            chunk = os.read(leader, 65536)
        except OSError:  # EIO: the command closed its end
            break
        if not chunk:
            break
        out += chunk
    os.close(leader)
    assert proc.wait(60) in (0, 1), proc.stderr.read()
    return bytes(out)


@pytest.fixture
def timing(request) -> bool:
    """Whether this run asserts wall-clock limits: only the long forms (marker ``slow``, `make
    test-reliability`), on a machine they have to themselves; `make test` runs four workers on
    shared cores and asserts behaviour only (the figures are in `make bench`)."""
    return request.node.get_closest_marker("slow") is not None


def read_by_server(sock, timeout: float = 10.0) -> None:
    """Wait until the server has read everything this client socket sent: the receive queue
    of the server's end (in /proc/net/tcp) is empty. A readiness signal with no sleep: what
    was sent is in the server's hands, whatever it does with it next."""
    client_port = sock.getsockname()[1]
    server_port = sock.getpeername()[1]

    def queued() -> int | None:
        for table in ("/proc/net/tcp", "/proc/net/tcp6"):
            with open(table) as f:
                for line in f.readlines()[1:]:
                    fields = line.split()
                    local, remote, queues = fields[1], fields[2], fields[4]
                    if (
                        int(local.rsplit(":", 1)[1], 16) == server_port
                        and int(remote.rsplit(":", 1)[1], 16) == client_port
                    ):
                        return int(queues.split(":")[1], 16)
        return None

    wait_for(lambda: queued() == 0, timeout)


def post_raw(port: int, body: bytes, path: str = "/") -> socket.socket:
    """A POST sent whole on a connection of its own, read by the server before this returns;
    its answer is read later (``reply``)."""
    sock = socket.create_connection(("127.0.0.1", port), timeout=30)
    sock.sendall(
        b"POST %s HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n" % (path.encode(), len(body))
        + body
    )
    read_by_server(sock)
    return sock


def reply(sock: socket.socket) -> tuple[int, dict]:
    """The status and JSON of the answer on ``sock`` (then closed)."""
    data = b""
    with sock:
        while b"\r\n\r\n" not in data:
            data += sock.recv(65536)
        head, _, rest = data.partition(b"\r\n\r\n")
        length = int(re.search(rb"content-length: (\d+)", head.lower())[1])
        while len(rest) < length:
            rest += sock.recv(65536)
    return int(head.split()[1]), json.loads(rest)


def answered(sock) -> bool:
    """Whether a reply has arrived on this client socket (without waiting)."""
    import select

    return bool(select.select([sock], [], [], 0)[0])


def child_process(pid: int, marker: bytes, timeout: float = 10.0) -> int:
    """The pid of the child of ``pid`` whose command line holds ``marker`` (a receiver's
    writer process, its console). Waited for: a child just started can be seen before the
    kernel has written its new command line (exec closes the pipe Popen waits on first)."""

    def found() -> int | None:
        with open(f"/proc/{pid}/task/{pid}/children") as f:
            children = f.read().split()
        for child in children:
            try:
                with open(f"/proc/{child}/cmdline", "rb") as f:
                    if marker in f.read():
                        return int(child)
            except OSError:  # gone meanwhile
                continue
        return None

    child = wait_for(found, timeout, fail=False)
    if child is None:
        raise AssertionError(f"no child of {pid} with {marker!r}")
    return child


WRITER = b"tbhook.receiver.writer import child_main"  # the writer process's command line
CONSOLE = b"tbhook.console.__main__ import main"  # serve --ui's console


class Worker(threading.Thread):
    """A test's helper thread whose failure fails the test: ``finish`` re-raises what the
    thread raised, and gives up (failing) when the thread does not end in time."""

    def __init__(self, target, *args):
        super().__init__(daemon=True)
        self._work, self._args = target, args
        self.error: BaseException | None = None
        self.value = None

    def run(self) -> None:
        try:
            self.value = self._work(*self._args)
        except BaseException as exc:
            self.error = exc

    def finish(self, timeout: float = 60.0):
        self.join(timeout)
        if self.is_alive():
            raise AssertionError(f"{self._work.__name__} did not finish within {timeout} s")
        if self.error is not None:
            raise self.error
        return self.value


def run_all(workers: list[Worker], timeout: float = 60.0) -> list:
    """Start every worker, wait for all of them, and raise the first failure."""
    for worker in workers:
        worker.start()
    deadline = time.monotonic() + timeout
    for worker in workers:
        worker.join(max(0.0, deadline - time.monotonic()))
    return [worker.finish(0) for worker in workers]


def wait_for(predicate, timeout: float = 10.0, fail: bool = True):
    """Poll ``predicate`` until it is true (its value), up to ``timeout`` seconds: then fail
    the test, or with ``fail=False`` return None."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.02)
    if fail:
        raise AssertionError("condition not met in time")
    return None


def fill_to_the_cap(db: Path) -> tuple[sqlite3.Connection, int]:
    """A tbhook database made large by a filler table, and a --max-db-size that leaves it
    16 pages: a few deliveries fit, then the cap refuses them. Deleting from the filler (on
    the connection returned) frees the space again."""
    SQLiteStore.open(db).close()
    filler = sqlite3.connect(db)
    filler.execute("CREATE TABLE filler (data BLOB)")
    filler.executemany("INSERT INTO filler VALUES (?)", [(os.urandom(4000),) for _ in range(200)])
    filler.commit()
    filler.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    return filler, os.path.getsize(db) + 64 * 1024


@contextlib.contextmanager
def immutable(*files: str):
    """The files cannot be written, even by root (chattr +i), until the block ends; a skip
    where the filesystem has no such flag."""
    if not shutil.which("chattr"):
        fault_not_run("an immutable file (chattr +i): needs chattr (e2fsprogs)")
    made = subprocess.run(["chattr", "+i", *files], capture_output=True)
    if made.returncode != 0:
        fault_not_run(f"an immutable file (chattr +i): {made.stderr.decode().strip()}")
    try:
        yield
    finally:
        subprocess.run(["chattr", "-i", *files], check=True)


class Sink:
    """A small real HTTP receiver for tests: answers `fail` with 500 first, then 200."""

    def __init__(self, fail: int = 0, status: int = 500):
        import http.server

        self.received: list[tuple[bytes, dict[str, str]]] = []
        self.fail, self.status = fail, status
        sink = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                sink.received.append((body, {k.lower(): v for k, v in self.headers.items()}))
                status = sink.status if sink.fail > 0 else 200
                sink.fail -= 1
                self.send_response(status)
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"ok")

            def log_message(self, *args):
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.httpd.server_address[1]
        self.url = f"http://127.0.0.1:{self.port}/app"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def sink():
    sinks: list[Sink] = []

    def factory(**kwargs) -> Sink:
        sinks.append(Sink(**kwargs))
        return sinks[-1]

    yield factory
    for s in sinks:
        s.close()


# -- PostgreSQL: a throwaway server of the tests' own ------------------------------------


def start_pg_cluster() -> PgCluster:
    """A cluster, or a skip that says why (a failure under CI, where they must run)."""
    try:
        return PgCluster()
    except FileNotFoundError:
        why = (
            "PostgreSQL tests skipped: initdb and pg_ctl are not installed "
            "(Debian's postgresql package; `make test` installs it when run as root)"
        )
        if os.environ.get("CI") == "true":
            pytest.fail(why.replace("skipped", "cannot run under CI"))
        pytest.skip(why)


@pytest.fixture(scope="session")
def pg_cluster():
    cluster = start_pg_cluster()
    yield cluster
    cluster.close()


@pytest.fixture
def pg_url(pg_cluster) -> str:
    """A fresh, empty database on the shared throwaway server."""
    return pg_cluster.new_database()


@pytest.fixture(params=["sqlite", "postgresql"])
def target(request, tmp_path) -> str:
    """A fresh database on each backend: a SQLite file, then a PostgreSQL URL."""
    if request.param == "sqlite":
        return str(tmp_path / "tbhook.db")
    return request.getfixturevalue("pg_url")

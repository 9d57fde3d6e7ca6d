"""`make bench`: every figure as a ratio against a baseline measured in the same run.

Needs wrk and sqlite3 (Debian packages `wrk` and `sqlite3`), and PostgreSQL's initdb and pg_ctl
for the PostgreSQL figures (skipped, saying so, without them); as root it installs wrk and sqlite3 with
apt-get, otherwise it says how. Traffic goes to 127.0.0.1 only and every run is bounded.
Environment: BENCH_DURATION (wrk seconds per run, default 5), BENCH_EVENTS (size of the big
database, default 1,000,000), BENCH_ONLY=retention, upgrade, streams or ids (only `serve
--retain`'s figures, only a receiver migrating an older log while deliveries wait, only 300
open console pages, or only ingest with duplicates; STREAMS_BASELINE=REV and
INGEST_BASELINE=REV run those against REV's code too).
"""

from __future__ import annotations

import json
import os
import platform
import re
import shutil
import socket
import sqlite3
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
OUT = HERE / "out"
PY = sys.executable
TBHOOK = [PY, "-m", "tbhook"]
DURATION = int(os.environ.get("BENCH_DURATION", "5"))
BIG = int(os.environ.get("BENCH_EVENTS", "1000000"))
ROWS: list[tuple[str, str, str, str]] = []  # figure, value, baseline, ratio


def report(figure: str, value: str, baseline: str = "-", ratio: str = "-") -> None:
    ROWS.append((figure, value, baseline, ratio))
    print(f"  {figure}: {value}  (baseline {baseline}; ratio {ratio})", flush=True)


def need(tool: str, package: str) -> None:
    if shutil.which(tool):
        return
    if os.geteuid() == 0 and shutil.which("apt-get"):
        print(f"installing {package} with apt-get", flush=True)
        subprocess.run(["apt-get", "update", "-qq"], check=True)
        subprocess.run(
            ["apt-get", "install", "-y", "-qq", package], check=True, stdout=subprocess.DEVNULL
        )
    if not shutil.which(tool):
        sys.exit(f"make bench needs {tool}: sudo apt-get install {package}")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_listening(port: int) -> None:
    """Until the server answers HTTP (it listens a moment before it serves)."""
    import http.client

    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=1)
            conn.request("GET", "/")
            conn.getresponse().read()
            conn.close()
            return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"nothing answering on {port}")


def stop(proc: subprocess.Popen) -> None:
    proc.terminate()
    try:
        proc.wait(30)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


# -- ingest -------------------------------------------------------------------------------


RUNS = iter(range(1, 1000))


def wrk(
    port: int, connections: int, close: bool, events: Path | None = None, duplicates: int = 0
) -> dict:
    """``duplicates``: every Nth request repeats the one before (0: every body distinct)."""
    cmd = [
        "wrk",
        f"-t{min(2, connections)}",
        f"-c{connections}",
        f"-d{DURATION}s",
        "--latency",
        "-s",
        str(HERE / "post.lua"),
        f"http://127.0.0.1:{port}/",
        "--",
        str(events or OUT / "events.ndjson"),
        str(next(RUNS)),
        str(duplicates),
    ]
    if close:
        cmd[1:1] = ["-H", "Connection: close"]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=DURATION + 60).stdout
    total = int(re.search(r"(\d+) requests in", out).group(1))
    bad = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    errors = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    return {
        "rps": float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1)),
        "ok": total - (int(bad.group(1)) if bad else 0),
        "errors": sum(map(int, errors.groups())) if errors else 0,
        "p50": _latency(out, "50%"),
        "p99": _latency(out, "99%"),
        "max": _max_latency(out),
    }


def _max_latency(out: str) -> float:
    """The slowest answer of the run (wrk's thread stats: avg, stdev, max)."""
    found = re.search(r"Latency\s+\S+\s+\S+\s+([\d.]+)(us|ms|s)\b", out)
    if not found:
        return float("nan")
    return float(found.group(1)) * {"us": 0.001, "ms": 1.0, "s": 1000.0}[found.group(2)]


def _latency(out: str, pct: str) -> float:
    value, unit = re.search(rf"{pct}\s+([\d.]+)(us|ms|s)\b", out).groups()
    return float(value) * {"us": 0.001, "ms": 1.0, "s": 1000.0}[unit]


def ingest_run(
    kind: str,
    connections: int,
    close: bool,
    db: Path | None,
    args: tuple[str, ...] = (),
    events: Path | None = None,
    env: dict | None = None,
    counted: bool = True,
    duplicates: int = 0,
) -> dict:
    """wrk against a no-op server or `tbhook serve` (of the code ``env`` puts first on
    PYTHONPATH, by default this checkout's), posting the lines of ``events``."""
    port = free_port()
    if kind == "noop":
        cmd = [PY, str(HERE / "noop.py"), str(port)]
    elif db is None:  # str(None) once made a database named "None" in the checkout
        raise ValueError("a tbhook ingest run needs a database")
    else:
        cmd = [*TBHOOK, "serve", "--quiet", "--port", str(port), "--db", str(db), *args]
    proc = subprocess.Popen(cmd, stderr=subprocess.DEVNULL, env=env)
    try:
        wait_listening(port)
        before = count(db) if db else 0
        result = wrk(port, connections, close, events, duplicates)
    finally:
        stop(proc)
    if db and counted and not duplicates:  # (not while a retention pass deletes)
        added = count(db) - before
        # Every 200 must be a stored row (bodies are distinct, so no 200 is a duplicate).
        assert added >= result["ok"], f"{added} rows < {result['ok']} acknowledged"
        result["rows"] = added
    return result


def count(db) -> int:
    if str(db).startswith("postgresql://"):
        import psycopg

        with psycopg.connect(str(db)) as conn:
            return conn.execute("SELECT count(*) FROM events").fetchone()[0]
    conn = sqlite3.connect(db)
    try:
        return conn.execute("SELECT count(*) FROM events").fetchone()[0]
    finally:
        conn.close()


def bench_ingest(big_db: Path) -> None:
    print("ingest (wrk)", flush=True)
    for close in (False, True):
        mode = "Connection: close" if close else "keep-alive"
        for connections in (1, 16, 64):
            ceiling = ingest_run("noop", connections, close, None)
            report(f"no-op ceiling, {connections} conn, {mode}", _ingest_text(ceiling))
            for start, db in (("empty db", OUT / "ingest.db"), ("1M db", big_db)):
                if start == "empty db":
                    for suffix in ("", "-wal", "-shm"):
                        Path(f"{db}{suffix}").unlink(missing_ok=True)
                result = ingest_run("tbhook", connections, close, db)
                report(
                    f"tbhook ingest, {connections} conn, {mode}, {start}",
                    _ingest_text(result),
                    f"{ceiling['rps']:.0f} req/s",
                    f"{result['rps'] / ceiling['rps']:.2f}x ceiling",
                )
    bench_observed()


def bench_observed() -> None:
    """What --metrics and --log-format json cost: the receiver with and without them, one
    after the other, each on an empty database."""
    runs = {}
    for name, args in (("plain", ()), ("observed", ("--metrics", "--log-format", "json"))):
        db = OUT / "ingest.db"
        for suffix in ("", "-wal", "-shm"):
            Path(f"{db}{suffix}").unlink(missing_ok=True)
        runs[name] = ingest_run("tbhook", 64, False, db, args)
    report(
        "tbhook ingest, 64 conn, --metrics --log-format json --quiet",
        _ingest_text(runs["observed"]),
        f"{runs['plain']['rps']:.0f} req/s without them",
        f"{runs['observed']['rps'] / runs['plain']['rps']:.2f}x",
    )


def bench_ids(baseline: str | None, rounds: int = 3) -> None:
    """The receiver's ack rate (64 connections, an empty database each run) with every body
    distinct and with every 10th a duplicate, this checkout's code against ``baseline``'s (a
    git revision: INGEST_BASELINE), alternately; and whether the ids it gave have gaps."""
    print("ingest against " + (baseline or "itself"), flush=True)
    codes = {
        "this checkout": None,
        baseline or "this checkout again": old_checkout(baseline) if baseline else None,
    }
    runs: dict = {(code, dup): [] for code in codes for dup in (0, 10)}
    gaps: dict = {}
    for n in range(rounds):
        order = list(codes.items()) if n % 2 == 0 else list(codes.items())[::-1]
        for code, env in order:
            for dup in (0, 10):
                db = OUT / "ids.db"
                for suffix in ("", "-wal", "-shm"):
                    Path(f"{db}{suffix}").unlink(missing_ok=True)
                runs[(code, dup)].append(
                    ingest_run("tbhook", 64, False, db, env=env, duplicates=dup)["rps"]
                )
                with sqlite3.connect(db) as conn:
                    low, high, rows = conn.execute(
                        "SELECT min(id), max(id), count(*) FROM events"
                    ).fetchone()
                gaps[(code, dup)] = (high - low + 1) - rows
    base = list(codes)[1]
    for dup in (0, 10):
        mine, theirs = (statistics.median(runs[(code, dup)]) for code in ("this checkout", base))
        kind = "every 10th a duplicate" if dup else "every body distinct"
        report(
            f"tbhook ingest, 64 conn, {kind} (ids skipped: {gaps[('this checkout', dup)]})",
            f"{mine:.0f} req/s (median of {rounds})",
            f"{theirs:.0f} req/s, {base}'s code (ids skipped: {gaps[(base, dup)]})",
            f"{mine / theirs:.2f}x",
        )


def _ingest_text(result: dict) -> str:
    text = f"{result['rps']:.0f} req/s, p50 {result['p50']:.2f} ms, p99 {result['p99']:.2f} ms"
    if result["errors"]:
        text += f", {result['errors']} socket errors"
    return text


# -- data ---------------------------------------------------------------------------------


def wrk_events() -> None:
    """The bodies wrk posts (distinct from the big database's events)."""
    OUT.mkdir(exist_ok=True)
    events = OUT / "events.ndjson"
    if not events.exists():
        with open(events, "wb") as f:
            subprocess.run(
                [*TBHOOK, "generate", "--count", "50000", "--seed", "2"], stdout=f, check=True
            )


def prepare() -> Path:
    wrk_events()
    big_db = OUT / f"big-{BIG}.db"
    source = OUT / f"big-{BIG}.ndjson"
    started = time.monotonic()
    with open(source, "wb") as f:
        subprocess.run(
            [*TBHOOK, "generate", "--count", str(BIG), "--seed", "1"], stdout=f, check=True
        )
    generated = time.monotonic() - started
    report(
        f"generate {BIG} events",
        f"{generated:.1f} s",
        "30 s target",
        f"{generated / 30:.2f}x target",
    )
    for suffix in ("", "-wal", "-shm"):
        Path(f"{big_db}{suffix}").unlink(missing_ok=True)
    started = time.monotonic()
    subprocess.run(
        [*TBHOOK, "import", str(source), "--db", str(big_db)], check=True, stdout=subprocess.DEVNULL
    )
    took = time.monotonic() - started
    floor = storage_floor(source)
    report(
        f"import {BIG} events",
        f"{BIG / took:,.0f} events/s ({took:.1f} s)",
        f"{BIG / floor:,.0f} rows/s bare SQLite insert, no parsing, no indexes",
        f"{floor / took:.2f}x floor",
    )
    return big_db


def storage_floor(source: Path) -> float:
    """Seconds to insert the same bodies into an unindexed table: what SQLite alone costs."""
    path = OUT / "floor.db"
    path.unlink(missing_ok=True)
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA journal_mode = wal")
    conn.execute("CREATE TABLE t (id INTEGER PRIMARY KEY, body BLOB)")
    started = time.monotonic()
    with open(source, "rb") as f:
        while lines := f.readlines(20_000 * 220):
            conn.execute("BEGIN")
            conn.executemany("INSERT INTO t (body) VALUES (?)", ((line,) for line in lines))
            conn.execute("COMMIT")
    took = time.monotonic() - started
    conn.close()
    path.unlink()
    return took


# -- read side ----------------------------------------------------------------------------


def compiled() -> None:
    """Byte-compile tbhook, as installing a package does: a command's time is then its own
    work. An editable install under PYTHONDONTWRITEBYTECODE (set on these machines) compiles
    every tbhook module again at every start, 15-20 ms no user pays."""
    import compileall

    compileall.compile_dir(str(HERE.parent / "tbhook"), quiet=1)


def timed(cmd: list[str], runs: int = 5, stdout=subprocess.DEVNULL, env=None) -> tuple[float, int]:
    """Median wall seconds and the largest peak RSS (KiB) over ``runs``."""
    walls, peak = [], 0
    for _ in range(runs):
        started = time.monotonic()
        proc = subprocess.Popen(cmd, stdout=stdout, stderr=subprocess.DEVNULL, env=env)
        _, status, usage = os.wait4(proc.pid, 0)
        walls.append(time.monotonic() - started)
        peak = max(peak, usage.ru_maxrss)
        assert os.waitstatus_to_exitcode(status) == 0, cmd
    return statistics.median(walls), peak


def bench_read(db: Path) -> None:
    print("read side", flush=True)
    floor, _ = timed([PY, "-c", "import typer, rich, sqlite_utils"])
    conn = sqlite3.connect(db)
    person = conn.execute(
        "SELECT oldPersonId FROM events WHERE event = 'profileMerged' ORDER BY id LIMIT 1 OFFSET 10"
    ).fetchone()[0]
    case = conn.execute("SELECT caseId FROM events WHERE event = 'caseClosed' LIMIT 1").fetchone()[
        0
    ]
    conn.close()
    for name, args in (
        (f"person {person}", ["person", str(person)]),
        (f"case {case}", ["case", str(case)]),
        (
            f"events --person {person} --format json",
            ["events", "--person", str(person), "-f", "json"],
        ),
    ):
        wall, _ = timed([*TBHOOK, *args, "--db", str(db)])
        report(
            f"{name} at {BIG} events",
            f"{wall * 1000:.0f} ms",
            f"import floor {floor * 1000:.0f} ms",
            f"floor + {(wall - floor) * 1000:.0f} ms",
        )
    wall, _ = timed([*TBHOOK, "stats", "--db", str(db), "-f", "json"], runs=3)
    report(
        f"stats at {BIG} events", f"{wall * 1000:.0f} ms", "1000 ms target", f"{wall:.2f}x target"
    )
    export, export_rss = timed([*TBHOOK, "export", "--db", str(db)], runs=1)
    # The same rows and columns (bar the canonical ID, which sqlite3 cannot resolve).
    columns = (
        "id, receivedAt, event, timestamp, "
        "strftime('%Y-%m-%dT%H:%M:%SZ', timestamp, 'unixepoch'), searchId, uniqueId, "
        "resultId, personId, caseId, handlerId, sourceId, connectionId, typeId, own, "
        "externalCaseId, reasonId, externalPersonId, agentId, oldPersonId, newPersonId, "
        "coalesce(personId, newPersonId), deliveries"
    )
    query = f"SELECT {columns} FROM events"
    base, base_rss = timed(["sqlite3", "-csv", "-header", str(db), query], runs=1)
    report(
        f"export {BIG} events to CSV",
        f"{export:.1f} s, peak RSS {export_rss / 1024:.0f} MiB",
        f"sqlite3 -csv {base:.1f} s, {base_rss / 1024:.0f} MiB",
        f"{export / base:.2f}x time",
    )


def bench_tables(db: Path, rows: int = 200_000) -> None:
    """Tables stream: each listing as a table against the csv (ndjson for tail) of the same
    rows, in the same run; and the first row of a table of everything, through a pipe."""
    print("tables", flush=True)
    env = {**os.environ, "COLUMNS": "120"}
    for name, args, machine in (
        (f"events -n {rows}", ["events", "-n", str(rows)], ["-f", "csv"]),
        ("cases -n 0", ["cases", "-n", "0"], ["-f", "csv"]),
        (f"tail -n {rows} --no-follow", ["tail", "-n", str(rows), "--no-follow"], ["-f", "ndjson"]),
    ):
        table, table_rss = timed([*TBHOOK, *args, "--db", str(db)], runs=1, env=env)
        csv_, csv_rss = timed([*TBHOOK, *args, *machine, "--db", str(db)], runs=1, env=env)
        report(
            f"{name} as a table",
            f"{table:.2f} s, peak RSS {table_rss / 1024:.0f} MiB",
            f"{' '.join(machine)} {csv_:.2f} s, {csv_rss / 1024:.0f} MiB",
            f"{table / csv_:.2f}x time (target <= 2x)",
        )
    first = first_row([*TBHOOK, "events", "-n", "0", "--db", str(db)], env)
    report(
        "events -n 0 table: first row through a pipe",
        f"{first * 1000:.0f} ms",
        "500 ms target",
        f"{first / 0.5:.2f}x target",
    )


def first_row(cmd: list[str], env: dict) -> float:
    """Seconds until a table's first row (after its header and rule) comes out of a pipe."""
    started = time.monotonic()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, env=env)
    try:
        for _ in range(3):
            proc.stdout.readline()
        return time.monotonic() - started
    finally:
        proc.kill()
        proc.wait()


# -- tail latency ---------------------------------------------------------------------------


def bench_tail(db: Path | None = None, label: str = "") -> None:
    """POST to line on screen, through a real receiver and a real `tail`: on a new database,
    or on ``db`` (the scale bench's)."""
    print("tail latency", flush=True)
    import http.client

    if db is None:
        db = OUT / "tail.db"
        for suffix in ("", "-wal", "-shm"):
            Path(f"{db}{suffix}").unlink(missing_ok=True)
    port = free_port()
    serve = subprocess.Popen(
        [*TBHOOK, "serve", "--quiet", "--port", str(port), "--db", str(db)],
        stderr=subprocess.DEVNULL,
    )
    wait_listening(port)
    tail = subprocess.Popen(
        [*TBHOOK, "tail", "--db", str(db), "--new", "--format", "ndjson"],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
    )
    arrived: dict[int, float] = {}

    def read() -> None:
        for line in tail.stdout:
            arrived[json.loads(line)["caseId"]] = time.monotonic()

    threading.Thread(target=read, daemon=True).start()
    time.sleep(1.5)  # tail is following
    conn = http.client.HTTPConnection("127.0.0.1", port)
    acked: dict[int, float] = {}
    lines = (OUT / "events.ndjson").read_bytes().splitlines()
    for i in range(200):
        payload = json.loads(lines[i])
        if payload["event"] == "profileMerged":
            continue
        payload["caseId"] = 900_000_000 + i
        conn.request("POST", "/", body=json.dumps(payload))
        conn.getresponse().read()
        acked[payload["caseId"]] = time.monotonic()
        time.sleep(0.013)  # spread over the poll interval
    deadline = time.monotonic() + 5
    while len(arrived) < len(acked) and time.monotonic() < deadline:
        time.sleep(0.05)
    stop(tail)
    stop(serve)
    delays = sorted((arrived[k] - acked[k]) * 1000 for k in acked if k in arrived)
    p50, p99 = statistics.median(delays), statistics.quantiles(delays, n=100)[98]
    report(
        f"tail latency{label}, POST 200 -> ndjson line",
        f"p50 {p50:.0f} ms, p99 {p99:.0f} ms ({len(delays)}/{len(acked)} seen)",
        "300 ms target",
        f"{p99 / 300:.2f}x target",
    )


# -- open console pages ---------------------------------------------------------------------

STREAMS = 300
CPU_WINDOW = float(os.environ.get("BENCH_CPU_WINDOW", "10"))  # seconds of console CPU measured


def cpu_seconds(pid: int) -> float:
    """User and system CPU seconds of a process (all its threads) so far."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class Pages:
    """``count`` open /stream clients of a console, each read as a browser would (so the
    console never waits on a full socket), on one thread."""

    def __init__(self, port: int, count: int, query: str):
        import selectors

        self.selector = selectors.DefaultSelector()
        self.started = 0
        self.sockets = []
        for _ in range(count):
            sock = socket.create_connection(("127.0.0.1", port), timeout=30)
            sock.sendall(f"GET /stream{query} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n".encode())
            sock.setblocking(False)
            self.selector.register(sock, selectors.EVENT_READ, bytearray())
            self.sockets.append(sock)
        self.stopping = threading.Event()
        self.thread = threading.Thread(target=self._read, daemon=True)
        self.thread.start()
        deadline = time.monotonic() + 60
        while self.started < count and time.monotonic() < deadline:
            time.sleep(0.05)
        if self.started < count:
            raise RuntimeError(f"only {self.started} of {count} streams began")

    def _read(self) -> None:
        while not self.stopping.is_set():
            for key, _ in self.selector.select(0.2):
                try:
                    data = key.fileobj.recv(1 << 16)
                except BlockingIOError:
                    continue
                if not data:
                    self.selector.unregister(key.fileobj)
                    continue
                seen = key.data
                if seen is not None and b"retry: 1000" in seen + data:
                    self.started += 1
                    key.data.clear()
                    self.selector.modify(key.fileobj, 1, None)  # begun: nothing more to look for
                elif seen is not None:
                    seen += data

    def close(self) -> None:
        self.stopping.set()
        self.thread.join(5)
        for sock in self.sockets:
            sock.close()
        self.sockets = []


def health_seconds(port: int, runs: int = 9) -> float:
    """The median time /health.json takes to answer."""
    import http.client

    took = []
    for _ in range(runs):
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        started = time.monotonic()
        conn.request("GET", "/health.json")
        conn.getresponse().read()
        took.append(time.monotonic() - started)
        conn.close()
    return statistics.median(took)


def streams_run(label: str, env: dict | None = None) -> dict:
    """A receiver and a console on one new database: the console's CPU over a quiet window,
    /health.json and the receiver's ack rate (wrk, 64 connections), without open pages and
    with STREAMS of them (each following a case the load never sends, as a page watching one
    case does), alternately, twice each; the code ``env`` puts first on PYTHONPATH."""
    db = OUT / "streams.db"
    for suffix in ("", "-wal", "-shm"):
        Path(f"{db}{suffix}").unlink(missing_ok=True)
    port, ui_port = free_port(), free_port()
    serve = subprocess.Popen(
        [*TBHOOK, "serve", "--quiet", "--port", str(port), "--db", str(db)],
        stderr=subprocess.DEVNULL,
        env=env,
    )
    console = None
    figures: dict = {"without": [], "with": []}
    try:
        wait_listening(port)
        console = subprocess.Popen(
            [*TBHOOK, "ui", "--port", str(ui_port), "--db", str(db)],
            stderr=subprocess.DEVNULL,
            env=env,
        )
        wait_listening(ui_port)
        for first in ("with", "without"):  # each order once: the database grows meanwhile
            quiet = {"without": _quiet(console.pid, ui_port)}  # both on the same database
            pages = Pages(ui_port, STREAMS, "?case=-1")
            try:
                time.sleep(1)  # the pages settle
                quiet["with"] = _quiet(console.pid, ui_port)
                for kind in (first, "without" if first == "with" else "with"):
                    if kind == "without":
                        pages.close()
                    figures[kind].append({**quiet[kind], **_loaded(port, ui_port)})
            finally:
                pages.close()
    finally:
        if console is not None:
            stop(console)
        stop(serve)
    found = {
        kind: {
            "cpu": min(r["cpu"] for r in runs),  # the quietest window: the machine is shared
            "health": min(r["health"] for r in runs),
            "loaded": max(r["loaded"] for r in runs),  # the worst: under load, a page waits
            "rps": max(r["rps"] for r in runs),
        }
        for kind, runs in figures.items()
    }
    print(f"  {label}: {json.dumps(found)}", flush=True)
    return found


def _quiet(pid: int, ui_port: int) -> dict:
    """The console's CPU over a quiet window, then /health.json."""
    before = cpu_seconds(pid)
    time.sleep(CPU_WINDOW)
    return {"cpu": (cpu_seconds(pid) - before) / CPU_WINDOW, "health": health_seconds(ui_port)}


def _loaded(port: int, ui_port: int) -> dict:
    """The receiver's ack rate under wrk, and /health.json meanwhile."""
    loaded: list[float] = []
    asking = threading.Thread(target=lambda: loaded.append(health_seconds(ui_port, 5)))
    asking.start()
    acks = wrk(port, 64, False)
    asking.join(120)
    return {"rps": acks["rps"], "loaded": loaded[0]}


def old_checkout(rev: str) -> dict:
    """The environment that runs ``rev``'s tbhook (extracted once into bench/out/)."""
    folder = OUT / f"old-{rev}"
    if not (folder / "tbhook").exists():
        folder.mkdir(parents=True, exist_ok=True)
        archive = subprocess.run(
            ["git", "-C", str(HERE.parent), "archive", rev, "tbhook"],
            capture_output=True,
            check=True,
        ).stdout
        subprocess.run(["tar", "-x", "-C", str(folder)], input=archive, check=True)
    import compileall  # as compiled() does for this checkout: both pay the same at start

    compileall.compile_dir(str(folder / "tbhook"), quiet=1)
    return {**os.environ, "PYTHONPATH": str(folder)}


def bench_streams() -> None:
    """300 open /stream pages of a console with no traffic for them: what they cost the
    console, /health.json and the receiver's ack rate, against the same without them (and
    against the code of STREAMS_BASELINE, a git revision, when it is set)."""
    print(f"{STREAMS} open console pages", flush=True)
    runs = {"this checkout": streams_run("this checkout")}
    baseline = os.environ.get("STREAMS_BASELINE")
    if baseline:
        runs[baseline] = streams_run(baseline, old_checkout(baseline))
    for label, found in runs.items():
        quiet, busy = found["without"], found["with"]
        code = "" if label == "this checkout" else f", {label}'s code"
        report(
            f"console CPU with {STREAMS} open /stream pages, no traffic{code}",
            f"{busy['cpu'] * 100:.1f}% of one core ({CPU_WINDOW:.0f} s window)",
            f"{quiet['cpu'] * 100:.1f}% with none open; 10% target",
            f"{busy['cpu'] / 0.10:.2f}x target",
        )
        report(
            f"receiver ack rate with {STREAMS} open /stream pages (64 conn){code}",
            f"{busy['rps']:.0f} req/s",
            f"{quiet['rps']:.0f} req/s with none open; 0.9x target",
            f"{busy['rps'] / quiet['rps']:.2f}x without",
        )
        report(
            f"/health.json with {STREAMS} open /stream pages{code}",
            f"{busy['health'] * 1000:.0f} ms (median of 9)",
            f"{quiet['health'] * 1000:.0f} ms with none open; 500 ms target",
            f"{busy['health'] / 0.5:.2f}x target",
        )
        report(
            f"/health.json with {STREAMS} open /stream pages, while wrk loads the receiver{code}",
            f"{busy['loaded'] * 1000:.0f} ms (median of 5, the worse of 2 runs)",
            f"{quiet['loaded'] * 1000:.0f} ms with none open; 500 ms target",
            f"{busy['loaded'] / 0.5:.2f}x target",
        )


# -- PostgreSQL ---------------------------------------------------------------------------


def ingest_two(url: str, connections: int) -> dict:
    """Two receivers on one PostgreSQL database, each loaded by its own wrk with half the
    connections at once; their request rates add up."""
    ports = [free_port(), free_port()]
    procs = [
        subprocess.Popen(
            [*TBHOOK, "serve", "--quiet", "--port", str(p), "--db", url], stderr=subprocess.DEVNULL
        )
        for p in ports
    ]
    try:
        for port in ports:
            wait_listening(port)
        before = count(url)
        results: list[dict] = []
        threads = [
            threading.Thread(target=lambda p=p: results.append(wrk(p, connections // 2, False)))
            for p in ports
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    finally:
        for proc in procs:
            stop(proc)
    ok = sum(r["ok"] for r in results)
    assert count(url) - before >= ok, "fewer rows than 200s"
    return {
        "rps": sum(r["rps"] for r in results),
        "ok": ok,
        "errors": sum(r["errors"] for r in results),
        "p50": max(r["p50"] for r in results),
        "p99": max(r["p99"] for r in results),
    }


def bench_postgres(source: Path) -> None:
    print("PostgreSQL", flush=True)
    sys.path.insert(0, str(HERE.parent / "tests"))
    from pgcluster import PgCluster

    try:
        cluster = PgCluster()
    except FileNotFoundError:
        report("PostgreSQL figures", "skipped: initdb and pg_ctl not installed")
        return
    try:
        local = OUT / "pg-compare.db"
        for suffix in ("", "-wal", "-shm"):
            Path(f"{local}{suffix}").unlink(missing_ok=True)
        sqlite = ingest_run("tbhook", 64, False, local)
        report(
            "SQLite ingest, 64 conn, keep-alive, empty db (baseline for PostgreSQL)",
            _ingest_text(sqlite),
        )
        one = ingest_run("tbhook", 64, False, cluster.new_database())
        report(
            "PostgreSQL ingest, 1 receiver, 64 conn, keep-alive",
            _ingest_text(one),
            f"SQLite {sqlite['rps']:.0f} req/s",
            f"{one['rps'] / sqlite['rps']:.2f}x SQLite",
        )
        two = ingest_two(cluster.new_database(), 64)
        report(
            "PostgreSQL ingest, 2 receivers, 64 conn in all, keep-alive",
            _ingest_text(two),
            f"1 receiver {one['rps']:.0f} req/s",
            f"{two['rps'] / one['rps']:.2f}x one",
        )
        bench_retention(cluster.new_database(), rounds=1)
        url = cluster.new_database()
        started = time.monotonic()
        subprocess.run(
            [*TBHOOK, "import", str(source), "--db", url], check=True, stdout=subprocess.DEVNULL
        )
        took = time.monotonic() - started
        report(f"import {BIG} events into PostgreSQL", f"{BIG / took:,.0f} events/s ({took:.1f} s)")
        export, export_rss = timed([*TBHOOK, "export", "--db", url], runs=1)
        columns = (
            'id, "receivedAt", event, "timestamp", to_char(to_timestamp("timestamp") AT '
            'TIME ZONE \'UTC\', \'YYYY-MM-DD"T"HH24:MI:SS"Z"\'), "searchId", "uniqueId", '
            '"resultId", "personId", "caseId", "handlerId", "sourceId", "connectionId", '
            '"typeId", own, "externalCaseId", "reasonId", "externalPersonId", "agentId", '
            '"oldPersonId", "newPersonId", coalesce("personId", "newPersonId"), deliveries'
        )
        copy = (
            f"\\copy (SELECT {columns} FROM events ORDER BY id) TO STDOUT WITH (FORMAT csv, HEADER)"
        )
        base, base_rss = timed(["psql", "-X", "-q", url, "-c", copy], runs=1)
        report(
            f"PostgreSQL export {BIG} events to CSV",
            f"{export:.1f} s, peak RSS {export_rss / 1024:.0f} MiB",
            f"psql \\copy {base:.1f} s",
            f"{export / base:.2f}x time",
        )
        import psycopg

        with psycopg.connect(url) as conn:
            person = conn.execute(
                "SELECT \"oldPersonId\" FROM events WHERE event = 'profileMerged' ORDER BY id "
                "LIMIT 1 OFFSET 10"
            ).fetchone()[0]
        floor, _ = timed([PY, "-c", "import typer, rich, sqlite_utils"])
        wall, _ = timed([*TBHOOK, "person", str(person), "--db", url])
        report(
            f"PostgreSQL person {person} at {BIG} events",
            f"{wall * 1000:.0f} ms",
            f"import floor {floor * 1000:.0f} ms",
            f"floor + {(wall - floor) * 1000:.0f} ms",
        )
    finally:
        cluster.close()


# -- retention ------------------------------------------------------------------------------


def bench_retention(url: str | None = None, rounds: int = 3) -> None:
    """The slowest acknowledgement while `serve --retain` archives and deletes 200,000 old
    events in the background, against the p99 of the same load on the same database without
    it (target: at most 2x); ``rounds`` pairs, one after the other, the medians (this machine
    is shared: one pair says little). On SQLite, and on PostgreSQL given ``url``."""
    label = "PostgreSQL" if url else "SQLite"
    print(f"retention ({label})", flush=True)
    old = OUT / "retention.ndjson"
    if not old.exists():
        with open(old, "wb") as f:  # stamped 2023: all older than any window
            subprocess.run(
                [*TBHOOK, "generate", "--count", "200000", "--seed", "9", "--start", "2023-01-01"],
                stdout=f,
                check=True,
            )
    template = OUT / "retention-template.db"
    if not url and not template.exists():
        subprocess.run(
            [*TBHOOK, "import", str(old), "--db", str(template)],
            check=True,
            stdout=subprocess.DEVNULL,
        )
    archive = OUT / "retention-archive"
    runs: dict[str, list[dict]] = {"without": [], "with": []}
    for turn in range(rounds):
        for name in ("without", "with"):
            shutil.rmtree(archive, ignore_errors=True)
            archive.mkdir()
            if url:
                db: str | Path = _fresh_pg(url, f"{name}{turn}")
                subprocess.run(
                    [*TBHOOK, "import", str(old), "--db", str(db)],
                    check=True,
                    stdout=subprocess.DEVNULL,
                )
            else:
                db = OUT / "retention.db"
                for suffix in ("", "-wal", "-shm"):
                    Path(f"{db}{suffix}").unlink(missing_ok=True)
                shutil.copy(template, db)
            during = name == "with"
            args = ("--retain", "30d", "--archive-dir", str(archive), "--prune-every", "1s")
            result = ingest_run("tbhook", 16, False, db, args if during else (), counted=not during)
            if during:
                result["deleted"] = 200_000 + result["ok"] - count(db)
            runs[name].append(result)

    def median(name: str, key: str) -> float:
        return statistics.median(run[key] for run in runs[name])

    worst, base = median("with", "max"), median("without", "p99")
    report(
        f"retention pass under load ({label}, 16 conn), slowest ack, median of {rounds}",
        f"max {worst:.1f} ms, p99 {median('with', 'p99'):.2f} ms, "
        f"{median('with', 'rps'):.0f} req/s; {median('with', 'deleted'):,.0f} events archived "
        "and deleted meanwhile",
        f"p99 {base:.2f} ms (max {median('without', 'max'):.1f} ms, "
        f"{median('without', 'rps'):.0f} req/s) without a pass",
        f"{worst / base:.2f}x p99 (target 2x)",
    )


def bench_upgrade(events: int = 1_000_000) -> None:
    """A receiver started on a log an older tbhook wrote (schema m013, ``events`` rows: the
    m014 rebuild is the slowest step) while 8 clients keep delivering: how long a delivery
    waited in the socket's queue, and how many were refused (target: none)."""
    import http.client

    print("upgrade while deliveries wait", flush=True)
    db = OUT / "upgrade.db"
    for suffix in ("", "-wal", "-shm"):
        Path(f"{db}{suffix}").unlink(missing_ok=True)
    sys.path.insert(0, str(HERE.parent / "tests"))
    from oldlogs import at_m013

    at_m013(db, events)
    port = free_port()
    lines = (OUT / "events.ndjson").read_bytes().splitlines()[:4000]
    answers: list[tuple[int, float]] = []
    stop = threading.Event()

    def client(part: list[bytes]) -> None:
        for body in part:
            if stop.is_set():
                return
            started = time.monotonic()
            while not stop.is_set():
                try:
                    http_conn = http.client.HTTPConnection("127.0.0.1", port, timeout=600)
                    http_conn.request("POST", "/", body=body)
                    status = http_conn.getresponse().status
                    http_conn.close()
                    break
                except OSError:  # not listening yet (the interpreter is starting)
                    time.sleep(0.01)
                    started = time.monotonic()
            answers.append((status, time.monotonic() - started))

    started = time.monotonic()
    proc = subprocess.Popen(
        [*TBHOOK, "serve", "--quiet", "--port", str(port), "--db", str(db)],
        stderr=subprocess.DEVNULL,
    )
    workers = [threading.Thread(target=client, args=(lines[i::8],)) for i in range(8)]
    for worker in workers:
        worker.start()
    try:
        wait_listening(port)
        for worker in workers:
            worker.join(900)
    finally:
        stop.set()
        proc.terminate()
        proc.wait(60)
    took = time.monotonic() - started
    refused = sum(1 for status, _ in answers if status != 200)
    longest = max(seconds for _, seconds in answers)
    report(
        f"upgrade of {events:,} events (m014) while 8 clients deliver",
        f"{len(answers)} deliveries: the longest waited {longest:.1f} s, {refused} refused",
        f"{took:.0f} s from start to the last answer",
        f"{refused} x 503 (target 0)",
    )


def bench_retention_postgres() -> None:
    sys.path.insert(0, str(HERE.parent / "tests"))
    from pgcluster import PgCluster

    try:
        cluster = PgCluster()
    except FileNotFoundError:
        report("retention on PostgreSQL", "skipped: initdb and pg_ctl not installed")
        return
    try:
        bench_retention(cluster.new_database(), rounds=3)
    finally:
        cluster.close()


def _fresh_pg(url: str, name: str) -> str:
    import psycopg

    base, _, _ = url.rpartition("/")
    database = f"retention_{name}_{os.getpid()}"
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(f"DROP DATABASE IF EXISTS {database}")
        conn.execute(f"CREATE DATABASE {database}")
    return f"{base}/{database}"


def main() -> None:
    OUT.mkdir(exist_ok=True)
    os.chdir(OUT)  # whatever a run creates by a relative name stays out of the checkout
    need("wrk", "wrk")
    need("sqlite3", "sqlite3")
    started = time.monotonic()
    print(f"tbhook bench {machine()}", flush=True)
    compiled()
    if os.environ.get("BENCH_ONLY") == "streams":  # 300 open console pages alone
        wrk_events()
        bench_streams()
        table()
        return
    if os.environ.get("BENCH_ONLY") == "retention":  # the figures of `serve --retain` alone
        wrk_events()
        bench_retention()
        bench_retention_postgres()
        table()
        return
    if os.environ.get("BENCH_ONLY") == "ids":  # ingest with duplicates, against a revision
        wrk_events()
        bench_ids(os.environ.get("INGEST_BASELINE"))
        table()
        return
    if os.environ.get("BENCH_ONLY") == "upgrade":  # a receiver migrating while deliveries wait
        wrk_events()
        bench_upgrade()
        table()
        return
    big_db = prepare()
    bench_read(big_db)
    bench_tables(big_db)
    bench_tail()
    bench_streams()
    bench_ingest(big_db)
    bench_ids(os.environ.get("INGEST_BASELINE"))
    bench_retention()
    bench_upgrade()
    bench_postgres(OUT / f"big-{BIG}.ndjson")
    table()
    print(f"\nmake bench took {time.monotonic() - started:.0f} s")


def table() -> None:
    print("\n| figure | value | baseline | ratio |\n|---|---|---|---|")
    for row in ROWS:
        print("| " + " | ".join(row) + " |")


def machine() -> str:
    with open("/proc/cpuinfo") as info:
        cpu = next(
            (line.split(":", 1)[1].strip() for line in info if line.startswith("model name")),
            platform.processor(),
        )
    return (
        f"{time.strftime('%Y-%m-%d')}: nproc={os.cpu_count()}, {cpu}, "
        f"Python {platform.python_version()}, SQLite {sqlite3.sqlite_version}"
    )


if __name__ == "__main__":
    main()

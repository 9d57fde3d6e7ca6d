"""`make soak`: a year unattended, compressed into minutes (a month in `make test`).

A real `tbhook serve` with `--retain`, `--archive-dir`, `--max-db-size` and `--notify` to a sink
of this process's own takes a year of generated traffic (`tbhook generate`, stamped over the
past year and sent in order: Tracebuzz's timestamps, judged against this machine's real clock,
so the first eleven months are old on arrival, the last one inside the window). Meanwhile, at
moments drawn from a seeded random generator: kill -9 of the writer, kill -9 of the receiver
and a restart, once onto a newer schema (the database set back to m014 first, as an older
tbhook left it; it is migrated while deliveries wait), a pause longer than `--stale`, three
deliveries with a wrong secret. Clients retry every delivery until it is answered 200, as
Tracebuzz does.

It asserts: every acknowledged event is in the database or the archive exactly once (by its
body, and so by uniqueId); the file never grew past the cap; no delivery was answered 503 for
size; the sink received `writer`, `stale` and `failing` exactly once firing and once resolved,
and nothing else.

    python tests/soak.py --days 365 --per-day 400     # make soak
"""

from __future__ import annotations

import argparse
import contextlib
import gzip
import http.client
import http.server
import json
import os
import random
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path

from oldlogs import at_m013

HERE = Path(__file__).resolve().parent
DAY = 86400
SECRET = ("X-Soak", "s3cret")
STALE = 5  # seconds: --stale
EXPECTED = Counter(
    {
        (name, state): 1
        for name in ("writer", "stale", "failing")
        for state in ("firing", "resolved")
    }
)


class Sink:
    """The --notify URL: every alert it is sent, in order."""

    def __init__(self) -> None:
        self.alerts: list[dict] = []
        sink = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                sink.alerts.append(json.loads(body))
                self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/alerts"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def seen(self, name: str, state: str) -> bool:
        return any(a["alert"] == name and a["state"] == state for a in self.alerts)

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_for(predicate, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.05)
    raise AssertionError(f"soak: {what} did not happen within {timeout:.0f} s")


class Receiver:
    """`tbhook serve` on a fixed port, started again after each kill; its log in a file."""

    def __init__(self, db: Path, archive: Path, cap: int, retain: str, notify: str, log: Path):
        self.port = free_port()
        self.args = [
            sys.executable, "-m", "tbhook", "serve", "--db", str(db), "--port", str(self.port),
            "--retain", retain, "--archive-dir", str(archive), "--max-db-size", str(cap),
            "--prune-every", "2s", "--notify", notify, "--stale", f"{STALE}s", "--quiet",
            "--header-name", SECRET[0], "--header-value", SECRET[1],
        ]  # fmt: skip
        self.log = log
        self.proc: subprocess.Popen | None = None
        self.starts = 0

    def start(self) -> None:
        from tbhook.processes import die_with_parent

        with open(self.log, "a") as out:  # a soak stopped early takes its receiver with it
            self.proc = subprocess.Popen(
                self.args, stderr=out, stdout=subprocess.DEVNULL, preexec_fn=die_with_parent
            )
        self.starts += 1
        wait_for(self._listening, 120, "the receiver listening")

    def _listening(self) -> bool:
        if self.proc is not None and self.proc.poll() is not None:
            raise AssertionError(
                f"soak: the receiver exited {self.proc.returncode}; see {self.log}"
            )
        try:
            socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
            return True
        except OSError:
            return False

    def kill(self) -> None:
        assert self.proc is not None
        self.proc.kill()
        self.proc.wait(30)

    def kill_writer(self) -> None:
        from conftest import WRITER, child_process  # the one way tests find the writer

        assert self.proc is not None
        os.kill(child_process(self.proc.pid, WRITER), signal.SIGKILL)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(60)


class Traffic:
    """Clients that send the bodies in order, each retried until it is answered 200."""

    def __init__(self, port: int, bodies: list[bytes], rate: float, clients: int = 4):
        self.port = port
        self.gap = 1 / rate  # between two first tries, over all clients
        self.due = time.monotonic()
        self.bodies = bodies
        self.next = 0
        self.acked: set[bytes] = set()
        self.refusals: list[tuple[int, str]] = []
        self.lock = threading.Lock()
        self.flowing = threading.Event()
        self.flowing.set()
        self.last_ack = time.monotonic()
        self.threads = [threading.Thread(target=self._client, daemon=True) for _ in range(clients)]

    def start(self) -> None:
        for thread in self.threads:
            thread.start()

    def progress(self) -> float:
        return len(self.acked) / len(self.bodies)

    def done(self) -> bool:
        return not any(thread.is_alive() for thread in self.threads)

    def _client(self) -> None:
        conn: http.client.HTTPConnection | None = None
        while True:
            with self.lock:
                if self.next >= len(self.bodies):
                    return
                body = self.bodies[self.next]
                self.next += 1
                self.due = max(self.due + self.gap, time.monotonic())
                wait = self.due - time.monotonic()
            if wait > 0:
                time.sleep(wait)
            while True:
                self.flowing.wait()
                try:
                    conn = conn or http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
                    conn.request("POST", "/", body=body, headers={SECRET[0]: SECRET[1]})
                    response = conn.getresponse()
                    answer = response.read()
                    if response.will_close:
                        conn.close()
                        conn = None
                except OSError:  # the receiver was killed: try again, as Tracebuzz would
                    if conn is not None:
                        conn.close()
                    conn = None
                    time.sleep(0.05)
                    continue
                if response.status == 200:
                    with self.lock:
                        self.acked.add(body)
                        self.last_ack = time.monotonic()
                    break
                with self.lock:
                    self.refusals.append((response.status, answer.decode(errors="replace")))
                time.sleep(0.05)


def set_back_to_m014(db: Path) -> None:
    """The database as the tbhook of m014 left it: every table, index, trigger and view the
    later steps made is dropped (found against the frozen m014 schema, so a step added later
    is set back too), and their names leave the migrations table."""
    frozen = sqlite3.connect(":memory:")
    frozen.executescript(
        (HERE / "schemas" / "sqlite_014_m014_dedupe_in_time_order.sql").read_text()
    )
    kept = set(frozen.execute("SELECT type, name FROM sqlite_master"))
    frozen.close()
    conn = sqlite3.connect(db)
    found = list(
        conn.execute("SELECT type, name FROM sqlite_master WHERE name NOT LIKE 'sqlite_%'")
    )
    order = {"trigger": 0, "view": 1, "index": 2, "table": 3}
    for kind, name in sorted(set(found) - kept, key=lambda item: order[item[0]]):
        conn.execute(f'DROP {kind.upper()} IF EXISTS "{name}"')
    steps = [row[0] for row in conn.execute("SELECT name FROM _sqlite_migrations ORDER BY id")]
    later = steps[steps.index("m014_dedupe_in_time_order") + 1 :]
    conn.executemany("DELETE FROM _sqlite_migrations WHERE name = ?", [(n,) for n in later])
    conn.execute("DELETE FROM tbhook_meta WHERE key = 'timelinesVersion'")
    conn.commit()
    conn.close()


def generated(days: int, per_day: int, seed: int, now: int) -> list[bytes]:
    from tbhook.transfer.generate import Generator

    count = days * per_day
    rate = per_day / DAY
    start = now - days * DAY
    generator = Generator(seed=seed, start=start, persons=max(100, count // 20), rate=rate)
    return [line.encode() for line in generator.lines(count)]


def archived(directory: Path) -> Counter:
    found: Counter = Counter()
    for path in directory.glob("tbhook-*.ndjson.gz"):
        with gzip.open(path) as stream:
            found.update(line.rstrip(b"\n") for line in stream)
    return found


def last_pass(db: Path) -> dict:
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        row = conn.execute("SELECT value FROM tbhook_meta WHERE key = 'retention'").fetchone()
    finally:
        conn.close()
    return json.loads(row[0]).get("lastPass", {}) if row else {}


def run(
    days: int,
    per_day: int,
    retain: str,
    seed: int,
    work: Path,
    rate: float = 400,
    cap_share: float = 0.6,
    say=print,
) -> dict:
    """One soak in ``work``: ``rate`` deliveries a second at most; ``--max-db-size`` at
    ``cap_share`` of what the window holds (under 0.75, the oldest days inside the window go
    for size too). The figures, or AssertionError saying what went wrong."""
    from tbhook.model.times import utc_now

    rng = random.Random(seed)
    now = int(time.time())
    bodies = generated(days, per_day, seed, now)
    db, archive = work / "soak.db", work / "archive"
    archive.mkdir()
    # An old tbhook's database (schema m013): the first start migrates it.
    at_m013(db)
    window_days = int(retain.rstrip("d"))
    # A cap under what the window holds (about 700 bytes an event with its indexes): the
    # oldest days inside the window must go for size, archived, never a 503.
    cap = max(1024 * 1024, int(cap_share * window_days * per_day * 700))
    sink = Sink()
    receiver = Receiver(db, archive, cap, retain, sink.url, work / "receiver.log")
    traffic = Traffic(receiver.port, bodies, rate)
    biggest = [0]
    sampling = threading.Event()

    def sample() -> None:
        while not sampling.wait(0.1):
            with contextlib.suppress(OSError):
                biggest[0] = max(biggest[0], os.path.getsize(db))

    threading.Thread(target=sample, daemon=True).start()
    started = time.monotonic()
    say(f"soak: {len(bodies):,} events over {days} days, --retain {retain}, cap {cap:,} bytes")
    receiver.start()
    traffic.start()
    # The moments (shares of the traffic acknowledged) for each fault, drawn once.
    plan = sorted(
        [(rng.uniform(0.1, 0.9), "kill the writer") for _ in range(2)]
        + [(rng.uniform(0.1, 0.45), "kill the receiver")]
        + [(rng.uniform(0.55, 0.9), "kill the receiver, restart onto a newer schema")]
        + [(0.5, "pause past --stale, three wrong secrets")]
    )
    for share, fault in plan:
        wait_for(lambda share=share: traffic.progress() >= share, 600, f"{share:.0%} acknowledged")
        say(f"  {time.monotonic() - started:5.1f} s, {traffic.progress():4.0%}: {fault}")
        if fault == "kill the writer":
            receiver.kill_writer()
        elif fault.startswith("kill the receiver"):
            receiver.kill()
            if "newer schema" in fault:
                set_back_to_m014(db)
            receiver.start()
        else:
            traffic.flowing.clear()
            wait_for(lambda: sink.seen("stale", "firing"), 60, "the stale alert")
            for _ in range(3):
                reply = http.client.HTTPConnection("127.0.0.1", receiver.port, timeout=30)
                reply.request("POST", "/", body=bodies[0], headers={SECRET[0]: "wrong"})
                assert reply.getresponse().status == 401
                reply.close()
            wait_for(lambda: sink.seen("failing", "firing"), 60, "the failing alert")
            traffic.flowing.set()
    wait_for(traffic.done, 600, "every event acknowledged")
    sent_all = utc_now()
    wait_for(lambda: (last_pass(db).get("finishedAt") or "") > sent_all, 120, "a last pass")
    wait_for(lambda: sink.seen("stale", "resolved") and sink.seen("failing", "resolved"), 60,
             "the alerts resolved")  # fmt: skip
    receiver.stop()
    sampling.set()
    took = time.monotonic() - started
    sink.close()

    conn = sqlite3.connect(db)
    integrity = [row[0] for row in conn.execute("PRAGMA integrity_check")]
    assert integrity == ["ok"], f"the database is damaged: {integrity[:5]}"
    in_db = Counter(bytes(body) for (body,) in conn.execute("SELECT body FROM events"))
    conn.close()
    in_archive = archived(archive)
    placed = in_db + in_archive
    missing = [b for b in traffic.acked if placed[b] == 0]
    twice = [b for b in traffic.acked if placed[b] > 1]
    assert len(traffic.acked) == len(set(bodies)), "not every event was acknowledged"
    assert not missing, f"{len(missing)} acknowledged events are neither stored nor archived"
    assert not twice, f"{len(twice)} events are stored or archived more than once"
    assert biggest[0] <= cap and os.path.getsize(db) <= cap, f"the file grew to {biggest[0]:,}"
    size_refusals = [text for status, text in traffic.refusals if "size cap" in text]
    assert not size_refusals, f"{len(size_refusals)} deliveries answered 503 for size"
    alerts = Counter((a["alert"], a["state"]) for a in sink.alerts)
    assert alerts == EXPECTED, f"alerts received: {sorted(alerts.items())}"
    figures = {
        "events": len(bodies),
        "seconds": round(took),
        "inDatabase": sum(in_db.values()),
        "archived": sum(in_archive.values()),
        "archiveFiles": len(list(archive.glob("tbhook-*.ndjson.gz"))),
        "largestFileBytes": biggest[0],
        "capBytes": cap,
        "refused": Counter(status for status, _ in traffic.refusals),
        "receiverStarts": receiver.starts,
    }
    say(
        f"soak: {figures['events']:,} events in {took:.0f} s: {figures['inDatabase']:,} in the "
        f"database, {figures['archived']:,} archived in {figures['archiveFiles']} day files, "
        f"each once; largest file {biggest[0]:,} of {cap:,} bytes; refusals "
        f"{dict(figures['refused'])} (none for size); alerts {sorted(alerts)} once each"
    )
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--days", type=int, default=365)
    parser.add_argument("--per-day", type=int, default=400)
    parser.add_argument("--retain", default="30d")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--rate", type=float, default=400, help="deliveries a second, at most")
    parser.add_argument("--cap-share", type=float, default=0.6)
    parser.add_argument("--keep", action="store_true", help="keep the work directory")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="tbhook-soak-"))
    try:
        run(
            args.days,
            args.per_day,
            args.retain,
            args.seed,
            work,
            rate=args.rate,
            cap_share=args.cap_share,
        )
    except (AssertionError, sqlite3.Error) as exc:
        log = work / "receiver.log"
        tail = log.read_text()[-3000:] if log.exists() else ""
        sys.exit(f"{exc}\n--- the receiver's log, its end:\n{tail}\n(kept in {work})")
    if not args.keep:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()

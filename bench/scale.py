"""`make bench-scale`: every figure at 10M events, each against a baseline from the same run.

The database is built once with `tbhook generate --count N --seed S` and `tbhook import`, and
kept in bench/out/ under a name made of the seed and the count (with what the build measured
beside it, in a .json file), so later runs measure without rebuilding. Its events span two
years from 2024-12-01 (a support team's history, for `report`). Whatever a run adds to it
(ingest, tail, the console's live stream) it deletes again, so every run reads the same N
events. The console's pages are timed against the commands that answer the same questions.

With SCALE_BASELINE=REV (a git revision), the figures an issue compares with "today's" code
are measured twice in the same run, once with REV's tbhook (extracted to bench/out/): reads
against the same file (`cases --format csv`, the report of the last 30 days), and ingest at
64 connections into an empty database each (a tbhook whose case summaries mean something
else would count every case again each time it opened the shared file).

Needs wrk and sqlite3 (installed with apt-get as root). Traffic goes to 127.0.0.1 only, and
every step is bounded. Environment: SCALE_EVENTS (default 10,000,000), SCALE_SEED (default 3),
SCALE_BASELINE (none), SCALE_UPGRADE (set: also time summarizing every case anew, as an
upgrade does once), SCALE_ONLY=queue (the queue's figures alone: the command, /queue, and
a delivery to an open /queue), BENCH_DURATION (wrk seconds a run, default 8).
"""

from __future__ import annotations

import contextlib
import json
import os
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
os.environ.setdefault("BENCH_DURATION", "8")

import run as bench  # noqa: E402 - the shared helpers of `make bench`
from run import OUT, PY, TBHOOK, report, timed  # noqa: E402

COUNT = int(os.environ.get("SCALE_EVENTS", "10000000"))
SEED = int(os.environ.get("SCALE_SEED", "3"))
BASELINE = os.environ.get("SCALE_BASELINE", "")
START = "2024-12-01"
SPAN_SECONDS = 730 * 86400  # two years of events, whatever their number
DB = OUT / f"scale-{SEED}-{COUNT}-2y.db"
FACTS = OUT / f"scale-{SEED}-{COUNT}-2y.json"
LIVE = OUT / f"scale-{SEED}-{COUNT}-live.ndjson"  # what wrk posts: events after the log's end
FLOOR_LINES = 1_000_000  # the bare-insert floor is measured on this many of the lines


def build() -> dict:
    """The database, built once: generate to a file, then import it, each timed."""
    if DB.exists() and FACTS.exists():
        facts = json.loads(FACTS.read_text())
        if facts.get("events") == COUNT:
            print(f"using {DB.name}, built {facts['built']}", flush=True)
            return facts
    OUT.mkdir(exist_ok=True)
    source = OUT / f"scale-{SEED}-{COUNT}.ndjson"
    print(f"building {DB.name}: generate, then import (once)", flush=True)
    started = time.monotonic()
    with open(source, "wb") as out:
        subprocess.run(
            [
                *TBHOOK,
                "generate",
                "--count",
                str(COUNT),
                "--seed",
                str(SEED),
                "--start",
                START,
                "--rate",
                f"{COUNT / SPAN_SECONDS:.6f}/s",
            ],
            stdout=out,
            check=True,
        )
    generated = time.monotonic() - started
    for suffix in ("", "-wal", "-shm"):
        Path(f"{DB}{suffix}").unlink(missing_ok=True)
    started = time.monotonic()
    subprocess.run(
        [*TBHOOK, "import", str(source), "--db", str(DB)], check=True, stdout=subprocess.DEVNULL
    )
    imported = time.monotonic() - started
    floor = bare_insert(source)
    source.unlink()  # 2 GB; the seed makes it again
    facts = {
        "events": COUNT,
        "built": time.strftime("%Y-%m-%d %H:%M"),
        "generateSeconds": round(generated, 1),
        "importSeconds": round(imported, 1),
        "bareInsertPerSecond": round(floor),
        "sizeBytes": DB.stat().st_size,
    }
    FACTS.write_text(json.dumps(facts, indent=2) + "\n")
    return facts


def bare_insert(source: Path) -> float:
    """Rows a second into an unindexed table, same bodies, same WAL and batches: SQLite alone."""
    path = OUT / "floor.db"
    path.unlink(missing_ok=True)
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA journal_mode = wal")
    conn.execute("CREATE TABLE t (id INTEGER PRIMARY KEY, body BLOB)")
    done = 0
    started = time.monotonic()
    with open(source, "rb") as f:
        while done < FLOOR_LINES and (lines := f.readlines(20_000 * 220)):
            conn.execute("BEGIN")
            conn.executemany("INSERT INTO t (body) VALUES (?)", ((line,) for line in lines))
            conn.execute("COMMIT")
            done += len(lines)
    took = time.monotonic() - started
    conn.close()
    path.unlink()
    return done / took


def highest_id() -> int:
    conn = sqlite3.connect(DB)
    try:
        return conn.execute("SELECT coalesce(max(id), 0) FROM events").fetchone()[0]
    finally:
        conn.close()


def delete_after(last: int) -> None:
    """Take out what a measurement added, so the next run reads the same events (and its
    cases' summaries: the next write brings them back to what they were)."""
    conn = sqlite3.connect(DB, isolation_level=None)
    try:
        conn.execute("PRAGMA busy_timeout = 10000")
        conn.execute("BEGIN IMMEDIATE")
        conn.execute('DELETE FROM forwards WHERE "eventId" > ?', [last])
        conn.execute("DELETE FROM events WHERE id > ?", [last])  # event_counts: the trigger
        conn.execute("COMMIT")
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    finally:
        conn.close()
    _fold_stale()


def _fold_stale() -> None:
    """One empty write transaction with this checkout's tbhook: it recounts the cases whose
    events a deletion took (case_stale), as every write does."""
    code = (
        "import sys; from tbhook.store import open_store; store = open_store(sys.argv[1])\n"
        "with store.writing(): pass\n"
        "store.close()"
    )
    subprocess.run([PY, "-c", code, str(DB)], check=True)


def bench_import(facts: dict) -> None:
    rate = facts["events"] / facts["importSeconds"]
    report(
        f"import {COUNT:,} events (built {facts['built']})",
        f"{rate:,.0f} events/s ({facts['importSeconds']:.0f} s, {facts['sizeBytes'] / 2**30:.1f} GiB)",
        f"50,000/s target; bare SQLite insert {facts['bareInsertPerSecond']:,}/s",
        f"{rate / 50_000:.2f}x target",
    )


def bench_read() -> None:
    print("read side", flush=True)
    floor, _ = timed([PY, "-c", "import typer, rich, sqlite_utils"])
    conn = sqlite3.connect(f"file:{DB}?mode=ro", uri=True)
    person = conn.execute(
        "SELECT oldPersonId FROM events WHERE event = 'profileMerged' ORDER BY id DESC "
        "LIMIT 1 OFFSET 10"
    ).fetchone()[0]
    case = conn.execute(
        "SELECT caseId FROM events WHERE event = 'caseClosed' ORDER BY id DESC LIMIT 1"
    ).fetchone()[0]
    conn.close()
    db = ["--db", str(DB)]
    for name, args in (
        (f"person {person}", ["person", str(person)]),
        (f"case {case}", ["case", str(case)]),
        (f"events --person {person}", ["events", "--person", str(person)]),
    ):
        wall, _ = timed([*TBHOOK, *args, *db])
        report(
            f"{name} at {COUNT:,}",
            f"{wall * 1000:.0f} ms",
            f"import floor {floor * 1000:.0f} ms; 250 ms target",
            f"floor + {(wall - floor) * 1000:.0f} ms; {wall / 0.25:.2f}x target",
        )
    for name, args, target in (
        ("events (the newest page)", ["events"], 0.3),
        ("cases (the default page)", ["cases"], 0.5),
        ("stats", ["stats"], 2.0),
    ):
        wall, _ = timed([*TBHOOK, *args, *db])
        report(
            f"{name} at {COUNT:,}",
            f"{wall * 1000:.0f} ms",
            f"{target * 1000:.0f} ms target",
            f"{wall / target:.2f}x target",
        )
    export, export_rss = timed([*TBHOOK, "export", *db], runs=1)
    columns = (
        "id, receivedAt, event, timestamp, "
        "strftime('%Y-%m-%dT%H:%M:%SZ', timestamp, 'unixepoch'), searchId, uniqueId, "
        "resultId, personId, caseId, handlerId, sourceId, connectionId, typeId, own, "
        "externalCaseId, reasonId, externalPersonId, agentId, oldPersonId, newPersonId, "
        "coalesce(personId, newPersonId), deliveries"
    )
    base, base_rss = timed(
        ["sqlite3", "-csv", "-header", str(DB), f"SELECT {columns} FROM events"], runs=1
    )
    report(
        f"export {COUNT:,} events to CSV",
        f"{export:.1f} s, peak RSS {export_rss / 1024:.0f} MiB (100 MiB target)",
        f"sqlite3 -csv {base:.1f} s, {base_rss / 1024:.0f} MiB; 2x target",
        f"{export / base:.2f}x sqlite3",
    )
    cases, cases_rss = timed([*TBHOOK, "cases", "-n", "0", "-f", "csv", *db], runs=1)
    report(
        f"cases --format csv -n 0 (every case) at {COUNT:,}",
        f"{cases:.1f} s, peak RSS {cases_rss / 1024:.0f} MiB",
        f"export {export:.1f} s; 2x target",
        f"{cases / export:.2f}x export",
    )


def bench_ingest(baseline: dict | None) -> None:
    print("ingest at 64 keep-alive connections (wrk)", flush=True)
    live = live_events()
    empty = OUT / "scale-ingest.db"
    ceiling = bench.ingest_run("noop", 64, False, None)
    report("no-op ceiling, 64 conn", bench._ingest_text(ceiling))
    for suffix in ("", "-wal", "-shm"):
        Path(f"{empty}{suffix}").unlink(missing_ok=True)
    fresh = bench.ingest_run("tbhook", 64, False, empty, events=live)
    report(
        "tbhook ingest, 64 conn, empty db",
        bench._ingest_text(fresh),
        f"{ceiling['rps']:.0f} req/s ceiling; 0.45x target",
        f"{fresh['rps'] / ceiling['rps']:.2f}x ceiling",
    )
    # This checkout on the full file (its own summaries: they are current there).
    last = highest_id()
    try:
        full = bench.ingest_run("tbhook", 64, False, DB, events=live)
    finally:
        delete_after(last)
    report(
        f"tbhook ingest, 64 conn, {COUNT:,}-event db",
        bench._ingest_text(full),
        f"{fresh['rps']:.0f} req/s on the empty db; 0.8x target",
        f"{full['rps'] / fresh['rps']:.2f}x empty",
    )
    if baseline is None:
        return
    # This checkout and the baseline's, each twice on an empty database, alternating (the
    # machine is shared): what the write path costs now against then.
    runs: dict[str, list[dict]] = {"here": [], "baseline": []}
    for _ in range(2):
        for name, env in (("here", None), ("baseline", baseline)):
            for suffix in ("", "-wal", "-shm"):
                Path(f"{empty}{suffix}").unlink(missing_ok=True)
            runs[name].append(bench.ingest_run("tbhook", 64, False, empty, events=live, env=env))
    here = max(runs["here"], key=lambda run: run["rps"])
    old = max(runs["baseline"], key=lambda run: run["rps"])
    report(
        f"tbhook ingest, 64 conn, empty db, {BASELINE}'s tbhook",
        bench._ingest_text(old),
        f"this checkout {here['rps']:.0f} req/s (best of 2 each); 0.9x target",
        f"{here['rps'] / old['rps']:.2f}x {BASELINE}",
    )


def live_events() -> Path:
    """50,000 events stamped after the log's last one (its live traffic, continuing some of
    its cases), for wrk to post."""
    if not LIVE.exists():
        conn = sqlite3.connect(f"file:{DB}?mode=ro", uri=True)
        last = conn.execute("SELECT max(timestamp) FROM events").fetchone()[0]
        conn.close()
        start = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(last + 1))
        with open(LIVE, "wb") as out:
            subprocess.run(
                [*TBHOOK, "generate", "--count", "50000", "--seed", "2", "--start", start],
                stdout=out,
                check=True,
            )
    return LIVE


def baseline_env() -> dict | None:
    """The environment that runs SCALE_BASELINE's tbhook (extracted once), or None."""
    if not BASELINE:
        return None
    where = OUT / f"baseline-{BASELINE}"
    if not (where / "tbhook").is_dir():
        where.mkdir(parents=True, exist_ok=True)
        archive = subprocess.run(
            ["git", "-C", str(bench.HERE.parent), "archive", BASELINE, "tbhook"],
            capture_output=True,
            check=True,
        ).stdout
        subprocess.run(["tar", "-x", "-C", str(where)], input=archive, check=True)
        import compileall

        compileall.compile_dir(str(where / "tbhook"), quiet=1)
    return {**os.environ, "PYTHONPATH": str(where)}


def bench_report(baseline: dict | None) -> None:
    print("report", flush=True)
    db = ["--db", str(DB)]
    conn = sqlite3.connect(f"file:{DB}?mode=ro", uri=True)
    last = conn.execute("SELECT max(timestamp) FROM events").fetchone()[0]
    conn.close()
    since = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(last - 30 * 86400))
    recent_args = [*TBHOOK, "report", "--by", "day", "--since", since, "-f", "csv", *db]
    recent, _ = timed(recent_args, runs=5)
    report(
        f"report --by day --since 30d (the log's last 30 days, from {since}) at {COUNT:,}",
        f"{recent * 1000:.0f} ms",
        "300 ms target",
        f"{recent / 0.3:.2f}x target",
    )
    if baseline:
        old, _ = timed(recent_args, runs=5, env=baseline)
        report(
            f"report --by day --since 30d at {COUNT:,}, against {BASELINE}'s",
            f"{recent * 1000:.0f} ms",
            f"{BASELINE}'s {old * 1000:.0f} ms",
            f"{recent / old:.2f}x {BASELINE}",
        )
    month, month_rss = timed([*TBHOOK, "report", "--by", "month", "-f", "csv", *db], runs=1)
    cases, cases_rss = timed([*TBHOOK, "cases", "-n", "0", "-f", "csv", *db], runs=1)
    report(
        f"report --by month (all history) at {COUNT:,}",
        f"{month:.1f} s, peak RSS {month_rss / 1024:.0f} MiB",
        f"cases -n 0 -f csv {cases:.1f} s, {cases_rss / 1024:.0f} MiB; 0.5x target",
        f"{month / cases:.2f}x cases",
    )
    if baseline:
        old, _ = timed([*TBHOOK, "cases", "-n", "0", "-f", "csv", *db], runs=1, env=baseline)
        report(
            f"report --by month (all history) at {COUNT:,}, against {BASELINE}'s cases",
            f"{month:.1f} s",
            f"{BASELINE}'s cases -n 0 -f csv {old:.1f} s; 0.5x target",
            f"{month / old:.2f}x {BASELINE}'s cases",
        )
    business = [
        "--by", "week", "--hours", "mon-fri 09:00-17:30", "--tz", "Europe/Amsterdam",
        "--holidays", "NL",
    ]  # fmt: skip
    hours, _ = timed([*TBHOOK, "report", *business, "-f", "csv", *db], runs=1)
    report(
        f"report --by week in business hours (Europe/Amsterdam, NL holidays) at {COUNT:,}",
        f"{hours:.1f} s",
        f"report --by month {month:.1f} s",
        f"{hours / month:.2f}x",
    )


def bench_queue() -> None:
    """`tbhook queue` at 10M, each form against the 300 ms target (median of 5, Python's
    start included), and against the bare start of a read command."""
    print("queue", flush=True)
    db = ["--db", str(DB)]
    floor, _ = timed([*TBHOOK, "--version"])
    conn = sqlite3.connect(f"file:{DB}?mode=ro", uri=True)
    waiting = conn.execute(
        'SELECT count(*) FROM case_timelines WHERE "waitAt" IS NOT NULL'
    ).fetchone()[0]
    conn.close()
    office = ["--hours", "mon-fri 09:00-17:30", "--tz", "Europe/Amsterdam", "--holidays", "NL"]
    forms = [
        ("queue (the oldest 50, table)", []),
        ("queue -f json", ["-f", "json"]),
        ('queue --sla "first=1h,reply=4h"', ["--sla", "first=1h,reply=4h"]),
        ("queue --sla, in business hours (Europe/Amsterdam, NL holidays)",
         ["--sla", "first=1h,reply=4h", *office]),
        ("queue --source 14 --source 3", ["--source", "14", "--source", "3"]),
    ]  # fmt: skip
    for name, args in forms:
        wall, _ = timed([*TBHOOK, "queue", *args, *db], runs=5)
        report(
            f"{name} at {COUNT:,} ({waiting:,} cases waiting)",
            f"{wall * 1000:.0f} ms",
            f"tbhook --version {floor * 1000:.0f} ms; 300 ms target",
            f"{wall / 0.3:.2f}x target",
        )


def bench_summaries() -> None:
    """What an upgrade costs once: every case summarized from its events, as the first
    writer of this version does (here forced by forgetting that they are current)."""
    conn = sqlite3.connect(DB, isolation_level=None)
    conn.execute("DELETE FROM tbhook_meta WHERE key = 'timelinesVersion'")
    conn.close()
    started = time.monotonic()
    subprocess.run(
        [PY, "-c", f"from tbhook.store import open_store; open_store({str(DB)!r}).close()"],
        check=True,
    )
    took = time.monotonic() - started
    report(
        f"every case summarized anew (an upgrade's one-off) at {COUNT:,}",
        f"{took:.0f} s",
        f"import {json.loads(FACTS.read_text())['importSeconds']:.0f} s",
        f"{took / json.loads(FACTS.read_text())['importSeconds']:.2f}x import",
    )


def _get(port: int, path: str) -> tuple[float, bytes]:
    """Seconds from the request to the last byte of the answer (a 200), and the body."""
    import http.client

    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    started = time.monotonic()
    conn.request("GET", path)
    response = conn.getresponse()
    body = response.read()
    took = time.monotonic() - started
    conn.close()
    assert response.status == 200, (path, response.status, body[:300])
    return took, body


def bench_console() -> None:
    """Each page's time at 10M (median of 20, after one to warm the cache), against the
    command that answers the same question; the list page's weight; POST 200 -> the row's
    server-sent event."""
    print("console", flush=True)
    conn = sqlite3.connect(f"file:{DB}?mode=ro", uri=True)
    middle = highest_id() // 2
    event, person, case = conn.execute(
        'SELECT id, "personId", "caseId" FROM events WHERE id >= ? AND event = \'newResult\' '
        "ORDER BY id LIMIT 1",
        [middle],
    ).fetchone()
    newest = conn.execute("SELECT max(timestamp) FROM events").fetchone()[0]
    conn.close()
    since = time.strftime("%Y-%m-%d", time.gmtime(newest - 30 * 86400))
    port = bench.free_port()
    ui = subprocess.Popen(
        [*TBHOOK, "ui", "--db", str(DB), "--port", str(port)], stderr=subprocess.DEVNULL
    )
    pages = [
        ("the list's first page", "/", ["events", "--sort", "arrival"]),
        ("an event", f"/events/{event}", ["event", str(event)]),
        ("a person", f"/persons/{person}", ["person", str(person)]),
        ("a case", f"/cases/{case}", ["case", str(case)]),
        ("the cases page", "/cases", ["cases"]),
        ("the report of the last 30 days", f"/report?by=day&since={since}",
         ["report", "--by", "day", "--since", since]),
        *QUEUE_PAGES,
    ]  # fmt: skip
    try:
        bench.wait_listening(port)
        time_pages(port, pages)
        _, listing = _get(port, "/")
        weight = len(listing) + sum(
            len(_get(port, f"/static/{asset}")[1]) for asset in ("console.css", "console.js")
        )
        report(
            "console list page with its assets (HTML, CSS, JS; no other request)",
            f"{weight / 1024:.0f} KB",
            "200 KB target",
            f"{weight / 204800:.2f}x target",
        )
        bench_live(port)
        bench_queue_live(port)
    finally:
        bench.stop(ui)


OFFICE = "sla=first%3D1h%2Creply%3D4h&hours=mon-fri+09:00-17:30&tz=Europe/Amsterdam&holidays=NL"
QUEUE_PAGES = [
    ("the queue (the oldest 50)", "/queue", ["queue"]),
    ("the queue against an SLA in business hours", f"/queue?{OFFICE}",
     ["queue", "--sla", "first=1h,reply=4h", "--hours", "mon-fri 09:00-17:30",
      "--tz", "Europe/Amsterdam", "--holidays", "NL"]),
]  # fmt: skip


def time_pages(port: int, pages: list) -> None:
    """Each page (median of 20, after one to warm the cache) against its command."""
    import statistics

    db = ["--db", str(DB), "-f", "json"]
    for name, path, command in pages:
        _get(port, path)  # warm
        page = statistics.median(_get(port, path)[0] for _ in range(20))
        cli, _ = timed([*TBHOOK, *command, *db], runs=3)
        report(
            f"console {name} at {COUNT:,} ({path.split('?')[0]})",
            f"{page * 1000:.0f} ms (300 ms target: {page / 0.3:.2f}x)",
            f"tbhook {command[0]} -f json {cli * 1000:.0f} ms",
            f"{page / cli:.2f}x the command",
        )


def bench_queue_console() -> None:
    """/queue against `tbhook queue`, and a delivery that starts or ends a wait -> an open
    /queue page's server-sent event."""
    print("queue in the console", flush=True)
    port = bench.free_port()
    ui = subprocess.Popen(
        [*TBHOOK, "ui", "--db", str(DB), "--port", str(port)], stderr=subprocess.DEVNULL
    )
    try:
        bench.wait_listening(port)
        time_pages(port, QUEUE_PAGES)
        bench_queue_live(port)
    finally:
        bench.stop(ui)


def bench_queue_live(console_port: int, rounds: int = 10) -> None:
    """A customer message to a new case (a wait begins), then an agent's answer (it ends):
    from POST 200 to the open /queue page's event that shows it, each way, ``rounds`` times."""
    import http.client
    import queue
    import statistics
    import threading

    last = highest_id()
    port = bench.free_port()
    serve = subprocess.Popen(
        [*TBHOOK, "serve", "--quiet", "--port", str(port), "--db", str(DB)],
        stderr=subprocess.DEVNULL,
    )
    stream = http.client.HTTPConnection("127.0.0.1", console_port, timeout=60)
    events: queue.Queue = queue.Queue()
    delays: list[float] = []
    try:
        bench.wait_listening(port)
        stream.request("GET", "/queue/stream")
        response = stream.getresponse()
        assert response.status == 200

        def read() -> None:
            with contextlib.suppress(OSError, ValueError, AttributeError):  # closed at the end
                for raw in response:
                    if raw.startswith(b"data: "):
                        events.put((time.monotonic(), json.loads(raw[6:])["html"]))

        threading.Thread(target=read, daemon=True).start()
        events.get(timeout=60)  # the queue as it stands: following
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        base = time.time_ns() // 1000 % 10**12
        for i in range(rounds):
            case = 9 * 10**12 + base + i
            for own in (0, 1):  # the customer writes, then the agent answers
                stamp = 1730419200  # 2024-11-01, before the log: the oldest wait, shown
                body = {"event": "newResult", "searchId": 1, "uniqueId": case * 2 + own,
                        "resultId": case * 2 + own, "personId": case, "caseId": case,
                        "handlerId": 0, "sourceId": 14, "connectionId": 1, "typeId": 4,
                        "own": own, "timestamp": stamp}  # fmt: skip
                conn.request("POST", "/", body=json.dumps(body))
                conn.getresponse().read()
                sent = time.monotonic()
                shown = f'href="/cases/{case}"'
                while True:
                    at, html = events.get(timeout=30)
                    if (shown in html) == (own == 0):
                        delays.append((at - sent) * 1000)
                        break
    finally:
        stream.close()
        bench.stop(serve)
        delete_after(last)
    p50, worst = statistics.median(delays), max(delays)
    report(
        f"console /queue live at {COUNT:,}: POST 200 -> the wait shown begun or ended",
        f"p50 {p50:.0f} ms, worst {worst:.0f} ms ({len(delays)} changes)",
        "1000 ms target",
        f"{worst / 1000:.2f}x target",
    )


def bench_live(console_port: int) -> None:
    """POST 200 at the receiver -> the row's server-sent event at the console: 200 events,
    one every 13 ms (spread over the console's quarter-second poll)."""
    import http.client
    import statistics
    import threading

    last = highest_id()
    port = bench.free_port()
    serve = subprocess.Popen(
        [*TBHOOK, "serve", "--quiet", "--port", str(port), "--db", str(DB)],
        stderr=subprocess.DEVNULL,
    )
    stream = http.client.HTTPConnection("127.0.0.1", console_port, timeout=60)
    arrived: dict[int, float] = {}
    try:
        bench.wait_listening(port)
        stream.request("GET", "/stream")
        response = stream.getresponse()
        assert response.status == 200
        following = threading.Event()

        def read() -> None:
            with contextlib.suppress(OSError, ValueError, AttributeError):  # closed at the end
                follow()

        def follow() -> None:
            for raw in response:
                if raw.startswith(b"retry:"):
                    following.set()  # the console has its cursor: what commits now is sent
                if raw.startswith(b"data: "):
                    arrived[json.loads(raw[6:])["id"]] = time.monotonic()

        threading.Thread(target=read, daemon=True).start()
        assert following.wait(30)
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        acked: dict[int, float] = {}
        lines = (OUT / "events.ndjson").read_bytes().splitlines()
        for i in range(200):
            payload = json.loads(lines[i])
            payload["bench"] = f"live {time.time_ns()} {i}"  # a new body each run: a new event
            conn.request("POST", "/", body=json.dumps(payload))
            receipt = json.loads(conn.getresponse().read())
            acked[receipt["id"]] = time.monotonic()
            time.sleep(0.013)
        deadline = time.monotonic() + 10
        while len(arrived) < len(acked) and time.monotonic() < deadline:
            time.sleep(0.05)
    finally:
        stream.close()
        bench.stop(serve)
        delete_after(last)
    delays = sorted((arrived[k] - acked[k]) * 1000 for k in acked if k in arrived)
    p50, p99 = statistics.median(delays), statistics.quantiles(delays, n=100)[98]
    report(
        f"console live at {COUNT:,}, POST 200 -> server-sent event",
        f"p50 {p50:.0f} ms, p99 {p99:.0f} ms ({len(delays)}/{len(acked)} seen)",
        "500 ms target",
        f"{p99 / 500:.2f}x target",
    )


def bench_tail() -> None:
    last = highest_id()
    try:
        bench.bench_tail(DB, f" on {COUNT:,} events")
    finally:
        delete_after(last)


def main() -> None:
    OUT.mkdir(exist_ok=True)
    os.chdir(OUT)  # whatever a run creates by a relative name stays out of the checkout
    bench.need("wrk", "wrk")
    bench.need("sqlite3", "sqlite3")
    started = time.monotonic()
    print(f"tbhook bench-scale {bench.machine()}", flush=True)
    bench.compiled()
    if os.environ.get("SCALE_ONLY") == "queue":
        subprocess.run(
            [PY, "-c", f"from tbhook.store import open_store; open_store({str(DB)!r}).close()"],
            check=True,
        )
        bench_queue()
        bench_queue_console()
        bench.table()
        return
    events = OUT / "events.ndjson"  # what wrk and tail post: distinct from the database's
    if not events.exists():
        OUT.mkdir(exist_ok=True)
        with open(events, "wb") as f:
            subprocess.run(
                [*TBHOOK, "generate", "--count", "50000", "--seed", "2"], stdout=f, check=True
            )
    facts = build()
    # A receiver opening the database migrates it first (once, after an upgrade).
    subprocess.run(
        [PY, "-c", f"from tbhook.store import open_store; open_store({str(DB)!r}).close()"],
        check=True,
    )
    baseline = baseline_env()
    bench_import(facts)
    bench_read()
    bench_report(baseline)
    bench_queue()
    bench_console()
    bench_tail()
    bench_ingest(baseline)
    if os.environ.get("SCALE_UPGRADE"):
        bench_summaries()
    bench.table()
    print(f"\nmake bench-scale took {time.monotonic() - started:.0f} s")


if __name__ == "__main__":
    main()

"""tbhook on PostgreSQL: the receiver, several receivers on one database, tail, merge from
SQLite, doctor and the errors, against a real PostgreSQL server the tests start themselves."""

import json
import os
import subprocess
import sys
import threading

import psycopg
import pytest
from conftest import Worker, event_body, sample_bytes, start_serve, wait_for
from typer.testing import CliRunner

from tbhook.cli import app
from tbhook.model.events import parse
from tbhook.store import Delivery, open_store
from tbhook.transfer.generate import Generator

runner = CliRunner(env={"COLUMNS": "200"})


def rows(url, sql="SELECT id, event, deliveries FROM events ORDER BY id"):
    with psycopg.connect(url) as conn:
        return conn.execute(sql).fetchall()


@pytest.fixture
def pg_serve(pg_url, serve):
    """conftest's serve factory, on the test's PostgreSQL database, quietly."""

    def factory(*args, url=None):
        return serve("--quiet", *args, db=url or pg_url)

    return factory


def test_serve_on_postgresql_stores_dedupes_and_quarantines(pg_serve, pg_url):
    server = pg_serve()
    ids = []
    for name in ("new-incoming-message", "case-closed", "profile-merged"):
        first, again = server.post(sample_bytes(name)), server.post(sample_bytes(name))
        assert first.json == {"ok": True, "id": first.json["id"], "duplicate": False}
        assert again.json == {"ok": True, "id": first.json["id"], "duplicate": True}
        ids.append(first.json["id"])
    assert ids == [1, 2, 3]  # a retry takes no number from the sequence: no gap
    kept = server.post(b"{oops")
    assert kept.status == 200 and kept.json["quarantineId"] == 1
    assert [r[1:] for r in rows(pg_url)] == [
        ("newResult", 2),
        ("caseClosed", 2),
        ("profileMerged", 2),
    ]
    assert server.stop() == 0


def test_duplicates_in_a_batch_take_no_number_from_the_sequence(pg_url):
    """A body stored before, or twice in one batch, adds a delivery and uses up no id: the
    next new event's id follows on (only two receivers inserting one new body at once skip)."""
    store = open_store(pg_url)
    try:
        a, b, c, d = (event_body(caseId=n, uniqueId=n) for n in (1, 2, 3, 4))
        assert store.append([Delivery(a, parse(a))])[0].id == 1
        mixed = store.append([Delivery(body, parse(body)) for body in (a, b, b, c, a)])
        assert [(s.id, s.deliveries) for s in mixed] == [(1, 2), (2, 1), (2, 2), (3, 1), (1, 3)]
        for body in (b"{x", b"{x", b"{y"):
            store.append([Delivery(body, parse(body))])
        assert store.append([Delivery(d, parse(d))])[0].id == 4
    finally:
        store.close()
    assert [(r[0], r[2]) for r in rows(pg_url)] == [(1, 3), (2, 2), (3, 1), (4, 1)]
    assert rows(pg_url, "SELECT id, deliveries FROM quarantine ORDER BY id") == [(1, 2), (2, 1)]


def test_two_receivers_one_truth_the_same_body_at_once_is_one_row(pg_serve, pg_url):
    first, second = pg_serve(), pg_serve()
    for round_ in range(20):
        body = event_body(caseId=round_, uniqueId=round_)
        barrier = threading.Barrier(4)

        def post(server, barrier=barrier, body=body):
            barrier.wait(10)
            return server.post(body).status

        workers = [Worker(post, s) for s in (first, second, first, second)]
        for worker in workers:
            worker.start()
        assert [w.finish(30) for w in workers] == [200] * 4
    found = rows(pg_url, 'SELECT "caseId", deliveries FROM events ORDER BY "caseId"')
    assert found == [(i, 4) for i in range(20)]


def polls_since(url: str, moment) -> int:
    """How many of tail's polls (a transaction each, on its "tbhook reader" session) have ended
    since ``moment``: read from pg_stat_activity, sampled here until it moves on."""
    with psycopg.connect(url) as conn:
        ended = conn.execute(
            "SELECT state_change FROM pg_stat_activity WHERE application_name = 'tbhook reader' "
            "AND state = 'idle' AND state_change > %s",
            [moment],
        ).fetchall()
    seen = _polls.setdefault(url, set())
    seen.update(row[0] for row in ended)
    return len(seen)


_polls: dict[str, set] = {}


def test_tail_shows_every_event_once_when_a_lower_id_commits_last(pg_serve, pg_url):
    server = pg_serve()
    assert server.post(event_body(caseId=1)).status == 200
    tail = subprocess.Popen(
        [sys.executable, "-m", "tbhook", "tail", "--db", pg_url, "--format", "ndjson", "-n", "1"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    seen: list[int] = []
    reader = Worker(lambda: [seen.append(json.loads(line)["caseId"]) for line in tail.stdout])
    reader.start()
    try:
        wait_for(lambda: seen)
        assert seen == [1]
        # A slow receiver: it takes the next id, and commits only after others have.
        slow = open_store(pg_url)
        body = event_body(caseId=2)
        held = slow.writing()
        conn = held.__enter__()
        conn.execute(
            'INSERT INTO events ("receivedAt", "lastReceivedAt", path, event, "caseId", body, '
            "\"bodySha256\") VALUES ('2026-01-01T00:00:00.000Z', '2026-01-01T00:00:00.000Z', '/', "
            "'newResult', 2, ?, ?)",
            [body, __import__("hashlib").sha256(body).digest()],
        )
        for case in (3, 4, 5):
            assert server.post(event_body(caseId=case)).status == 200
        # Not committed yet: neither it nor what came after it is final, so tail holds them
        # back. The proof: two of tail's polls began after the last commit (its queries,
        # seen in pg_stat_activity), and it printed nothing new.
        after = rows(pg_url, "SELECT clock_timestamp()")[0][0]
        wait_for(lambda: polls_since(pg_url, after) >= 2, timeout=30)
        assert seen == [1]
        held.__exit__(None, None, None)
        slow.close()
        assert server.post(event_body(caseId=6)).status == 200  # the sentinel: shown last
        wait_for(lambda: 6 in seen, timeout=20)
    finally:
        tail.terminate()
        tail.wait(10)
    assert seen == [1, 2, 3, 4, 5, 6]  # each exactly once, in order, the late one not skipped
    lowest = rows(pg_url, 'SELECT id FROM events WHERE "caseId" = 2')[0][0]
    assert lowest < max(r[0] for r in rows(pg_url, 'SELECT id FROM events WHERE "caseId" > 2'))


def test_tail_follows_retries_and_quarantine_from_two_receivers(pg_serve, pg_url):
    first, second = pg_serve(), pg_serve()
    body = event_body(caseId=61)
    event_id = first.post(body).json["id"]
    tail = subprocess.Popen(
        [sys.executable, "-m", "tbhook", "tail", "--db", pg_url, "-f", "ndjson", "--new"]
        + ["--retries", "--quarantine"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    seen: list[dict] = []
    reader = Worker(lambda: [seen.append(json.loads(line)) for line in tail.stdout])
    reader.start()
    try:
        for n in range(200):  # following once a new event posted now is shown
            first.post(event_body(caseId=900_000 + n, uniqueId=900_000 + n))
            if wait_for(lambda: seen, timeout=1, fail=False):
                break
        seen.clear()
        assert second.post(body).json["duplicate"] is True  # delivery 2, through the other
        kept = first.post(b"{nope").json["quarantineId"]
        assert second.post(b"{nope").status == 200  # its delivery 2
        wait_for(lambda: len([r for r in seen if r.get("caseId", 0) < 900_000]) >= 3, timeout=20)
        first.post(event_body(caseId=62))  # the sentinel: nothing else comes before it
        wait_for(lambda: any(r.get("caseId") == 62 for r in seen), timeout=20)
    finally:
        tail.terminate()
        tail.wait(10)
    seen[:] = [r for r in seen if r.get("caseId", 0) < 900_000]  # the readiness sentinels
    assert seen[-1]["caseId"] == 62
    seen.pop()
    assert sorted(
        (r["kind"], r.get("id", r.get("quarantineId")), r.get("delivery")) for r in seen
    ) == [
        ("quarantined", kept, None),
        ("retry", event_id, 2),
        ("retry", kept, 2),
    ]


def test_merge_a_sqlite_log_into_postgresql_loses_nothing_and_runs_once(tmp_path, pg_url):
    sqlite_db = tmp_path / "old.db"
    store = open_store(sqlite_db)
    bodies = [line.encode() for line in Generator(seed=9).lines(3000)]
    for body in bodies[:2500] + bodies[:100] + [b"{bad", b""]:
        store.append([Delivery(body, parse(body))])
    store.close()
    first = runner.invoke(app, ["merge", str(sqlite_db), "--db", pg_url])
    assert first.exit_code == 0, first.output
    assert first.stdout.startswith(f"Merged {sqlite_db}: 2500 new events, 0 already here")
    again = runner.invoke(app, ["merge", str(sqlite_db), "--db", pg_url])
    assert again.stdout.startswith(f"Nothing new in {sqlite_db} since it was last merged")

    def contents(target):
        if str(target).startswith("postgresql://"):
            with psycopg.connect(target) as conn:
                events = conn.execute(
                    'SELECT "bodySha256", deliveries, "receivedAt", body FROM events'
                ).fetchall()
                kept = conn.execute(
                    'SELECT "bodySha256", deliveries, reason FROM quarantine'
                ).fetchall()
        else:
            import sqlite3

            conn = sqlite3.connect(target)
            events = conn.execute(
                "SELECT bodySha256, deliveries, receivedAt, body FROM events"
            ).fetchall()
            kept = conn.execute("SELECT bodySha256, deliveries, reason FROM quarantine").fetchall()
        return sorted(
            tuple(bytes(v) if isinstance(v, memoryview) else v for v in r) for r in events
        ), sorted(kept)

    assert contents(pg_url) == contents(sqlite_db)
    assert sum(d for _, d, _, _ in contents(pg_url)[0]) == 2600


def test_doctor_on_postgresql_reports_the_server_and_warns_when_commits_are_not_durable(pg_url):
    open_store(pg_url).append(
        [Delivery(sample_bytes("case-closed"), parse(sample_bytes("case-closed")))]
    )
    report = json.loads(runner.invoke(app, ["doctor", "-f", "json", "--db", pg_url]).stdout)
    assert report["backend"] == "postgresql" and report["serverVersion"].startswith("15")
    assert report["synchronousCommit"] == "on" and report["databaseBytes"] > 0
    assert report["schema"] == "p007_queue_and_tallies" and report["events"] == 1
    assert report["lastReceivedAgeSeconds"] < 60 and report["ok"]
    with psycopg.connect(pg_url, autocommit=True) as conn:
        name = conn.execute("SELECT current_database()").fetchone()[0]
        conn.execute(f"ALTER DATABASE {name} SET synchronous_commit = off")
    result = runner.invoke(app, ["doctor", "-f", "json", "--db", pg_url])
    assert result.exit_code == 1
    [check] = [c for c in json.loads(result.stdout)["checks"] if c["check"] == "durability"]
    assert check["status"] == "fail" and "synchronous_commit is off" in check["message"]
    served = start_serve(pg_url, "--quiet")
    try:
        assert "Warning: PostgreSQL's synchronous_commit is off" in served.stderr()
    finally:
        served.stop()


def test_backup_on_postgresql_says_what_to_use_instead(pg_url):
    open_store(pg_url).close()
    result = runner.invoke(app, ["backup", "copy.db", "--db", pg_url])
    assert result.exit_code == 1
    assert result.stderr.startswith("Error: backup copies a SQLite file; for PostgreSQL use")
    assert "pg_dump" in result.stderr


def test_a_password_is_never_printed(pg_cluster, pg_url):
    with psycopg.connect(pg_url, autocommit=True) as conn:
        conn.execute("CREATE ROLE tbhook LOGIN PASSWORD 'sw0rdfish-secret'")
        name = conn.execute("SELECT current_database()").fetchone()[0]
        conn.execute(f"GRANT ALL ON DATABASE {name} TO tbhook")
        conn.execute("GRANT ALL ON SCHEMA public TO tbhook")
    url = pg_url.replace("postgres@", "tbhook:sw0rdfish-secret@")
    served = start_serve(url)
    try:
        served.post(sample_bytes("case-closed"))
    finally:
        served.stop()
    outputs = [served.stderr()]
    for args in (["doctor"], ["doctor", "-f", "json"], ["events"], ["backup", "x.db"]):
        result = runner.invoke(app, [*args, "--db", url])
        outputs.append(result.output)
    missing = url.rsplit("/", 1)[0] + "/nosuchdb"
    outputs.append(runner.invoke(app, ["events", "--db", missing]).output)
    broken = url.replace(str(pg_cluster.port), "1")  # nothing listens there
    outputs.append(runner.invoke(app, ["events", "--db", broken]).output)
    joined = "\n".join(outputs)
    assert "sw0rdfish" not in joined
    assert "tbhook@127.0.0.1" in joined  # the URL is still shown, without the password


def test_without_psycopg_a_url_gets_one_line_saying_how_to_install_it(tmp_path, pg_url):
    site = tmp_path / "site"
    site.mkdir()
    (site / "sitecustomize.py").write_text("import sys\nsys.modules['psycopg'] = None\n")
    result = subprocess.run(
        [sys.executable, "-m", "tbhook", "events", "--db", pg_url],
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": str(site)},
        timeout=60,
    )
    assert result.returncode == 1
    assert result.stderr == (
        "Error: a postgresql:// database needs psycopg: pip install 'psycopg[binary]'\n"
    )


def test_read_commands_and_import_work_on_postgresql(pg_url, tmp_path):
    data = tmp_path / "day.ndjson"
    data.write_text("\n".join(Generator(seed=3).lines(500)) + "\n{bad\n")
    imported = runner.invoke(app, ["import", str(data), "--db", pg_url])
    assert (
        imported.stdout
        == f"Imported {data}: 500 inserted, 0 duplicates, 1 quarantined (lines 501)\n"
    )
    again = runner.invoke(app, ["import", str(data), "--db", pg_url])
    assert again.stdout.endswith("0 quarantined, 1 already in quarantine\n")
    for args in (
        ["events"],
        ["cases"],
        ["stats"],
        ["quarantine"],
        ["export"],
        ["tail", "--no-follow"],
    ):
        result = runner.invoke(app, [*args, "--db", pg_url])
        assert result.exit_code == 0, (args, result.output)
    pruned = runner.invoke(
        app, ["prune", "--before", "2024-01-01T00:00:30Z", "--no-archive", "--yes", "--db", pg_url]
    )
    assert pruned.exit_code == 0 and pruned.stdout.startswith("Pruned ")


def test_a_database_that_is_not_tbhooks_is_refused(pg_url):
    with psycopg.connect(pg_url, autocommit=True) as conn:
        conn.execute("CREATE TABLE invoices (id int)")
    result = subprocess.run(
        [sys.executable, "-m", "tbhook", "serve", "--db", pg_url, "--port", "0"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 1
    assert "is not a tbhook database (it holds invoices)" in result.stderr


def test_healthz_metrics_and_doctor_on_postgresql_when_the_database_turns_read_only(
    pg_serve, pg_url
):
    from conftest import request
    from test_metrics import healthz_until, scrape, value

    server = pg_serve("--metrics")
    assert server.post(sample_bytes("case-closed")).status == 200
    assert request(server.port, "GET", "/healthz").json == {"status": "ok"}
    samples = scrape(server)
    assert value(samples, "tbhook_deliveries_total", outcome="stored") == 1
    assert value(samples, "tbhook_store_reachable") == 1
    assert value(samples, "tbhook_database_bytes") > 1_000_000
    assert value(samples, "tbhook_info", backend="postgresql", version=_version()) == 1
    assert not any(name == "tbhook_wal_bytes" for name, _ in samples)
    with psycopg.connect(pg_url, autocommit=True) as conn:
        name = conn.execute("SELECT current_database()").fetchone()[0]
        conn.execute(f"ALTER DATABASE {name} SET default_transaction_read_only = on")
        # The receiver's sessions end; the ones it opens again are read-only.
        conn.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
            "WHERE datname = %s AND pid <> pg_backend_pid()",
            [name],
        )
    try:
        # The write finds its session gone and opens a new one: read-only.
        refused = server.post(sample_bytes("new-incoming-message"))
        assert refused.status == 503 and "read-only" in refused.json["error"]
        response = healthz_until(server, 503)
        assert response.json == {"status": "unavailable", "reason": refused.json["error"]}
        assert "read-only" in response.json["reason"]
        result = runner.invoke(app, ["doctor", "-f", "json", "--db", pg_url])
        assert result.exit_code == 1
        [check] = [c for c in json.loads(result.stdout)["checks"] if c["check"] == "commit"]
        assert (check["status"], check["message"]) == ("fail", refused.json["error"])
        assert value(scrape(server), "tbhook_store_writable") == 0
    finally:
        with psycopg.connect(pg_url, autocommit=True) as conn:
            conn.execute("SET default_transaction_read_only = off")  # this session only
            conn.execute(f"ALTER DATABASE {name} RESET default_transaction_read_only")
    healthz_until(server, 200)
    assert server.post(sample_bytes("new-incoming-message")).status == 200
    assert server.stop() == 0


def _version() -> str:
    from tbhook import __version__

    return __version__


def test_a_session_the_server_ended_costs_no_delivery(pg_serve, pg_url):
    server = pg_serve()
    assert server.post(sample_bytes("case-closed")).status == 200
    with psycopg.connect(pg_url, autocommit=True) as conn:
        ended = conn.execute(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
            "WHERE datname = current_database() AND pid <> pg_backend_pid()"
        ).fetchone()[0]
    assert ended >= 1  # the receiver's sessions, its writer's among them
    response = server.post(sample_bytes("profile-merged"))
    assert response.status == 200 and response.json["duplicate"] is False
    assert [r[1] for r in rows(pg_url)] == ["caseClosed", "profileMerged"]
    assert server.stop() == 0

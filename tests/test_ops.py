"""doctor, backup, prune and merge against real databases, backup during a real ingest."""

import csv
import io
import json
import os
import sqlite3
import stat
import threading

import pytest
from conftest import Worker, event_body, sample_bytes, wait_for
from typer.testing import CliRunner

from tbhook.cli import app
from tbhook.model.events import parse
from tbhook.store import Delivery
from tbhook.store.sqlite import SQLiteStore

runner = CliRunner(env={"COLUMNS": "200"})


def run(*args):
    return runner.invoke(app, list(args), catch_exceptions=False)


def fill(db, bodies, received_at=None):
    store = SQLiteStore.open(db)
    for body in bodies:
        kwargs = {"received_at": received_at} if received_at else {}
        store.append([Delivery(body, parse(body), **kwargs)])
    store.close()


def test_doctor_reports_a_healthy_database(db_path):
    fill(db_path, [sample_bytes("case-closed"), sample_bytes("case-closed"), b"{oops"])
    result = run("doctor", "--db", str(db_path), "--format", "json")
    assert result.exit_code == 0
    report = json.loads(result.stdout)
    assert report["ok"] is True and report["integrity"] == ["ok"]
    assert report["schema"] == "m016_queue_and_tallies" and report["pendingMigrations"] == []
    assert report["events"] == 1 and report["byEvent"] == {"caseClosed": 1}
    assert (report["retriedEvents"], report["extraDeliveries"], report["quarantined"]) == (1, 1, 1)
    assert report["lateDeliveries"] == 1  # the sample's timestamp is from 2022
    assert report["outageBudgetHours"] == [29.3, 73.2]
    statuses = {c["check"]: c["status"] for c in report["checks"]}
    assert statuses["quarantine"] == "warn" and statuses["late deliveries"] == "warn"
    (late,) = [c["message"] for c in report["checks"] if c["check"] == "late deliveries"]
    assert late.startswith("1 event arrived more than 5 minutes after it happened")
    assert report["lastReceivedAgeSeconds"] < 60


def test_doctor_table_explains_the_retry_schedule(db_path):
    fill(db_path, [sample_bytes("profile-merged")])
    out = run("doctor", "--db", str(db_path)).stdout
    assert "5, 7, 21, 59, 133, 255, 437, 691, 1029, 1758 minutes" in out
    assert "longer than about 29 hours (at most 73" in out and "healthy" in out


def test_doctor_fails_when_the_last_delivery_is_stale(db_path):
    fill(db_path, [event_body()], received_at="2020-01-01T00:00:00.000Z")
    result = run("doctor", "--db", str(db_path), "--stale", "1h", "-f", "json")
    assert result.exit_code == 1
    [stale] = [c for c in json.loads(result.stdout)["checks"] if c["check"] == "last delivery"]
    assert stale["status"] == "fail" and "is the receiver reachable" in stale["message"]
    assert run("doctor", "--db", str(db_path)).exit_code == 0  # no threshold, no failure


def test_doctor_fails_on_a_corrupt_file(db_path):
    fill(db_path, [event_body(caseId=i) for i in range(300)])
    with open(db_path, "r+b") as f:  # scribble over a page in the middle
        f.seek(8 * 4096)
        f.write(b"\xff" * 4096)
    result = run("doctor", "--db", str(db_path), "-f", "json")
    assert result.exit_code == 1
    assert json.loads(result.stdout)["checks"][0]["status"] == "fail"


def test_doctor_on_a_missing_database(tmp_path):
    result = run("doctor", "--db", str(tmp_path / "none.db"))
    assert result.exit_code == 1 and result.stderr.startswith("Error: no database at")


def test_backup_during_ingest_is_consistent(serve, tmp_path):
    server = serve("--quiet")
    stop = threading.Event()
    posted = []

    def ingest():
        i = 0
        while not stop.is_set():
            status = server.post(event_body(caseId=i, uniqueId=i)).status
            assert status == 200, f"delivery {i} got {status} during a backup"
            posted.append(i)
            i += 1

    thread = Worker(ingest)
    thread.start()
    try:
        wait_for(lambda: len(posted) >= 200 or not thread.is_alive(), timeout=30)
        copies = []
        for n in range(3):
            dest = tmp_path / f"copy{n}.db"
            result = run("backup", str(dest), "--db", str(server.db))
            assert result.exit_code == 0 and "checked" in result.stdout
            copies.append(dest)
    finally:
        stop.set()
    thread.finish(30)
    counts = []
    for dest in copies:
        conn = sqlite3.connect(dest)
        assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        counts.append(conn.execute("SELECT count(*) FROM events").fetchone()[0])
        ids = [r[0] for r in conn.execute("SELECT id FROM events ORDER BY id")]
        assert ids == list(range(1, len(ids) + 1))  # a prefix of the log, no holes
        assert stat.S_IMODE(os.stat(dest).st_mode) == 0o600
    assert counts == sorted(counts) and counts[0] >= 200 and counts[-1] <= len(posted)


def test_backup_into_a_directory_and_refusing_to_overwrite(db_path, tmp_path):
    fill(db_path, [sample_bytes("case-closed")])
    target = tmp_path / "backups"
    target.mkdir()
    assert run("backup", str(target), "--db", str(db_path)).exit_code == 0
    [made] = list(target.iterdir())
    assert made.name.startswith("tbhook-") and made.suffix == ".db"
    again = run("backup", str(made), "--db", str(db_path))
    assert (
        again.exit_code == 1
        and again.stderr == f"Error: {made} exists (use --force to replace it)\n"
    )
    assert run("backup", str(made), "--db", str(db_path), "--force").exit_code == 0


@pytest.mark.parametrize("flag", ["--version"])
def test_version_names_sqlite(flag):
    import sqlite3 as s

    result = run(flag)
    assert result.exit_code == 0 and f"SQLite {s.sqlite_version}" in result.stdout


def generated(count, seed):
    result = run("generate", "--count", str(count), "--seed", str(seed))
    return [line.encode() for line in result.stdout.splitlines()]


def test_merge_both_ways_gives_the_same_event_set(tmp_path):
    lines = generated(1200, seed=3)
    a, b = tmp_path / "a.db", tmp_path / "b.db"
    fill(a, lines[:800] + [b"{kept in a"])
    fill(b, lines[400:] + [b"{kept in b"])
    a2, b2 = tmp_path / "a2.db", tmp_path / "b2.db"
    assert run("backup", str(a2), "--db", str(a)).exit_code == 0
    assert run("backup", str(b2), "--db", str(b)).exit_code == 0
    result = run("merge", str(b), "--db", str(a))
    assert result.exit_code == 0
    assert result.stdout == (
        f"Merged {b}: 400 new events, 400 already here (their deliveries "
        "added), 1 new quarantined; 1200 events now\n"
    )
    assert run("merge", str(a2), "--db", str(b2)).exit_code == 0

    def contents(db):
        conn = sqlite3.connect(db)
        events = sorted(conn.execute("SELECT bodySha256, deliveries, receivedAt FROM events"))
        quarantine = sorted(conn.execute("SELECT bodySha256 FROM quarantine"))
        return events, quarantine

    assert contents(a) == contents(b2)
    for db in (a, b2):  # the 400 bodies both had took no id: the ids follow each other
        conn = sqlite3.connect(db)
        assert conn.execute("SELECT min(id), max(id), count(*) FROM events").fetchone() == (
            1,
            1200,
            1200,
        )
    deliveries = [d for _, d, _ in contents(a)[0]]
    assert deliveries.count(2) == 400 and deliveries.count(1) == 800  # summed where both had it
    assert len(contents(a)[1]) == 2


def test_merge_resolves_persons_across_both_logs(tmp_path):
    a, b = tmp_path / "a.db", tmp_path / "b.db"
    fill(a, [event_body(personId=10, caseId=1)])
    fill(
        b,
        [
            json.dumps(
                {"event": "profileMerged", "oldPersonId": 10, "newPersonId": 20, "timestamp": 5}
            ).encode()
        ],
    )
    assert run("merge", str(b), "--db", str(a)).exit_code == 0
    assert (
        json.loads(run("person", "10", "--db", str(a), "-f", "json").stdout)["canonicalPersonId"]
        == 20
    )


def test_merge_refuses_what_is_not_a_tbhook_database(db_path, tmp_path):
    fill(db_path, [event_body()])
    other = tmp_path / "other.db"
    sqlite3.connect(other).execute("CREATE TABLE t (x)").connection.commit()
    result = run("merge", str(other), "--db", str(db_path))
    assert result.exit_code == 1 and result.stderr == f"Error: {other} is not a tbhook database\n"


def test_prune_archives_deletes_and_keeps_needed_merges(db_path, tmp_path):
    def merge(old, new, ts):
        return json.dumps(
            {"event": "profileMerged", "oldPersonId": old, "newPersonId": new, "timestamp": ts}
        ).encode()

    old, new = 1_600_000_000, 1_800_000_000  # 2020 and 2027
    fill(
        db_path,
        [
            event_body(caseId=1, personId=10, timestamp=old),
            merge(10, 20, old + 1),  # person 20 still has a message after the cut: kept
            merge(30, 40, old + 2),  # nobody of this group remains: pruned
            event_body(caseId=2, personId=30, timestamp=old + 3),
            event_body(caseId=3, personId=20, timestamp=new),
            sample_bytes("case-closed"),  # 2022, pretty-printed over several lines
        ],
    )
    archive = tmp_path / "old.ndjson.gz"
    result = run(
        "prune", "--before", "2025-01-01", "--archive", str(archive), "--yes", "--db", str(db_path)
    )
    assert result.exit_code == 0
    assert result.stdout == (
        f"Pruned 4 events from before 2025-01-01T00:00:00Z, archived to "
        f"{archive}; kept 1 older merges that remaining persons resolve through\n"
    )
    conn = sqlite3.connect(db_path)
    left = sorted(conn.execute("SELECT event, caseId, oldPersonId FROM events"))
    assert left == [("newResult", 3, None), ("profileMerged", None, 10)]
    assert (
        json.loads(run("person", "10", "--db", str(db_path), "-f", "json").stdout)[
            "canonicalPersonId"
        ]
        == 20
    )
    again = run("import", str(archive), "--db", str(db_path))  # the archive loads back
    assert again.stdout.startswith(f"Imported {archive}: 4 inserted, 0 duplicates, 0 quarantined")


def test_prune_asks_first(db_path):
    fill(db_path, [event_body(timestamp=1_600_000_000)])
    result = run("prune", "--before", "2025-01-01", "--no-archive", "--db", str(db_path))
    assert result.exit_code == 1
    assert "pass --yes to confirm without a prompt" in result.stderr
    assert sqlite3.connect(db_path).execute("SELECT count(*) FROM events").fetchone()[0] == 1
    assert run("prune", "--before", "2019-01-01", "--no-archive", "--db", str(db_path)).stdout == (
        "Nothing to prune before 2019-01-01T00:00:00Z\n"
    )


# -- no command destroys data ------------------------------------------------------------


def test_backup_onto_the_database_itself_is_refused_and_the_database_kept(db_path):
    fill(db_path, [sample_bytes("case-closed")])
    result = run("backup", str(db_path), "--db", str(db_path), "--force")
    assert result.exit_code == 1
    assert (
        result.stderr == f"Error: {db_path} is the database itself: a backup must be another file\n"
    )
    assert sqlite3.connect(db_path).execute("SELECT count(*) FROM events").fetchone()[0] == 1


def test_backup_onto_the_database_by_another_name_is_refused(db_path, tmp_path):
    fill(db_path, [sample_bytes("case-closed")])
    alias = tmp_path / "alias.db"
    alias.symlink_to(db_path)
    result = run("backup", str(alias), "--db", str(db_path), "--force")
    assert result.exit_code == 1 and "is the database itself" in result.stderr
    assert sqlite3.connect(db_path).execute("SELECT count(*) FROM events").fetchone()[0] == 1


def test_backup_force_with_a_mistyped_database_keeps_yesterdays_backup(db_path, tmp_path):
    fill(db_path, [sample_bytes("case-closed")])
    nightly = tmp_path / "nightly.db"
    assert run("backup", str(nightly), "--db", str(db_path)).exit_code == 0
    before = nightly.read_bytes()
    result = run("backup", str(nightly), "--force", "--db", str(tmp_path / "typo.db"))
    assert result.exit_code == 1 and result.stderr.startswith("Error: no database at ")
    assert nightly.read_bytes() == before


def test_backup_of_a_damaged_database_says_so_and_keeps_the_old_copy(db_path, tmp_path):
    from test_server import scribble_over_the_index_counts_use

    fill(db_path, [event_body(caseId=i) for i in range(500)])
    nightly = tmp_path / "nightly.db"
    assert run("backup", str(nightly), "--db", str(db_path)).exit_code == 0
    before = nightly.read_bytes()
    scribble_over_the_index_counts_use(db_path)
    result = run("backup", str(nightly), "--force", "--db", str(db_path))
    assert result.exit_code == 1
    assert "is damaged" in result.stderr or "failed its check" in result.stderr
    assert "could not store" not in result.stderr
    assert nightly.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []


def test_backup_force_replaces_with_a_complete_private_copy(db_path, tmp_path):
    fill(db_path, [event_body(caseId=i) for i in range(3)])
    target = tmp_path / "copy.db"
    target.write_bytes(b"an older copy")
    result = run("backup", str(target), "--force", "--db", str(db_path))
    assert result.exit_code == 0 and result.stdout.startswith("Backed up 3 events")
    assert sqlite3.connect(target).execute("SELECT count(*) FROM events").fetchone()[0] == 3
    assert stat.S_IMODE(os.stat(target).st_mode) == 0o600


def old_and_new(db_path):
    fill(db_path, [event_body(caseId=i, timestamp=1_600_000_000 + i) for i in range(5)])
    fill(db_path, [event_body(caseId=100, timestamp=1_800_000_000)])


def test_prune_refuses_an_existing_archive_without_append(db_path, tmp_path):
    old_and_new(db_path)
    archive = tmp_path / "old.ndjson.gz"
    archive.write_bytes(b"last month's archive")
    result = run(
        "prune", "--before", "2025-01-01", "--archive", str(archive), "--yes", "--db", str(db_path)
    )
    assert result.exit_code == 1
    assert result.stderr == (
        f"Error: {archive} exists (use --append to add to it, or another name)\n"
    )
    assert archive.read_bytes() == b"last month's archive"
    assert sqlite3.connect(db_path).execute("SELECT count(*) FROM events").fetchone()[0] == 6


def test_prune_append_adds_a_gzip_member_and_both_load_back(db_path, tmp_path):
    import gzip

    archive = tmp_path / "old.ndjson.gz"
    fill(db_path, [event_body(caseId=i, timestamp=1_600_000_000 + i) for i in range(3)])
    args = ["--archive", str(archive), "--yes", "--db", str(db_path)]
    assert run("prune", "--before", "2025-01-01", *args).exit_code == 0
    first = archive.read_bytes()
    fill(db_path, [event_body(caseId=10 + i, timestamp=1_600_000_100 + i) for i in range(2)])
    result = run("prune", "--before", "2025-01-01", "--append", *args)
    assert result.exit_code == 0
    assert archive.read_bytes().startswith(first)  # the earlier member, untouched
    assert len(gzip.decompress(archive.read_bytes()).splitlines()) == 5
    assert stat.S_IMODE(os.stat(archive).st_mode) == 0o600
    restored = tmp_path / "restored.db"
    loaded = run("import", str(archive), "--db", str(restored))
    assert loaded.stdout.startswith(f"Imported {archive}: 5 inserted")


def test_prune_archive_onto_the_database_is_refused(db_path):
    old_and_new(db_path)
    result = run(
        "prune",
        "--before",
        "2025-01-01",
        "--archive",
        str(db_path),
        "--append",
        "--yes",
        "--db",
        str(db_path),
    )
    assert result.exit_code == 1 and "is the database itself" in result.stderr
    assert sqlite3.connect(db_path).execute("SELECT count(*) FROM events").fetchone()[0] == 6


def test_export_onto_the_database_is_refused(db_path):
    fill(db_path, [sample_bytes("case-closed")])
    result = run("export", "--output", str(db_path), "--db", str(db_path))
    assert result.exit_code == 1
    assert result.stderr == f"Error: {db_path} is the database itself: export to another file\n"
    assert sqlite3.connect(db_path).execute("SELECT count(*) FROM events").fetchone()[0] == 1


def test_export_output_file_is_private(db_path, tmp_path):
    fill(db_path, [sample_bytes("case-closed")])
    out = tmp_path / "events.csv"
    assert run("export", "--output", str(out), "--db", str(db_path)).exit_code == 0
    assert stat.S_IMODE(os.stat(out).st_mode) == 0o600


def test_merge_of_the_database_itself_is_refused(db_path, monkeypatch):
    fill(db_path, [sample_bytes("case-closed"), sample_bytes("case-closed")])
    monkeypatch.setenv("TBHOOK_DB", str(db_path))
    result = run("merge", str(db_path))
    assert result.exit_code == 1
    assert result.stderr == f"Error: {db_path} is the database itself: nothing to merge\n"
    assert sqlite3.connect(db_path).execute("SELECT deliveries FROM events").fetchone()[0] == 2


def test_merge_of_a_copy_of_the_database_is_refused(db_path, tmp_path):
    import shutil

    fill(db_path, [sample_bytes("case-closed"), sample_bytes("case-closed")])
    copy = tmp_path / "copy.db"
    shutil.copy(db_path, copy)
    result = run("merge", str(copy), "--db", str(db_path))
    assert result.exit_code == 1
    assert "is this log itself (or a copy of it)" in result.stderr
    assert sqlite3.connect(db_path).execute("SELECT deliveries FROM events").fetchone()[0] == 2


def test_merge_is_idempotent_and_takes_only_what_is_new_from_a_later_backup(tmp_path):
    a, b = tmp_path / "a.db", tmp_path / "b.db"
    fill(a, [event_body(caseId=i) for i in range(3)])
    fill(b, [event_body(caseId=i) for i in range(2, 6)] + [b"{bad"])
    first = run("merge", str(b), "--db", str(a))
    assert first.stdout == (
        f"Merged {b}: 3 new events, 1 already here (their deliveries added), 1 new "
        "quarantined; 6 events now\n"
    )

    def state():
        conn = sqlite3.connect(a)
        return sorted(conn.execute("SELECT bodySha256, deliveries FROM events")), sorted(
            conn.execute("SELECT bodySha256, deliveries FROM quarantine")
        )

    merged = state()
    again = run("merge", str(b), "--db", str(a))
    assert again.exit_code == 0
    assert (
        again.stdout
        == f"Nothing new in {b} since it was last merged (up to its event #4); 6 events here\n"
    )
    assert state() == merged  # deliveries not doubled
    fill(b, [event_body(caseId=9)])  # b receives more; tonight's backup of it is merged
    nightly = tmp_path / "b-nightly.db"
    assert run("backup", str(nightly), "--db", str(b)).exit_code == 0
    later = run("merge", str(nightly), "--db", str(a))
    assert later.stdout.startswith(f"Merged {nightly}: 1 new events, 0 already here")
    events, quarantine = state()
    assert len(events) == 7 and sum(d for _, d in events) == 8  # caseId 2 arrived twice
    assert quarantine == merged[1]
    record = (
        sqlite3.connect(a)
        .execute("SELECT lastEventId, lastQuarantineId FROM merged_logs")
        .fetchall()
    )
    assert record == [(5, 1)]


def test_doctor_csv_is_csv(db_path):
    fill(db_path, [sample_bytes("case-closed")])
    result = run("doctor", "--format", "csv", "--db", str(db_path))
    rows = list(csv.reader(io.StringIO(result.stdout_bytes.decode(), newline="")))
    assert rows[0] == ["check", "status", "detail"]
    checks = {row[0]: row[1] for row in rows[1:]}
    assert checks["integrity"] == "ok" and checks["file"] == ""


def test_doctor_reports_a_database_at_its_size_cap(db_path, serve):
    from conftest import fill_to_the_cap

    from tbhook.model.words import human_size

    filler, cap = fill_to_the_cap(db_path)
    filler.close()
    server = serve("--quiet", "--max-db-size", str(cap))
    statuses = {server.post(event_body(caseId=i, uniqueId=i)).status for i in range(400)}
    assert statuses == {200, 503}
    refused = server.post(event_body(caseId=10_000))
    assert refused.status == 503 and refused.headers["retry-after"] == "5"
    assert f"size cap (--max-db-size {human_size(cap)})" in refused.json["error"]
    # doctor reads the cap the receiver recorded, without being told
    report = run("doctor", "-f", "json", "--db", str(db_path))
    assert report.exit_code == 1
    [cap] = [c for c in json.loads(report.stdout)["checks"] if c["check"] == "size cap"]
    assert cap["status"] == "fail" and "deliveries get 503" in cap["message"]
    # given a larger cap, the same database is merely near it, or fine
    roomy = json.loads(
        run("doctor", "-f", "json", "--max-db-size", "2M", "--db", str(db_path)).stdout
    )
    [cap] = [c for c in roomy["checks"] if c["check"] == "size cap"]
    assert cap["status"] == "ok"


def test_doctor_run_by_a_user_who_cannot_write_does_not_claim_the_receiver_cannot(
    db_path, monkeypatch
):
    """From cron as another user: the commit check is not tried (a warning, not a failure)."""
    from tbhook.cli import ops

    fill(db_path, [sample_bytes("case-closed")])
    monkeypatch.setattr(ops.os, "geteuid", lambda: 1000)
    monkeypatch.setattr(ops.os, "access", lambda path, mode: False)
    result = run("doctor", "--db", str(db_path), "--format", "json")
    [check] = [c for c in json.loads(result.stdout)["checks"] if c["check"] == "commit"]
    assert check["status"] == "warn" and check["message"].startswith("not tried: this user")


# -- doctor counts only what is a problem -------------------------------------------------------


def test_tracebuzz_test_deliveries_are_kept_but_are_not_a_problem(db_path):
    """Tracebuzz posts an empty body (or {}) to test the URL each time a webhook is saved."""
    fill(db_path, [event_body(), b"", b"{}", b"{}"])
    report = json.loads(run("doctor", "--db", str(db_path), "-f", "json").stdout)
    assert (report["quarantined"], report["testDeliveries"]) == (2, 2)  # "{}" twice is one row
    [check] = [c for c in report["checks"] if c["check"] == "quarantine"]
    assert check["status"] == "ok"
    assert check["message"] == (
        "every delivery was readable; 2 empty test deliveries from saving the webhook kept in "
        "quarantine"
    )
    fill(db_path, [b"{oops"])
    report = json.loads(run("doctor", "--db", str(db_path), "-f", "json").stdout)
    [check] = [c for c in report["checks"] if c["check"] == "quarantine"]
    assert check["status"] == "warn" and check["message"].startswith("1 delivery was kept")


def test_late_deliveries_count_only_what_a_receiver_received(db_path, tmp_path):
    old = event_body(timestamp=1_600_000_000)
    archive = tmp_path / "old.ndjson"
    archive.write_bytes(old + b"\n" + event_body(timestamp=1_600_000_001, caseId=2) + b"\n")
    assert run("import", str(archive), "--db", str(db_path)).exit_code == 0
    report = json.loads(run("doctor", "--db", str(db_path), "-f", "json").stdout)
    assert report["lateDeliveries"] == 0 and report["maxLagSeconds"] is None
    fill(db_path, [event_body(timestamp=1_600_000_002, caseId=3)])  # a receiver, years late
    report = json.loads(run("doctor", "--db", str(db_path), "-f", "json").stdout)
    assert report["lateDeliveries"] == 1


# -- quarantine drop --------------------------------------------------------------------------


def test_quarantine_drop_deletes_only_the_named_after_asking(db_path):
    fill(db_path, [b"", b"{oops", b"[1]"])
    assert run("quarantine", "drop", "--db", str(db_path)).exit_code == 2  # no ids, nothing
    asked = run("quarantine", "drop", "1", "--db", str(db_path))
    assert asked.exit_code == 1 and "pass --yes to confirm without a prompt" in asked.stderr
    unknown = run("quarantine", "drop", "1", "9", "--yes", "--db", str(db_path))
    assert unknown.exit_code == 1 and unknown.stderr.startswith("Error: not in quarantine: #9 (")
    assert len(sqlite3.connect(db_path).execute("SELECT id FROM quarantine").fetchall()) == 3
    done = run("quarantine", "drop", "1", "#3", "--yes", "--db", str(db_path))
    assert done.exit_code == 0 and done.stdout == "Dropped 2 quarantined deliveries: #1, #3\n"
    left = sqlite3.connect(db_path).execute("SELECT id FROM quarantine").fetchall()
    assert left == [(2,)]


def test_doctor_says_why_event_ids_have_a_gap(db_path):
    """No check while the ids follow each other; an id with no event (a delete: prune,
    retention) is said, and why, so a gap never reads as a lost delivery."""
    fill(
        db_path,
        [event_body(caseId=n, uniqueId=n) for n in (1, 2, 3)] + [event_body(caseId=1, uniqueId=1)],
    )

    def ids_check():
        report = json.loads(run("doctor", "--db", str(db_path), "-f", "json").stdout)
        return [c for c in report["checks"] if c["check"] == "event ids"], report["skippedIds"]

    assert ids_check() == ([], 0)  # the duplicate took no id
    with sqlite3.connect(db_path) as conn:
        conn.execute("DELETE FROM events WHERE id = 2")
    [check], skipped = ids_check()
    assert skipped == 1 and check["status"] == "ok"
    assert check["message"].startswith("1 id below the highest has no event: prune")

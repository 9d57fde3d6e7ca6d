"""Running it for months: GET /metrics counts exactly what happened, scraped from a real
receiver; GET /healthz says whether a delivery can be committed, and `doctor` says why not
in the same words; `--log-format json` carries the facts of the human line."""

from __future__ import annotations

import json
import os
import socket
import sqlite3
import subprocess
import time

import pytest
from conftest import (
    event_body,
    fault_not_run,
    fill_to_the_cap,
    immutable,
    request,
    sample_bytes,
    start_serve,
    wait_for,
)
from prometheus_client.parser import text_string_to_metric_families
from typer.testing import CliRunner

from tbhook.cli import app

SECRET = {"X-Secret": "s3cret-value"}
AUTH = ("--header-name", "X-Secret", "--header-value", "s3cret-value")


def run(*args):
    return CliRunner().invoke(app, list(args), catch_exceptions=False)


def healthz_until(server, status: int):
    """GET /healthz until it answers ``status`` (a check is cached for a second, so a change
    shows within one), and that answer."""
    return wait_for(lambda: (r := request(server.port, "GET", "/healthz")).status == status and r)


def scrape(server) -> dict[tuple[str, tuple], float]:
    """Every sample of GET /metrics, keyed by name and labels."""
    response = request(server.port, "GET", "/metrics")
    assert response.status == 200, response.body
    assert response.headers["content-type"].startswith("text/plain; version=")
    text = response.body.decode()
    assert "s3cret-value" not in text
    samples = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            samples[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return samples


def value(samples, name: str, **labels) -> float:
    return samples[(name, tuple(sorted(labels.items())))]


def all_copied(path) -> bool:
    """Whether every frame of a SQLite file's write-ahead log is in the file (a passive
    checkpoint: it waits for nobody, and copies what it can)."""
    conn = sqlite3.connect(path)
    try:
        busy, frames, copied = conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
    finally:
        conn.close()
    return busy == 0 and frames == copied


def tbhook_series(samples) -> set:
    return {key for key in samples if key[0].startswith("tbhook_")}


def raw(port: int, data: bytes) -> bytes:
    """Send bytes as they are (not HTTP a client library would send) and read the answer."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as conn:
        conn.sendall(data)
        answer = b""
        while chunk := conn.recv(65536):
            answer += chunk
    return answer


def test_every_counter_matches_a_known_mix_of_deliveries(serve, db_path):
    server = serve("--metrics", *AUTH, "--max-body", "2000", "--quiet")
    before = scrape(server)
    assert value(before, "tbhook_deliveries_total", outcome="stored") == 0
    for case in (1, 2, 3):  # 3 new events
        assert server.post(event_body(caseId=case), headers=SECRET).json["duplicate"] is False
    for _ in range(2):  # 2 retries of one of them
        assert server.post(event_body(caseId=1), headers=SECRET).json["duplicate"] is True
    assert server.post(b"{not json", headers=SECRET).json["quarantined"] is True
    assert server.post(b"{not json", headers=SECRET).json["duplicate"] is True
    assert server.post(event_body(caseId=4)).status == 401  # no secret
    assert server.post(event_body(caseId=4), headers={"X-Secret": "wrong"}).status == 401
    assert server.post(b"x" * 3000, headers=SECRET).status == 413
    assert request(server.port, "PUT", "/", b"{}", SECRET).status == 405
    assert raw(server.port, b"NOT HTTP AT ALL\r\n\r\n").startswith(b"HTTP/1.1 400 ")
    headers = b"".join(b"X-%d: 1\r\n" % i for i in range(120))
    assert raw(server.port, b"POST / HTTP/1.1\r\nHost: x\r\n" + headers + b"\r\n").startswith(
        b"HTTP/1.1 431 "
    )
    # Not deliveries: Tracebuzz's URL test, the health check, the scrape itself.
    assert request(server.port, "GET", "/").status == 200
    assert request(server.port, "HEAD", "/anything").status == 200
    assert request(server.port, "GET", "/healthz").json == {"status": "ok"}
    started = time.time()
    # The writer's checkpoints copy the log into the file a moment after each commit, and
    # the file grows as they do: its size is compared once every frame is in it.
    wait_for(lambda: all_copied(db_path))

    samples = scrape(server)
    expected = {
        "stored": 3,
        "duplicate": 3,
        "quarantined": 1,
        "unauthorized": 2,
        "too_large": 1,
        "protocol_error": 3,
        "unavailable": 0,
        "other": 0,
    }
    for outcome, n in expected.items():
        assert value(samples, "tbhook_deliveries_total", outcome=outcome) == n, outcome
    for status, n in {"400": 1, "405": 1, "408": 0, "431": 1}.items():
        assert value(samples, "tbhook_protocol_errors_total", status=status) == n, status
    for reason in ("store", "memory", "connections", "shutdown"):
        assert value(samples, "tbhook_unavailable_total", reason=reason) == 0
    # Every committed delivery was in exactly one batch; the health check is not a batch.
    assert value(samples, "tbhook_commit_batch_size_sum") == 7
    batches = value(samples, "tbhook_commit_batch_size_count")
    assert 1 <= batches <= 7
    assert value(samples, "tbhook_commit_seconds_count") == batches
    assert 0 < value(samples, "tbhook_commit_seconds_sum") < 30
    assert started - 60 < value(samples, "tbhook_last_event_stored_timestamp_seconds") <= started
    assert value(samples, "tbhook_store_writable") == 1
    assert value(samples, "tbhook_store_reachable") == 1
    assert value(samples, "tbhook_database_bytes") == os.path.getsize(db_path)
    assert value(samples, "tbhook_wal_bytes") > 0
    assert value(samples, "tbhook_forwards_pending") == 0
    assert value(samples, "tbhook_info", backend="sqlite", version=_version()) == 1
    # The standard process metrics come along.
    assert value(samples, "process_resident_memory_bytes") > 10 * 2**20
    assert value(samples, "process_open_fds") > 0
    assert any(name == "python_info" for name, _ in samples)
    conn = sqlite3.connect(db_path)
    assert conn.execute("SELECT count(*) FROM events").fetchone()[0] == 3
    assert conn.execute("SELECT count(*) FROM quarantine").fetchone()[0] == 1
    conn.close()


def test_what_a_sender_controls_never_becomes_a_label(serve):
    server = serve("--metrics", "--quiet")
    before = tbhook_series(scrape(server))
    for i in range(60):
        path = f"/hook-{i}/\x1b[31m"
        body = json.dumps({"event": f"madeUp{i}", "caseId": i, "timestamp": "x"}).encode()
        assert server.post(body, path=path.replace("\x1b", "%1b")).status == 200
        assert server.post(b"{broken %d" % i, path=f"/q{i}").status == 200
    samples = scrape(server)
    assert tbhook_series(samples) == before  # no new series, however many paths and names
    assert value(samples, "tbhook_deliveries_total", outcome="stored") == 60
    assert value(samples, "tbhook_deliveries_total", outcome="quarantined") == 60
    text = request(server.port, "GET", "/metrics").body.decode()
    assert "hook-" not in text and "madeUp" not in text


def test_forward_queue_metrics(serve, sink):
    app_ = sink(fail=2)
    server = serve("--metrics", "--forward-to", app_.url, "--retry-scale", "0.0001", "-q")
    server.post(sample_bytes("case-closed"))
    server.post(sample_bytes("profile-merged"))

    def settled():
        samples = scrape(server)
        return value(samples, "tbhook_forwards_pending") == 0 and samples

    samples = wait_for(settled, 20)
    assert value(samples, "tbhook_forward_attempts_total", outcome="delivered") == 2
    assert value(samples, "tbhook_forward_attempts_total", outcome="retrying") == 2
    assert value(samples, "tbhook_forward_attempts_total", outcome="failed") == 0


def test_without_metrics_the_path_is_tracebuzz_url_test(server):
    response = request(server.port, "GET", "/metrics")
    assert (response.status, response.json) == (200, {"status": "ok"})


# -- /healthz --------------------------------------------------------------------------------


def test_healthz_under_a_full_database_says_why_and_recovers(db_path):
    filler, cap = fill_to_the_cap(db_path)
    server = start_serve(db_path, "--quiet", "--metrics", "--max-db-size", str(cap))
    try:
        assert request(server.port, "GET", "/healthz").status == 200
        for i in range(400):  # until the cap refuses a delivery
            if server.post(event_body(caseId=i, uniqueId=i)).status == 503:
                break
        refused = server.post(event_body(caseId=99_999)).json["error"]
        response = healthz_until(server, 503)  # once the cached answer (1 s) has expired
        assert response.status == 503 and response.headers["retry-after"]
        assert response.json == {"status": "unavailable", "reason": refused}
        assert "size cap" in refused
        head = request(server.port, "HEAD", "/healthz")
        assert (head.status, head.body) == (503, b"")
        samples = scrape(server)
        assert value(samples, "tbhook_store_writable") == 0
        assert value(samples, "tbhook_unavailable_total", reason="store") >= 2
        # doctor: the same reason, in the same words
        doctor = run("doctor", "--db", str(db_path), "--format", "json")
        assert doctor.exit_code == 1
        [check] = [c for c in json.loads(doctor.stdout)["checks"] if c["check"] == "commit"]
        assert (check["status"], check["message"]) == ("fail", refused)
        events = sqlite3.connect(db_path).execute("SELECT count(*) FROM events").fetchone()[0]
        filler.execute("DELETE FROM filler")  # space is freed
        filler.commit()
        healthz_until(server, 200)
        assert value(scrape(server), "tbhook_store_writable") == 1
        # The checks stored nothing: no event, no delivery.
        after = sqlite3.connect(db_path).execute("SELECT count(*) FROM events").fetchone()[0]
        assert after == events
    finally:
        filler.close()
        assert server.stop() == 0


def test_healthz_under_a_read_only_database(db_path):
    server = start_serve(db_path, "--quiet")
    try:
        assert server.post(event_body(caseId=1)).status == 200
        assert request(server.port, "GET", "/healthz").status == 200
        with immutable(str(db_path), f"{db_path}-wal"):
            delivery = server.post(event_body(caseId=2))
            assert delivery.status == 503
            response = healthz_until(server, 503)
            # What a delivery is told, in the same words (the open file cannot be written).
            assert response.json == {"status": "unavailable", "reason": delivery.json["error"]}
            # A new connection, as doctor opens, cannot even open the file for writing.
            doctor = run("doctor", "--db", str(db_path), "--format", "json")
            [check] = [c for c in json.loads(doctor.stdout)["checks"] if c["check"] == "commit"]
            assert check["status"] == "fail" and "readonly" in check["message"]
        healthz_until(server, 200)
    finally:
        assert server.stop() == 0


def test_healthz_is_not_a_delivery_however_often_it_is_asked(server, db_path):
    for _ in range(50):
        assert request(server.port, "GET", "/healthz").json == {"status": "ok"}
    conn = sqlite3.connect(db_path)
    assert conn.execute("SELECT count(*) FROM events").fetchone()[0] == 0
    assert conn.execute("SELECT count(*) FROM quarantine").fetchone()[0] == 0
    checked = conn.execute("SELECT value FROM tbhook_meta WHERE key = 'lastCommitCheck'")
    assert checked.fetchone() is not None
    conn.close()


def test_doctor_says_a_commit_works(db_path, server):
    server.post(event_body())
    doctor = run("doctor", "--db", str(db_path), "--format", "json")
    [check] = [c for c in json.loads(doctor.stdout)["checks"] if c["check"] == "commit"]
    assert check == {
        "check": "commit",
        "status": "ok",
        "message": "a test commit succeeded: deliveries can be stored",
    }


# -- --log-format json -------------------------------------------------------------------------


def test_json_log_has_the_facts_of_the_human_line(serve):
    server = serve("--log-format", "json", *AUTH)
    server.post(event_body(caseId=7, personId=8), path="/hook/%1b[2J", headers=SECRET)
    server.post(event_body(caseId=7, personId=8), path="/hook/%1b[2J", headers=SECRET)
    server.post(b"{broken\x1b[31m", headers=SECRET)
    server.post(event_body(caseId=9))  # no secret: a warning
    raw(server.port, b"NOT HTTP\x1b[2J\r\n\r\n")  # uvicorn's own warning
    wait_for(lambda: len(server.lines) >= 6, 10)
    assert server.stop() == 0
    lines = server.lines
    assert all("\x1b" not in line for line in lines)  # escaped, every one
    records = [json.loads(line) for line in lines]  # every line is one JSON object
    banner, first, second, quarantined, refused, invalid, stopped = records
    assert (invalid["level"], invalid["kind"]) == ("warning", "uvicorn")
    assert invalid["message"] == "Invalid HTTP request received."
    assert banner["message"].startswith("tbhook ") and banner["url"].startswith("http://127.0.0.1:")
    assert first["level"] == "info" and first["time"].endswith("Z")
    assert {k: first[k] for k in ("outcome", "id", "event", "caseId", "personId", "path")} == {
        "outcome": "stored",
        "id": 1,
        "event": "newResult",
        "caseId": 7,
        "personId": 8,
        "path": "/hook/\x1b[2J",
    }
    assert (second["outcome"], second["id"], second["deliveries"]) == ("duplicate", 1, 2)
    assert "[retry: delivery 2 of #1]" in second["message"]
    assert quarantined["outcome"] == "quarantined" and quarantined["quarantineId"] == 1
    assert "not valid JSON" in quarantined["reason"]
    assert (refused["level"], refused["status"], refused["kind"]) == ("warning", 401, "401")
    assert "s3cret" not in "".join(lines)
    assert stopped["message"] == "tbhook stopped; every acknowledged event is stored."


def test_human_log_escapes_control_characters(serve):
    server = serve()
    server.post(event_body(caseId=7), path="/x%1b[2J%0aforged")
    wait_for(lambda: any("case 7" in line for line in server.lines), 10)
    server.stop()
    [line] = [line for line in server.lines if "case 7" in line]
    assert "\x1b" not in line and "forged" in line and line.count("\n") == 1


def _version() -> str:
    from tbhook import __version__

    return __version__


@pytest.fixture
def small_disk(tmp_path):
    """A real 4 MiB filesystem (tmpfs), or a skip where mounting is not allowed."""
    where = tmp_path / "small"
    where.mkdir()
    made = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=4m", "tmpfs", str(where)], capture_output=True
    )
    if made.returncode != 0:
        fault_not_run(f"a full disk (a 4 MiB tmpfs): {made.stderr.decode().strip()}")
    try:
        yield where
    finally:
        subprocess.run(["umount", "-l", str(where)], check=False)


def test_healthz_on_a_full_disk_says_why_and_recovers(small_disk):
    db = small_disk / "tbhook.db"
    server = start_serve(db, "--quiet")
    try:
        assert request(server.port, "GET", "/healthz").status == 200
        filler = small_disk / "filler"
        with open(filler, "wb") as out:  # take what the database has not
            try:
                while True:
                    out.write(b"\0" * 65536)
                    out.flush()
            except OSError:
                pass
        refused = None
        for i in range(2000):  # until a commit needs a page the disk does not have
            response = server.post(event_body(caseId=i, uniqueId=i))
            if response.status == 503:
                refused = response.json["error"]
                break
        assert refused and "full" in refused
        response = healthz_until(server, 503)
        assert response.json == {"status": "unavailable", "reason": refused}
        doctor = run("doctor", "--db", str(db), "--format", "json")
        [check] = [c for c in json.loads(doctor.stdout)["checks"] if c["check"] == "commit"]
        assert (doctor.exit_code, check["status"], check["message"]) == (1, "fail", refused)
        filler.unlink()  # space again
        assert healthz_until(server, 200).json == {"status": "ok"}
        assert server.post(event_body(caseId=99_999)).status == 200
    finally:
        assert server.stop() == 0


def test_503s_held_back_from_the_log_are_accounted_for_at_shutdown(db_path):
    filler, cap = fill_to_the_cap(db_path)
    server = start_serve(db_path, "--quiet", "--max-db-size", str(cap))
    try:
        refused = 0
        for i in range(400):
            if server.post(event_body(caseId=i, uniqueId=i)).status == 503:
                refused += 1
                if refused == 12:
                    break
        assert refused == 12
    finally:
        filler.close()
        assert server.stop() == 0
    lines = [line for line in server.lines if "NOT STORED" in line or "held back" in line]
    assert "NOT STORED" in lines[0]
    assert lines[1].endswith("(the last of 11 lines like it held back before shutdown)\n")


def test_one_commit_check_answers_every_healthz_for_a_second(db_path):
    """The cache of /healthz's answer, on a clock the test moves: one real commit check a
    second, however many requests."""
    import asyncio

    from tbhook.receiver.app import HEALTH_CACHE_SECONDS, Receiver
    from tbhook.receiver.metrics import Counts
    from tbhook.receiver.writer import BatchWriter

    class Tally(Counts):
        checks = 0

        def checked(self, failure):
            Tally.checks += 1

    now = [1000.0]
    writer = BatchWriter.for_target(str(db_path))
    writer.start()

    async def asked() -> list[int]:
        receiver = Receiver(writer, counts=Tally(), clock=lambda: now[0])
        seen = []
        for step in (0.0, 0.0, HEALTH_CACHE_SECONDS * 0.9, HEALTH_CACHE_SECONDS * 0.2, 0.0):
            now[0] += step
            assert await receiver.health() is None
            seen.append(Tally.checks)
        writer.detach()
        return seen

    try:
        assert asyncio.run(asked()) == [1, 1, 1, 2, 2]
        stamp = sqlite3.connect(db_path).execute(
            "SELECT value FROM tbhook_meta WHERE key = 'lastCommitCheck'"
        )
        assert stamp.fetchone()[0].endswith("Z")  # a real commit, by the writer process
    finally:
        writer.close()

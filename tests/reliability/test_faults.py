"""3: a full disk and a read-only database get 503, never 200; once cleared, the same bodies
are accepted, and the server stayed up throughout."""

import sqlite3

from conftest import event_body, fill_to_the_cap, immutable, start_serve


def count(db) -> int:
    conn = sqlite3.connect(db)
    try:
        return conn.execute("SELECT count(*) FROM events").fetchone()[0]
    finally:
        conn.close()


def test_full_disk_gets_503_until_space_is_freed(db_path):
    filler, cap = fill_to_the_cap(db_path)
    server = start_serve(db_path, "--quiet", "--max-db-size", str(cap))
    try:
        statuses = []
        for i in range(400):  # fill the few free pages left, then hit the cap
            statuses.append(server.post(event_body(caseId=i, uniqueId=i)).status)
            if statuses[-1] != 200:
                break
        assert statuses[-1] == 503, "the cap was never reached"
        stored_before = count(db_path)
        rejected = [event_body(caseId=10_000 + i) for i in range(20)]
        responses = [server.post(body) for body in rejected]
        assert {r.status for r in responses} == {503}  # every request, none 200
        assert all("size cap" in r.json["error"] and r.headers["retry-after"] for r in responses)
        assert count(db_path) == stored_before
        filler.execute("DELETE FROM filler")  # the fault is cleared: space is free again
        filler.commit()
        assert server.proc.poll() is None  # the server stayed up
        assert {server.post(body).status for body in rejected} == {200}
        assert count(db_path) == stored_before + 20
    finally:
        filler.close()
        assert server.stop() == 0


def test_read_only_database_gets_503_until_writable(db_path):
    server = start_serve(db_path, "--quiet")
    try:
        assert server.post(event_body(caseId=1)).status == 200
        with immutable(str(db_path), f"{db_path}-wal"):
            rejected = [event_body(caseId=100 + i) for i in range(10)]
            responses = [server.post(body) for body in rejected]
            assert {r.status for r in responses} == {503}
            assert server.proc.poll() is None
        assert {server.post(body).status for body in rejected} == {200}
        assert count(db_path) == 11
    finally:
        assert server.stop() == 0
    conn = sqlite3.connect(db_path)
    assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"

"""Migrations are frozen history: a database at every past schema version upgrades to exactly
the schema of a fresh one, on both backends.

tests/schemas/ keeps, for SQLite, the schema after each step as the tbhook of that time created
it (the first six dumped from that tbhook itself). Nothing here is derived from the live
migration code, so a step edited after the fact shows up as a difference.
"""

import json
import sqlite3
from pathlib import Path

import pytest
from oldlogs import at_m013

from tbhook.model.events import parse
from tbhook.store import Delivery, open_reader, open_store
from tbhook.store.postgres.migrations import STEPS
from tbhook.store.sqlite.migrations import migrations

SCHEMAS = sorted((Path(__file__).parent / "schemas").glob("sqlite_*.sql"))


def sqlite_schema(path) -> dict:
    """Everything that makes a schema: each table's columns (name, type, not null, default,
    key), each index's table, columns, uniqueness and condition, each trigger's table and
    text, each view's columns."""
    conn = sqlite3.connect(path)
    try:
        shape: dict = {}
        for kind, name, table, sql in conn.execute(
            "SELECT type, name, tbl_name, sql FROM sqlite_master WHERE name NOT LIKE 'sqlite_%'"
        ):
            if kind == "table":
                shape[name] = [
                    tuple(row[1:]) for row in conn.execute(f'PRAGMA table_info("{name}")')
                ]
            elif kind == "index":
                where = sql.split(" WHERE ", 1)[1] if sql and " WHERE " in sql else None
                columns = [row[2] for row in conn.execute(f'PRAGMA index_info("{name}")')]
                unique = conn.execute(
                    'SELECT "unique" FROM pragma_index_list(?) WHERE name = ?', [table, name]
                ).fetchone()[0]
                shape[f"index {name}"] = (table, columns, unique, where)
            elif kind == "trigger":
                shape[f"trigger {name}"] = (table, " ".join(sql.split()))
            elif kind == "view":
                shape[f"view {name}"] = [
                    row[1] for row in conn.execute(f'PRAGMA table_info("{name}")')
                ]
        return shape
    finally:
        conn.close()


def test_readers_know_every_step_by_name():
    """Readers check the schema from a list of names (without importing sqlite-utils)."""
    from tbhook.store.sqlite.steps import READERS_DO_NOT_NEED, STEP_NAMES

    assert list(STEP_NAMES) == [m.name for m in migrations._migrations]
    assert set(STEP_NAMES) >= READERS_DO_NOT_NEED


def test_a_read_command_does_not_import_sqlite_utils(tmp_path):
    import subprocess
    import sys

    open_store(tmp_path / "r.db").close()
    code = (
        "import sys; from tbhook.cli import app; "
        f"app(['events', '--db', {str(tmp_path / 'r.db')!r}], standalone_mode=False); "
        "print('sqlite_utils' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip().endswith("False")


def test_every_step_has_a_frozen_schema():
    assert [p.stem.split("_", 2)[2] for p in SCHEMAS] == [m.name for m in migrations._migrations]


@pytest.mark.parametrize("schema", SCHEMAS, ids=[p.stem for p in SCHEMAS])
def test_sqlite_upgrades_from_every_past_version_to_a_fresh_schema(tmp_path, schema):
    fresh, old = tmp_path / "fresh.db", tmp_path / "old.db"
    open_store(fresh).close()
    conn = sqlite3.connect(old)
    conn.executescript(schema.read_text())
    body = b'{"event": "caseClosed", "caseId": 1}'  # a row written at that version, too
    conn.commit()
    conn.close()
    store = open_store(old)  # migrates
    store.append([Delivery(body, parse(body))])
    store.close()
    assert sqlite_schema(old) == sqlite_schema(fresh)
    reader = open_reader(old)
    assert reader.reads.count("quarantine") == 1 and reader.reads.log_id()
    reader.close()


def pg_schema(url) -> dict:
    import psycopg

    with psycopg.connect(url) as conn:
        columns = conn.execute(
            "SELECT table_name, column_name, data_type, is_nullable, column_default "
            "FROM information_schema.columns WHERE table_schema = 'public' "
            "ORDER BY table_name, ordinal_position"
        ).fetchall()
        indexes = conn.execute(
            "SELECT indexname, indexdef FROM pg_indexes WHERE schemaname = 'public' ORDER BY 1"
        ).fetchall()
        views = conn.execute(
            "SELECT table_name FROM information_schema.views WHERE table_schema = 'public' "
            "ORDER BY 1"
        ).fetchall()
    return {"columns": columns, "indexes": indexes, "views": views}


@pytest.mark.parametrize("done", range(len(STEPS)), ids=[name for name, _ in STEPS])
def test_postgresql_upgrades_from_every_past_version_to_a_fresh_schema(pg_cluster, done):
    import psycopg

    fresh, old = pg_cluster.new_database(), pg_cluster.new_database()
    open_store(fresh).close()
    with psycopg.connect(old, autocommit=True) as conn:  # the schema as it was after `done`
        conn.execute(
            'CREATE TABLE tbhook_migrations (name TEXT PRIMARY KEY, "appliedAt" TEXT NOT NULL)'
        )
        for name, statements in STEPS[: done + 1]:
            for statement in statements:
                conn.execute(statement)
            conn.execute("INSERT INTO tbhook_migrations VALUES (%s, 'then')", [name])
    open_store(old).close()
    assert pg_schema(old) == pg_schema(fresh)


def test_postgresql_migrates_once_when_receivers_start_together(pg_cluster):
    from concurrent.futures import ThreadPoolExecutor

    import psycopg

    url = pg_cluster.new_database()
    with ThreadPoolExecutor(6) as pool:
        stores = list(pool.map(lambda _: open_store(url), range(6)))
    for store in stores:
        store.close()
    with psycopg.connect(url) as conn:
        applied = conn.execute("SELECT name FROM tbhook_migrations ORDER BY name").fetchall()
        log_ids = conn.execute("SELECT count(*) FROM tbhook_meta WHERE key = 'logId'").fetchone()
    assert [name for (name,) in applied] == [name for name, _ in STEPS]
    assert log_ids == (1,)


def test_sqlite_migrates_once_when_receivers_start_together(tmp_path):
    from concurrent.futures import ThreadPoolExecutor

    db = tmp_path / "together.db"
    with ThreadPoolExecutor(6) as pool:
        stores = list(pool.map(lambda _: open_store(db), range(6)))
    for store in stores:
        store.close()
    conn = sqlite3.connect(db)
    names = [n for (n,) in conn.execute("SELECT name FROM _sqlite_migrations ORDER BY id")]
    assert names == [m.name for m in migrations._migrations]
    assert conn.execute("SELECT count(*) FROM tbhook_meta WHERE key = 'logId'").fetchone() == (1,)


def test_a_receiver_whose_file_is_migrated_between_its_looks_opens_it(tmp_path, monkeypatch):
    """Receivers starting together: one looks at the new file while another migrates it.
    What it saw first, it sees again (found once under load: it saw no steps, then the
    other's tables, and called the file someone else's)."""
    from tbhook.store.sqlite import SQLiteStore

    db = tmp_path / "together.db"
    real = SQLiteStore._tables
    others = []

    def another_starts_first(self):
        if not others:  # the other receiver migrates the file now
            others.append(None)
            others[0] = SQLiteStore.open(db)
        return real(self)

    monkeypatch.setattr(SQLiteStore, "_tables", another_starts_first)
    open_store(db).close()
    others[0].close()
    conn = sqlite3.connect(db)
    names = [n for (n,) in conn.execute("SELECT name FROM _sqlite_migrations ORDER BY id")]
    assert names == [m.name for m in migrations._migrations]


def test_frozen_schemas_are_what_json_would_not_change(tmp_path):
    """The dumps are data: loading one twice gives the same schema (a sanity check)."""
    first, second = tmp_path / "a.db", tmp_path / "b.db"
    for db in (first, second):
        conn = sqlite3.connect(db)
        conn.executescript(SCHEMAS[0].read_text())
        conn.close()
    assert json.dumps(sqlite_schema(first), default=str) == json.dumps(
        sqlite_schema(second), default=str
    )


def test_m014_keeps_every_row_id_and_sequence_and_dedupes_as_before(tmp_path):
    """The events table rebuilt for a dedupe key in time order: the same rows and ids, ids
    still never reused, the same body still one row (a body without a timestamp too), and
    the trigger and views as they were."""
    old = tmp_path / "old.db"
    conn = sqlite3.connect(old)
    conn.executescript(
        (Path(__file__).parent / "schemas" / "sqlite_013_m013_event_time_index.sql").read_text()
    )
    conn.commit()
    conn.close()
    closed = json.loads(
        (Path(__file__).parent.parent / "samples" / "case-closed.json").read_bytes()
    )
    bodies = [
        json.dumps({**closed, "caseId": 1}).encode(),
        b'{"event": "madeUp", "caseId": 2}',  # no timestamp: NULL in its column
        json.dumps({**closed, "caseId": 3}).encode(),
    ]
    # Stored before the upgrade (rows as the current code makes them, copied into the m013
    # table), then the newest deleted: the sequence stays above max(id).
    source = open_store(tmp_path / "rows.db")
    stored = source.append([Delivery(b, parse(b)) for b in bodies])
    source.close()
    assert [(s.id, s.quarantined) for s in stored] == [(1, False), (2, False), (3, False)]
    conn = sqlite3.connect(old)
    conn.execute(f"ATTACH {str(tmp_path / 'rows.db')!r} AS rows")
    conn.execute("INSERT INTO events SELECT * FROM rows.events ORDER BY id")
    conn.commit()
    conn.execute("DETACH rows")
    conn.execute("DELETE FROM events WHERE id = 3")
    conn.commit()
    before = conn.execute("SELECT * FROM events ORDER BY id").fetchall()
    conn.close()

    store = open_store(old)  # migrates: m014
    conn = sqlite3.connect(old)
    assert conn.execute("SELECT * FROM events ORDER BY id").fetchall() == before
    assert conn.execute("SELECT seq FROM sqlite_sequence WHERE name = 'events'").fetchone() == (3,)
    # The same bodies again: duplicates of the stored rows, the body with no timestamp too.
    again = store.append([Delivery(b, parse(b)) for b in bodies[:2]])
    assert [(s.id, s.duplicate, s.deliveries) for s in again] == [(1, True, 2), (2, True, 2)]
    [new] = store.append([Delivery(bodies[2], parse(bodies[2]))])
    assert new.id > 3 and not new.duplicate  # never 3 again
    store.close()
    assert conn.execute("SELECT count(*) FROM events").fetchone() == (3,)
    assert conn.execute("SELECT count(*) FROM case_closures").fetchone() == (2,)
    counted = conn.execute("SELECT sum(n) FROM event_counts").fetchone()[0]
    conn.execute("DELETE FROM events WHERE id = ?", [new.id])  # the trigger is back
    conn.commit()
    assert conn.execute("SELECT sum(n) FROM event_counts").fetchone()[0] == counted - 1
    # The hash alone is no longer unique on events: the (timestamp, hash) index is.
    unique = {
        name for _, name, is_unique, *_ in conn.execute("PRAGMA index_list(events)") if is_unique
    }
    assert unique == {"events_dedupe"}
    conn.close()


def test_m014_refuses_in_words_when_the_disk_cannot_hold_the_rebuild(tmp_path, monkeypatch):
    """A disk without room for the copy: a plain error before anything changes, not "database
    or disk is full" half way."""
    import os

    from tbhook.errors import StoreUnavailable
    from tbhook.store.sqlite import migrations as sqlite_migrations

    old = tmp_path / "old.db"
    conn = sqlite3.connect(old)
    conn.executescript(
        (Path(__file__).parent / "schemas" / "sqlite_013_m013_event_time_index.sql").read_text()
    )
    conn.execute("CREATE TABLE filler (data BLOB)")
    conn.executemany("INSERT INTO filler VALUES (randomblob(1000000))", [()] * 70)  # 70 MB
    conn.commit()
    conn.close()
    real = os.statvfs(tmp_path)

    class Full:
        f_bavail, f_frsize = 10, real.f_frsize

    monkeypatch.setattr(sqlite_migrations.os, "statvfs", lambda path: Full)
    with pytest.raises(StoreUnavailable, match=r"m014 rebuilds the events table once.*free"):
        open_store(old)
    conn = sqlite3.connect(old)
    applied = [n for (n,) in conn.execute("SELECT name FROM _sqlite_migrations")]
    assert applied[-1] == "m013_event_time_index"  # nothing changed
    conn.close()


def test_a_rebuild_that_takes_a_while_is_announced(tmp_path):
    """200k events or more waiting for m014: the command says what it is doing first."""
    import subprocess
    import sys

    old = at_m013(tmp_path / "old.db", 200_000)
    line = tmp_path / "one.ndjson"
    line.write_bytes((Path(__file__).parent.parent / "samples" / "case-closed.json").read_bytes())
    result = subprocess.run(
        [sys.executable, "-m", "tbhook", "import", str(line), "--db", str(old)],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stderr
    assert result.stderr.startswith(
        f"Upgrading {old}: rebuilding the events table for a faster dedupe key, once "
        "(200,000 events: up to a minute)."
    )
    assert "1 inserted" in result.stdout
    conn = sqlite3.connect(old)
    assert conn.execute("SELECT count(*) FROM events").fetchone() == (200_001,)
    conn.close()

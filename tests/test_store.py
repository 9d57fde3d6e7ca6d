"""The store against a real SQLite file: schema, settings, dedupe, quarantine."""

import os
import sqlite3
import stat

import pytest
from conftest import SAMPLE_NAMES, event_body, sample_bytes

from tbhook.errors import NoDatabase, NotReady, StoreUnavailable
from tbhook.model.events import parse
from tbhook.store import Delivery
from tbhook.store.sqlite import SQLiteStore
from tbhook.store.sqlite.migrations import migrations

EXPECTED_EVENT_COLUMNS = [
    "id",
    "receivedAt",
    "lastReceivedAt",
    "deliveries",
    "path",
    "event",
    "timestamp",
    "searchId",
    "uniqueId",
    "resultId",
    "personId",
    "caseId",
    "handlerId",
    "sourceId",
    "connectionId",
    "typeId",
    "own",
    "externalCaseId",
    "reasonId",
    "externalPersonId",
    "agentId",
    "oldPersonId",
    "newPersonId",
    "body",
    "bodySha256",
]


def deliver(store, body: bytes, path: str = "/"):
    return store.append([Delivery(body, parse(body), path=path)])[0]


def test_blank_database_migrates_to_the_expected_schema(db_path):
    SQLiteStore.open(db_path).close()
    conn = sqlite3.connect(db_path)
    columns = [row[1] for row in conn.execute("PRAGMA table_info(events)")]
    assert columns == EXPECTED_EVENT_COLUMNS
    quarantine = [row[1] for row in conn.execute("PRAGMA table_info(quarantine)")]
    assert quarantine == [
        "id",
        "receivedAt",
        "lastReceivedAt",
        "deliveries",
        "path",
        "reason",
        "body",
        "bodySha256",
        "line",
    ]
    views = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='view'")}
    assert views == {"messages", "case_closures", "person_merges"}
    indexed = {
        r[0] for r in conn.execute("SELECT sql FROM sqlite_master WHERE type='index'") if r[0]
    }
    assert {
        'CREATE INDEX events_caseId ON events ("caseId")',
        'CREATE INDEX events_personId ON events ("personId")',
        'CREATE INDEX events_event_time ON events ("event", timestamp)',
        'CREATE UNIQUE INDEX events_dedupe ON events (coalesce(timestamp, 0), "bodySha256")',
    } <= indexed
    applied = [m.name for m in migrations.applied(__import__("sqlite_utils").Database(conn))]
    assert applied == [
        "m001_events_and_quarantine",
        "m002_views",
        "m003_merge_indexes",
        "m004_quarantine_line",
        "m005_forwards",
        "m006_timestamp_index",
        "m007_unknown_labels",
        "m008_meta",
        "m009_merged_logs",
        "m010_views_in_range",
        "m011_redelivery_indexes",
        "m012_event_counts",
        "m013_event_time_index",
        "m014_dedupe_in_time_order",
        "m015_case_timelines",
        "m016_queue_and_tallies",
    ]


def test_reopening_applies_nothing_twice(db_path):
    SQLiteStore.open(db_path).close()
    SQLiteStore.open(db_path).close()
    conn = sqlite3.connect(db_path)
    assert conn.execute("SELECT count(*) FROM _sqlite_migrations").fetchone()[0] == 16


def test_durability_settings(store, db_path):
    conn = store.db.conn
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert conn.execute("PRAGMA synchronous").fetchone()[0] == 2  # FULL
    assert conn.execute("PRAGMA busy_timeout").fetchone()[0] > 0
    assert conn.execute("PRAGMA journal_size_limit").fetchone()[0] == 64 * 1024 * 1024


def test_database_file_is_private(store, db_path):
    assert stat.S_IMODE(os.stat(db_path).st_mode) == 0o600


@pytest.mark.parametrize("name", SAMPLE_NAMES)
def test_sample_is_stored_byte_for_byte(store, name):
    stored = deliver(store, sample_bytes(name), path="/hooks/a")
    assert (stored.quarantined, stored.duplicate) == (False, False)
    row = next(store.reads.rows())
    assert row["body"] == sample_bytes(name)
    assert row["path"] == "/hooks/a"
    assert row["deliveries"] == 1
    assert row["receivedAt"].endswith("Z") and row["receivedAt"] == row["lastReceivedAt"]
    assert row["bodySha256"] == __import__("hashlib").sha256(sample_bytes(name)).digest()


def test_false_external_person_id_is_null_but_raw_body_keeps_it(store):
    deliver(store, sample_bytes("case-closed"))
    row = next(store.reads.rows())
    assert row["externalPersonId"] is None
    assert b'"externalPersonId": false' in row["body"]
    assert row["reasonId"] == 111111 and row["externalCaseId"] is None


def test_same_body_twice_is_one_row_with_two_deliveries(store):
    first = deliver(store, sample_bytes("case-closed"))
    again = deliver(store, sample_bytes("case-closed"))
    assert again.id == first.id and again.duplicate and again.deliveries == 2
    assert store.reads.count() == 1
    assert next(store.reads.rows())["deliveries"] == 2


def test_duplicates_within_one_batch(store):
    body = sample_bytes("new-incoming-message")
    results = store.append([Delivery(body, parse(body)) for _ in range(32)])
    assert [r.deliveries for r in results] == list(range(1, 33))
    assert store.reads.count() == 1 and next(store.reads.rows())["deliveries"] == 32


def test_same_event_and_timestamp_with_different_bodies_are_two_rows(store):
    deliver(store, sample_bytes("new-incoming-message"))
    deliver(store, sample_bytes("include-own-message"))
    assert store.reads.count() == 2


def test_unreadable_bodies_go_to_quarantine_with_reason_and_path(store):
    stored = deliver(store, b"{oops", path="/tb")
    assert stored.quarantined
    row = next(store.reads.rows("quarantine"))
    assert row["body"] == b"{oops" and row["path"] == "/tb"
    assert row["reason"].startswith("not valid JSON")
    assert store.reads.count() == 0
    assert deliver(store, b"{oops").deliveries == 2


def test_read_only_open_never_creates_a_database(tmp_path):
    missing = tmp_path / "nope.db"
    with pytest.raises(NoDatabase, match="no database at .*nope.db"):
        SQLiteStore.open_readonly(missing)
    assert not missing.exists()


def test_read_only_store_cannot_write(store, db_path):
    deliver(store, sample_bytes("case-closed"))
    reader = SQLiteStore.open_readonly(db_path)
    assert reader.reads.count() == 1
    with pytest.raises(StoreUnavailable, match="readonly"):
        deliver(reader, sample_bytes("profile-merged"))


def test_open_for_writing_fails_clearly_in_a_missing_directory(tmp_path):
    with pytest.raises(
        StoreUnavailable, match="cannot open .*missing/x.db for writing: No such file"
    ):
        SQLiteStore.open(tmp_path / "missing" / "x.db")


def test_locked_database_fails_the_batch_and_the_store_recovers(store, db_path):
    holder = sqlite3.connect(db_path, isolation_level=None)
    holder.execute("PRAGMA busy_timeout = 0")
    store.db.conn.execute("PRAGMA busy_timeout = 50")
    holder.execute("BEGIN IMMEDIATE")
    with pytest.raises(StoreUnavailable, match="locked"):
        deliver(store, sample_bytes("case-closed"))
    holder.execute("ROLLBACK")
    assert not deliver(store, sample_bytes("case-closed")).duplicate
    assert store.reads.count() == 1


def test_views_label_type_and_sender(store, db_path):
    deliver(store, sample_bytes("new-incoming-message"))
    deliver(store, sample_bytes("include-own-message"))
    deliver(store, sample_bytes("case-closed"))
    deliver(store, sample_bytes("profile-merged"))
    conn = sqlite3.connect(db_path)
    rows = conn.execute("SELECT type, sender, time FROM messages ORDER BY id").fetchall()
    assert rows == [
        ("private message", "customer", "2022-09-22T07:30:26Z"),
        ("private message", "agent", "2022-09-22T07:30:26Z"),
    ]
    assert conn.execute("SELECT caseId FROM case_closures").fetchall() == [(11111111,)]
    assert conn.execute("SELECT oldPersonId, newPersonId FROM person_merges").fetchall() == [(1, 1)]


def test_read_only_open_refuses_a_file_that_is_not_tbhook(tmp_path):
    other = tmp_path / "other.db"
    sqlite3.connect(other).execute("CREATE TABLE x (y)").connection.commit()
    with pytest.raises(NotReady, match="other.db is not a tbhook database"):
        SQLiteStore.open_readonly(other)


def test_read_only_open_asks_to_upgrade_an_older_database(db_path):
    from sqlite_utils import Database

    older = Database(db_path)
    migrations.apply(older, stop_before="m005_forwards")
    older.close()
    with pytest.raises(NotReady, match="written by an older tbhook; run `tbhook serve --db"):
        SQLiteStore.open_readonly(db_path)
    SQLiteStore.open(db_path).close()  # opening for writing migrates it
    SQLiteStore.open_readonly(db_path).close()


def test_a_database_only_missing_a_speed_up_index_is_still_readable(db_path):
    from sqlite_utils import Database

    older = Database(db_path)
    migrations.apply(older, stop_before="m006_timestamp_index")
    older.close()
    reader = SQLiteStore.open_readonly(db_path)
    assert reader.reads.count() == 0
    reader.close()


# -- the store's errors are tbhook's --------------------------------------------------------


def _damaged_pages(db) -> None:
    """Garbage over the pages of the events table and its indexes: the schema and the
    migrations table read, the events do not."""
    conn = sqlite3.connect(db)
    pages = [
        row[0]
        for row in conn.execute("SELECT rootpage FROM sqlite_master WHERE tbl_name = 'events'")
        if row[0]
    ]
    page_size = conn.execute("PRAGMA page_size").fetchone()[0]
    conn.close()
    with open(db, "r+b") as f:
        for page in pages:
            f.seek((page - 1) * page_size)
            f.write(b"\xff" * page_size)


def test_a_damaged_file_raises_only_tbhook_errors_from_every_read(db_path):
    from tbhook.errors import StoreUnavailable
    from tbhook.model.filters import Filters

    store = SQLiteStore.open(db_path)
    store.append([Delivery(event_body(caseId=i), parse(event_body(caseId=i))) for i in range(300)])
    store.close()
    sqlite3.connect(db_path).execute("PRAGMA wal_checkpoint(TRUNCATE)").connection.close()
    _damaged_pages(db_path)
    reader = SQLiteStore.open_readonly(db_path, current=False)
    try:
        for read in (
            lambda: list(reader.reads.events(Filters(case=5))),
            lambda: reader.reads.count(),
            lambda: list(reader.reads.case_events(Filters())),
            lambda: reader.reads.stats_counter(Filters(case=1)),
            lambda: list(reader.exports.batches(Filters())),
            lambda: reader.upkeep.health(300),
            lambda: reader.persons.group(11111),
        ):
            with pytest.raises(StoreUnavailable) as raised:
                read()
            assert not isinstance(raised.value, sqlite3.Error)
            assert str(db_path) in str(raised.value)
        assert reader.integrity() != ["ok"]  # the answer, not an exception
    finally:
        reader.close()


def _ids(db_path, table: str = "events") -> list[int]:
    with sqlite3.connect(db_path) as conn:
        return [row[0] for row in conn.execute(f"SELECT id FROM {table} ORDER BY id")]


def test_a_duplicate_uses_up_no_id_so_ids_have_no_gaps(store, db_path):
    """A body delivered again, alone, in a batch with new ones, or twice in one batch, adds
    a delivery and takes no id: the next event's id follows the last one's (a gap would look
    like a lost event). The quarantine's ids too."""
    a, b, c, d = (event_body(caseId=n, uniqueId=n) for n in (1, 2, 3, 4))
    assert deliver(store, a).id == 1
    assert deliver(store, a).duplicate
    mixed = store.append([Delivery(body, parse(body)) for body in (a, b, b, c, a)])
    assert [(s.id, s.deliveries) for s in mixed] == [(1, 3), (2, 1), (2, 2), (3, 1), (1, 4)]
    assert deliver(store, d).id == 4
    assert deliver(store, b"{x").id == 1 and deliver(store, b"{x").deliveries == 2
    assert deliver(store, b"{y").id == 2
    assert _ids(db_path) == [1, 2, 3, 4] and _ids(db_path, "quarantine") == [1, 2]
    rows = {row["id"]: row["deliveries"] for row in store.reads.rows()}
    assert rows == {1: 4, 2: 2, 3: 1, 4: 1}


def test_an_import_of_what_is_stored_uses_up_no_id(store, db_path, tmp_path):
    from tbhook.transfer.importer import import_stream

    bodies = [event_body(caseId=n, uniqueId=n) for n in (1, 2, 3)]
    deliver(store, bodies[1])
    lines = b"\n".join([*bodies, bodies[0], b"{bad"])
    first = import_stream(store, __import__("io").BytesIO(lines), "a")
    again = import_stream(store, __import__("io").BytesIO(lines + b"\n{worse"), "b")
    assert (first.inserted, first.duplicates, again.inserted) == (2, 2, 0)
    assert again.quarantined_lines == [6]
    assert deliver(store, event_body(caseId=9, uniqueId=9)).id == 4
    assert _ids(db_path) == [1, 2, 3, 4] and _ids(db_path, "quarantine") == [1, 2]

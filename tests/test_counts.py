"""The per-day counts `stats` reads (m012's triggers) always equal a scan of the events: after
receiving, import, retries, prune, merge and quarantine retry, for every filter they answer."""

import dataclasses
import json
import sqlite3
from collections import Counter

import pytest
from conftest import event_body

from tbhook.model.events import parse
from tbhook.model.filters import Filters
from tbhook.store import Delivery, open_store
from tbhook.store.reads import Reads
from tbhook.store.sqlite import SQLiteStore
from tbhook.transfer.generate import Generator

DAY = 86400
T0 = 1_704_067_200  # 2024-01-01T00:00:00Z


def scanned(store: SQLiteStore, filters: Filters) -> Counter:
    """The answer without the counts: every matching event read."""
    return Reads(store).stats_counter(filters)  # the shared reads, without SQLite's counts


FILTERS = [
    Filters(),
    Filters(events=("newResult",)),
    Filters(events=("caseClosed", "profileMerged")),
    Filters(sender=1),
    Filters(source=14),
    Filters(since=T0 + DAY),  # whole days
    Filters(since=T0 + DAY // 2),  # half a day, then whole days
    Filters(until=T0 + DAY + 3600),  # whole days, then an hour
    Filters(since=T0 + 100, until=T0 + 2 * DAY + 100, sender=0),  # edges at both ends
    Filters(since=T0 + 100, until=T0 + 200),  # inside one day: a scan
    Filters(case=5000003),  # not in the counts: a scan
]


def check(store: SQLiteStore) -> None:
    for filters in FILTERS:
        kept = store.reads.stats_counter(filters)
        assert +kept == scanned(store, filters), filters
        assert store.reads.count_matching(filters) == sum(scanned(store, filters).values()), filters


@pytest.fixture
def store(db_path):
    store = SQLiteStore.open(db_path)
    generated = Generator(seed=4, persons=30, start=T0, rate=0.01).lines(600)
    bodies = [line.encode() for line in generated]
    bodies += [json.dumps({"event": "noTime", "caseId": 1}).encode()]  # a NULL timestamp
    bodies += [event_body(timestamp=-(10**12)), event_body(timestamp=10**15)]  # far days
    for body in bodies:
        store.append([Delivery(body, parse(body))])
    for body in bodies[:50]:  # retries change no count
        store.append([Delivery(body, parse(body))])
    yield store
    store.close()


def test_counts_match_a_scan_after_receiving(store):
    assert store.reads.stats_is_cheap(Filters()) and not store.reads.stats_is_cheap(Filters(case=1))
    check(store)


def test_counts_follow_prune_merge_import_and_quarantine_retry(store, tmp_path):
    ids, _kept = store.upkeep.prune_plan(T0 + DAY)
    store.upkeep.delete_events(ids)
    check(store)

    other = tmp_path / "other.db"
    theirs = open_store(other)
    for line in Generator(seed=5, persons=30, start=T0, rate=0.01).lines(300):
        body = line.encode()
        theirs.append([Delivery(body, parse(body))])
    theirs.close()
    store.upkeep.merge_from(str(other))
    check(store)

    from tbhook.transfer.importer import import_stream

    lines = "\n".join(Generator(seed=6, persons=10, start=T0, rate=0.02).lines(200)) + "\n"
    import io

    import_stream(store, io.BytesIO(lines.encode()), "test")
    check(store)

    body = event_body(caseId=777, typeId=9, timestamp=T0 + 5)
    with store.writing() as conn:  # as an older tbhook quarantined it
        import hashlib

        conn.execute(
            "INSERT INTO quarantine (receivedAt, lastReceivedAt, deliveries, path, reason, body, "
            "bodySha256) VALUES ('x', 'x', 1, '/', 'old', ?, ?)",
            [body, hashlib.sha256(body).digest()],
        )
    list(store.upkeep.recover_quarantined(None, parse))
    check(store)


def test_a_reader_of_a_database_without_the_counts_scans(store, db_path):
    expected = scanned(store, Filters())
    conn = sqlite3.connect(db_path)
    conn.execute("DROP TABLE event_counts")  # as a database the receiver has not migrated yet
    conn.commit()
    conn.close()
    from tbhook.store import open_reader

    reader = open_reader(str(db_path))
    try:
        assert not reader.reads.stats_is_cheap(Filters())
        assert reader.reads.stats_counter(Filters()) == expected
    finally:
        reader.close()


def test_whole_days_and_edges_add_up_exactly():
    """The split is exact: every second of [since, until) falls in one part."""
    store_filters = Filters(since=T0 + 7, until=T0 + 3 * DAY + 11)
    first_day, end_day = -(-store_filters.since // DAY), store_filters.until // DAY
    edges = [
        dataclasses.replace(store_filters, until=first_day * DAY),
        dataclasses.replace(store_filters, since=end_day * DAY),
    ]
    covered = (edges[0].until - edges[0].since) + (end_day - first_day) * DAY
    covered += edges[1].until - edges[1].since
    assert covered == store_filters.until - store_filters.since

"""The same deliveries into SQLite and into PostgreSQL: every read command gives the same bytes.

The log has what makes answers hard: merges in chains, cycles, reversals, self-merges and late
arrivals, retries, quarantined bodies, undocumented events, values the spec does not list,
hostile names, and timestamps out of range. It goes into both stores through the store
interface with the same receive times, one delivery a batch as a receiver would see them.
"""

import json
import random

import pytest
from typer.testing import CliRunner

from tbhook.cli import app
from tbhook.model.events import parse
from tbhook.store import Delivery, open_store
from tbhook.transfer.generate import Generator

runner = CliRunner(env={"COLUMNS": "200"})
T0 = 1_700_000_000


def merge(old, new, ts):
    return {"event": "profileMerged", "oldPersonId": old, "newPersonId": new, "timestamp": ts}


def hand_made() -> list[bytes]:
    """The hard cases, written out."""
    events = [
        merge(10, 20, T0 + 5),
        merge(20, 30, T0 + 6),  # a chain
        merge(30, 10, T0 + 7),  # a cycle, latest wins
        merge(1, 1, T0 + 8),  # the spec's self-merge
        merge(40, 41, T0 + 100),
        merge(40, 42, T0 + 50),  # arrives after, happened before
        merge(41, 40, T0 + 101),  # a reversal
        {"event": "caseAssigned", "caseId": 77, "personId": 10, "timestamp": T0},
        {"event": "[/x] \x1b[2J", "caseId": 78, "timestamp": T0 + 1},
        {"event": "\r=cmd|' /C calc'!A0", "caseId": 79, "timestamp": T0 + 2},
        {"event": "+ünï\u2028cødé", "caseId": 80, "timestamp": T0 + 3},
        {"event": "far future", "caseId": 81, "timestamp": 10**15},
        {"event": "far past", "caseId": 82, "timestamp": -(10**14)},
    ]
    bodies = [json.dumps(e).encode() for e in events]
    closed = json.loads(open_sample("case-closed"))
    closed.update(caseId=500, personId=10, timestamp=T0 - 10)  # a close before the messages
    bodies.append(json.dumps(closed).encode())
    message = json.loads(open_sample("new-incoming-message"))
    for i, (own, type_id) in enumerate([(0, 4), (1, 9), (2, 4), (0, 1)]):  # 9 and own 2: unknown
        message.update(
            caseId=500,
            personId=10,
            own=own,
            typeId=type_id,
            timestamp=T0 + i,
            uniqueId=900 + i,
            resultId=900 + i,
        )
        bodies.append(json.dumps(message).encode())
    bodies += [b"", b"{oops", b"[1, 2]", b'{"event": "newResult", "caseId": "12"}', b"\xff\xfe"]
    return bodies


def open_sample(name: str) -> bytes:
    from conftest import sample_bytes

    return sample_bytes(name)


def deliveries() -> list[Delivery]:
    generated = [line.encode() for line in Generator(seed=21, persons=40).lines(1500)]
    bodies = hand_made() + generated
    rng = random.Random(5)
    bodies += rng.sample(bodies, 60)  # retries, some of them quarantined bodies
    rng.shuffle(bodies)  # late arrivals everywhere
    return [
        Delivery(
            body,
            parse(body),
            path=rng.choice(["/", "/a", "/[b]"]),
            received_at=f"2026-01-01T00:{n // 1000 % 60:02d}:{n % 60:02d}.{n % 1000:03d}Z",
        )
        for n, body in enumerate(bodies)
    ]


@pytest.fixture(scope="module")
def both(tmp_path_factory, pg_cluster):
    sqlite_db = str(tmp_path_factory.mktemp("diff") / "diff.db")
    pg_db = pg_cluster.new_database()
    for target in (sqlite_db, pg_db):
        store = open_store(target)
        for delivery in deliveries():
            store.append([delivery])
        store.close()
    return sqlite_db, pg_db


COMMANDS = [
    ["events", "--limit", "0"],
    ["events", "--person", "10", "--limit", "0"],
    ["events", "--event", "profileMerged", "--order", "asc", "--limit", "0"],
    ["events", "--since", "2024-01-01T00:01:00Z", "--until", "2024-01-01T00:02:00Z"],
    ["person", "10"],
    ["person", "41"],
    ["case", "500"],
    ["cases"],
    ["cases", "--person", "30"],
    ["export"],
    ["export", "--sender", "agent"],
    ["stats"],
    ["stats", "--event", "newResult"],
    ["quarantine"],
    ["quarantine", "2"],
    ["event", "7"],
    ["event", "40"],
    ["cases", "--hours", "mon-fri 09:00-17:00", "--tz", "Europe/Amsterdam"],
    ["report"],
    ["report", "--by", "week"],
    ["report", "--by", "month", "--tz", "Europe/Amsterdam"],
    ["report", "--by", "source"],
    ["report", "--by", "agent"],
    ["report", "--hours", "mon-fri 09:00-17:30", "--tz", "Europe/Amsterdam", "--holidays", "NL"],
    ["report", "--by", "week", "--hours", "mon-fri 08:30-12:00,13:00-17:30; sat 10:00-14:00"],
    ["report", "--by", "source", "--hours", "mon-sun 08:00-20:00"],
    ["report", "--by", "agent", "--hours", "mon-fri 09:00-17:00", "--tz", "America/New_York"],
    ["report", "--since", "2024-01-01", "--until", "2024-01-02"],
    ["report", "--person", "10", "--by", "month"],
    ["report", "--sla", "first=30s,reply=1m", "--by", "source"],
    ["report", "--sla", "first=1m", "--hours", "mon-sun 00:00-00:01", "--tz", "Asia/Kathmandu"],
    ["queue", "-n", "0", "--at", "2030-01-01"],
    ["queue", "--at", "2024-01-01T00:01:30Z", "--sla", "first=1m,reply=2m", "-n", "0"],
    ["queue", "--source", "14", "--source", "3", "--path", "/a", "--at", "2030-01-01"],
    [
        "queue",
        "--sla",
        "first=1h",
        "--hours",
        "mon-fri 09:00-17:00",
        "--tz",
        "Europe/Amsterdam",
        "--holidays",
        "NL",
        "--at",
        "2024-01-02T10:00",
    ],
]
FORMATS = {"export": ["csv", "ndjson"], "event": ["json", "ndjson", "table"]}
# What people see, at a fixed width: the same tables, footers and all.
TABLES = [
    ["events", "-n", "20"],
    ["events", "--person", "10"],
    ["cases", "-n", "5"],
    ["quarantine", "-n", "3"],
    ["quarantine", "1"],
    ["person", "40"],
    ["case", "500"],
    ["stats"],
    ["report", "--by", "week"],
    ["report", "--by", "agent", "--hours", "mon-fri 09:00-17:00"],
    ["report", "--sla", "first=30s,reply=1m"],
    ["queue", "--sla", "first=1m,reply=2m", "--at", "2030-01-01", "--tz", "Europe/Amsterdam"],
]


CASES = [(c, f) for c in COMMANDS for f in FORMATS.get(c[0], ["json", "csv", "ndjson"])]
CASES += [(c, "table") for c in TABLES]


@pytest.mark.parametrize("command, fmt", CASES, ids=[" ".join(c) + f" -f {f}" for c, f in CASES])
def test_sqlite_and_postgresql_give_the_same_answers(both, command, fmt):
    outputs = []
    for db in both:
        result = runner.invoke(app, [*command, "--format", fmt, "--db", db])
        assert result.exit_code == 0, result.output
        outputs.append(result.stdout_bytes)
    assert outputs[0] == outputs[1]
    assert len(outputs[0]) > 30  # the answers say something


def test_the_log_has_what_the_comparison_is_about(both):
    counts = json.loads(runner.invoke(app, ["stats", "-f", "json", "--db", both[0]]).stdout)
    assert counts["byEvent"]["profileMerged"] >= 7
    assert counts["unknownValues"] == {"typeId": {"9": 1}, "own": {"2": 1}}
    quarantine = runner.invoke(app, ["quarantine", "-f", "json", "--db", both[0]]).stdout
    assert len(json.loads(quarantine)) == 5
    retried = json.loads(
        runner.invoke(app, ["export", "-f", "ndjson", "--db", both[0]]).stdout.splitlines()[0]
    )
    assert "deliveries" in retried


def test_both_backends_keep_the_same_case_summaries(both):
    """What `report` and `queue` read: the same row for every case and every tally, byte
    for byte."""
    from test_timelines import kept_tallies

    from tbhook.model.cases import SUMMARY_COLUMNS
    from tbhook.store import open_reader

    rows, tallies = [], []
    for db in both:
        store = open_reader(db)
        try:
            columns = ", ".join(f'"{c}"' for c in SUMMARY_COLUMNS)
            rows.append(
                list(store.query(f'SELECT {columns} FROM case_timelines ORDER BY "caseId"'))
            )
            tallies.append(kept_tallies(store))
        finally:
            store.close()
    assert len(rows[0]) > 100 and len(tallies[0]) > 10
    assert rows[0] == rows[1]
    assert tallies[0] == tallies[1]


def test_person_resolution_matches_across_backends_for_every_person(both):
    from tbhook.store import open_reader

    stores = [open_reader(db) for db in both]
    try:
        persons = {
            row[0]
            for row in stores[0].query('SELECT "personId" FROM events WHERE "personId" IS NOT NULL')
        }
        assert len(persons) > 30
        for person in sorted(persons):
            groups = [store.persons.group(person) for store in stores]
            assert groups[0] == groups[1]
        assert stores[0].persons.resolver().changed() == stores[1].persons.resolver().changed()
    finally:
        for store in stores:
            store.close()


def test_quarantine_retry_gives_the_same_answers(tmp_path, pg_cluster):
    """Bodies an older tbhook quarantined (unknown typeIds), one already stored as an event:
    `quarantine retry` moves, dedupes and keeps the same way on both, and again does nothing."""
    import hashlib

    old_rules = [
        json.dumps({**json.loads(open_sample("new-incoming-message")), "typeId": 9}).encode(),
        open_sample("case-closed"),
    ]
    answers = []
    for target in (str(tmp_path / "retry.db"), pg_cluster.new_database()):
        store = open_store(target)
        for delivery in deliveries()[:200]:
            store.append([delivery])
        store.append([Delivery(open_sample("case-closed"), parse(open_sample("case-closed")))])
        with store.writing() as conn:
            for n, body in enumerate(old_rules):
                conn.execute(
                    'INSERT INTO quarantine ("receivedAt", "lastReceivedAt", deliveries, path, '
                    'reason, body, "bodySha256") VALUES (?, ?, ?, ?, ?, ?, ?)',
                    [
                        f"2025-0{n + 1}-01T00:00:00.000Z",
                        f"2025-0{n + 1}-02T00:00:00.000Z",
                        n + 2,
                        "/old",
                        "typeId 9 is not listed",
                        body,
                        hashlib.sha256(body).digest(),
                    ],
                )
        store.close()
        outputs = [
            runner.invoke(app, [*command, "--db", target]).stdout_bytes
            for command in (
                ["quarantine", "retry", "-f", "json"],
                ["quarantine", "retry", "-f", "json"],
                ["events", "-n", "0", "-f", "ndjson"],
                ["quarantine", "-n", "0", "-f", "ndjson"],
            )
        ]
        answers.append(outputs)
    assert answers[0] == answers[1]
    moved = json.loads(answers[0][0])
    assert sorted(r["outcome"] for r in moved).count("moved") == 1
    assert sorted(r["outcome"] for r in moved).count("merged") == 1
    assert all(r["outcome"] == "unreadable" for r in json.loads(answers[0][1]))

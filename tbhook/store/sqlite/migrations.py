"""The SQLite schema, as ``sqlite_utils.Migrations`` steps.

Each step is frozen history: literal DDL, written once and never built from code that changes
(a later field in the event model must not change what m001 creates). Never rename a step:
its name is its key in ``_sqlite_migrations``. tests/schemas/ keeps the schema after every
step, and a test upgrades each of them and compares the result with a fresh database.
"""

import os

from sqlite_utils import Database, Migrations

from tbhook.errors import StoreUnavailable
from tbhook.model.words import human_size

migrations = Migrations("tbhook")


@migrations()
def m001_events_and_quarantine(db: Database) -> None:
    db.execute(
        """
CREATE TABLE events (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    receivedAt TEXT NOT NULL,
    lastReceivedAt TEXT NOT NULL,
    deliveries INTEGER NOT NULL DEFAULT 1,
    path TEXT NOT NULL,
    event TEXT NOT NULL,
    timestamp INTEGER,
    "searchId" INTEGER,
    "uniqueId" INTEGER,
    "resultId" INTEGER,
    "personId" INTEGER,
    "caseId" INTEGER,
    "handlerId" INTEGER,
    "sourceId" INTEGER,
    "connectionId" INTEGER,
    "typeId" INTEGER,
    "own" INTEGER,
    "externalCaseId" INTEGER,
    "reasonId" INTEGER,
    "externalPersonId" INTEGER,
    "agentId" INTEGER,
    "oldPersonId" INTEGER,
    "newPersonId" INTEGER,
    body BLOB NOT NULL,
    bodySha256 BLOB NOT NULL UNIQUE
)"""
    )
    db.execute(
        """
CREATE TABLE quarantine (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    receivedAt TEXT NOT NULL,
    lastReceivedAt TEXT NOT NULL,
    deliveries INTEGER NOT NULL DEFAULT 1,
    path TEXT NOT NULL,
    reason TEXT NOT NULL,
    body BLOB NOT NULL,
    bodySha256 BLOB NOT NULL UNIQUE
)"""
    )
    db.execute('CREATE INDEX events_caseId ON events ("caseId")')
    db.execute('CREATE INDEX events_personId ON events ("personId")')
    db.execute('CREATE INDEX events_event ON events ("event")')


@migrations()
def m002_views(db: Database) -> None:
    db.execute(
        """
CREATE VIEW messages AS SELECT id, receivedAt, path, timestamp, strftime('%Y-%m-%dT%H:%M:%SZ', timestamp, 'unixepoch') AS time,
    searchId, uniqueId, resultId, personId, caseId, handlerId, sourceId, connectionId,
    typeId, CASE typeId WHEN 1 THEN 'page' WHEN 2 THEN 'post' WHEN 3 THEN 'comment' WHEN 4 THEN 'private message' WHEN 5 THEN 'ad' WHEN 6 THEN 'system message' END AS type,
    own, CASE own WHEN 0 THEN 'customer' WHEN 1 THEN 'agent' END AS sender,
    deliveries
FROM events WHERE event = 'newResult'"""  # noqa: E501 - frozen as it was written
    )
    db.execute(
        """
CREATE VIEW case_closures AS SELECT id, receivedAt, path, timestamp, strftime('%Y-%m-%dT%H:%M:%SZ', timestamp, 'unixepoch') AS time,
    searchId, caseId, externalCaseId, reasonId, personId, externalPersonId,
    agentId, resultId, connectionId, deliveries
FROM events WHERE event = 'caseClosed'"""  # noqa: E501
    )
    db.execute(
        """
CREATE VIEW person_merges AS SELECT id, receivedAt, path, timestamp, strftime('%Y-%m-%dT%H:%M:%SZ', timestamp, 'unixepoch') AS time,
    oldPersonId, newPersonId, deliveries
FROM events WHERE event = 'profileMerged'"""  # noqa: E501
    )


@migrations()
def m003_merge_indexes(db: Database) -> None:
    # Person lookups walk merges from both sides; partial, so the 1M other events cost nothing.
    db.execute(
        'CREATE INDEX events_merge_oldPersonId ON events ("oldPersonId") '
        "WHERE event = 'profileMerged'"
    )
    db.execute(
        'CREATE INDEX events_merge_newPersonId ON events ("newPersonId") '
        "WHERE event = 'profileMerged'"
    )


@migrations()
def m004_quarantine_line(db: Database) -> None:
    # `tbhook import` keeps the line number of a malformed line (NULL for HTTP deliveries).
    db.execute("ALTER TABLE quarantine ADD COLUMN line INTEGER")


@migrations()
def m005_forwards(db: Database) -> None:
    # `serve --forward-to`: one row per stored event to pass on, surviving restarts.
    db.execute(
        """
CREATE TABLE forwards (
    eventId INTEGER PRIMARY KEY REFERENCES events(id),
    target TEXT NOT NULL,
    state TEXT NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    lastStatus INTEGER,
    lastError TEXT,
    lastAttemptAt TEXT,
    nextAttemptAt REAL
)"""
    )
    db.execute("CREATE INDEX forwards_due ON forwards (nextAttemptAt) WHERE state = 'pending'")


@migrations()
def m006_timestamp_index(db: Database) -> None:
    # `events` shows the newest by timestamp: without this, a full scan and sort (1.6 s at 1M
    # events; 0.17 s with it).
    db.execute("CREATE INDEX events_timestamp ON events (timestamp)")


@migrations()
def m007_unknown_labels(db: Database) -> None:
    # A typeId or own value the spec does not list is kept as an event: label it, not NULL.
    db.execute("DROP VIEW messages")
    db.execute(
        """
CREATE VIEW messages AS SELECT id, receivedAt, path, timestamp,
    strftime('%Y-%m-%dT%H:%M:%SZ', timestamp, 'unixepoch') AS time,
    searchId, uniqueId, resultId, personId, caseId, handlerId, sourceId, connectionId,
    typeId, CASE typeId WHEN 1 THEN 'page' WHEN 2 THEN 'post' WHEN 3 THEN 'comment'
        WHEN 4 THEN 'private message' WHEN 5 THEN 'ad' WHEN 6 THEN 'system message'
        ELSE 'unknown (' || typeId || ')' END AS type,
    own, CASE own WHEN 0 THEN 'customer' WHEN 1 THEN 'agent'
        ELSE 'unknown (' || own || ')' END AS sender,
    deliveries
FROM events WHERE event = 'newResult'"""
    )


@migrations()
def m008_meta(db: Database) -> None:
    # Facts about this log: its identity (kept by backups, so `merge` knows a log it has
    # merged before) and the --max-db-size the receiver runs with (for `doctor`).
    db.execute("CREATE TABLE tbhook_meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)")
    db.execute("INSERT INTO tbhook_meta VALUES ('logId', lower(hex(randomblob(16))))")


@migrations()
def m009_merged_logs(db: Database) -> None:
    # `merge`: how far each other log has been merged, so merging it again adds only what
    # is new and never counts a delivery twice.
    db.execute(
        """
CREATE TABLE merged_logs (
    logId TEXT PRIMARY KEY,
    lastEventId INTEGER NOT NULL,
    lastQuarantineId INTEGER NOT NULL,
    source TEXT NOT NULL,
    mergedAt TEXT NOT NULL
)"""
    )


@migrations()
def m010_views_in_range(db: Database) -> None:
    # `time` is NULL for a timestamp outside years 1-9999, as in every other output and as
    # PostgreSQL must (it cannot format one): the views answer the same on both.
    time = (
        "CASE WHEN timestamp BETWEEN -62135596800 AND 253402300799 "
        "THEN strftime('%Y-%m-%dT%H:%M:%SZ', timestamp, 'unixepoch') END AS time"
    )
    for view in ("messages", "case_closures", "person_merges"):
        db.execute(f"DROP VIEW {view}")
    db.execute(
        f"""
CREATE VIEW messages AS SELECT id, receivedAt, path, timestamp, {time},
    searchId, uniqueId, resultId, personId, caseId, handlerId, sourceId, connectionId,
    typeId, CASE typeId WHEN 1 THEN 'page' WHEN 2 THEN 'post' WHEN 3 THEN 'comment'
        WHEN 4 THEN 'private message' WHEN 5 THEN 'ad' WHEN 6 THEN 'system message'
        ELSE 'unknown (' || typeId || ')' END AS type,
    own, CASE own WHEN 0 THEN 'customer' WHEN 1 THEN 'agent'
        ELSE 'unknown (' || own || ')' END AS sender,
    deliveries
FROM events WHERE event = 'newResult'"""
    )
    db.execute(
        f"""
CREATE VIEW case_closures AS SELECT id, receivedAt, path, timestamp, {time},
    searchId, caseId, externalCaseId, reasonId, personId, externalPersonId,
    agentId, resultId, connectionId, deliveries
FROM events WHERE event = 'caseClosed'"""
    )
    db.execute(
        f"""
CREATE VIEW person_merges AS SELECT id, receivedAt, path, timestamp, {time},
    oldPersonId, newPersonId, deliveries
FROM events WHERE event = 'profileMerged'"""
    )


@migrations()
def m011_redelivery_indexes(db: Database) -> None:
    # `tail --retries` and `tail --quarantine` follow the latest deliveries: only redelivered
    # events enter the partial index (a first delivery costs nothing more), and quarantine
    # rows are few.
    db.execute('CREATE INDEX events_redelivered ON events ("lastReceivedAt") WHERE deliveries > 1')
    db.execute('CREATE INDEX quarantine_lastReceivedAt ON quarantine ("lastReceivedAt")')


@migrations()
def m012_event_counts(db: Database) -> None:
    # `stats` reads counts instead of scanning every event (9 s at 10M events): one row per
    # UTC day, event, own, typeId and sourceId. `key` is the group with its NULLs spelled out,
    # so an upsert finds it; `day` is the day number of `timestamp`, as `stats` computes it.
    # Whatever stores events adds the new ones in its transaction (SQLiteStore.count_new: one
    # grouped upsert a batch; an insert trigger costs 4 us an event); a trigger takes away
    # whatever is deleted.
    db.execute(
        """
CREATE TABLE event_counts (
    key TEXT PRIMARY KEY,
    day INTEGER,
    event TEXT NOT NULL,
    own INTEGER,
    typeId INTEGER,
    sourceId INTEGER,
    n INTEGER NOT NULL
)"""
    )
    db.execute(
        """
CREATE TRIGGER event_counts_delete AFTER DELETE ON events BEGIN
    UPDATE event_counts SET n = n - 1 WHERE key =
        quote((OLD.timestamp - (OLD.timestamp % 86400 + 86400) % 86400) / 86400) || ',' ||
            quote(OLD.event) || ',' || quote(OLD.own) || ',' || quote(OLD.typeId) || ',' ||
            quote(OLD.sourceId);
END"""
    )
    db.execute(
        """
INSERT INTO event_counts (key, day, event, own, typeId, sourceId, n)
SELECT quote(day) || ',' || quote(event) || ',' || quote(own) || ',' || quote(typeId) || ',' ||
        quote(sourceId), day, event, own, typeId, sourceId, count(*)
FROM (SELECT (timestamp - (timestamp % 86400 + 86400) % 86400) / 86400 AS day, event, own,
        typeId, sourceId FROM events)
GROUP BY 1"""
    )


@migrations()
def m013_event_time_index(db: Database) -> None:
    # `events --event caseClosed` shows the newest first: on (event) alone SQLite read and
    # sorted every caseClosed event (1.2 s at 10M events); on (event, timestamp) it reads the
    # newest 50. The same number of index entries an event as before.
    db.execute("DROP INDEX events_event")
    db.execute('CREATE INDEX events_event_time ON events ("event", timestamp)')


@migrations()
def m014_dedupe_in_time_order(db: Database) -> None:
    # Dedupe on (the event's timestamp, the body's hash) instead of the hash alone: a random
    # 32-byte key put every new event in a random leaf of a 440 MB index at 10M events (about
    # one page written a row, twice: WAL and checkpoint; measured, 23 us of the 41 us an
    # imported event costs). Events arrive in time order, so the new key's leaves are the
    # newest few. Still exact: the same body always parses to the same timestamp, so a body
    # stored once conflicts with itself as before. The UNIQUE column constraint cannot be
    # dropped in SQLite, so the table is rebuilt (the twelve steps of "Making Other Kinds Of
    # Table Schema Changes" in SQLite's ALTER TABLE page): ids, the AUTOINCREMENT sequence,
    # indexes, the trigger and the views as they were. Minutes at 10M events, once.
    _room_to_rebuild(db, "m014 rebuilds the events table once")
    for view in ("messages", "case_closures", "person_merges"):
        db.execute(f"DROP VIEW {view}")
    db.execute(
        """
CREATE TABLE events_rebuilt (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    receivedAt TEXT NOT NULL,
    lastReceivedAt TEXT NOT NULL,
    deliveries INTEGER NOT NULL DEFAULT 1,
    path TEXT NOT NULL,
    event TEXT NOT NULL,
    timestamp INTEGER,
    "searchId" INTEGER,
    "uniqueId" INTEGER,
    "resultId" INTEGER,
    "personId" INTEGER,
    "caseId" INTEGER,
    "handlerId" INTEGER,
    "sourceId" INTEGER,
    "connectionId" INTEGER,
    "typeId" INTEGER,
    "own" INTEGER,
    "externalCaseId" INTEGER,
    "reasonId" INTEGER,
    "externalPersonId" INTEGER,
    "agentId" INTEGER,
    "oldPersonId" INTEGER,
    "newPersonId" INTEGER,
    body BLOB NOT NULL,
    bodySha256 BLOB NOT NULL
)"""
    )
    columns = (
        'id, receivedAt, lastReceivedAt, deliveries, path, event, timestamp, "searchId", '
        '"uniqueId", "resultId", "personId", "caseId", "handlerId", "sourceId", '
        '"connectionId", "typeId", "own", "externalCaseId", "reasonId", "externalPersonId", '
        '"agentId", "oldPersonId", "newPersonId", body, bodySha256'
    )
    db.execute(f"INSERT INTO events_rebuilt ({columns}) SELECT {columns} FROM events ORDER BY id")
    # Ids are never used twice: the sequence goes on from where it was (above max(id) when
    # the newest events were deleted).
    db.execute(
        "INSERT INTO sqlite_sequence (name, seq) SELECT 'events_rebuilt', 0 "
        "WHERE NOT EXISTS (SELECT 1 FROM sqlite_sequence WHERE name = 'events_rebuilt')"
    )
    db.execute(
        "UPDATE sqlite_sequence SET seq = max(seq, coalesce((SELECT seq FROM sqlite_sequence "
        "WHERE name = 'events'), 0)) WHERE name = 'events_rebuilt'"
    )
    db.execute("DROP TABLE events")  # its indexes and its trigger go with it
    db.execute("ALTER TABLE events_rebuilt RENAME TO events")
    db.execute('CREATE UNIQUE INDEX events_dedupe ON events (coalesce(timestamp, 0), "bodySha256")')
    db.execute('CREATE INDEX events_caseId ON events ("caseId")')
    db.execute('CREATE INDEX events_personId ON events ("personId")')
    db.execute(
        'CREATE INDEX events_merge_oldPersonId ON events ("oldPersonId") '
        "WHERE event = 'profileMerged'"
    )
    db.execute(
        'CREATE INDEX events_merge_newPersonId ON events ("newPersonId") '
        "WHERE event = 'profileMerged'"
    )
    db.execute("CREATE INDEX events_timestamp ON events (timestamp)")
    db.execute('CREATE INDEX events_redelivered ON events ("lastReceivedAt") WHERE deliveries > 1')
    db.execute('CREATE INDEX events_event_time ON events ("event", timestamp)')
    db.execute(
        """
CREATE TRIGGER event_counts_delete AFTER DELETE ON events BEGIN
    UPDATE event_counts SET n = n - 1 WHERE key =
        quote((OLD.timestamp - (OLD.timestamp % 86400 + 86400) % 86400) / 86400) || ',' ||
            quote(OLD.event) || ',' || quote(OLD.own) || ',' || quote(OLD.typeId) || ',' ||
            quote(OLD.sourceId);
END"""
    )
    time = (
        "CASE WHEN timestamp BETWEEN -62135596800 AND 253402300799 "
        "THEN strftime('%Y-%m-%dT%H:%M:%SZ', timestamp, 'unixepoch') END AS time"
    )
    db.execute(
        f"""
CREATE VIEW messages AS SELECT id, receivedAt, path, timestamp, {time},
    searchId, uniqueId, resultId, personId, caseId, handlerId, sourceId, connectionId,
    typeId, CASE typeId WHEN 1 THEN 'page' WHEN 2 THEN 'post' WHEN 3 THEN 'comment'
        WHEN 4 THEN 'private message' WHEN 5 THEN 'ad' WHEN 6 THEN 'system message'
        ELSE 'unknown (' || typeId || ')' END AS type,
    own, CASE own WHEN 0 THEN 'customer' WHEN 1 THEN 'agent'
        ELSE 'unknown (' || own || ')' END AS sender,
    deliveries
FROM events WHERE event = 'newResult'"""
    )
    db.execute(
        f"""
CREATE VIEW case_closures AS SELECT id, receivedAt, path, timestamp, {time},
    searchId, caseId, externalCaseId, reasonId, personId, externalPersonId,
    agentId, resultId, connectionId, deliveries
FROM events WHERE event = 'caseClosed'"""
    )
    db.execute(
        f"""
CREATE VIEW person_merges AS SELECT id, receivedAt, path, timestamp, {time},
    oldPersonId, newPersonId, deliveries
FROM events WHERE event = 'profileMerged'"""
    )


@migrations()
def m015_case_timelines(db: Database) -> None:
    # `report`: one summary row per case (tbhook.model.cases.Summary), kept by every write
    # transaction, so a report reads a row a case instead of every event (10M events: 1.2M
    # rows). The writer that applies this step fills it (SQLiteStore._build_timelines); until
    # then, and for any case in case_stale (an event deleted), readers count from the events.
    db.execute(
        """
CREATE TABLE case_timelines (
    "caseId" INTEGER PRIMARY KEY,
    "startAt" INTEGER,
    "lastAt" INTEGER,
    "lastId" INTEGER,
    "firstAt" INTEGER,
    "firstClosedAt" INTEGER,
    "closedBy" INTEGER,
    "openNow" INTEGER NOT NULL DEFAULT 0,
    "sourceId" INTEGER,
    "searchId" INTEGER,
    path TEXT,
    "personId" INTEGER,
    entries BLOB NOT NULL DEFAULT x''
)"""
    )
    db.execute('CREATE INDEX case_timelines_lastAt ON case_timelines ("lastAt")')
    # The backlog before a report's range: the cases open now, by their last entry.
    db.execute('CREATE INDEX case_timelines_open ON case_timelines ("lastAt") WHERE "openNow" = 1')
    db.execute('CREATE TABLE case_stale ("caseId" INTEGER PRIMARY KEY)')
    db.execute(
        """
CREATE TRIGGER case_stale_delete AFTER DELETE ON events
WHEN OLD."caseId" IS NOT NULL AND OLD.event IN ('newResult', 'caseClosed') BEGIN
    INSERT OR IGNORE INTO case_stale VALUES (OLD."caseId");
END"""
    )


@migrations()
def m016_queue_and_tallies(db: Database) -> None:
    # `queue`: each case's wait now (the start of the customer's unanswered wait, NULL when
    # none), its kind, messages, and the source and path of its latest customer message; a
    # partial index holds only the waiting cases, with what the queue counts, oldest first.
    # `report`: its counts per quarter-hour and source (tbhook.model.tallies), with a running
    # total of the open cases per source (bucket NULL). The writer that applies this step
    # fills both (the summaries' VERSION 2).
    db.execute('ALTER TABLE case_timelines ADD COLUMN "waitAt" INTEGER')
    db.execute('ALTER TABLE case_timelines ADD COLUMN "waitKind" TEXT')
    db.execute('ALTER TABLE case_timelines ADD COLUMN "waitMessages" INTEGER NOT NULL DEFAULT 0')
    db.execute('ALTER TABLE case_timelines ADD COLUMN "waitSourceId" INTEGER')
    db.execute('ALTER TABLE case_timelines ADD COLUMN "waitPath" TEXT')
    db.execute('ALTER TABLE case_timelines ADD COLUMN "firstAskedAt" INTEGER')
    db.execute('ALTER TABLE case_timelines ADD COLUMN "firstAnsweredAt" INTEGER')
    db.execute(
        'CREATE INDEX case_timelines_waiting ON case_timelines ("waitAt", "waitKind", '
        '"waitSourceId") WHERE "waitAt" IS NOT NULL'
    )
    db.execute(
        """
CREATE TABLE case_tallies (
    "key" TEXT PRIMARY KEY,
    bucket INTEGER,
    "sourceId" INTEGER,
    "newCases" INTEGER NOT NULL DEFAULT 0,
    "customerMessages" INTEGER NOT NULL DEFAULT 0,
    "agentMessages" INTEGER NOT NULL DEFAULT 0,
    opened INTEGER NOT NULL DEFAULT 0,
    resolved INTEGER NOT NULL DEFAULT 0,
    reopened INTEGER NOT NULL DEFAULT 0,
    "oneTouch" INTEGER NOT NULL DEFAULT 0,
    unanswered INTEGER NOT NULL DEFAULT 0,
    "firstResponses" BLOB NOT NULL DEFAULT x'',
    "firstReplies" BLOB NOT NULL DEFAULT x'',
    "laterReplies" BLOB NOT NULL DEFAULT x'',
    resolutions BLOB NOT NULL DEFAULT x'',
    recloses BLOB NOT NULL DEFAULT x''
)"""
    )
    db.execute("CREATE INDEX case_tallies_bucket ON case_tallies (bucket)")


def _room_to_rebuild(db: Database, what: str) -> None:
    """Refuse, in words, a rebuild the disk cannot hold: the copy, the WAL that carries it
    until the commit, and the sort of each index, about twice the tables being copied. (Run
    out of space half way, the step rolls back and says only "database or disk is full".)"""
    path = db.execute("PRAGMA main.database_list").fetchone()[2]
    page_size = db.execute("PRAGMA page_size").fetchone()[0]
    used = (
        db.execute("PRAGMA page_count").fetchone()[0]
        - db.execute("PRAGMA freelist_count").fetchone()[0]
    ) * page_size
    if not path or used < 64 * 1024 * 1024:
        return  # in memory, or small: nothing to check
    disk = os.statvfs(os.path.dirname(os.path.abspath(path)))
    free = disk.f_bavail * disk.f_frsize
    if free < 2 * used:
        raise StoreUnavailable(
            f"upgrading {path}: {what}, and needs about {human_size(2 * used)} of free disk "
            f"space where it is ({human_size(free)} free); free some space (or move the file) "
            "and start again: nothing was changed"
        )


# Steps that rewrite a table, and what to tell whoever waits for them.
SLOW = {"m014_dedupe_in_time_order": "rebuilding the events table for a faster dedupe key"}
SECONDS_PER_MILLION = 25  # the slowest measured, on two cores (10M events: 248 s)
NOTICE_FROM = 200_000  # events: from about five seconds of waiting


def slow_steps(db: Database, pending: list) -> list[str]:
    """What to say before pending steps that take minutes on this database: nothing for a
    new or small one."""
    slow = [SLOW[step.name] for step in pending if step.name in SLOW]
    if not slow or "events" not in db.table_names():
        return []
    events = db.execute("SELECT count(*) FROM events").fetchone()[0]
    if events < NOTICE_FROM:
        return []
    minutes = round(events / 1_000_000 * SECONDS_PER_MILLION / 60)
    took = f"about {minutes} minutes" if minutes > 1 else "up to a minute"
    path = db.execute("PRAGMA main.database_list").fetchone()[2]
    return [
        f"Upgrading {path}: {'; '.join(slow)}, once ({events:,} events: {took}). Stopped "
        "meanwhile, it changes nothing and starts over the next time."
    ]

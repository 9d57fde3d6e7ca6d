"""The schema, as ``sqlite_utils.Migrations`` steps. Never rename a step: its name is its key."""

from sqlite_utils import Database, Migrations

from tbhook.events import PAYLOAD_COLUMNS, SENDER_LABELS, TYPE_LABELS

migrations = Migrations("tbhook")

# Steps the read commands do not need: a reader can use a database still waiting for them (the
# next `tbhook serve` applies them). Every other step changes what readers query.
READERS_DO_NOT_NEED = {
    "m006_timestamp_index",  # only faster
    "m007_unknown_labels",  # a view for analysts
    "m008_meta",  # read by doctor and merge, which cope without it
    "m009_merged_logs",  # written by merge, which opens for writing (and so migrates)
}


def _label_case(column: str, labels: dict[int, str]) -> str:
    whens = " ".join(f"WHEN {value} THEN '{label}'" for value, label in labels.items())
    return f"CASE {column} {whens} END"


@migrations()
def m001_events_and_quarantine(db: Database) -> None:
    payload = ",\n".join(f'    "{name}" INTEGER' for name in PAYLOAD_COLUMNS)
    db.execute(
        f"""
CREATE TABLE events (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    receivedAt TEXT NOT NULL,
    lastReceivedAt TEXT NOT NULL,
    deliveries INTEGER NOT NULL DEFAULT 1,
    path TEXT NOT NULL,
    event TEXT NOT NULL,
    timestamp INTEGER,
{payload},
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
    for column in ("caseId", "personId", "event"):
        db.execute(f'CREATE INDEX events_{column} ON events ("{column}")')


@migrations()
def m002_views(db: Database) -> None:
    time = "strftime('%Y-%m-%dT%H:%M:%SZ', timestamp, 'unixepoch') AS time"
    common = "id, receivedAt, path, timestamp, " + time
    db.execute(
        f"""
CREATE VIEW messages AS SELECT {common},
    searchId, uniqueId, resultId, personId, caseId, handlerId, sourceId, connectionId,
    typeId, {_label_case("typeId", TYPE_LABELS)} AS type,
    own, {_label_case("own", SENDER_LABELS)} AS sender,
    deliveries
FROM events WHERE event = 'newResult'"""
    )
    db.execute(
        f"""
CREATE VIEW case_closures AS SELECT {common},
    searchId, caseId, externalCaseId, reasonId, personId, externalPersonId,
    agentId, resultId, connectionId, deliveries
FROM events WHERE event = 'caseClosed'"""
    )
    db.execute(
        f"""
CREATE VIEW person_merges AS SELECT {common},
    oldPersonId, newPersonId, deliveries
FROM events WHERE event = 'profileMerged'"""
    )


@migrations()
def m003_merge_indexes(db: Database) -> None:
    # Person lookups walk merges from both sides; partial, so the 1M other events cost nothing.
    for column in ("oldPersonId", "newPersonId"):
        db.execute(
            f'CREATE INDEX events_merge_{column} ON events ("{column}") '
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
    # events; 0.17 s with it). Tracebuzz stamps events as they happen, so inserts land at the
    # right edge of this index; measured: importing 300k events is no slower with it.
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

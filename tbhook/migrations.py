"""The schema, as ``sqlite_utils.Migrations`` steps. Never rename a step: its name is its key."""

from sqlite_utils import Database, Migrations

from tbhook.events import PAYLOAD_COLUMNS, SENDER_LABELS, TYPE_LABELS

migrations = Migrations("tbhook")

# Steps that only speed reads up: a reader can use a database still waiting for them (the
# next `tbhook serve` applies them). Every other step changes what readers query.
ONLY_SPEED = {"m006_timestamp_index"}


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

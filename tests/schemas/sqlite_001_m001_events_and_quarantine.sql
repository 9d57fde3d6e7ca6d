-- tbhook's SQLite schema after m001_events_and_quarantine, as that tbhook created it.
CREATE TABLE "_sqlite_migrations" (
   "id" INTEGER PRIMARY KEY,
   "migration_set" TEXT,
   "name" TEXT,
   "applied_at" TEXT
);
CREATE UNIQUE INDEX "idx__sqlite_migrations_migration_set_name"
    ON "_sqlite_migrations" ("migration_set", "name");
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
);
CREATE TABLE quarantine (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    receivedAt TEXT NOT NULL,
    lastReceivedAt TEXT NOT NULL,
    deliveries INTEGER NOT NULL DEFAULT 1,
    path TEXT NOT NULL,
    reason TEXT NOT NULL,
    body BLOB NOT NULL,
    bodySha256 BLOB NOT NULL UNIQUE
);
CREATE INDEX events_caseId ON events ("caseId");
CREATE INDEX events_personId ON events ("personId");
CREATE INDEX events_event ON events ("event");
INSERT INTO _sqlite_migrations (migration_set, name, applied_at) VALUES ('tbhook', 'm001_events_and_quarantine', '2026-01-01');

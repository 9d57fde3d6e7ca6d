-- tbhook's SQLite schema after m016_queue_and_tallies, as that tbhook created it.
CREATE TABLE "_sqlite_migrations" (
   "id" INTEGER PRIMARY KEY,
   "migration_set" TEXT,
   "name" TEXT,
   "applied_at" TEXT
);
CREATE UNIQUE INDEX "idx__sqlite_migrations_migration_set_name"
    ON "_sqlite_migrations" ("migration_set", "name");
CREATE TABLE quarantine (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    receivedAt TEXT NOT NULL,
    lastReceivedAt TEXT NOT NULL,
    deliveries INTEGER NOT NULL DEFAULT 1,
    path TEXT NOT NULL,
    reason TEXT NOT NULL,
    body BLOB NOT NULL,
    bodySha256 BLOB NOT NULL UNIQUE
, line INTEGER);
CREATE TABLE forwards (
    eventId INTEGER PRIMARY KEY REFERENCES events(id),
    target TEXT NOT NULL,
    state TEXT NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    lastStatus INTEGER,
    lastError TEXT,
    lastAttemptAt TEXT,
    nextAttemptAt REAL
);
CREATE INDEX forwards_due ON forwards (nextAttemptAt) WHERE state = 'pending';
CREATE TABLE tbhook_meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE merged_logs (
    logId TEXT PRIMARY KEY,
    lastEventId INTEGER NOT NULL,
    lastQuarantineId INTEGER NOT NULL,
    source TEXT NOT NULL,
    mergedAt TEXT NOT NULL
);
CREATE INDEX quarantine_lastReceivedAt ON quarantine ("lastReceivedAt");
CREATE TABLE event_counts (
    key TEXT PRIMARY KEY,
    day INTEGER,
    event TEXT NOT NULL,
    own INTEGER,
    typeId INTEGER,
    sourceId INTEGER,
    n INTEGER NOT NULL
);
CREATE TABLE "events" (
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
);
CREATE UNIQUE INDEX events_dedupe ON events (coalesce(timestamp, 0), "bodySha256");
CREATE INDEX events_caseId ON events ("caseId");
CREATE INDEX events_personId ON events ("personId");
CREATE INDEX events_merge_oldPersonId ON events ("oldPersonId") WHERE event = 'profileMerged';
CREATE INDEX events_merge_newPersonId ON events ("newPersonId") WHERE event = 'profileMerged';
CREATE INDEX events_timestamp ON events (timestamp);
CREATE INDEX events_redelivered ON events ("lastReceivedAt") WHERE deliveries > 1;
CREATE INDEX events_event_time ON events ("event", timestamp);
CREATE TRIGGER event_counts_delete AFTER DELETE ON events BEGIN
    UPDATE event_counts SET n = n - 1 WHERE key =
        quote((OLD.timestamp - (OLD.timestamp % 86400 + 86400) % 86400) / 86400) || ',' ||
            quote(OLD.event) || ',' || quote(OLD.own) || ',' || quote(OLD.typeId) || ',' ||
            quote(OLD.sourceId);
END;
CREATE VIEW messages AS SELECT id, receivedAt, path, timestamp, CASE WHEN timestamp BETWEEN -62135596800 AND 253402300799 THEN strftime('%Y-%m-%dT%H:%M:%SZ', timestamp, 'unixepoch') END AS time,
    searchId, uniqueId, resultId, personId, caseId, handlerId, sourceId, connectionId,
    typeId, CASE typeId WHEN 1 THEN 'page' WHEN 2 THEN 'post' WHEN 3 THEN 'comment'
        WHEN 4 THEN 'private message' WHEN 5 THEN 'ad' WHEN 6 THEN 'system message'
        ELSE 'unknown (' || typeId || ')' END AS type,
    own, CASE own WHEN 0 THEN 'customer' WHEN 1 THEN 'agent'
        ELSE 'unknown (' || own || ')' END AS sender,
    deliveries
FROM events WHERE event = 'newResult';
CREATE VIEW case_closures AS SELECT id, receivedAt, path, timestamp, CASE WHEN timestamp BETWEEN -62135596800 AND 253402300799 THEN strftime('%Y-%m-%dT%H:%M:%SZ', timestamp, 'unixepoch') END AS time,
    searchId, caseId, externalCaseId, reasonId, personId, externalPersonId,
    agentId, resultId, connectionId, deliveries
FROM events WHERE event = 'caseClosed';
CREATE VIEW person_merges AS SELECT id, receivedAt, path, timestamp, CASE WHEN timestamp BETWEEN -62135596800 AND 253402300799 THEN strftime('%Y-%m-%dT%H:%M:%SZ', timestamp, 'unixepoch') END AS time,
    oldPersonId, newPersonId, deliveries
FROM events WHERE event = 'profileMerged';
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
, "waitAt" INTEGER, "waitKind" TEXT, "waitMessages" INTEGER NOT NULL DEFAULT 0, "waitSourceId" INTEGER, "waitPath" TEXT, "firstAskedAt" INTEGER, "firstAnsweredAt" INTEGER);
CREATE INDEX case_timelines_lastAt ON case_timelines ("lastAt");
CREATE INDEX case_timelines_open ON case_timelines ("lastAt") WHERE "openNow" = 1;
CREATE TABLE case_stale ("caseId" INTEGER PRIMARY KEY);
CREATE TRIGGER case_stale_delete AFTER DELETE ON events
WHEN OLD."caseId" IS NOT NULL AND OLD.event IN ('newResult', 'caseClosed') BEGIN
    INSERT OR IGNORE INTO case_stale VALUES (OLD."caseId");
END;
CREATE INDEX case_timelines_waiting ON case_timelines ("waitAt", "waitKind", "waitSourceId") WHERE "waitAt" IS NOT NULL;
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
);
CREATE INDEX case_tallies_bucket ON case_tallies (bucket);
INSERT INTO _sqlite_migrations (migration_set, name, applied_at) VALUES ('tbhook', 'm001_events_and_quarantine', '2026-01-01');
INSERT INTO _sqlite_migrations (migration_set, name, applied_at) VALUES ('tbhook', 'm002_views', '2026-01-01');
INSERT INTO _sqlite_migrations (migration_set, name, applied_at) VALUES ('tbhook', 'm003_merge_indexes', '2026-01-01');
INSERT INTO _sqlite_migrations (migration_set, name, applied_at) VALUES ('tbhook', 'm004_quarantine_line', '2026-01-01');
INSERT INTO _sqlite_migrations (migration_set, name, applied_at) VALUES ('tbhook', 'm005_forwards', '2026-01-01');
INSERT INTO _sqlite_migrations (migration_set, name, applied_at) VALUES ('tbhook', 'm006_timestamp_index', '2026-01-01');
INSERT INTO _sqlite_migrations (migration_set, name, applied_at) VALUES ('tbhook', 'm007_unknown_labels', '2026-01-01');
INSERT INTO _sqlite_migrations (migration_set, name, applied_at) VALUES ('tbhook', 'm008_meta', '2026-01-01');
INSERT INTO _sqlite_migrations (migration_set, name, applied_at) VALUES ('tbhook', 'm009_merged_logs', '2026-01-01');
INSERT INTO _sqlite_migrations (migration_set, name, applied_at) VALUES ('tbhook', 'm010_views_in_range', '2026-01-01');
INSERT INTO _sqlite_migrations (migration_set, name, applied_at) VALUES ('tbhook', 'm011_redelivery_indexes', '2026-01-01');
INSERT INTO _sqlite_migrations (migration_set, name, applied_at) VALUES ('tbhook', 'm012_event_counts', '2026-01-01');
INSERT INTO _sqlite_migrations (migration_set, name, applied_at) VALUES ('tbhook', 'm013_event_time_index', '2026-01-01');
INSERT INTO _sqlite_migrations (migration_set, name, applied_at) VALUES ('tbhook', 'm014_dedupe_in_time_order', '2026-01-01');
INSERT INTO _sqlite_migrations (migration_set, name, applied_at) VALUES ('tbhook', 'm015_case_timelines', '2026-12-06');
INSERT INTO _sqlite_migrations (migration_set, name, applied_at) VALUES ('tbhook', 'm016_queue_and_tallies', '2026-12-07');
INSERT INTO tbhook_meta VALUES ('logId', '5b0c1f4e9d2a47e38c6f1a2b3c4d5e6f');
INSERT INTO tbhook_meta VALUES ('timelinesVersion', '2');

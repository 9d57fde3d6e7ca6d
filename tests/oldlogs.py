"""Logs as an older tbhook left them, for the tests and the benchmarks that upgrade one: the
schema after m013 (tests/schemas/, frozen), with ``events`` rows that m014 must rebuild."""

from __future__ import annotations

import sqlite3
from pathlib import Path

SCHEMAS = Path(__file__).resolve().parent / "schemas"


def at_m013(path: Path, events: int = 0) -> Path:
    """A database at m013 holding ``events`` caseClosed rows (bodies of one byte each)."""
    conn = sqlite3.connect(path)
    conn.executescript((SCHEMAS / "sqlite_013_m013_event_time_index.sql").read_text())
    if events:
        conn.execute(
            "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < ?) "
            "INSERT INTO events (receivedAt, lastReceivedAt, path, event, timestamp, body, "
            "bodySha256) SELECT '2024-01-01T00:00:00.000Z', '2024-01-01T00:00:00.000Z', '/', "
            "'caseClosed', 1700000000 + i, X'00', randomblob(32) FROM n",
            [events],
        )
    conn.commit()
    conn.close()
    return path

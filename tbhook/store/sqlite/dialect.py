"""How SQLite spells what the backends share."""

from tbhook.store.sql import Dialect

SQLITE = Dialect(
    name="sqlite",
    char="char",
    empty_blob="X''",
    contains="instr({0}, ?) > 0",
    iso_time_format="strftime('%Y-%m-%dT%H:%M:%SZ', {0}, 'unixepoch')",
    epoch_of_iso="((julianday({0}) - 2440587.5) * 86400)",
    indexed_by=True,
    least="min",
    greatest="max",
    event_key='coalesce(timestamp, 0), "bodySha256"',  # the index events_dedupe (m014)
)

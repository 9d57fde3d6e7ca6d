"""``case_tallies``: what `report` counts, per quarter-hour and source
(``tbhook.model.tallies``), kept by the same write transactions as the case summaries, from
the same summaries: a write that changes a case takes its old contribution out and puts its
new one in. A row per quarter-hour and source with anything in it, and per source a running
total of ``opened`` (``bucket`` NULL), so the cases open when a report's range begins are
that total less what the rows from then on add. A row's durations are in the order they came
(a report sorts them); a row a recount leaves empty is deleted. The rows hold what counting
every case again gives (tests/test_timelines.py)."""

from __future__ import annotations

import functools
from collections.abc import Iterator, Sequence
from typing import Any

from tbhook.model.tallies import BUCKET, COLUMNS, COUNTS, LISTS, Changes, is_empty
from tbhook.store.job import Job
from tbhook.store.sql import names, q

ROW_COLUMNS = ("key", "bucket", "sourceId", *COLUMNS)
INSERT = (
    f"INSERT INTO case_tallies ({names(ROW_COLUMNS)}) "
    f"VALUES ({', '.join('?' for _ in ROW_COLUMNS)}) "
    'ON CONFLICT ("key") DO UPDATE SET '
)
# A row replaced whole (its values read and changed first), or added to where it stands.
REPLACE = INSERT + ", ".join(f"{q(c)} = excluded.{q(c)}" for c in COLUMNS)
ADD_COUNT = "{0} = case_tallies.{0} + excluded.{0}"
CHUNK = 500


def _marks(values: Sequence[Any]) -> str:
    return ", ".join("?" for _ in values)


class Tallies(Job):
    """The report's tallies: kept up by writers, read by `report` where they answer."""

    # -- writing: inside a write transaction ----------------------------------------------

    # How a backend appends one blob to another in SQL ({0} and {1}).
    concatenated = "CAST({0} || {1} AS BLOB)"

    def keep(self, conn: Any, changes: Changes) -> None:
        """Apply what some cases' new summaries change: added to the rows where they stand
        (events that came in order, a new case: nothing is taken out of a list), or, when a
        case was counted again, the rows read (and locked), changed and written back."""
        keys = changes.ordered()
        if not keys:
            return
        if not changes.takes_out:
            conn.executemany(
                self.add_sql, [(text, *key, *changes.added(key)) for text, key in keys]
            )
            return
        stored = self.locked(conn, [text for text, _key in keys])
        upserts, gone = [], []
        for text, key in keys:
            values = changes.applied(key, stored.get(text))
            if is_empty(values):
                if text in stored:
                    gone.append(text)
            else:
                upserts.append((text, *key, *values))
        for start in range(0, len(gone), CHUNK):
            part = gone[start : start + CHUNK]
            conn.execute(f'DELETE FROM case_tallies WHERE "key" IN ({_marks(part)})', part)
        if upserts:
            conn.executemany(REPLACE, upserts)

    @functools.cached_property
    def add_sql(self) -> str:
        counts = [ADD_COUNT.format(q(c)) for c in COUNTS]
        lists = [
            f"{q(c)} = " + self.concatenated.format(f"case_tallies.{q(c)}", f"excluded.{q(c)}")
            for c in LISTS
        ]
        return INSERT + ", ".join(counts + lists)

    def locked(self, conn: Any, keys: list[str]) -> dict[str, tuple]:
        """The stored rows (COLUMNS) of these keys, by key (a backend with concurrent writers
        locks them until the commit)."""
        found = {}
        for start in range(0, len(keys), CHUNK):
            part = keys[start : start + CHUNK]
            for row in conn.execute(
                f'SELECT "key", {names(COLUMNS)} FROM case_tallies WHERE "key" IN ({_marks(part)})',
                part,
            ):
                found[row[0]] = tuple(row[1:])
        return found

    def clear(self, conn: Any) -> None:
        """Every row out: a rebuild counts them again (``keep``, a chunk of cases at a time)."""
        conn.execute("DELETE FROM case_tallies")

    # -- reading ---------------------------------------------------------------------------

    def available(self) -> bool:
        """Whether this database keeps the tallies (a reader may open one not upgraded)."""
        return True

    def rows(self, start: int, end: int, source: int | None) -> Iterator[tuple]:
        """The rows of the quarter-hours from Unix seconds ``start`` to ``end`` (multiples of
        BUCKET), of one source or all: bucket, sourceId, then COLUMNS."""
        where, params = self._source(source)
        return self.query(
            f'SELECT bucket, "sourceId", {names(COLUMNS)} FROM case_tallies '
            f"WHERE bucket >= ? AND bucket < ?{where}",
            [start // BUCKET, end // BUCKET, *params],
        )

    def open_at(self, start: int, source: int | None) -> dict[Any, int]:
        """Per source, how many cases are open at Unix seconds ``start`` (a multiple of
        BUCKET): the running total, less the openings and closes from then on."""
        where, params = self._source(source)
        counts: dict[Any, int] = {}
        for key, value in self.query(
            'SELECT "sourceId", CAST(sum(opened) AS BIGINT) FROM case_tallies '
            f'WHERE bucket IS NULL{where} GROUP BY "sourceId"',
            params,
        ):
            counts[key] = value
        for key, value in self.query(
            'SELECT "sourceId", CAST(sum(opened) AS BIGINT) FROM case_tallies '
            f'WHERE bucket >= ?{where} GROUP BY "sourceId"',
            [start // BUCKET, *params],
        ):
            counts[key] = counts.get(key, 0) - value
        return {key: value for key, value in counts.items() if value}

    @staticmethod
    def _source(source: int | None) -> tuple[str, list]:
        return ("", []) if source is None else (' AND "sourceId" = ?', [source])

"""PostgreSQL's case summaries. Several receivers may commit at once, so the events a
transaction added are those stamped with its own transaction id (``txid``), and the summaries
it changes are locked first, in caseId order: a case's events folded by two transactions at
once are folded one after the other (the second sees the first's row, or recounts)."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

from tbhook.model.cases import SUMMARY_COLUMNS, Summary
from tbhook.model.tallies import COLUMNS
from tbhook.store.sql import names
from tbhook.store.tallies import Tallies
from tbhook.store.timelines import Timelines, case_sql


class PostgresTimelines(Timelines):
    def new_rows(
        self, conn: Any, after: Any = None
    ) -> tuple[list[tuple], dict[int, Summary] | None]:
        rows = conn.execute(
            case_sql('e.txid = pg_current_xact_id() AND e."caseId" IS NOT NULL')
        ).fetchall()
        return rows, None

    def stored(self, conn: Any, case_ids: Sequence[int]) -> dict[int, Summary]:
        """The rows of these cases, locked until the commit: a row for a case new here is
        made first (empty), so two transactions adding a case's first events meet on it."""
        if not case_ids:
            return {}
        ids = list(case_ids)
        conn.execute(
            'INSERT INTO case_timelines ("caseId") SELECT unnest(?::bigint[]) ORDER BY 1 '
            "ON CONFLICT DO NOTHING",
            [ids],
        )
        rows = conn.execute(
            f"SELECT {names(SUMMARY_COLUMNS)} FROM case_timelines "
            'WHERE "caseId" = ANY(?) ORDER BY "caseId" FOR UPDATE',
            [ids],
        ).fetchall()
        return {row[0]: Summary.of(row) for row in rows}

    def case_rows(self, conn: Any, case_ids: Sequence[int]) -> Iterator[tuple]:
        yield from conn.execute(case_sql('e."caseId" = ANY(?)'), [list(case_ids)]).fetchall()

    def scan(self, conn: Any, sql: str) -> Iterator[tuple]:
        with conn.conn.cursor(name="tbhook_timelines") as cursor:
            cursor.itersize = 5000
            cursor.execute(sql)
            yield from cursor


class PostgresTallies(Tallies):
    concatenated = "{0} || {1}"

    def available(self) -> bool:
        return self.store.has_tallies

    def locked(self, conn: Any, keys: list[str]) -> dict[str, tuple]:
        """The rows, locked until the commit in the order given, one key after the other
        (every writer's order, the one the rows are added to in too: no two wait for each
        other in a circle): a row for a key new here is made (empty), an existing one locked
        by a no-op update, in one pass. Two passes (the new rows first, then the rest) held
        a late new key while waiting for an early one that a writer adding in order held,
        and that writer then waited for the late key: a deadlock."""
        rows = conn.execute(
            'INSERT INTO case_tallies ("key", bucket, "sourceId") '
            "SELECT k, nullif(split_part(k, ',', 1), 'NULL')::bigint, "
            "nullif(split_part(k, ',', 2), 'NULL')::bigint "
            "FROM unnest(?::text[]) WITH ORDINALITY AS given (k, n) ORDER BY n "
            'ON CONFLICT ("key") DO UPDATE SET "key" = excluded."key" '
            f'RETURNING "key", {names(COLUMNS)}',
            [keys],
        ).fetchall()
        return {row[0]: tuple(row[1:]) for row in rows}

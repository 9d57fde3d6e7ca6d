"""The queue's reads: the cases waiting for an agent, from the wait each case summary keeps
(``case_timelines``' ``wait`` columns, folded by every write), oldest first through a partial
index of the waiting cases only. The counts of breached and at-risk waits are counts of
starts up to a moment (``tbhook.model.queue.thresholds``), answered by the same index.

Where the kept waits cannot answer (a database not yet upgraded, a case a write has not
folded yet, or the queue at a moment some events come after), the waits are counted again
from the events: ``recounted``."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from tbhook.model.cases import FIRST, REPLY, Summary, summaries
from tbhook.model.queue import WAIT_COLUMNS, Waiting
from tbhook.store.job import Job
from tbhook.store.sql import names
from tbhook.store.timelines import case_sql, chunks, marks

WAIT_SELECT = names(WAIT_COLUMNS)


class Queue(Job):
    """The cases waiting now."""

    def kept(self) -> bool:
        """Whether this database keeps each case's wait (m016, p007)."""
        return self.store.timelines.available() and self.store.tallies.available()

    def answers(self, waiting: Waiting) -> bool:
        """Whether the kept waits answer alone: kept here, every case folded, and no event
        stamped after the moment asked about."""
        if not self.kept() or self.store.timelines.pending():
            return False
        if waiting.at is None:
            return True
        latest = self.one('SELECT max("lastAt") FROM case_timelines')[0]
        return latest is None or waiting.at >= latest

    def oldest(self, waiting: Waiting, limit: int | None) -> list[tuple]:
        """The waits (rows of WAIT_COLUMNS), oldest first, then by caseId; the first
        ``limit``."""
        where, params = self._where(waiting)
        return list(
            self.query(
                f"SELECT {WAIT_SELECT} FROM case_timelines WHERE {where} "
                'ORDER BY "waitAt", "caseId"' + (f" LIMIT {int(limit)}" if limit else ""),
                params,
            )
        )

    def standing(
        self, waiting: Waiting, limits: dict[str, tuple[int | None, int | None]]
    ) -> tuple[int, int, int]:
        """How many wait, how many started up to each kind's first limit (breached), and up
        to its second (breached or at risk); a None limit counts nothing."""
        where, params = self._where(waiting)
        (first_breached, first_risk), (reply_breached, reply_risk) = limits[FIRST], limits[REPLY]
        up_to = (
            'CASE WHEN ("waitKind" = ? AND "waitAt" <= ?) OR ("waitKind" = ? AND "waitAt" <= ?) '
            "THEN 1 ELSE 0 END"
        )
        count, breached, risk = self.one(
            f"SELECT count(*), CAST(coalesce(sum({up_to}), 0) AS BIGINT), "
            f"CAST(coalesce(sum({up_to}), 0) AS BIGINT) FROM case_timelines WHERE {where}",
            [FIRST, first_breached, REPLY, reply_breached,
             FIRST, first_risk, REPLY, reply_risk, *params],
        )  # fmt: skip
        return count, breached, risk

    def recounted(self, waiting: Waiting) -> list[tuple]:
        """Every wait at ``waiting.at`` (None: now), in no order: the kept ones where no
        later event changed them, the others counted again from their events up to then."""
        at = waiting.at
        up_to, params = (' AND e."timestamp" <= ?', [at]) if at is not None else ("", [])
        if not self.kept():
            rows = self.query(case_sql(f'e."caseId" IS NOT NULL{up_to}'), params)
            return [wait for wait in _waits(summaries(rows)) if waiting.keeps(wait)]
        pending = self.store.timelines.pending()
        where, kept_params = self._where(waiting)
        if at is not None:
            where += ' AND "lastAt" <= ?'
            kept_params.append(at)
        kept = self.query(f"SELECT {WAIT_SELECT} FROM case_timelines WHERE {where}", kept_params)
        found = [row for row in kept if row[0] not in pending]
        again = set(pending)
        if at is not None:  # cases with events both before and after the moment
            again |= {
                row[0]
                for row in self.query(
                    'SELECT "caseId" FROM case_timelines WHERE "lastAt" > ? AND "startAt" <= ?',
                    [at, at],
                )
            }
        rows = (
            row
            for part in chunks(sorted(again))
            for row in self.query(
                case_sql(f'e."caseId" IN ({marks(part)}){up_to}'), [*part, *params]
            )
        )
        return found + [wait for wait in _waits(summaries(rows)) if waiting.keeps(wait)]

    def _where(self, waiting: Waiting) -> tuple[str, list[Any]]:
        clauses = ['"waitAt" IS NOT NULL']
        params: list[Any] = []
        if waiting.sources:
            clauses.append(f'"waitSourceId" IN ({marks(waiting.sources)})')
            params += waiting.sources
        if waiting.path is not None:
            clauses.append('"waitPath" = ?')
            params.append(waiting.path)
        if waiting.after is not None:
            clauses.append('"waitAt" > ?')
            params.append(waiting.after)
        if waiting.cases:
            clauses.append(f'"caseId" IN ({marks(waiting.cases)})')
            params += waiting.cases
        return " AND ".join(clauses), params


def _waits(found: Iterable[Summary]) -> list[tuple]:
    return [
        (s.caseId, s.waitAt, s.waitKind, s.waitMessages, s.waitSourceId, s.waitPath, s.personId)
        for s in found
        if s.waitAt is not None
    ]

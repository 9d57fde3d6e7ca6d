"""Who is who after merges, read from the merges in the log (the rule is ``tbhook.model.persons``):
one person's group through the merges that touch it, or everyone's at once."""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterable
from typing import Any

from tbhook.model.persons import Merge, PersonGroup, Resolver, group_of, resolver_for
from tbhook.store.job import Job
from tbhook.store.sql import merges_by


class Persons(Job):
    """Person look-ups through the merge indexes."""

    def merges_touching(self, person_ids: set[int]) -> list[Merge]:
        """The merges that name any of ``person_ids`` on either side."""
        ids = sorted(person_ids)
        found: list[Merge] = []
        # A UNION, not an OR, so each side uses its own partial index.
        columns = 'SELECT "timestamp", id, "oldPersonId", "newPersonId"'
        for start in range(0, len(ids), 5000):  # within SQLite's limit on parameters
            part = ids[start : start + 5000]
            marks = ", ".join("?" for _ in part)
            sql = (
                f"{columns} {merges_by(self.dialect, 'oldPersonId')} IN ({marks}) "
                f"UNION {columns} {merges_by(self.dialect, 'newPersonId')} IN ({marks})"
            )
            found += [Merge(*row) for row in self.query(sql, [*part, *part])]
        return list({merge.id: merge for merge in found}.values())

    def group(self, person_id: int) -> PersonGroup:
        return group_of(person_id, self.merges_touching)

    def lookup(self) -> Callable[[int | None], int | None]:
        """Canonical IDs looked up person by person (cached): fast for a few rows."""

        @functools.lru_cache(maxsize=4096)
        def canonical(person_id: int | None) -> int | None:
            return None if person_id is None else self.group(person_id).canonicalPersonId

        return canonical

    def for_persons(self, person_ids: Iterable[int | None]) -> Callable[[Any], Any]:
        """Canonical IDs for a page of rows: the groups of just these persons, walked together."""
        return resolver_for(
            {p for p in person_ids if p is not None}, self.merges_touching
        ).canonical

    def resolver(self) -> Resolver:
        """Canonical IDs for everyone, from all merges."""
        return Resolver(
            Merge(*row)
            for row in self.query(
                'SELECT "timestamp", id, "oldPersonId", "newPersonId" FROM events '
                "WHERE event = 'profileMerged'"
            )
        )

    def aliases(self, person_id: int) -> list[int]:
        """Everyone merged with ``person_id``, the person included (``--person``)."""
        return self.group(person_id).aliases

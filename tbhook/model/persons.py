"""Merged persons: which person IDs are one person now, and which ID is current.

``profileMerged`` says that ``oldPersonId`` is now ``newPersonId``. A merge joins the groups of
both persons; a group's canonical ID is the ``newPersonId`` of its latest merge, ordered by
``timestamp`` then id, so a merge that arrives late gives the answer it would have given in
order. A self-merge (1 -> 1, as in the spec's example) changes nothing; cycles cannot hang
because groups are sets, never followed as chains.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True, order=True)
class Merge:
    """One profileMerged event, ordered by (timestamp, id)."""

    timestamp: int
    id: int
    oldPersonId: int
    newPersonId: int

    @property
    def changes_nothing(self) -> bool:
        return self.oldPersonId == self.newPersonId


def person_of(row: Mapping[str, Any]) -> Any:
    """The person an event is about: its personId, or the person a merge made (newPersonId)."""
    return row["personId"] if row["personId"] is not None else row["newPersonId"]


def canonical_of(person_id: int, merges: Iterable[Merge]) -> int:
    """The canonical ID of the group holding ``person_id``, given that group's merges."""
    latest = max((m for m in merges if not m.changes_nothing), default=None)
    return latest.newPersonId if latest else person_id


@dataclass
class PersonGroup:
    """A person, everyone merged with them, and how."""

    personId: int
    canonicalPersonId: int
    aliases: list[int]
    merges: list[Merge] = field(default_factory=list)


def group_of(person_id: int, merges_touching: Callable[[set[int]], list[Merge]]) -> PersonGroup:
    """Find one person's group by walking only the merges that touch it (fast at any size)."""
    members, merges = _walk({person_id}, merges_touching)
    return PersonGroup(person_id, canonical_of(person_id, merges), sorted(members), merges)


def resolver_for(
    person_ids: set[int], merges_touching: Callable[[set[int]], list[Merge]]
) -> Resolver:
    """A Resolver for these persons only: their groups, walked together (a page of rows asks
    a few queries in all, not a few per person)."""
    return Resolver(_walk(person_ids, merges_touching)[1])


def _walk(
    start: set[int], merges_touching: Callable[[set[int]], list[Merge]]
) -> tuple[set[int], list[Merge]]:
    """Every person reachable from ``start`` through merges, and those merges in order."""
    members = set(start)
    frontier = set(start)
    found: dict[int, Merge] = {}
    while frontier:
        new = [m for m in merges_touching(frontier) if m.id not in found]
        found.update((m.id, m) for m in new)
        reached = {m.oldPersonId for m in new if not m.changes_nothing}
        reached |= {m.newPersonId for m in new if not m.changes_nothing}
        frontier = reached - members
        members |= frontier
    return members, sorted(found.values())


class Resolver:
    """Canonical IDs for every person at once, from all merges (for output of many rows)."""

    def __init__(self, merges: Iterable[Merge]):
        self._parent: dict[int, int] = {}
        latest: dict[int, Merge] = {}
        pending = [m for m in merges if not m.changes_nothing]
        for merge in pending:
            self._union(merge.oldPersonId, merge.newPersonId)
        for merge in pending:
            root = self._find(merge.oldPersonId)
            if root not in latest or merge > latest[root]:
                latest[root] = merge
        self._canonical = {root: merge.newPersonId for root, merge in latest.items()}

    def changed(self) -> dict[int, int]:
        """Every person whose canonical ID is another ID, mapped to it."""
        pairs = ((person, self._canonical[self._find(person)]) for person in list(self._parent))
        return {person: canonical for person, canonical in pairs if person != canonical}

    def root(self, person_id: int) -> int:
        """Any stable name for the person's group (persons never merged are their own)."""
        return self._find(person_id) if person_id in self._parent else person_id

    def canonical(self, person_id: int | None) -> int | None:
        if person_id is None or person_id not in self._parent:
            return person_id
        return self._canonical[self._find(person_id)]

    def _find(self, person: int) -> int:
        parent = self._parent
        root = parent.setdefault(person, person)
        while parent[root] != root:
            root = parent[root]
        while parent[person] != root:  # path compression, iterative: deep chains cannot recurse
            parent[person], person = root, parent[person]
        return root

    def _union(self, a: int, b: int) -> None:
        root_a, root_b = self._find(a), self._find(b)
        if root_a != root_b:
            self._parent[root_a] = root_b

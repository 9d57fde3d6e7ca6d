"""`tbhook generate`: realistic, deterministic Tracebuzz traffic as NDJSON. Pure but for output.

Cases interleave: a customer writes, an agent answers (sometimes never), they alternate a few
times, and most cases are closed, with and without reasonId and externalCaseId. Anonymous
persons are merged into registered profiles, sometimes in chains, sometimes reversed later.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from random import Random

DEFAULT_START = 1_704_067_200  # 2024-01-01T00:00:00Z: fixed, so a seed always gives the same log
SEARCH_IDS = (11111, 22222, 33333)
SOURCES = {14: 111, 3: 112, 1: 113, 17: 114, 22: 115}  # sourceId -> connectionId
TYPE_WEIGHTS = {4: 50, 3: 20, 2: 15, 1: 5, 5: 5, 6: 5}  # private messages dominate
OPEN_CASES = 40
MERGE_CHANCE = 0.01
REGISTERED_BASE = 9_000_000


@dataclass
class _Case:
    case_id: int
    person: int
    search_id: int
    source: int
    agent: int
    remaining: int  # messages still to come
    answered: bool  # False: the agent never replies
    next_own: int = 0
    last_result: int = 0


@dataclass
class Generator:
    seed: int = 0
    start: int = DEFAULT_START
    persons: int = 1000
    rate: float = 10.0  # events per second of event time
    _rng: Random = field(init=False)

    def __post_init__(self) -> None:
        from random import Random  # 2 ms: only when generating

        self._rng = Random(self.seed)
        self._clock = float(self.start)
        self._next_case = 5_000_000
        self._next_result = 70_000_000
        self._open: list[_Case] = []
        self._merges: list[tuple[int, int]] = []
        self._registered = REGISTERED_BASE

    def lines(self, count: int) -> Iterator[str]:
        """``count`` NDJSON lines (without newlines)."""
        rng = self._rng
        types, weights = list(TYPE_WEIGHTS), list(TYPE_WEIGHTS.values())
        type_choices = rng.choices(types, weights, k=4096)
        for n in range(count):
            self._clock += rng.expovariate(self.rate)
            if rng.random() < MERGE_CHANCE:
                yield self._merge()
                continue
            while len(self._open) < OPEN_CASES:
                self._open.append(self._new_case())
            case = self._open[rng.randrange(len(self._open))]
            if case.remaining > 0:
                yield self._message(case, type_choices[n % 4096])
            else:
                self._open.remove(case)
                if rng.random() < 0.85:
                    yield self._close(case)
                else:  # left open: the next case takes the slot
                    case = self._new_case()
                    self._open.append(case)
                    yield self._message(case, type_choices[n % 4096])

    def _new_case(self) -> _Case:
        rng = self._rng
        self._next_case += 1
        source = rng.choice(list(SOURCES))
        return _Case(
            case_id=self._next_case,
            person=100_000 + rng.randrange(self.persons),
            search_id=rng.choice(SEARCH_IDS),
            source=source,
            agent=rng.randrange(1, 60),
            remaining=rng.randint(1, 8),
            answered=rng.random() > 0.15,
        )

    def _message(self, case: _Case, type_id: int) -> str:
        self._next_result += 1
        own = case.next_own
        case.remaining -= 1
        case.last_result = self._next_result
        if case.answered:
            case.next_own = 1 - own
        handler = case.agent if own or case.next_own == 0 else 0
        return (
            f'{{"event":"newResult","searchId":{case.search_id},"uniqueId":{self._next_result},'
            f'"resultId":{self._next_result},"personId":{case.person},"caseId":{case.case_id},'
            f'"handlerId":{handler},"sourceId":{case.source},'
            f'"connectionId":{SOURCES[case.source]},"typeId":{type_id},"own":{own},'
            f'"timestamp":{int(self._clock)}}}'
        )

    def _close(self, case: _Case) -> str:
        rng = self._rng
        reason = rng.randrange(1, 30) if rng.random() < 0.7 else "null"
        external_case = rng.randrange(10_000, 99_999) if rng.random() < 0.4 else "null"
        external_person = rng.randrange(500_000, 600_000) if rng.random() < 0.3 else "false"
        return (
            f'{{"event":"caseClosed","searchId":{case.search_id},"caseId":{case.case_id},'
            f'"externalCaseId":{external_case},"reasonId":{reason},"personId":{case.person},'
            f'"externalPersonId":{external_person},"agentId":{case.agent},'
            f'"resultId":{case.last_result},"connectionId":{SOURCES[case.source]},'
            f'"timestamp":{int(self._clock)}}}'
        )

    def _merge(self) -> str:
        rng = self._rng
        roll = rng.random()
        if self._merges and roll < 0.1:  # a later reversal of an earlier merge
            new, old = self._merges[rng.randrange(len(self._merges))]
        elif self._merges and roll < 0.3:  # a chain: a registered profile merged onward
            old = self._merges[rng.randrange(len(self._merges))][1]
            self._registered += 1
            new = self._registered
        else:  # an anonymous person registers
            old = 100_000 + rng.randrange(self.persons)
            self._registered += 1
            new = self._registered
        self._merges.append((old, new))
        return (
            f'{{"event":"profileMerged","oldPersonId":{old},"newPersonId":{new},'
            f'"timestamp":{int(self._clock)}}}'
        )

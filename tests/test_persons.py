"""Merged persons: chains, joins, reversals, self-merges, cycles and late merges."""

import itertools
import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tbhook.model.events import parse
from tbhook.model.persons import Merge, Resolver, group_of
from tbhook.store import Delivery
from tbhook.store.sqlite import SQLiteStore


def merge_body(old: int, new: int, ts: int) -> bytes:
    return json.dumps(
        {"event": "profileMerged", "oldPersonId": old, "newPersonId": new, "timestamp": ts}
    ).encode()


def store_with(db_path, merges):
    store = SQLiteStore.open(db_path)
    store.append([Delivery(merge_body(*m), parse(merge_body(*m))) for m in merges])
    return store


@pytest.mark.parametrize(
    "merges, person, canonical, aliases",
    [
        ([(10, 20, 1), (20, 30, 2)], 10, 30, [10, 20, 30]),  # a chain resolves
        ([(10, 20, 1), (20, 30, 2)], 30, 30, [10, 20, 30]),
        ([(10, 20, 1), (20, 10, 2)], 20, 10, [10, 20]),  # a later reversal wins
        ([(10, 20, 1), (10, 50, 2)], 20, 50, [10, 20, 50]),  # a merge joins both groups
        ([(1, 1, 1)], 1, 1, [1]),  # the spec's self-merge changes nothing
        ([(10, 20, 1), (20, 20, 2)], 10, 20, [10, 20]),  # a self-merge later changes nothing
        ([(1, 2, 1), (2, 3, 2), (3, 1, 3)], 2, 1, [1, 2, 3]),  # a cycle ends, latest wins
        ([(10, 20, 1)], 99, 99, [99]),  # an unknown person is its own canonical ID
        ([(10, 20, 5), (20, 30, 5)], 10, 30, [10, 20, 30]),  # same timestamp: id decides
    ],
)
def test_resolution(db_path, merges, person, canonical, aliases):
    store = store_with(db_path, merges)
    group = store.persons.group(person)
    assert (group.canonicalPersonId, group.aliases) == (canonical, aliases)
    assert store.persons.resolver().canonical(person) == canonical


def test_merge_history_is_in_time_order_whatever_the_arrival(db_path):
    store = store_with(db_path, [(20, 30, 200), (10, 20, 100)])
    group = store.persons.group(10)
    assert [(m.oldPersonId, m.newPersonId, m.timestamp) for m in group.merges] == [
        (10, 20, 100),
        (20, 30, 200),
    ]
    assert group.canonicalPersonId == 30


@pytest.mark.parametrize("order", list(itertools.permutations(range(4))))
def test_late_merges_give_the_in_order_answer(tmp_path, order):
    merges = [(10, 20, 1), (20, 30, 2), (40, 10, 3), (30, 40, 4)]
    store = store_with(tmp_path / "late.db", [merges[i] for i in order])
    assert {store.persons.group(p).canonicalPersonId for p in (10, 20, 30, 40)} == {40}


merge_lists = st.lists(
    st.tuples(st.integers(1, 12), st.integers(1, 12), st.integers(0, 5)), max_size=25
)


@settings(max_examples=200, deadline=None)
@given(merge_lists)
def test_walking_one_group_agrees_with_resolving_everyone(raw):
    merges = [Merge(ts, i, old, new) for i, (old, new, ts) in enumerate(raw, 1)]
    resolver = Resolver(merges)

    def touching(ids):
        return [m for m in merges if m.oldPersonId in ids or m.newPersonId in ids]

    for person in range(1, 13):
        group = group_of(person, touching)
        assert group.canonicalPersonId == resolver.canonical(person)
        assert person in group.aliases
        for alias in group.aliases:  # everyone in a group has the same canonical ID
            assert resolver.canonical(alias) == group.canonicalPersonId
        assert group.canonicalPersonId in group.aliases


def test_long_chain_does_not_recurse(db_path):
    chain = [(i, i + 1, i) for i in range(1, 5001)]
    resolver = Resolver(Merge(ts, i, old, new) for i, (old, new, ts) in enumerate(chain, 1))
    assert resolver.canonical(1) == 5001

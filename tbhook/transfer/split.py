"""Big reads on two cores: the upper half of the id range in a forked worker.

SQLite and the C loops do the per-row work of an export or a stats scan on one core; the
machine has two. Splitting the matching id range in halves and reading the upper half in a
forked process (its own read-only connection) about halves the wall time.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import TypeVar

from tbhook.model.filters import Filters
from tbhook.store import Store, open_reader
from tbhook.store.sql import IdRange

T = TypeVar("T")
SPLIT_FROM_ROWS = 200_000  # below this many ids, a second process costs more than it saves


def split_from_rows() -> int:
    """The id span from which a read is split over two cores: ``TBHOOK_SPLIT_ROWS`` when set
    (tests set it low to take the two-core path on a small log)."""
    value = os.environ.get("TBHOOK_SPLIT_ROWS", "")
    return int(value) if value.isdigit() else SPLIT_FROM_ROWS


def in_halves(
    store: Store,
    filters: Filters,
    here: Callable[[Store, Filters, IdRange | None], T],
    there: Callable[[str, Filters, IdRange], T],
) -> list[T]:
    """``here(store, filters, lower)`` in this process while ``there(target, filters, upper)``
    runs in a worker, in id order. A small span, one core, no fork, or a database server doing
    the work anyway (PostgreSQL): ``here`` takes the whole range alone (``None``)."""
    if not store.can_split:
        return [here(store, filters, None)]
    # multiprocessing and its pool: 7 ms to load, so only for a read that may split.
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    first, last = store.reads.id_span(filters)
    cores = os.cpu_count() or 1
    can_fork = "fork" in multiprocessing.get_all_start_methods()
    if first is None or last is None or cores < 2 or not can_fork:
        return [here(store, filters, None)]
    if last - first < split_from_rows():
        return [here(store, filters, None)]
    middle = (first + last) // 2
    with ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("fork")) as pool:
        later = pool.submit(there, store.target, filters, (middle + 1, last))
        return [here(store, filters, (first, middle)), later.result()]


def reading(target: str, work: Callable[[Store], T]) -> T:
    """In the worker: ``work`` on the database opened read-only afresh."""
    store = open_reader(target)
    try:
        return work(store)
    finally:
        store.close()

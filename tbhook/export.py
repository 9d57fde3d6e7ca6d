"""`tbhook export`: every matching event, streamed, using both cores on large exports.

SQLite and the C csv writer do the per-row work. On a large export, a forked worker writes
the second half of the id range to a temporary file while this process streams the first
half, then the second half follows: about twice as fast on two cores, in constant memory.
"""

from __future__ import annotations

import csv
import multiprocessing
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor
from typing import IO, Any

from tbhook.filters import Filters
from tbhook.store import EventStore

PARALLEL_FROM_ROWS = 200_000
PROGRESS_EVERY = 10_000

Progress = Callable[[int], None]


def export(
    store: EventStore,
    filters: Filters,
    fmt: str,
    fields: Sequence[str],
    stream: IO[str],
    progress: Progress | None = None,
) -> int:
    """Write the header (csv) and every matching event to ``stream``; return the count."""
    if fmt == "csv":
        csv.writer(stream, lineterminator="\n").writerow(fields)
    first, last = store.id_span(filters)
    if first is None or last is None:
        return 0
    if last - first < PARALLEL_FROM_ROWS or (os.cpu_count() or 1) < 2 or not _can_fork():
        return _write(store, filters, fmt, first, last, stream, progress)
    middle = (first + last) // 2
    with tempfile.NamedTemporaryFile("w+", newline="", encoding="utf-8", suffix=".part") as part:
        context = multiprocessing.get_context("fork")
        with ProcessPoolExecutor(1, mp_context=context) as pool:
            later = pool.submit(_write_part, store.path, filters, fmt, middle + 1, last, part.name)
            count = _write(store, filters, fmt, first, middle, stream, progress)
            count += later.result()
        part.seek(0)
        shutil.copyfileobj(part, stream, 1 << 20)
    return count


def _write(
    store: EventStore,
    filters: Filters,
    fmt: str,
    first: int,
    last: int,
    stream: IO[str],
    progress: Progress | None = None,
) -> int:
    rows = _Counted(store.export_cursor(filters, fmt, first, last), progress)
    if fmt == "csv":
        csv.writer(stream, lineterminator="\n").writerows(rows)
    else:
        stream.writelines(line + "\n" for (line,) in rows)
    return rows.count


def _write_part(db: str, filters: Filters, fmt: str, first: int, last: int, path: str) -> int:
    """In the worker: one id range of the export into the file at ``path``."""
    store = EventStore.open_readonly(db)
    try:
        with open(path, "w", newline="", encoding="utf-8") as stream:
            return _write(store, filters, fmt, first, last, stream)
    finally:
        store.close()


def _can_fork() -> bool:
    return "fork" in multiprocessing.get_all_start_methods()


class _Counted:
    """Counts rows as the writer pulls them, reporting progress now and then."""

    def __init__(self, rows: Any, progress: Progress | None):
        self._rows = iter(rows)
        self._progress = progress
        self.count = 0

    def __iter__(self) -> Iterator[Any]:
        return self

    def __next__(self) -> Any:
        row = next(self._rows)
        self.count += 1
        if self._progress and self.count % PROGRESS_EVERY == 0:
            self._progress(PROGRESS_EVERY)
        return row

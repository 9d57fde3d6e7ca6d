"""`tbhook export`: every matching event, streamed, on both cores when it is large.

SQLite finishes every row (canonicalPersonId included) and the C csv writer takes the cursor
whole. On a large export the upper half of the id range is written to a temporary file by a
forked worker while this process streams the lower half; the upper half follows.
"""

from __future__ import annotations

import csv
import functools
import shutil
import tempfile
from collections.abc import Callable, Iterator, Sequence
from typing import IO, Any

from tbhook.filters import Filters
from tbhook.split import in_halves, reading
from tbhook.store import EventStore
from tbhook.text import CSV_LINE_END

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
        csv.writer(stream, lineterminator=CSV_LINE_END).writerow(fields)
    with tempfile.NamedTemporaryFile("w+", newline="", encoding="utf-8", suffix=".part") as part:
        counts = in_halves(
            store,
            filters,
            lambda here, lower: _write(here, lower, fmt, stream, progress),
            functools.partial(_write_part, fmt=fmt, path=part.name),
        )
        if len(counts) == 2:
            part.seek(0)
            shutil.copyfileobj(part, stream, 1 << 20)
    return sum(counts)


def _write(
    store: EventStore, filters: Filters, fmt: str, stream: IO[str], progress: Progress | None
) -> int:
    rows = _Counted(store.export_cursor(filters, fmt), progress)
    if fmt == "csv":
        csv.writer(stream, lineterminator=CSV_LINE_END).writerows(rows)
    else:
        stream.writelines(line + "\n" for (line,) in rows)
    return rows.count


def _write_part(db: str, filters: Filters, fmt: str, path: str) -> int:
    """In the worker: the upper half into the temporary file at ``path``."""
    with open(path, "w", newline="", encoding="utf-8") as stream:
        return reading(db, lambda store: _write(store, filters, fmt, stream, None))


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

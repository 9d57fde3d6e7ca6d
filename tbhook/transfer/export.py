"""`tbhook export`: every matching event, streamed, on both cores when it is large.

The store gives rows (``store.exports``); ``output.formats.write_rows`` writes them, with the
one formula guard. On a large SQLite export the upper half of the id range is written to a
temporary file by a forked worker while this process streams the lower half; the upper half
follows. That file has no name (the worker writes to the descriptor it inherits): an export
killed halfway leaves no copy of the events behind.
"""

from __future__ import annotations

import csv
import functools
import os
import shutil
import tempfile
from collections.abc import Callable, Sequence
from typing import IO

from tbhook.model.filters import Filters
from tbhook.model.text import CSV_LINE_END
from tbhook.output.formats import write_rows
from tbhook.store import Store
from tbhook.store.sql import IdRange
from tbhook.transfer.split import in_halves, reading

Progress = Callable[[int], None]


def export(
    store: Store,
    filters: Filters,
    fmt: str,
    fields: Sequence[str],
    stream: IO[str],
    progress: Progress | None = None,
) -> int:
    """Write the header (csv) and every matching event to ``stream``; return the count."""
    if fmt == "csv":
        csv.writer(stream, lineterminator=CSV_LINE_END).writerow(fields)
    with tempfile.TemporaryFile("w+", newline="", encoding="utf-8") as part:
        counts = in_halves(
            store,
            filters,
            lambda here, wanted, ids: write_rows(
                here.exports.batches(wanted, ids), fields, fmt, stream, progress
            ),
            functools.partial(_write_part, fmt=fmt, fields=fields, fd=part.fileno()),
        )
        if len(counts) == 2:
            part.seek(0)
            shutil.copyfileobj(part, stream, 1 << 20)
    return sum(counts)


def _write_part(
    target: str, filters: Filters, ids: IdRange, fmt: str, fields: Sequence[str], fd: int
) -> int:
    """In the forked worker: the upper half into the temporary file open at ``fd``."""
    with open(os.dup(fd), "w", newline="", encoding="utf-8") as stream:
        return reading(
            target,
            lambda store: write_rows(store.exports.batches(filters, ids), fields, fmt, stream),
        )

"""`tbhook import`: load NDJSON or a JSON array through the receiver's parsing and dedupe rules."""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from itertools import islice
from typing import IO, TYPE_CHECKING

from tbhook.model.events import parse
from tbhook.model.times import utc_now
from tbhook.store import ImportRows, Store
from tbhook.transfer.payloads import bodies

if TYPE_CHECKING:
    from concurrent.futures import Future

BATCH = 20000
WAL_CHECKPOINT_PAGES = 10000  # fewer, larger checkpoints while importing (about 40 MB of WAL)
SWITCH_INTERVAL = 0.0002  # hand the GIL over quickly between the parsing and writing threads


@dataclass
class ImportResult:
    inserted: int = 0
    duplicates: int = 0
    quarantined_lines: list[int] = field(default_factory=list)  # newly quarantined
    already_quarantined: int = 0  # unreadable, and already kept by an earlier import

    @property
    def quarantined(self) -> int:
        return len(self.quarantined_lines)


def import_stream(
    store: Store,
    stream: IO[bytes],
    label: str,
    progress: Callable[[int], None] | None = None,
    batch: int = BATCH,
) -> ImportResult:
    """Import every body in ``stream``, in batched transactions.

    Parsing the next batch overlaps with committing the previous one (SQLite releases the
    GIL while it works), so the two cores are both busy.
    """
    from concurrent.futures import ThreadPoolExecutor  # 4 ms (logging): only for an import

    result = ImportResult()
    path = f"import:{label}"
    switch_interval = sys.getswitchinterval()
    sys.setswitchinterval(SWITCH_INTERVAL)
    try:
        with store.checkpoint_every(WAL_CHECKPOINT_PAGES), ThreadPoolExecutor(1) as pool:
            pending: tuple[Future, ImportRows] | None = None
            for chunk in _chunks(bodies(stream), batch):
                rows = ImportRows()
                now = utc_now()
                for line, body in chunk:
                    rows.add(line, body, parse(body), path, now)
                if pending:
                    _add(result, *pending)
                pending = pool.submit(store.import_rows, rows), rows
                if progress:
                    progress(sum(len(body) + 1 for _, body in chunk))
            if pending:
                _add(result, *pending)
    finally:
        sys.setswitchinterval(switch_interval)
    return result


def _add(result: ImportResult, future: Future, rows: ImportRows) -> None:
    inserted, quarantined = future.result()
    result.inserted += inserted
    result.duplicates += len(rows.events) - inserted
    result.quarantined_lines.extend(quarantined)
    result.already_quarantined += len(rows.quarantine) - len(quarantined)


def _chunks(items: Iterable, size: int) -> Iterator[list]:
    iterator = iter(items)
    while chunk := list(islice(iterator, size)):
        yield chunk

"""Retention: old events archived, then deleted; what `tbhook prune` does once and `serve
--retain` does in the background.

Each day's events go to ``DIR/tbhook-YYYY-MM-DD.ndjson.gz`` (the day of their timestamp, in
UTC), the archive format `prune --archive` writes and `import` reads. A batch is written as a
new gzip member, fsynced, read back and checked to hold every body of the batch, and only then
deleted from the database, in short transactions. A pass stopped anywhere (kill -9, a full disk)
loses nothing: the next one finds the bodies already archived, skips them, and deletes them.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import shutil
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from tbhook.errors import TbhookError
from tbhook.model.times import iso_time, utc_now
from tbhook.transfer import archive as archives
from tbhook.transfer.files import clear_stale

DAY = 86400
BATCH = 20_000  # events planned per step of a pass (memory stays bounded at any backlog)
DELETE_CHUNK = 100  # rows per delete transaction: a few milliseconds of the write lock
DELETE_PAUSE = 0.02  # between them, so the receiver's writer commits in between
DELETE_YIELD = 4.0  # ... and at least 4x as long as one took: the lock held a fifth of the time
# Of --max-db-size: prune the oldest days (archived) from here, under the size alert (90%)
# by the time a pass takes to start on a busy machine (make soak: up to 88% at 80%) ...
PRUNE_AT = 0.75
PRUNE_TO = 0.65  # ... down to here, long before the cap would answer 503
LOCK_NAME = "retention"
META_KEY = "retention"
Progress = Callable[[int], None]


class NoRoom(TbhookError):
    """The archive directory cannot take the batch: nothing is deleted."""


class Stopped(Exception):
    """The pass was asked to stop (the receiver stops): what it did so far is still recorded."""


@dataclass
class PassResult:
    """What one pass did, as kept in the database's meta for `doctor`."""

    startedAt: str = field(default_factory=utc_now)
    finishedAt: str | None = None
    cutoff: str | None = None
    archived: int = 0
    skipped: int = 0
    deleted: int = 0
    keptMerges: int = 0
    files: list[str] = field(default_factory=list)
    forSize: bool = False  # days inside the window pruned because the database neared its cap
    deletedForSize: int = 0  # ... how many of the deleted events those were
    lastReceivedAt: str | None = None  # the newest delivery before the pass (it may delete it)
    error: str | None = None
    busy: bool = False  # another receiver's pass held the lock: nothing done

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def day_file(directory: Path, timestamp: int) -> Path:
    day = datetime.fromtimestamp(timestamp, tz=timezone.utc).date().isoformat()
    return directory / f"tbhook-{day}.ndjson.gz"


def archived_then_deleted(
    store: Any,
    path: Path,
    ids: Sequence[int],
    known: set[bytes],
    bodies: Iterable[bytes] | None = None,
    archived: Progress | None = None,
    deleted: Progress | None = None,
    chunk: int | None = None,
    pause: float | None = None,
    yielding: float | None = None,
) -> tuple[int, int]:
    """Append the bodies of ``ids`` to the archive at ``path`` (``known``: the keys of what it
    holds), check on disk that it holds every one, then delete them. (written, skipped);
    TbhookError, with nothing deleted, when the archive could not be written or checked."""
    wanted: set[bytes] = set()

    def noted(stream: Iterable[bytes]) -> Iterator[bytes]:
        for body in stream:
            wanted.add(archives.key(archives.line_of(body)))
            yield body

    source = store.upkeep.archive_bodies(ids) if bodies is None else bodies
    try:
        written, skipped = archives.write(path, noted(source), known, archived)
    except OSError as exc:
        why = exc.strerror or exc
        raise TbhookError(f"could not write {path}: {why}; nothing deleted") from exc
    missing = wanted - archives.lines_in(path)
    if missing:
        raise TbhookError(
            f"{path} does not hold {len(missing)} of the events just archived; nothing deleted"
        )
    given = (("chunk", chunk), ("pause", pause), ("yielding", yielding))
    options = {k: v for k, v in given if v is not None}
    store.upkeep.delete_events(ids, deleted, **options)
    return written, skipped


def run_pass(
    store: Any,
    directory: Path,
    window: int,
    cap: int | None = None,
    now: float | None = None,
    chunk: int = DELETE_CHUNK,
    pause: float = DELETE_PAUSE,
) -> PassResult:
    """One retention pass: events older than ``window`` seconds (by their timestamp, against
    this machine's clock), then, while the database uses more than ``PRUNE_AT`` of ``cap``,
    the oldest days, down to ``PRUNE_TO``. Recorded in the database's meta, failed or not."""
    result = PassResult()
    now = time.time() if now is None else now
    try:
        with _dir_lock(directory), store.exclusive(LOCK_NAME) as mine:
            if not mine:
                result.busy = True
                return result
            # What a pass killed while writing a day file left (the day file itself is whole).
            clear_stale(directory, "prune", lambda line: None)
            cutoff = int(now) - window
            result.cutoff = iso_time(cutoff)
            result.lastReceivedAt = store.reads.last_received_at()
            # Near the cap, what is past the window goes without yielding to the writer: old
            # events arriving fast would otherwise fill the cap while the pass waits its turns.
            near = bool(cap) and _used(store) >= PRUNE_AT * (cap or 0)
            _prune_before(store, directory, cutoff, result, chunk, pause, hurry=near)
            # Once past PRUNE_AT, down to PRUNE_TO: room for a while, not a pass per batch.
            pressed = bool(cap) and _used(store) >= PRUNE_AT * (cap or 0)
            while pressed and cap and _used(store) >= PRUNE_TO * cap:
                oldest = store.upkeep.oldest_timestamp()
                if oldest is None:
                    break
                before = min(int(now), (oldest // DAY + 1) * DAY)
                result.forSize = True
                low = PRUNE_TO * cap
                if not _prune_before(store, directory, before, result, chunk, pause, low):
                    break  # only merges that remaining persons need are left
    except TbhookError as exc:
        result.error = str(exc)
    except OSError as exc:
        result.error = f"{exc.strerror or exc}: {exc.filename or directory}"
    finally:
        result.finishedAt = utc_now()
        if not result.busy:
            with contextlib.suppress(TbhookError):
                record(store, window, directory, result)
    return result


def _prune_before(
    store: Any,
    directory: Path,
    before: int,
    result: PassResult,
    chunk: int,
    pause: float,
    down_to: float | None = None,
    hurry: bool = False,
) -> int:
    """Archive and delete events before ``before`` in batches, day files in order (stopping
    once the database uses less than ``down_to`` bytes, pruning for size); how many were
    deleted."""
    done = 0

    def deleted(count: int) -> None:  # counted as each delete commits: a stop keeps the count
        result.deleted += count
        if down_to is not None:
            result.deletedForSize += count

    while True:
        ids, kept = store.upkeep.prune_plan(before)
        result.keptMerges = kept
        if not ids:
            return done
        step = ids[:BATCH]
        days: dict[Path, list[tuple[int, bytes]]] = {}
        for row_id, stamp, body in store.upkeep.archive_rows(step):
            days.setdefault(day_file(directory, stamp), []).append((row_id, body))
        for path, rows in sorted(days.items()):
            _need_room(directory, sum(len(body) for _, body in rows))
            known = archives.lines_in(path) if path.exists() else set()
            written, skipped = archived_then_deleted(
                store,
                path,
                [row_id for row_id, _ in rows],
                known,
                bodies=(body for _, body in rows),
                deleted=deleted,
                chunk=chunk,
                pause=pause,
                # Near the cap, a pass that yields falls behind, and then deliveries get 503.
                yielding=0.0 if hurry or down_to is not None else DELETE_YIELD,
            )
            result.archived += written
            result.skipped += skipped
            done += len(rows)
            if path.name not in result.files:
                result.files.append(path.name)
            if down_to is not None and _used(store) < down_to:
                return done
        if len(step) == len(ids):
            return done


def _used(store: Any) -> int:
    return int(store.space()["usedBytes"])


def _need_room(directory: Path, size: int) -> None:
    """Room for a batch: twice its raw size, with 5% of the disk still free after."""
    usage = shutil.disk_usage(directory)
    if usage.free - 2 * size < 0.05 * usage.total:
        raise NoRoom(
            f"the archive directory {directory} has {usage.free // 2**20} MiB free of "
            f"{usage.total // 2**20} MiB: no room to archive, so nothing was deleted"
        )


@contextlib.contextmanager
def _dir_lock(directory: Path) -> Iterator[None]:
    """One pass at a time per archive directory (two receivers on one host, or a `prune`)."""
    if not directory.is_dir():
        raise TbhookError(f"the archive directory {directory} does not exist")
    fd = os.open(directory / ".tbhook-retention.lock", os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def record(store: Any, window: int, directory: Path, result: PassResult) -> None:
    """Keep the pass in the database's meta: the last pass, and the last one that worked."""
    state = state_of(store)
    state.update(window=window, archiveDir=str(directory), lastPass=result.as_dict())
    # doctor's "last delivery" and --stale still know it once every event is pruned.
    state["lastReceivedAt"] = max(
        filter(None, (state.get("lastReceivedAt"), result.lastReceivedAt)), default=None
    )
    if result.error is None:
        state["lastOk"] = result.finishedAt
    store.set_meta(META_KEY, json.dumps(state))


def state_of(store: Any) -> dict[str, Any]:
    """What the receiver's retention last recorded (empty when it never ran)."""
    try:
        value = json.loads(store.reads.meta().get(META_KEY) or "{}")
    except ValueError:
        value = {}
    return value if isinstance(value, dict) else {}


def archive_size(directory: Path) -> tuple[int, int]:
    """(files, bytes) of the day archives in ``directory``."""
    files = size = 0
    with contextlib.suppress(OSError):
        for entry in os.scandir(directory):
            if entry.name.startswith("tbhook-") and entry.name.endswith(".ndjson.gz"):
                files += 1
                size += entry.stat().st_size
    return files, size

"""The store's one interface: ``Store``, the engine of one tbhook database (its connection,
its write paths, its facts), and the jobs done through it, each an object of its own:

- ``store.reads``: events, cases, counts, quarantined deliveries (``reads.py``);
- ``store.persons``: who is who after merges (``persons.py``);
- ``store.tail``: following the log (``tail.py``);
- ``store.exports``: every matching event as rows, for ``tbhook export`` (``exports.py``);
- ``store.forwards``: the forward queue (``forwards.py``);
- ``store.upkeep``: health, pruning, quarantine retries, merges (``upkeep.py``);
- ``store.timelines``: the case summaries `report` reads, kept by every write
  (``timelines.py``), and ``store.tallies``, the report's counts per quarter-hour kept with
  them (``tallies.py``);
- ``store.queue``: the cases waiting now, from the summaries (``queue.py``).

A backend (``sqlite``, ``postgres``) supplies the engine's primitives and replaces a job only
where it differs. Every error a backend's driver raises leaves the store as a ``TbhookError``
(``errors.py``): no caller handles sqlite3's or psycopg's exceptions.
"""

from __future__ import annotations

import contextlib
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator, Sequence
from contextlib import AbstractContextManager
from typing import Any, Generic, TypeVar, overload

from tbhook.errors import ForeignDatabase, NotReady, StoreUnavailable
from tbhook.model.filters import Filters
from tbhook.model.times import utc_now
from tbhook.store import sql
from tbhook.store.exports import Exports
from tbhook.store.forwards import Forwards
from tbhook.store.persons import Persons
from tbhook.store.queue import Queue
from tbhook.store.reads import Reads
from tbhook.store.rows import Delivery, ImportRows, Stored, batch_params
from tbhook.store.sql import Dialect, IdRange, names
from tbhook.store.tail import Tail
from tbhook.store.tallies import Tallies
from tbhook.store.timelines import Timelines
from tbhook.store.upkeep import Upkeep

J = TypeVar("J", covariant=True)


class job(Generic[J]):  # noqa: N801 - read as a declaration: ``reads = job(Reads)``
    """A job of the store (``store.reads``), made from the class it names on first use and
    then kept, as functools.cached_property keeps a value."""

    def __init__(self, kind: type[J]) -> None:
        self.kind = kind

    def __set_name__(self, owner: type, name: str) -> None:
        self.name = name

    @overload
    def __get__(self, store: None, owner: type) -> job[J]: ...

    @overload
    def __get__(self, store: object, owner: type) -> J: ...

    def __get__(self, store: object, owner: type) -> Any:
        if store is None:
            return self
        made = store.__dict__[self.name] = self.kind(store)  # type: ignore[call-arg]
        return made


class Store(ABC):
    """A tbhook database, opened for writing (one writer) or read-only.

    ``open_store``/``open_reader`` (``tbhook.store``) pick the backend.
    """

    dialect: Dialect
    path: str  # what to show the user: the file, or the URL without its password
    target: str  # what to open it again with: the file, or the whole URL
    max_bytes: int | None = None
    can_split = False  # whether big reads may be split over two processes (SQLite)
    # The jobs: a backend names its own class where it does a job its own way.
    reads, persons, tail, exports = job(Reads), job(Persons), job(Tail), job(Exports)
    forwards, upkeep, timelines = job(Forwards), job(Upkeep), job(Timelines)
    tallies, queue = job(Tallies), job(Queue)

    @property
    def has_timelines(self) -> bool:
        """Whether this database keeps ``case_timelines`` (a backend looks)."""
        return True

    def where(self, filters: Filters, ids: IdRange | None = None) -> tuple[str, list]:
        """The filters as a WHERE clause over ``events e`` (``sql.where``)."""
        return sql.where(filters, self.dialect, self.persons.aliases, ids)

    # -- primitives ---------------------------------------------------------------------

    @abstractmethod
    def query(self, sql: str, params: Sequence = ()) -> Iterator[tuple]:
        """Rows as tuples, streamed (``?`` placeholders)."""

    @abstractmethod
    def query_dicts(self, sql: str, params: Sequence = ()) -> Iterator[dict]:
        """Rows as dicts keyed by column name, streamed."""

    @abstractmethod
    def writing(self) -> AbstractContextManager[Any]:
        """One durable write transaction; yields an object with ``execute(sql, params)`` and
        ``executemany(sql, rows)``. Failures become StoreBusy or StoreUnavailable."""

    @abstractmethod
    def close(self) -> None: ...

    def one(self, sql: str, params: Sequence = ()) -> tuple:
        return next(iter(self.query(sql, params)))

    def append(self, deliveries: Sequence[Delivery], forward_to: str | None = None) -> list[Stored]:
        """Store a batch of deliveries in one durable transaction (group commit); with
        ``forward_to``, queue each new event for forwarding in the same transaction."""
        return self.append_rows(*batch_params(deliveries), forward_to)

    @abstractmethod
    def append_rows(
        self, params: list[tuple], readable: list[bool], forward_to: str | None = None
    ) -> list[Stored]:
        """``append`` of prepared rows (``Delivery.params``, and whether each is an event)."""

    @abstractmethod
    def import_rows(self, rows: ImportRows) -> tuple[int, list[int]]:
        """Insert prepared rows in one transaction, leaving already-stored bodies alone; how
        many events were new, and the lines of the bodies newly quarantined."""

    def beside_the_writer(self) -> None:  # noqa: B027 - each backend says how
        """For a connection that writes beside the receiver's writer, work a crash may undo
        at no cost (a retention pass deletes only what it has archived and fsynced, and the
        next pass deletes it again; the alerts' state): commits that do not wait for the
        disk, so they hold the write lock and the disk for less, and no checkpoints of its
        own (the writer's do that; fewer connections checkpointing one WAL)."""

    def set_busy_timeout(self, milliseconds: int) -> None:  # noqa: B027 - SQLite's only
        """How long a write waits for another writer's lock before failing busy."""

    def checkpoint_every(self, pages: int) -> AbstractContextManager[None]:
        """For a bulk load: checkpoint the log less often (SQLite); nothing elsewhere."""
        return contextlib.nullcontext()

    def checkpoint_in_background(self) -> Callable[[], None]:
        """For the receiver's writer: move log maintenance off the commit path (SQLite's WAL
        checkpoints); returns a function that stops it. Nothing to do elsewhere."""
        return lambda: None

    def commit_check(self) -> str | None:
        """Why a delivery could not be committed now, or None when one can: a real commit
        (of the time of this check, in ``tbhook_meta``; no event, no delivery counted), after
        ``room_check``. The receiver's /healthz and `doctor` both ask this, so both give the
        same reason in the same words as the 503 a delivery would get."""
        reason = self.room_check()
        if reason:
            return reason
        try:
            self.set_meta("lastCommitCheck", utc_now())
        except StoreUnavailable as exc:
            return str(exc)
        return None

    def set_meta(self, key: str, value: str) -> None:
        """Keep one fact about this log in ``tbhook_meta`` (its own short transaction)."""
        with self.writing() as conn:
            conn.execute(
                "INSERT INTO tbhook_meta (key, value) VALUES (?, ?) "
                "ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                [key, value],
            )

    def exclusive(self, name: str) -> AbstractContextManager[bool]:
        """Whether this connection holds the lock ``name`` for the ``with`` block, across
        receivers on one database (PostgreSQL's advisory locks); always True elsewhere, where
        one file has one writer at a time anyway."""
        return contextlib.nullcontext(True)

    def room_check(self) -> str | None:
        """Why the next delivery would not fit (SQLite's --max-db-size cap), or None."""
        return None

    def record_size_cap(self) -> None:  # noqa: B027 - SQLite's only
        """Note the receiver's --max-db-size in the database, for `doctor` to read."""

    def insert_ignore(self, table: str, columns: Sequence[str], values: str) -> str:
        return f"INSERT INTO {table} ({names(columns)}) VALUES ({values}) ON CONFLICT DO NOTHING"

    def durability_warning(self) -> str | None:
        """Why a 200 might not survive a crash with this database's settings, if it might."""
        return None

    @abstractmethod
    def integrity(self, quick: bool = False) -> list[str]:
        """``["ok"]`` when the database is sound, else what is wrong."""

    @abstractmethod
    def backup(self, dest: str) -> None:
        """A consistent copy at ``dest`` (which must not exist), or why there cannot be one."""

    @abstractmethod
    def schema(self) -> tuple[list[str], list[str]]:
        """Applied and pending migration names."""

    @abstractmethod
    def space(self) -> dict[str, int]:
        """``pageSize``, ``pages`` and ``usedBytes``: what the data takes (SQLite: the pages
        in use, free ones not counted; PostgreSQL: the database's size)."""

    @abstractmethod
    def server_facts(self) -> dict[str, Any]:
        """What the backend adds to `doctor`: file and WAL sizes, or the server's version,
        size and synchronous_commit."""


def refuse_newer(path: str, applied: Sequence[str], known: Sequence[str]) -> None:
    """A database a newer tbhook migrated (steps this one does not know) is never written, nor
    read: its tables may mean what this version cannot know. Raises NotReady naming both."""
    unknown = [name for name in applied if name not in known]
    if unknown:
        from tbhook import __version__

        raise NotReady(
            f"{path} was written by a newer tbhook (its schema is at {unknown[-1]}; this "
            f"tbhook {__version__} knows up to {known[-1]}): upgrade tbhook to use it"
        )


def not_tbhooks(path: str, found: list[str], advice: str) -> ForeignDatabase:
    """The refusal of a database that holds someone else's tables (the first few named)."""
    shown = ", ".join(found[:5]) + (", ..." if len(found) > 5 else "")
    return ForeignDatabase(f"{path} is not a tbhook database (it holds {shown}); {advice}")

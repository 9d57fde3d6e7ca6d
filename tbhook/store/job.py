"""The store's jobs share one shape: each does its work through the engine (``Store``) it
was made with, using the same few primitives. ``Engine`` names what a job may use of it (the
engine's module imports the jobs, so the jobs know it only by this description)."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import AbstractContextManager
from typing import Any, Protocol

from tbhook.model.filters import Filters
from tbhook.store.sql import Dialect, IdRange


class Engine(Protocol):
    """What of a ``Store`` its jobs use: the primitives, and the other jobs."""

    dialect: Dialect
    path: str
    target: str

    @property
    def reads(self) -> Any: ...

    @property
    def persons(self) -> Any: ...

    def query(self, sql: str, params: Sequence = ()) -> Iterator[tuple]: ...

    def query_dicts(self, sql: str, params: Sequence = ()) -> Iterator[dict]: ...

    def one(self, sql: str, params: Sequence = ()) -> tuple: ...

    def writing(self) -> AbstractContextManager[Any]: ...

    def where(self, filters: Filters, ids: IdRange | None = None) -> tuple[str, list]: ...

    def insert_ignore(self, table: str, columns: Sequence[str], values: str) -> str: ...


class Job:
    """One job of the store, done through its engine's primitives."""

    def __init__(self, store: Engine) -> None:
        self.store: Any = store  # a backend's job may use that backend's engine in full
        self.dialect = store.dialect
        self.query = store.query
        self.query_dicts = store.query_dicts
        self.one = store.one
        self.writing = store.writing
        self.where = store.where

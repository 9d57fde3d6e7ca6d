"""The store's jobs share one shape: each does its work through the engine (``Store``) it
was made with, using the same few primitives."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from tbhook.store.interface import Store


class Job:
    """One job of the store, done through its engine's primitives."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self.dialect = store.dialect
        self.query = store.query
        self.query_dicts = store.query_dicts
        self.one = store.one
        self.writing = store.writing
        self.where = store.where

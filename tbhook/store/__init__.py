"""The only place that speaks SQL: one interface (``interface.Store``, the engine, and the
jobs done through it), one compiler from filters to SQL (``sql``), one module per job
(``reads``, ``persons``, ``tail``, ``exports``, ``forwards``, ``upkeep``), and a package per
backend (``sqlite``, ``postgres``) holding what differs and its frozen migrations.

``--db`` is a file path (SQLite, the default) or a ``postgresql://`` URL; ``open_store`` and
``open_reader`` pick the backend from it.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import TYPE_CHECKING

from tbhook.model.targets import is_url, shown
from tbhook.store.interface import Store
from tbhook.store.rows import Delivery, ForwardOutcome, ImportRows, Stored, stats_groups

if TYPE_CHECKING:
    from tbhook.store.postgres import PostgresStore
    from tbhook.store.sqlite import SQLiteStore

__all__ = [
    "Delivery",
    "ForwardOutcome",
    "ImportRows",
    "Store",
    "Stored",
    "is_url",
    "open_reader",
    "open_store",
    "shown",
    "stats_groups",
]


def open_store(
    target: str | os.PathLike,
    max_bytes: int | None = None,
    notice: Callable[[str], None] | None = None,
) -> Store:
    """Open for writing (creating and migrating as needed). ``notice`` is told before a
    migration that takes minutes starts (SQLite's table rebuilds)."""
    target = os.fspath(target)
    if is_url(target):
        return _postgres().open(target, max_bytes)
    return _sqlite().open(target, max_bytes, notice)


def open_reader(target: str | os.PathLike, current: bool = True) -> Store:
    """Open read-only; never create. With ``current``, refuse a schema an older tbhook wrote."""
    target = os.fspath(target)
    if is_url(target):
        return _postgres().open_readonly(target, current)
    return _sqlite().open_readonly(target, current)


# Each backend is loaded when a database of its kind is opened: a SQLite user's every command
# does without the PostgreSQL one, and the other way round.
def _postgres() -> type[PostgresStore]:
    from tbhook.store.postgres import PostgresStore

    return PostgresStore


def _sqlite() -> type[SQLiteStore]:
    from tbhook.store.sqlite import SQLiteStore

    return SQLiteStore

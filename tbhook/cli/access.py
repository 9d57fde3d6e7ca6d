"""How a command opens the store: read-only for the readers, migrated for the writers, and
the files a command writes for the user, checked before anything is written."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import typer

from tbhook.cli.options import reported_errors
from tbhook.errors import TbhookError
from tbhook.model.targets import is_url
from tbhook.transfer.files import new_file, refuse_same

if TYPE_CHECKING:
    from tbhook.store import Store


@contextlib.contextmanager
def reading(db: str, current: bool = True) -> Iterator[Store]:
    """The database opened read-only, errors reported as ``Error: ...``."""
    with reported_errors():
        from tbhook.store import open_reader  # see open_for_writing

        store = open_reader(db, current)
        try:
            yield store
        finally:
            store.close()


def open_for_writing(db: str, notice: Callable[[str], None] | None = None) -> Store:
    """The database opened for writing: migrated first, saying so on stderr when that takes
    minutes (call inside ``reported_errors``)."""
    from tbhook.store import open_store  # the store loads when a command opens one

    return open_store(db, notice=notice or (lambda line: typer.echo(line, err=True)))


def destination(
    db: str, target: str, why: str, force: bool = False, backup_of: str | None = None
) -> Path:
    """A file a command is about to write for the user, checked before anything is written:
    never the database, one of its side files (-wal, -shm, -journal) or any tbhook log (only a
    backup of the log ``backup_of`` may replace an earlier backup of it); an existing file is
    replaced only with ``force``, and only by a complete file (call inside
    ``reported_errors``)."""
    from tbhook.store.sqlite import log_identity  # the SQLite backend: only to check a file

    if not is_url(db):
        refuse_same(db, target, why)
    path = new_file(target, force)
    identity = log_identity(path) if path.exists() else None
    if identity is not None and identity[0]:
        if backup_of is not None and identity[1] == backup_of:
            return path  # an earlier backup of the same log
        log = f" (log {identity[1]})" if identity[1] else ""
        raise TbhookError(
            f"{target} is another tbhook database{log}: {why}; tbhook never writes over one, "
            "even with --force"
        )
    return path

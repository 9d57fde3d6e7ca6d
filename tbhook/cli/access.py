"""How a command opens the store: read-only for the readers, migrated for the writers."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING

from tbhook.cli.options import reported_errors, say

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


@contextlib.contextmanager
def following(db: str, wait: bool = True) -> Iterator[Store]:
    """The database opened read-only to follow: when ``wait``, once `serve` has created it
    (saying why it waits, on stderr). Ctrl-C and SIGTERM end the command quietly (exit 0),
    even when its parent started it with SIGINT ignored."""
    import sys

    import typer

    from tbhook.follow import Stopped, open_when_ready, stopped_by_signals

    def notice(line: str) -> None:
        sys.stderr.write(line + "\n")
        sys.stderr.flush()

    try:
        with stopped_by_signals(), reported_errors():
            store = open_when_ready(db, wait, notice)
            try:
                yield store
            finally:
                store.close()
    except (Stopped, KeyboardInterrupt):
        raise typer.Exit(0) from None


def open_for_writing(db: str, notice: Callable[[str], None] | None = None) -> Store:
    """The database opened for writing: migrated first, saying so on stderr when that takes
    minutes (call inside ``reported_errors``)."""
    from tbhook.store import open_store  # the store loads when a command opens one

    return open_store(db, notice=notice or say)

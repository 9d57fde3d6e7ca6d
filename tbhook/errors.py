"""The errors tbhook raises on purpose. The CLI turns each into ``Error: ...`` and exit 1."""


class TbhookError(Exception):
    """Base class: a problem to report to the user in plain words, never as a traceback."""


class NoDatabase(TbhookError):
    """A read command was pointed at a database file that does not exist."""

    def __init__(self, path: str):
        super().__init__(f"no database at {path} (run `tbhook serve` to create one)")
        self.path = path


class StoreUnavailable(TbhookError):
    """The store cannot be opened or cannot commit right now: disk full, read-only, locked."""


class NotReady(TbhookError):
    """The file is not (yet) a tbhook database of this version: nothing a reader can use."""


class ForeignDatabase(NotReady):
    """The file holds someone else's tables: tbhook never adds to it, and waiting won't help."""


class StoreDamaged(StoreUnavailable):
    """The database file is damaged (or not a database at all): a backup is the way back."""


class StoreBusy(StoreUnavailable):
    """Another connection holds the write lock: waiting may be enough."""


def damaged(path: str, exc: BaseException) -> str:
    """What to say about a database SQLite cannot read."""
    return (
        f"{path} is damaged ({exc}); see `tbhook doctor --db {path}`, and restore the last backup"
    )

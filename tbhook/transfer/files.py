"""Files tbhook writes for the user (backups, archives, exports), written so none is ever lost.

The rule: a file is never deleted, truncated or overwritten until its replacement is complete
and on disk. Each is written under a temporary name in the same directory, fsynced, then renamed
over the target, and the directory is fsynced so the rename survives a power cut. Files that
hold events are created mode 0600 from the first byte.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path

from tbhook.errors import TbhookError

PRIVATE = 0o600


SIDE_FILES = {"-wal": "write-ahead log", "-shm": "shared-memory index", "-journal": "journal"}


def same_file(a: str | os.PathLike, b: str | os.PathLike) -> bool:
    """Whether two paths name one file (links and other spellings included), or would once
    created (the same path after following symbolic links)."""
    try:
        if os.path.samefile(a, b):
            return True
    except OSError:  # one of them does not exist
        pass
    return os.path.realpath(a) == os.path.realpath(b)


def refuse_same(database: str | os.PathLike, other: str | os.PathLike, why: str) -> None:
    """Refuse to use the database, or one of SQLite's files beside it (``-wal``, ``-shm``,
    ``-journal``), as the other file of an operation (its backup, archive, export or merge
    source): ``{other} is the database itself: {why}``. Writing over the write-ahead log
    loses every event committed since the last checkpoint."""
    if same_file(database, other):
        raise TbhookError(f"{other} is the database itself: {why}")
    for suffix, name in SIDE_FILES.items():
        if same_file(f"{os.fspath(database)}{suffix}", other):
            raise TbhookError(f"{other} is the database's {name} ({suffix}): {why}")
    text = os.fspath(other)
    for suffix, name in SIDE_FILES.items():
        base = text.removesuffix(suffix)
        if base != text and is_sqlite(base):
            raise TbhookError(f"{other} is the {name} of the SQLite database {base}: {why}")


def is_sqlite(path: str | os.PathLike) -> bool:
    """Whether ``path`` is a SQLite database file (by its header)."""
    try:
        with open(path, "rb") as file:
            return file.read(16) == b"SQLite format 3\x00"
    except OSError:
        return False


def new_file(target: str, force: bool = False, flag: str = "--force") -> Path:
    """``target`` as a file tbhook may write: its directory exists, it is not a directory, and
    it does not exist unless ``force`` (named ``flag``) says to replace it."""
    path = Path(target)
    if target.endswith(("/", os.sep)) or path.is_dir():
        if not path.is_dir():
            raise TbhookError(f"{target} is not a directory (create it first)")
        raise TbhookError(f"{target} is a directory: give a file name")
    parent = path.parent
    if not parent.is_dir():
        what = "is not a directory" if parent.exists() else "does not exist"
        raise TbhookError(f"cannot write {target}: the directory {parent} {what}")
    if path.exists() and not force:
        raise TbhookError(f"{target} exists (use {flag} to replace it)")
    return path


def temp_beside(target: Path) -> Path:
    return target.with_name(f".{target.name}.{os.getpid()}.tmp")


@contextlib.contextmanager
def replacing(target: Path) -> Iterator[Path]:
    """A temporary path beside ``target`` for the caller to write; once the block ends without
    an error, it is fsynced, made 0600 and renamed over ``target``. On any error it is removed
    and ``target`` is untouched."""
    temp = temp_beside(target)
    try:
        yield temp
        sync(temp)
        os.chmod(temp, PRIVATE)
        os.replace(temp, target)
        sync_directory(target)
    except OSError as exc:
        raise TbhookError(f"cannot write {target}: {exc.strerror or exc}") from exc
    finally:
        with contextlib.suppress(OSError):
            temp.unlink()


def create_private(path: Path, binary: bool = False, append: bool = False):
    """Open a new file for writing, mode 0600 from the start (never briefly world-readable)."""
    flags = os.O_WRONLY | os.O_CREAT | (os.O_APPEND if append else os.O_TRUNC)
    fd = os.open(path, flags, PRIVATE)
    if binary:
        return os.fdopen(fd, "ab" if append else "wb")
    return os.fdopen(fd, "w", newline="", encoding="utf-8")


def sync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def sync_directory(path: Path) -> None:
    """fsync the directory holding ``path``, so a rename into it is durable."""
    with contextlib.suppress(OSError):  # not every file system allows it
        fd = os.open(path.parent if str(path.parent) else ".", os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)

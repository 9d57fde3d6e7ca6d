"""Files tbhook writes for the user (backups, archives, exports), written so none is ever lost.

The rule: a file is never deleted, truncated or overwritten until its replacement is complete
and on disk. Each is written under a temporary name in the same directory, fsynced, then renamed
over the target, and the directory is fsynced so the rename survives a power cut. Files that
hold events are created mode 0600 from the first byte. A temporary is named for the command
and the process that writes it (``.NAME.tbhook-backup-PID.tmp``): one left by a process that was
killed is found (``stale_temporaries``), and removed by the next run of that command.

A link to a file is written through: the file it names is replaced, the link stays. A device
or a pipe (``/dev/stdout``, a FIFO) is never replaced by a file: a command that can stream
writes to it directly (``export``), the others refuse it (``new_file``).
"""

from __future__ import annotations

import contextlib
import os
import re
import stat
from collections.abc import Callable, Iterator
from pathlib import Path

from tbhook.errors import TbhookError
from tbhook.model.targets import is_url

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


# This process's own descriptors, however they are spelled: /dev/stdout, /dev/fd/1,
# /proc/self/fd/1 (each a link to the next, the last to whatever the shell redirected).
_DESCRIPTOR = re.compile(r"^/(?:dev/(?P<std>stdin|stdout|stderr)|dev/fd/(?P<fd>[0-9]+)"
                         r"|proc/(?:self|thread-self)/fd/(?P<proc>[0-9]+))$")  # fmt: skip
_STANDARD = {"stdin": 0, "stdout": 1, "stderr": 2}


def descriptor(target: str | os.PathLike) -> int | None:
    """The descriptor of this process that ``target`` names (``/dev/stdout`` is 1, through any
    links to it), or None. Written to as it is: reopening it by name would truncate a file
    the shell opened for appending (``>>``), and renaming over it would write elsewhere."""
    path = os.path.abspath(target)
    for _ in range(40):  # links to links, as the kernel follows them
        match = _DESCRIPTOR.match(path)
        if match:
            return _STANDARD[match["std"]] if match["std"] else int(match["fd"] or match["proc"])
        if not os.path.islink(path):
            return None
        path = os.path.normpath(os.path.join(os.path.dirname(path), os.readlink(path)))
    return None


def stream_kind(target: str | os.PathLike) -> str | None:
    """What ``target`` is when it is (or links to) no regular file but something written as a
    stream: ``a descriptor`` of this process (/dev/stdout), ``a character device``
    (/dev/null, a terminal), ``a FIFO`` (a named pipe) or ``a socket``; None otherwise. It is
    never opened to find out (a FIFO would block)."""
    if descriptor(target) is not None:
        return "an open descriptor (stdout, stderr or /dev/fd/N)"
    try:
        mode = os.stat(target).st_mode
    except (OSError, ValueError):
        return None
    if stat.S_ISCHR(mode):
        return "a character device"
    if stat.S_ISFIFO(mode):
        return "a FIFO (a named pipe)"
    if stat.S_ISSOCK(mode):
        return "a socket"
    return None


def streamable(target: str | os.PathLike) -> bool:
    """Whether ``target`` is a descriptor, a character device or a FIFO: written to directly,
    as stdout is (a command that streams can; one that must read its file back cannot)."""
    return stream_kind(target) not in (None, "a socket")


def new_file(
    target: str, force: bool = False, flag: str = "--force", name: str = "the file name"
) -> Path:
    """``target`` as a file tbhook may write: named (``name`` says by what, when it is empty),
    not a device or a pipe, its directory exists, it is not a directory, and it does not exist
    unless ``force`` (named ``flag``) says to replace it. A symbolic link gives the path of the
    file it names: that file is replaced, the link kept."""
    if not target:
        raise TbhookError(f"{name} is empty (''): give a file name")
    if target == "-":  # export's -o - is stdout; a file read back and renamed cannot be
        raise TbhookError(
            f"{name} is -, which is not a file: this command writes a complete file under a "
            "temporary name and renames it into place, so it cannot write to stdout; give a "
            "file name (./- for a file named -)"
        )
    kind = stream_kind(target)
    if kind is not None:
        raise TbhookError(
            f"{target} is {kind}, not a file: tbhook writes a complete file under a "
            "temporary name and renames it into place; give a file name"
        )
    path = Path(target)
    if path.is_symlink() and not path.is_dir():
        path = Path(os.path.realpath(target))  # written through: the link is never replaced
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


def destination(
    db: str,
    target: str,
    why: str,
    say: Callable[[str], None],
    *,
    force: bool = False,
    backup_of: str | None = None,
    command: str = "export",
    name: str = "--output",
) -> Path:
    """A file ``command`` is about to write for the user (``name``: the option or argument
    that gave it), checked before anything is written: never the database, one of its side
    files (-wal, -shm, -journal) or any tbhook log (only a backup of the log ``backup_of`` may
    replace an earlier backup of it), never a device or a pipe; an existing file is replaced
    only with ``force``, and only by a complete file. What an earlier run of ``command`` was
    writing there when it was killed is removed (``clear_stale``)."""
    from tbhook.store.sqlite import log_identity  # the SQLite backend: only to check a file

    if not is_url(db):
        refuse_same(db, target, why)
    path = new_file(target, force, name=name)
    identity = log_identity(path) if path.exists() else None
    earlier_backup = backup_of is not None and identity is not None and identity[1] == backup_of
    if identity is not None and identity[0] and not earlier_backup:
        log = f" (log {identity[1]})" if identity[1] else ""
        raise TbhookError(
            f"{target} is another tbhook database{log}: {why}; tbhook never writes over one, "
            "even with --force"
        )
    clear_stale(path.parent, command, say)
    return path


def clear_stale(directory: Path, command: str, say: Callable[[str], None]) -> None:
    """Remove what an earlier run of ``command`` was writing in ``directory`` when it was
    killed (a temporary nothing else uses: its process is gone), and ``say`` so."""
    for temporary in stale_temporaries(directory, command):
        try:
            temporary.unlink()
        except OSError as exc:
            say(
                f"Warning: cannot remove {temporary}, left by {who_left(temporary)} when it "
                f"was stopped: {exc.strerror or exc}"
            )
        else:
            say(
                f"Removed {temporary}, left by {who_left(temporary)} when it was stopped "
                "before it finished"
            )


# A temporary, or the journal SQLite keeps beside a backup's while it writes it.
_TEMPORARY = re.compile(
    r"^\..+\.tbhook-(?P<command>[a-z]+)-(?P<pid>[0-9]{1,10})\.tmp(?:-journal)?$"
)


def temp_beside(target: Path, command: str) -> Path:
    """The temporary name ``command`` writes ``target`` under: beside it (a rename within one
    directory is atomic), hidden, and naming the command and this process."""
    return target.with_name(f".{target.name}.tbhook-{command}-{os.getpid()}.tmp")


def stale_temporaries(directory: str | os.PathLike, command: str | None = None) -> list[Path]:
    """The temporaries in ``directory`` that a tbhook ``command`` (any, when None) was writing
    when it was killed: named by ``temp_beside``, their process gone."""
    try:
        names = sorted(os.listdir(directory))
    except OSError:
        return []
    found = []
    for name in names:
        match = _TEMPORARY.match(name)
        if match and command in (None, match["command"]) and not _running(int(match["pid"])):
            found.append(Path(directory) / name)
    return found


def who_left(temporary: Path) -> str:
    """Which command, in which process, left a temporary: ``tbhook backup`` (process 1234)."""
    match = _TEMPORARY.match(temporary.name)
    assert match is not None, temporary
    return f"`tbhook {match['command']}` (process {match['pid']})"


def _running(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except (ProcessLookupError, OverflowError):  # gone; a number no process can have
        return False
    except PermissionError:  # another user's process
        return True
    return True


@contextlib.contextmanager
def replacing(target: Path, command: str) -> Iterator[Path]:
    """A temporary file beside ``target`` for the caller to write, created empty and 0600
    before anything is written to it (SQLite's ``VACUUM INTO`` takes an empty file); once the
    block ends without an error, it is fsynced and renamed over ``target``. On any error it
    is removed and ``target`` is untouched."""
    temp = temp_beside(target, command)
    try:
        with contextlib.suppress(FileNotFoundError):
            temp.unlink()  # this process's name: left by an earlier process with this pid
        os.close(os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, PRIVATE))
        yield temp
        sync(temp)
        os.chmod(temp, PRIVATE)
        os.replace(temp, target)
        sync_directory(target)
    except OSError as exc:
        raise TbhookError(f"cannot write {target}: {exc.strerror or exc}") from exc
    finally:
        for leftover in (temp, temp.with_name(f"{temp.name}-journal")):
            with contextlib.suppress(OSError):
                leftover.unlink()


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

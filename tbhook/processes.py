"""What tbhook's processes share: the receiver's helpers (the parser's worker, the writer,
the console) are fresh interpreters started one way (``start_python``) that die with it; it
hands memory back to the system after a burst; and a long-running command (serve, tail)
takes SIGINT and SIGTERM for the time it runs (``stop_signals``)."""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import functools
import json
import os
import signal
import subprocess
import sys
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any

# The child finds tbhook (and anything it is handed) where this process did, also inside a
# single-file build: this process's sys.path, in the environment, put first. Then it ties
# its life to its parent's, before anything else (not in a preexec_fn: unsafe with threads).
_SETUP = (
    "import json, os, sys; sys.path[:0] = json.loads(os.environ.pop('TBHOOK_PATH')); "
    "from tbhook.processes import die_with_parent; "
    "die_with_parent(int(os.environ.pop('TBHOOK_PARENT'))); "
)


def start_python(
    entry: str,
    args: Sequence[str] = (),
    *,
    keep: Sequence[int] = (),
    env: Mapping[str, str] | None = None,
    own_session: bool = False,
    stdout: int | None = None,
    stderr: int | None = None,
) -> subprocess.Popen:
    """A fresh interpreter (no state crosses a fork: SQLite's must not) running ``entry``
    (``module:function``, called with ``args``), that dies with this process. It inherits
    only the file descriptors in ``keep``; ``env`` replaces the environment's values;
    ``own_session``: Ctrl+C in the terminal does not reach it; ``stdout``, ``stderr``: as
    subprocess takes them (None: this process's)."""
    module, function = entry.split(":")
    code = _SETUP + f"from {module} import {function}; {function}(sys.argv[1:])"
    return subprocess.Popen(
        [sys.executable, "-c", code, *args],
        pass_fds=tuple(keep),
        stdin=subprocess.DEVNULL,
        stdout=stdout,
        stderr=stderr,
        env={
            **os.environ,
            **(env or {}),
            "TBHOOK_PATH": json.dumps(sys.path),
            "TBHOOK_PARENT": str(os.getpid()),
        },
        start_new_session=own_session,
    )


@functools.lru_cache(maxsize=1)
def _libc() -> Any:
    name = ctypes.util.find_library("c")
    return ctypes.CDLL(name, use_errno=True) if name else None


def die_with_parent(parent: int | None = None) -> None:
    """Linux: when the receiver is killed outright (kill -9), this process goes with it; and
    when ``parent`` is gone already (it died before this was said), this process goes now."""
    with contextlib.suppress(Exception):  # not Linux: the parent's close stops it instead
        _libc().prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    if parent is not None and os.getppid() != parent:
        os._exit(0)


def release_memory() -> None:
    """Hand freed heap memory back to the system after a burst of large bodies (glibc keeps it
    otherwise: measured, RSS stayed at the burst's peak)."""
    trim = getattr(_libc(), "malloc_trim", None)
    if trim is not None:
        trim(0)


@contextlib.contextmanager
def stop_signals(handler: Callable[[int, Any], Any]) -> Iterator[None]:
    """SIGINT and SIGTERM handled by ``handler`` inside the block, as before it after."""
    previous = {sig: signal.signal(sig, handler) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for sig, was in previous.items():
            signal.signal(sig, was)

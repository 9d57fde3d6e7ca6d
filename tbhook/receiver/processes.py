"""What the receiver's helper processes (the parser's worker, the writer) share with it: they
die with it, and it hands memory back to the system after a burst."""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import functools
import signal
from typing import Any


@functools.lru_cache(maxsize=1)
def _libc() -> Any:
    name = ctypes.util.find_library("c")
    return ctypes.CDLL(name, use_errno=True) if name else None


def die_with_parent() -> None:
    """Linux: when the receiver is killed outright (kill -9), this process goes with it."""
    with contextlib.suppress(Exception):  # not Linux: the parent's close stops it instead
        _libc().prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG


def release_memory() -> None:
    """Hand freed heap memory back to the system after a burst of large bodies (glibc keeps it
    otherwise: measured, RSS stayed at the burst's peak)."""
    trim = getattr(_libc(), "malloc_trim", None)
    if trim is not None:
        trim(0)

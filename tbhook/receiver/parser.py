"""Parsing delivered bodies without stalling the event loop."""

from __future__ import annotations

import asyncio
import contextlib
import multiprocessing
import signal
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from typing import Any

from tbhook.model.events import Event, Unreadable, parse
from tbhook.processes import die_with_parent

PARSE_OFF_LOOP_BYTES = 64 * 1024  # a body this large is parsed in the parser process


class Parser:
    """Parses bodies: the small ones (every real Tracebuzz delivery) at once, the large ones in
    a worker process. A C parser holds the GIL for its whole run (a megabyte of small nested
    objects: tens of milliseconds each time), so on a thread it would still stall the loop;
    in its own process it uses the second core instead.

    The worker is forked when the parser is made: make it before opening the database or the
    listening socket (so the worker holds neither) and before starting any thread. Without it
    (``fork=False``, or no fork on this system), or once it has died, large bodies are parsed
    on a thread.
    """

    def __init__(self, fork: bool = True) -> None:
        self._threads = ThreadPoolExecutor(1, thread_name_prefix="tbhook-parse")
        self._process: Any = None
        if not fork:
            return
        with contextlib.suppress(Exception):  # no fork (not Unix): the thread does it all
            pool = ProcessPoolExecutor(
                1, mp_context=multiprocessing.get_context("fork"), initializer=_quiet_worker
            )
            pool.submit(int).result(timeout=30)  # fork now, while this is the only thread
            self._process = pool

    async def parse(self, body: bytes) -> Event | Unreadable:
        if len(body) <= PARSE_OFF_LOOP_BYTES:
            return parse(body)
        loop = asyncio.get_running_loop()
        if self._process is not None:
            try:
                return await loop.run_in_executor(self._process, parse, body)
            except BrokenProcessPool:
                self._process = None
        return await loop.run_in_executor(self._threads, parse, body)

    def close(self) -> None:
        if self._process is not None:
            self._process.shutdown(wait=True, cancel_futures=True)
        self._threads.shutdown(wait=True)


def _quiet_worker() -> None:
    # Ctrl-C reaches the whole process group: the server shuts the worker down itself.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    die_with_parent()

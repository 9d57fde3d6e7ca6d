"""`serve --retain`: the retention passes, each in a fresh interpreter of its own.

A pass (``tbhook.transfer.retention.run_pass``) reads every remaining person and writes
gzip files: in the receiver's process that work would take turns with the event loop at the
GIL and delay acknowledgements. In a process of its own it uses the other core, holds the write
lock only for short deletes, dies with the receiver, and a pass killed anywhere loses nothing.
A pass runs every ``--prune-every``, and sooner when the database nears ``--max-db-size``.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
from collections.abc import Callable
from typing import Any

from tbhook.model.times import duration
from tbhook.receiver.background import Background

PassDone = Callable[[dict[str, Any]], None]
RETRY_FIRST = 5.0  # after a failed pass, the next waits this long, twice as long each time
RETRY_MOST = 60.0  # ... up to a minute (or --prune-every, if shorter)


def retry_after(failures: int, every: float) -> float:
    """How long after the ``failures``-th failed pass in a row the next may start: near the
    cap, the size watch asks for a pass four times a second, and a pass that cannot archive
    (a full archive disk) must not start a process and log a line each time."""
    if failures <= 0:
        return 0.0
    return min(every, RETRY_MOST, RETRY_FIRST * 2 ** min(failures - 1, 16))


class Retention(Background):
    """Runs passes on a thread of its own; ``wake`` asks for one now; ``on_pass`` is told what
    each did (``PassResult.as_dict``, or an ``error`` when the pass process itself failed)."""

    name = "tbhook-retention"
    joined = 15.0

    def __init__(
        self,
        target: str,
        directory: str,
        window: int,
        every: float,
        cap: int | None,
        on_pass: PassDone,
    ):
        self.target = target
        self.directory = directory
        self.window = window
        self.every = every
        self.cap = cap
        self.on_pass = on_pass
        self._process: subprocess.Popen | None = None
        super().__init__()

    def _stopping(self) -> None:
        process = self._process
        if process is not None and process.poll() is None:
            process.terminate()  # a pass stopped anywhere loses nothing

    def _run(self) -> None:
        failures = 0  # passes in a row that failed, or were woken early and deleted nothing
        woken = False
        while not self._stop.is_set():
            result = self._one_pass()
            if self._stop.is_set():
                return
            self.on_pass(result)
            # Near the cap with nothing it may delete (kept merges), a pass would be woken
            # again at each of the size watch's four asks a second: it waits as a failure.
            fruitless = result.get("error") or (woken and not result.get("deleted"))
            failures = failures + 1 if fruitless else 0
            # A pass that pruned for size and still left too much goes again at once.
            again = result.get("forSize") and not result.get("error") and result.get("deleted")
            woken = bool(again)
            if not again:
                # After a failure, a wake waits its turn (kept, so it then starts at once).
                held = retry_after(failures, self.every)
                if held and self._stop.wait(held):
                    return
                woken = self._wake.wait(self.every - held)
            self._wake.clear()

    def _one_pass(self) -> dict[str, Any]:
        from tbhook.processes import start_python

        args = {
            "target": self.target,
            "directory": self.directory,
            "window": self.window,
            "cap": self.cap,
        }
        self._process = start_python(
            "tbhook.receiver.retention:pass_main",
            [json.dumps(args)],
            own_session=True,  # Ctrl+C stops the receiver, which stops the pass
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        out, err = self._process.communicate()
        code_ = self._process.returncode
        self._process = None
        try:
            return json.loads(out.decode().strip().splitlines()[-1])
        except (ValueError, IndexError):
            why = err.decode(errors="replace").strip().splitlines()[-1:] or [f"exit {code_}"]
            return {"error": f"the retention pass stopped ({why[0]})", "deleted": 0}


def pass_main(argv: list[str]) -> None:
    """The pass process's entry point: one pass (``argv``: its settings as JSON), its result
    as one JSON line on stdout."""
    argument = argv[0]
    from pathlib import Path

    from tbhook.store import open_store
    from tbhook.transfer.retention import PRUNE_AT, Stopped, run_pass

    args = json.loads(argument)
    try:
        store = open_store(args["target"])
    except Exception as exc:
        print(json.dumps({"error": f"could not open the database: {exc}", "deleted": 0}))
        return
    cap = args["cap"]
    if not cap or store.space()["usedBytes"] < PRUNE_AT * cap:
        # Second to the receiver for the CPU: acknowledgements come first. Not near the cap,
        # though: there, a pass that falls behind ends in 503s.
        os.nice(10)
        with contextlib.suppress(OSError, AttributeError):
            os.sched_setscheduler(0, os.SCHED_BATCH, os.sched_param(0))  # Linux
    signal.signal(signal.SIGTERM, _stopped)  # the receiver stops: the pass records, then ends
    try:
        store.beside_the_writer()  # what it deletes is archived: a crash undoes no harm
        result = run_pass(store, Path(args["directory"]), args["window"], args["cap"])
    except Stopped:
        return
    finally:
        store.close()
    print(json.dumps(result.as_dict()))


def _stopped(signum: int, frame: Any) -> None:
    from tbhook.transfer.retention import Stopped

    signal.signal(signal.SIGTERM, signal.SIG_DFL)  # a second one ends it at once
    raise Stopped()


def describe(result: dict[str, Any], window: int) -> str:
    """A pass in one line, for the receiver's log."""
    if result.get("error"):
        return f"retention: the pass failed: {result['error']}"
    if result.get("busy"):
        return "retention: another receiver's pass is running; skipped"
    files = result.get("files") or []
    where = f" into {len(files)} archive files" if files else ""
    for_size = result.get("deletedForSize", 0)
    old = result.get("deleted", 0) - for_size
    what = [f"{old} events older than {duration(window)}"] if old or not for_size else []
    if for_size:
        what.append(f"the oldest {for_size} events (to keep under --max-db-size)")
    return f"retention: archived and deleted {' and '.join(what)}{where}"

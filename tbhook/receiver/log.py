"""The receiver's log on stderr: one line per delivery and per warning, for a person (the
default) or as one JSON object per line, for a log shipper. Both carry the same facts, and
neither lets a sender's text move the cursor, end a line or forge an entry: control
characters are escaped in both."""

from __future__ import annotations

import asyncio
import json
import logging
import sys
import time
from typing import IO, Any

from tbhook.model.text import clean

FORMATS = ("human", "json")


class Log:
    """Where the receiver's lines go. ``info`` is a delivery or a forward (left out with
    ``quiet``); ``warning`` is anything an operator must see (503s, sheds, refusals)."""

    def __init__(
        self, fmt: str = "human", stream: IO[str] | None = None, quiet: bool = False
    ) -> None:
        if fmt not in FORMATS:
            raise ValueError(fmt)
        self.json = fmt == "json"
        self.quiet = quiet
        self._stream = stream

    def info(self, message: str, **facts: Any) -> None:
        if not self.quiet:
            self._write("info", message, facts)

    def warning(self, message: str, **facts: Any) -> None:
        self._write("warning", message, facts)

    def notice(self, message: str, **facts: Any) -> None:
        """What the receiver did on its own (a retention pass): written even when quiet."""
        self._write("info", message, facts)

    def banner(self, lines: list[str], **facts: Any) -> None:
        """The lines a starting (or stopping) receiver prints: as they are for a person, as
        one object for a log shipper."""
        if self.json:
            self._write("info", lines[0], facts)
        else:
            self._out(clean_lines(lines))

    def _write(self, level: str, message: str, facts: dict[str, Any]) -> None:
        if self.json:
            record = {"time": _iso_now(), "level": level, "message": message}
            record.update((key, value) for key, value in facts.items() if value is not None)
            # ensure_ascii: every control, bidi and other non-ASCII character as \\uXXXX.
            self._out(json.dumps(record, ensure_ascii=True, default=str) + "\n")
        else:
            self._out(time.strftime("%H:%M:%S ") + clean(message) + "\n")

    def _out(self, text: str) -> None:
        stream = self._stream or sys.stderr
        stream.write(text)
        stream.flush()


class Handler(logging.Handler):
    """uvicorn's own warnings (an invalid HTTP request, an error in a request) as lines of
    this log: in JSON too, a log shipper never meets a line of another shape."""

    def __init__(self, log: Log) -> None:
        super().__init__(logging.WARNING)
        self.log = log

    def emit(self, record: logging.LogRecord) -> None:
        message, exception = record.getMessage().strip(), None
        if record.exc_info and record.exc_info[1] is not None:
            error = record.exc_info[1]
            exception = logging.Formatter().formatException(record.exc_info)
            said = str(error).strip().splitlines()[0][:200] if str(error).strip() else ""
            message = f"{message}: {type(error).__name__}" + (f": {said}" if said else "")
        self.log.warning(message, kind="uvicorn", exception=exception)

    def install(self) -> None:
        for name in ("uvicorn", "uvicorn.error", "uvicorn.access"):
            logger = logging.getLogger(name)
            logger.handlers = [self]
            logger.propagate = False


def clean_lines(lines: list[str]) -> str:
    return "".join(clean(line) + "\n" for line in lines)


def _iso_now() -> str:
    now = time.time()
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(now)) + f".{int(now % 1 * 1000):03d}Z"


class Throttled:
    """A log that writes the first line of each kind per ``period`` and holds back the rest:
    a timer writes the last one held, with how many there were, once the period is over. An
    attack cannot flood the log, every event is accounted for, and a person debugging a
    rejected header sees its summary within the period, not when the next one comes."""

    def __init__(self, log: Log | None, period: float = 10.0):
        self.log = log
        self.period = period
        self._since: dict[str, float] = {}
        self._held: dict[str, tuple[int, str, dict[str, Any]]] = {}  # count, last line, facts
        self._timers: dict[str, asyncio.TimerHandle] = {}

    def __call__(self, kind: str, line: str, **facts: Any) -> None:
        if self.log is None:
            return
        now = time.monotonic()
        started = self._since.get(kind)
        if started is not None and now - started < self.period:
            count = self._held.get(kind, (0, "", {}))[0]
            self._held[kind] = (count + 1, line, facts)
            self._release_later(kind, started + self.period - now)
            return
        self._release(kind)  # held lines of a period whose timer could not run
        self._since[kind] = now
        self.log.warning(line, kind=kind, **facts)

    def _release_later(self, kind: str, delay: float) -> None:
        if kind in self._timers:
            return
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:  # no loop: the next line or the shutdown writes them
            return
        self._timers[kind] = loop.call_later(delay, self._on_timer, kind)

    def _on_timer(self, kind: str) -> None:
        self._timers.pop(kind, None)
        if self._release(kind):
            self._since[kind] = time.monotonic()  # the summary starts the next period

    def _release(self, kind: str, when: str | None = None) -> bool:
        """Write what is held back of ``kind`` as one line; whether there was anything."""
        count, line, facts = self._held.pop(kind, (0, "", {}))
        if not count or self.log is None:
            return False
        timer = self._timers.pop(kind, None)
        if timer is not None:
            timer.cancel()
        what = "line" if count == 1 else "lines"
        since = when or f"in the {self.period:g} s after the last line"
        self.log.warning(
            f"{line} (the last of {count} {what} like it held back {since})",
            kind=kind,
            alsoSuppressed=count,
            **facts,
        )
        return True

    def flush(self) -> None:
        """At shutdown: account for the lines held back since each kind's last one."""
        for kind in list(self._held):
            self._release(kind, "before shutdown")

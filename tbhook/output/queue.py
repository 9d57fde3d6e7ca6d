"""The queue as it is written: one answer (the table under its title, with the queue in one
line after it; or the rows in a machine format), and the queue kept current (``--follow``):
redrawn in place on a terminal, or one NDJSON line per change when piped."""

from __future__ import annotations

import io
import sys
import time
from collections.abc import Iterable, Iterator
from datetime import timezone, tzinfo
from typing import IO, Any

from tbhook.model.queue import FIELDS, SLA_FIELDS, changes
from tbhook.model.text import on_terminal
from tbhook.model.times import duration, iso_time
from tbhook.output.describe import shown_time
from tbhook.output.formats import Answer, write

DRAW_EVERY = 1.0  # seconds: a terminal's table is drawn again this often (its seconds move)


def answer(found: Any, fmt: str, zone: tzinfo | None, hours: str | None, limit: int) -> Answer:
    """``found`` (``questions.QueueAnswer``) as `tbhook queue` writes it in ``fmt``."""
    records, sla = found.records, found.sla is not None
    spec = None
    if getattr(fmt, "value", fmt) == "table":
        from tbhook.output import listings  # rich: only a table loads it

        spec = listings.queue(records, sla, zone, title(found.at, zone, hours))
    return Answer(
        records=records,
        fields=found.fields,
        spec=spec,
        total=found.standing.waiting,
        limit=limit,
        notes=[found.standing.words(sla, duration)],
    )


def title(at: int, zone: tzinfo | None, hours: str | None) -> str:
    when = shown_time(iso_time(at), zone or timezone.utc) or f"@{at}"
    return f"waiting at {when}" + (f", in business hours {hours}" if hours else "")


def follow(
    snapshots: Iterable[Any],
    fmt: str,
    zone: tzinfo | None,
    hours: str | None,
    limit: int,
    sla: bool,
    out: IO[str] | None = None,
) -> None:
    """Each snapshot (``queue_feed.Snapshot``; None between them) as it comes: on a terminal
    the table is drawn again in place (and every second, its seconds moved on); otherwise
    one NDJSON line per change (``model.queue.changes``), the first answer's rows as
    ``waiting``. Returns when ``snapshots`` ends."""
    out = out or sys.stdout
    if getattr(fmt, "value", fmt) == "table" and on_terminal(out):
        _redraw(snapshots, zone, hours, limit, out)
        return
    fields = ("change", *FIELDS, *(SLA_FIELDS if sla else ()))
    write(Answer(records=_changes(snapshots), fields=fields, live=True), "ndjson", out)


def _changes(snapshots: Iterable[Any]) -> Iterator[dict[str, Any]]:
    before: list[dict[str, Any]] = []
    for found in snapshots:
        if found is not None:
            yield from changes(before, found.answer.records)
            before = found.answer.records


def _redraw(
    snapshots: Iterable[Any], zone: tzinfo | None, hours: str | None, limit: int, out: IO[str]
) -> None:
    """The table in place, as rich's Live draws it: cut at the terminal's foot, the last
    frame left on the screen when following ends."""
    from rich.live import Live
    from rich.text import Text

    from tbhook.output.tables import console

    screen = console(out)
    last, drawn = None, 0.0
    with Live(console=screen, auto_refresh=False, vertical_overflow="ellipsis") as live:
        for found in snapshots:
            now = time.time()
            if found is not None:
                last = found
            elif last is None or now - drawn < DRAW_EVERY:
                continue
            moved = last.answer if found is not None else last.answer.later(int(now))
            frame = _Frame(out)
            write(answer(moved, "table", zone, hours, limit), "table", frame)
            live.update(Text.from_ansi(frame.getvalue(), no_wrap=True), refresh=True)
            drawn = now


class _Frame(io.StringIO):
    """The table as this terminal would show it (its width, its colours), kept as text."""

    def __init__(self, terminal: IO[str]):
        super().__init__()
        self._terminal = terminal

    def isatty(self) -> bool:
        return True

    def fileno(self) -> int:
        return self._terminal.fileno()

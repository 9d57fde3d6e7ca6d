"""What a command prints besides its answer: why an answer is empty, a raw body byte for
byte, a table's layout, and rich's console and progress bar (loaded only when used)."""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import Any

import typer

from tbhook import questions
from tbhook.cli.options import given
from tbhook.model.filters import Filters
from tbhook.model.text import for_terminal, on_terminal
from tbhook.output.formats import Answer


def say_empty(
    store: Any, filters: Filters, what: str = "events", then: str = "", before: int | None = None
) -> None:
    """Say on stderr why a filtered answer is empty (``questions.why_empty``, as the console
    says it); ``then`` ends the line (what happens next)."""
    why = questions.why_empty(store, filters, what, before)
    if why is not None:
        sys.stderr.write(f"No {what}: {why}{then}\n")
        sys.stderr.flush()


def listed(listing: Any, fmt: str, limit: int, layout: Callable[[Any], Any]) -> Answer:
    """A list question's answer as the formats write it: its records streamed, a table laid
    out by ``layout(listings)`` (only when a table is wanted), and a footer's total."""
    spec = table_layout(fmt, layout)
    return Answer(
        records=listing.records, fields=listing.fields, spec=spec, total=listing.total, limit=limit
    )


def table_layout(fmt: str, spec: Callable[[Any], Any]) -> Any:
    """A listing's streamed table layout (``spec(listings)``), made only when a table is
    wanted: the layout asks the store a few questions, and rich costs about 40 ms to load."""
    if getattr(fmt, "value", fmt) != "table":
        return None
    from tbhook.output import listings  # rich: only a table loads it

    return spec(listings)


def refuse_with_raw(ctx: typer.Context, raw: bool, names: tuple[str, ...]) -> None:
    """--raw writes the body byte for byte: an option that changes how things are shown
    would do nothing beside it, so it is refused rather than ignored."""
    if not raw:
        return
    named = [
        next(p.opts[0] for p in ctx.command.params if p.name == name)
        for name in names
        if given(ctx, name, environment=False)  # TBHOOK_TZ set for every command is fine
    ]
    if named:
        raise typer.BadParameter(
            f"--raw writes the body byte for byte; {', '.join(named)} would do nothing beside it",
            param_hint="'--raw'",
        )


def write_raw(body: bytes) -> None:
    """The body byte for byte, for a pipe or a file; on a terminal, with its control
    characters escaped (a body is sender text)."""
    if on_terminal(sys.stdout):
        sys.stdout.write(for_terminal(body.decode("utf-8", "backslashreplace")))
        sys.stdout.flush()
        return
    sys.stdout.flush()
    sys.stdout.buffer.write(body)
    sys.stdout.buffer.flush()


def console(stderr: bool = False):
    from rich.console import Console  # about 40 ms: only what writes to a person loads it

    return Console(stderr=stderr, highlight=False)


def progress():
    """A transient progress bar on stderr, shown only when stderr is a terminal (a cron job's
    log gets no bar and no blank line)."""
    from rich.progress import Progress  # about 60 ms: only a long command loads it

    return Progress(console=console(stderr=True), transient=True, disable=not sys.stderr.isatty())

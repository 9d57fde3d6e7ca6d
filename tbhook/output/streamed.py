"""Listings of any length as tables, written row by row as the store yields them.

A rich table reads every row before it draws the first (to size its columns): 75 s and a
gigabyte for 200,000 events. Here the columns are sized before any row is read, from what
the store knows (the widest id, case and person number) and from fixed caps for text, so the
first row is on the screen at once, memory stays flat, and `| head` ends the command at once.
The rules are those of every table (``tables.plan``): numbers are never cut, optional columns
go first, text is cut with an ellipsis. Where even the numbers do not fit, each row becomes a
block of ``name: value`` lines.
"""

from __future__ import annotations

import textwrap
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import IO, Any

from rich.cells import cell_len, set_cell_size
from rich.style import Style

from tbhook.model.text import clean
from tbhook.output.describe import footer
from tbhook.output.tables import GAP, KEY, PROSE, Column, console, plan

Cell = Any  # a value, or (value, style)
FLUSH_EVERY = 200  # rows: a person sees them come, a pipe gets few large writes


@dataclass(frozen=True)
class Spec:
    """How a listing is drawn: its columns, the cells of one record, and the widest each
    column can be (numbers: from the store; text: a cap, beyond which it is cut)."""

    columns: Sequence[Column]
    cells: Callable[[Mapping[str, Any]], Sequence[Cell]]
    natural: Mapping[str, int] = field(default_factory=dict)
    title: str | None = None

    def widths(self) -> list[int]:
        return [
            max(len(column.name), self.natural.get(column.name, len(column.name)))
            for column in self.columns
        ]


def write(records: Iterable[Mapping[str, Any]], spec: Spec, out: IO[str]) -> int:
    """Write ``records`` as ``spec`` lays them out; how many."""
    screen = console(out)
    paint = Painter(screen)
    laid = plan(spec.columns, spec.widths(), screen.width)
    lines: list[str] = []
    if spec.title:
        lines.append(paint(clean(spec.title), "bold"))
    if laid is not None:
        shown, widths = laid
        header = [_fit(spec.columns[i], spec.columns[i].name, widths[i]) for i in shown]
        lines.append(paint(_joined(header), "bold"))
        lines.append("─" * (sum(widths[i] for i in shown) + GAP * (len(shown) - 1)))
    count = 0
    for record in records:
        cells = spec.cells(record)
        if laid is None:
            lines.extend(_block(spec.columns, cells, screen.width, paint))
        else:
            lines.append(_row(spec.columns, cells, shown, widths, paint))
        count += 1
        if count % FLUSH_EVERY == 0:
            out.write("\n".join(lines) + "\n")
            out.flush()
            lines.clear()
    if lines and (count or laid is None):  # an empty listing prints no empty table
        out.write("\n".join(lines) + "\n")
    out.flush()
    return count


def with_footer(written: int, total: int | None, out: IO[str]) -> None:
    cut = footer(written, total)
    if cut:
        out.write(Painter(console(out))(cut, "dim") + "\n")


def _row(
    columns: Sequence[Column], cells: Sequence[Cell], shown: list[int], widths: dict, paint: Any
) -> str:
    """One row; a prose cell longer than its column wraps onto more lines, under itself."""
    parts, more = [], {}
    for i in shown:
        value, style = cells[i] if isinstance(cells[i], tuple) else (cells[i], None)
        if columns[i].kind == PROSE and value is not None and len(str(value)) > widths[i]:
            pieces = _wrapped(clean(value), widths[i])
            value, more[i] = pieces[0], pieces[1:]
        parts.append(paint(_fit(columns[i], value, widths[i]), style))
    lines = [_joined(parts)]
    for n in range(max((len(rest) for rest in more.values()), default=0)):
        pieces = [
            _fit(columns[i], more[i][n] if i in more and n < len(more[i]) else "", widths[i])
            for i in shown
        ]
        lines.append(_joined(pieces))
    return "\n".join(lines)


def _wrapped(text: str, width: int) -> list[str]:
    return textwrap.wrap(text, width, break_on_hyphens=False) or [""]


def _joined(parts: list[str]) -> str:
    return (" " * GAP).join(parts).rstrip()


def _fit(column: Column, value: Any, width: int) -> str:
    """A cell at ``width``: a number whole (wider than planned, the row is wider), text cut
    with an ellipsis, control characters escaped."""
    text = "" if value is None else ("yes" if value is True else "no" if value is False else value)
    text = clean(text)
    size = len(text) if text.isascii() else _cells(text)
    if size > width:
        if column.kind == KEY:
            return text
        return _cut(text, width)
    pad = " " * (width - size)
    return pad + text if column.justify == "right" else text + pad


def _cells(text: str) -> int:

    return cell_len(text)


def _cut(text: str, width: int) -> str:

    return set_cell_size(text, width - 1) + "…"


def _block(columns: Sequence[Column], cells: Sequence[Cell], width: int, paint: Any) -> list[str]:
    """One record as ``name: value`` lines (and a blank line after): nothing is ever cut."""
    label = max(len(column.name) for column in columns)
    lines = []
    for column, cell in zip(columns, cells, strict=True):
        value, style = cell if isinstance(cell, tuple) else (cell, None)
        if value in (None, ""):
            continue
        text = clean("yes" if value is True else "no" if value is False else value)
        room = max(8, width - label - 2)
        pieces = _wrapped(text, room) if column.kind != KEY and len(text) > room else [text]
        lines.append(f"{column.name:>{label}}: " + paint(pieces[0], style))
        lines.extend(" " * (label + 2) + paint(piece, style) for piece in pieces[1:])
    lines.append("")
    return lines


class Painter:
    """Styles as the terminal's escape codes (rich decides whether it takes colour at all:
    a pipe, NO_COLOR and TERM=dumb get none), looked up once per style."""

    def __init__(self, screen: Any):
        self._system = screen._color_system if screen.is_terminal else None
        self._codes: dict[str, tuple[str, str]] = {}

    def __call__(self, text: str, style: str | None) -> str:
        if not style or self._system is None:
            return text
        codes = self._codes.get(style)
        if codes is None:
            before, _, after = (
                Style.parse(style).render("\0", color_system=self._system).partition("\0")
            )
            codes = self._codes[style] = (before, after)
        return codes[0] + text + codes[1]


__all__ = ["PROSE", "Spec", "with_footer", "write"]

"""One registry of output formats, name to writer, used by every command (in the manner of
datasette's output renderers): a command builds an ``Answer``; ``write`` puts it out.

- ``table`` for people: rich, sized to the terminal;
- ``text``: one line per record, for a feed (tail);
- ``json``: the answer as one document (an array of records, or the command's document);
- ``ndjson``: one record per line (or the document on one line);
- ``csv``: the records, RFC 4180, spreadsheet-safe.

Only tables go through rich; the others stream from generators in constant memory.
"""

from __future__ import annotations

import csv
import functools
import json
import sys
import textwrap
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from tbhook.errors import TbhookError
from tbhook.model.text import CSV_LINE_END, FORMULA_STARTS, TerminalStream, csv_value, on_terminal
from tbhook.output.describe import footer
from tbhook.transfer.files import create_private, replacing

Records = Iterable[Mapping[str, Any]]


@dataclass
class Answer:
    """What a command says, whatever the format.

    ``records`` are its rows (what csv and ndjson write); ``document``, when given, is the
    answer as one JSON object (person, case, stats, doctor), written by json and ndjson instead
    of the rows; ``table`` draws the rows for people (any rich renderable); ``line`` makes one
    record a line of text (a rich Text) for a feed; ``total`` is how many rows there were
    before a limit, for the footer that says the answer was cut; ``live`` flushes each record
    as it is written (a feed that never ends).
    """

    records: Records = ()
    fields: Sequence[str] = ()
    document: Any = None
    table: Callable[[list[Mapping[str, Any]]], Any] | None = None
    line: Callable[[Mapping[str, Any]], str | tuple[str, str]] | None = None
    total: int | Callable[[], int] | None = None
    limit: int | None = None  # the limit asked for: with a callable total, counted only if hit
    notes: list[Any] = field(default_factory=list)  # for people, under the table: text or
    # (text, style)
    live: bool = False
    hanging: int = 0  # text on a terminal: lines wrap at words, continued this far in
    spec: Any = None  # a streamed.Spec: the records as a table written as they come

    def total_if_cut(self, written: int) -> int | None:
        """How many there were in all, when the answer was cut short by its limit."""
        if self.total is None or (self.limit and written < self.limit):
            return None
        total = self.total() if callable(self.total) else self.total
        return total if total > written else None

    def fields_of(self, record: Mapping[str, Any]) -> Mapping[str, Any]:
        """The record as written: its ``fields`` in order, or all of it when none are named."""
        if not self.fields:
            return record
        return {name: record.get(name) for name in self.fields}


def write_json(answer: Answer, out: IO[str]) -> int:
    if answer.document is not None:
        out.write(json.dumps(answer.document, indent=2) + "\n")
        return 1
    count = 0
    out.write("[")
    for record in answer.records:
        item = json.dumps(answer.fields_of(record))
        out.write(("\n" if count == 0 else ",\n") + item)
        count += 1
    out.write("\n]\n" if count else "]\n")
    return count


def write_ndjson(answer: Answer, out: IO[str]) -> int:
    if answer.document is not None:
        out.write(json.dumps(answer.document) + "\n")
        return 1
    count = 0
    for record in answer.records:
        out.write(json.dumps(answer.fields_of(record)) + "\n")
        count += 1
        if answer.live:
            out.flush()
    return count


def write_csv(answer: Answer, out: IO[str]) -> int:
    writer = csv.writer(out, lineterminator=CSV_LINE_END)
    writer.writerow(answer.fields)
    count = 0
    fields = answer.fields
    for record in answer.records:
        # Numbers and nothing pass as they are; only text (and true/false) needs csv_value.
        values = [record.get(name) for name in fields]
        writer.writerow([v if type(v) is int or v is None else csv_value(v) for v in values])
        count += 1
    return count


def write_table(answer: Answer, out: IO[str]) -> int:
    # rich (about 40 ms to load) and what is drawn with it: imported only when a table is.
    from rich.text import Text

    from tbhook.output.tables import console

    if answer.spec is not None:
        from tbhook.output import streamed

        written = streamed.write(answer.records, answer.spec, out)
        _notes(answer, console(out))
        streamed.with_footer(written, answer.total_if_cut(written), out)
        return written
    records = list(answer.records)
    screen = console(out)
    if answer.table is not None and (records or answer.document is not None):
        screen.print(answer.table(records))  # an empty listing prints no empty table
    _notes(answer, screen)
    cut = footer(len(records), answer.total_if_cut(len(records)))
    if cut:
        screen.print(Text(cut, style="dim"))
    return len(records)


def _notes(answer: Answer, screen: Any) -> None:
    """The notes under a table: text, or (text, style)."""
    from rich.text import Text

    for note in answer.notes:
        screen.print(Text(*note) if isinstance(note, tuple) else Text(note))


def write_text(answer: Answer, out: IO[str]) -> int:
    """One line per record, for a feed. On a terminal, a line longer than it wraps between
    words, continued ``answer.hanging`` columns in (a number is never split); piped, each
    record stays one line. Written directly, not through rich: a feed may be a million lines."""
    from tbhook.output.streamed import Painter  # rich: see write_table
    from tbhook.output.tables import console

    screen = console(out)
    paint = Painter(screen)
    width = screen.width if answer.hanging and on_terminal(out) else 0
    count = 0
    for record in answer.records:
        line = answer.line(record) if answer.line else str(answer.fields_of(record))
        plain, style = line if isinstance(line, tuple) else (line, "")
        pieces = wrapped(plain, width, answer.hanging) if width and len(plain) > width else [plain]
        out.write("".join(paint(piece, style) + "\n" for piece in pieces))
        count += 1
        if answer.live:
            out.flush()
    return count


def wrapped(text: str, width: int, hanging: int) -> list[str]:
    """``text`` in lines of at most ``width`` columns, broken between words, every line after
    the first indented ``hanging`` columns (less when the terminal is too narrow for that); a
    word longer than a whole line is the only thing ever split."""
    indent = hanging if width - hanging >= 24 else min(4, width // 4)
    return textwrap.wrap(
        text,
        width,
        subsequent_indent=" " * indent,
        break_on_hyphens=False,
        replace_whitespace=False,
    ) or [""]


FORMATS: dict[str, Callable[[Answer, IO[str]], int]] = {
    "table": write_table,
    "text": write_text,
    "json": write_json,
    "ndjson": write_ndjson,
    "csv": write_csv,
}


def write(answer: Answer, fmt: str, out: IO[str] | None = None) -> int:
    """Write ``answer`` in format ``fmt`` (a name in FORMATS); how many records."""
    out = out or sys.stdout
    fmt = getattr(fmt, "value", fmt)  # a member of a command's Format choices
    if fmt not in ("table", "text") and on_terminal(out):
        out = TerminalStream(out)  # type: ignore[assignment]  # tables clean every cell
    written = FORMATS[fmt](answer, out)
    total = answer.total_if_cut(written) if fmt != "table" else None
    if total is not None:
        # Machine formats carry only data: the cut is said on stderr, to a person.
        sys.stderr.write(f"{footer(written, total)}\n")
    return written


def write_rows(
    batches: Iterable[Sequence[Sequence[Any]]],
    fields: Sequence[str],
    fmt: str,
    out: IO[str],
    progress: Callable[[int], None] | None = None,
    text: Sequence[str] = ("event",),
) -> int:
    """Batches of rows of values (not records), in ``fields`` order, as csv lines or NDJSON
    objects: the path of an export of millions, with no Python step per row but the guard.
    Only the ``text`` fields can hold sender text, so only they are guarded against
    spreadsheet formulas (numbers and tbhook's own times never start with one); the C csv
    writer takes each batch whole. No header: the caller writes it."""
    count = 0
    writer = csv.writer(out, lineterminator=CSV_LINE_END)
    dumps = _compact_json()
    guarded = [fields.index(name) for name in text if name in fields]
    for rows in batches:
        if fmt == "csv":
            for i in guarded:
                rows = [
                    row
                    if not (row[i].__class__ is str and row[i].startswith(FORMULA_STARTS))
                    else (*row[:i], csv_value(row[i]), *row[i + 1 :])
                    for row in rows
                ]
            writer.writerows(rows)
        else:
            out.writelines([dumps(dict(zip(fields, row, strict=True))) + "\n" for row in rows])
        count += len(rows)
        if progress:
            progress(len(rows))
    return count


def _compact_json() -> Callable[[Any], str]:
    """One JSON object per line, compact, text as it is (control characters escaped):
    orjson where it is installed (a few times faster), the json module otherwise."""
    try:
        import orjson
    except ImportError:  # the single-file build
        return functools.partial(json.dumps, separators=(",", ":"), ensure_ascii=False)
    return lambda value: orjson.dumps(value).decode()


def write_file(
    output: Path,
    total: int,
    write_to: Callable[[IO[str], Callable[[int], None]], int],
    command: str = "export",
) -> int:
    """Run ``write_to(stream, advance)`` into a temp file beside ``output`` with a progress bar
    on stderr, fsync, then rename into place: readers never see half a file, and whatever was
    at ``output`` stays until the new file is complete."""
    from rich.console import Console  # rich.progress: about 60 ms, only with --output
    from rich.progress import Progress

    with replacing(output, command) as temp:
        try:
            # Opened before the progress bar starts, so a bad path is one clean error line.
            stream = create_private(temp)
        except OSError as exc:
            raise TbhookError(f"cannot write {output}: {exc.strerror or exc}") from exc
        shown = Progress(console=Console(stderr=True), transient=True, disable=not _tty())
        with stream, shown as progress:
            task = progress.add_task(f"exporting to {output}", total=total)
            written = write_to(stream, lambda n: progress.advance(task, n))
    return written


def _tty() -> bool:
    return sys.stderr.isatty()

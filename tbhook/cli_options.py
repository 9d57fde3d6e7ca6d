"""What every command shares: the database option, the read filters, errors and output."""

from __future__ import annotations

import contextlib
import sqlite3
import sys
from collections.abc import Callable, Iterable, Iterator
from typing import TYPE_CHECKING, Annotated, Any, Optional

import typer

from tbhook.errors import TbhookError
from tbhook.filters import Filters, parse_sender, parse_when
from tbhook.output import Format

if TYPE_CHECKING:
    from tbhook.store import Store

DEFAULT_DB = "tbhook.db"
DbOption = Annotated[
    str,
    typer.Option(
        "--db",
        envvar="TBHOOK_DB",
        metavar="FILE|URL",
        help="SQLite file, or a postgresql:// URL (the password from the URL, PGPASSWORD "
        "or ~/.pgpass).",
        show_default=True,
    ),
]


def fail(message: str) -> typer.Exit:
    """Print ``Error: message`` on stderr; return the exit to raise (code 1)."""
    typer.echo(f"Error: {message}", err=True)
    return typer.Exit(1)


@contextlib.contextmanager
def reported_errors() -> Iterator[None]:
    """Turn a TbhookError into ``Error: ...`` on stderr and exit code 1."""
    try:
        yield
    except TbhookError as exc:
        raise fail(str(exc)) from None


def parse_size(value: Optional[str], option: str) -> Optional[int]:
    """``500M``, ``2G``, ``64K`` or plain bytes."""
    if value is None:
        return None
    units = {"K": 1024, "M": 1024**2, "G": 1024**3}
    text = value.strip().upper().removesuffix("B").removesuffix("I")
    try:
        number = float(text[:-1]) * units[text[-1]] if text[-1:] in units else float(text)
    except ValueError:
        number = 0
    if not 64 * 1024 <= number < 2**62:
        raise typer.BadParameter(
            f"{value!r} is not a size of at least 64K, such as 500M or 2G", param_hint=f"'{option}'"
        )
    return int(number)


def _when(until: bool) -> Callable[[Optional[str]], Optional[int]]:
    def convert(value: Optional[str]) -> Optional[int]:
        if value is None:
            return None
        try:
            return parse_when(value, until=until)
        except ValueError as exc:
            raise typer.BadParameter(str(exc)) from None

    return convert


def valid_id(value: Optional[int]) -> Optional[int]:
    """Tracebuzz IDs are SQLite integers: 64-bit."""
    if value is not None and not -(2**63) <= value < 2**63:
        raise typer.BadParameter(f"{value} does not fit in a 64-bit integer")
    return value


INT64: dict[str, Any] = {"callback": valid_id, "metavar": "ID"}


def _sender(value: Optional[str]) -> Optional[int]:
    if value is None:
        return None
    try:
        return parse_sender(value)
    except ValueError as exc:
        raise typer.BadParameter(str(exc)) from None


EventOpt = Annotated[
    Optional[list[str]],
    typer.Option("--event", metavar="NAME", help="Only this event name (repeatable)."),
]
CaseOpt = Annotated[Optional[int], typer.Option("--case", help="Only this caseId.", **INT64)]
PersonOpt = Annotated[
    Optional[int],
    typer.Option("--person", help="Only this personId and everyone merged with it.", **INT64),
]
SearchOpt = Annotated[
    Optional[int], typer.Option("--search-id", help="Only this searchId.", **INT64)
]
SourceOpt = Annotated[Optional[int], typer.Option("--source", help="Only this sourceId.", **INT64)]
SenderOpt = Annotated[
    Optional[str],
    typer.Option(
        "--sender",
        metavar="customer|agent",
        help="Only messages from the customer or an agent.",
        callback=_sender,
    ),
]
SinceOpt = Annotated[
    Optional[str],
    typer.Option(
        "--since",
        metavar="WHEN",
        help="From this timestamp: 2024-05-01, 2024-05-01T09:30+02:00, or an age: 30m, 2h, 7d.",
        callback=_when(until=False),
    ),
]
UntilOpt = Annotated[
    Optional[str],
    typer.Option(
        "--until",
        metavar="WHEN",
        help="Up to this timestamp (a bare date includes that day).",
        callback=_when(True),
    ),
]
FormatOpt = Annotated[Format, typer.Option("--format", "-f", help="Output format.")]


def filters_from(event, case, person, search_id, source, sender, since, until) -> Filters:  # noqa: ANN001
    return Filters(
        events=tuple(event or ()),
        case=case,
        person=person,
        search_id=search_id,
        source=source,
        sender=sender,
        since=since,
        until=until,
    )


@contextlib.contextmanager
def reading(db: str, current: bool = True) -> Iterator[Store]:
    """The database opened read-only, errors reported as ``Error: ...``."""
    from tbhook.store import open_reader

    with reported_errors():
        store = open_reader(db, current)
        try:
            yield store
        except sqlite3.Error as exc:
            raise TbhookError(f"cannot read {store.path}: {exc}") from exc
        finally:
            store.close()


def console(stderr: bool = False):  # noqa: ANN202 - rich is imported lazily
    from rich.console import Console

    return Console(stderr=stderr, highlight=False)


def progress():  # noqa: ANN201 - rich is imported lazily
    """A transient progress bar on stderr, shown only when stderr is a terminal (a cron job's
    log gets no bar and no blank line)."""
    from rich.progress import Progress

    return Progress(console=console(stderr=True), transient=True, disable=not sys.stderr.isatty())


def emit(
    records: Iterable[dict[str, Any]],
    fmt: Format,
    fields: tuple[str, ...],
    table: Callable[[Iterable[dict[str, Any]]], Any] | None = None,
) -> None:
    """Rows out: a rich table for people, or streamed json/ndjson/csv for programs."""
    from tbhook.output import write_records

    if fmt is Format.table and table:
        console().print(table(records))
    else:
        write_records(records, fmt, fields, sys.stdout)

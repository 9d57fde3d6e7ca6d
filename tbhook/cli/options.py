"""What every command shares: the database option, the port, the usage line, the format
option, ids as arguments, and errors as ``Error: ...``. A question's options (filters, limit,
zone, hours) come from ``asking``; opening the store from ``access``; what a command prints
besides its answer from ``printing``."""

from __future__ import annotations

import contextlib
import errno
import functools
import os
import sys
from collections.abc import Callable, Iterator
from enum import Enum
from typing import TYPE_CHECKING, Annotated, Any, Optional, TypeAlias

import typer
from typer.core import TyperCommand, TyperGroup

from tbhook.errors import TbhookError
from tbhook.model.filters import parse_count, parse_decimal, parse_id
from tbhook.model.query import DEFAULT_LIMIT
from tbhook.model.targets import check_target
from tbhook.output.formats import FORMATS

__all__ = ["DEFAULT_LIMIT"]

DEFAULT_DB = "tbhook.db"


def _database(value: str) -> str:
    """A file path, or a PostgreSQL URL that can be one (checked before anything opens it);
    another scheme (mysql://), a name that is no file's (blank, ``-``) or a device is a usage
    error, never a file name."""
    from tbhook.transfer.files import stream_kind

    try:
        check_target(value)
    except TbhookError as exc:
        raise typer.BadParameter(str(exc)) from None
    kind = stream_kind(value)
    if kind is not None:
        raise typer.BadParameter(
            f"{value} is {kind}, not a database file: give a file name or a postgresql:// URL"
        )
    return value


DbOption = Annotated[
    str,
    typer.Option(
        "--db",
        envvar="TBHOOK_DB",
        metavar="FILE|URL",
        callback=_database,
        help="SQLite file, or a postgresql:// URL (the password from the URL, PGPASSWORD "
        "or ~/.pgpass).",
        show_default=True,
    ),
]


def _converted(parse: Callable[[str], Any]) -> Callable[[Any], Any]:
    """A typer callback or ``parser``: the option's text read by ``parse`` (a model function,
    which the console calls too), its ValueError a usage error in the same words; a default
    (None, or a number) passes as it is."""

    def convert(value: Any) -> Any:
        if not isinstance(value, str):
            return value
        try:
            return parse(value)
        except ValueError as exc:
            raise typer.BadParameter(str(exc)) from None

    return convert


def whole_number(low: int, high: int | None = None) -> dict[str, Any]:
    """A whole number's ``typer.Option`` arguments: ASCII digits from ``low`` (to ``high``)."""
    return {"parser": _converted(functools.partial(parse_count, low=low, high=high))}


def decimal_number(low: float) -> dict[str, Any]:
    """A number's ``typer.Option`` arguments: ASCII digits, a fraction allowed, from ``low``."""

    def read(text: str) -> float:
        value = parse_decimal(text)
        if value < low:
            raise ValueError(f"{text.strip()} is not a number of at least {low:g}")
        return value

    return {"parser": _converted(read)}


# Where a server listens: serve's and the console's.
PortOption = Annotated[
    int, typer.Option(metavar="PORT", help="Port (0 picks a free one).", **whole_number(0, 65535))
]
MaxConnectionsOption = Annotated[
    int,
    typer.Option(
        metavar="N",
        **whole_number(1),
        help="Open connections; past this the oldest one without a complete request is "
        "closed (lowered to fit the open-file limit).",
    ),
]


# A write that failed for want of room: said in words (EPIPE, a reader that left, is click's).
NO_ROOM = {errno.ENOSPC, errno.EDQUOT, errno.EFBIG}


class TbhookGroup(TyperGroup):
    """`tbhook` itself: whatever a command writes (stdout, a table, an export) that the disk
    has no room for ends as ``Error: ...`` and exit 1, never a traceback."""

    def invoke(self, ctx: Any) -> Any:
        try:
            result = super().invoke(ctx)
            sys.stdout.flush()  # what is still buffered fails here, not at exit
            return result
        except OSError as exc:
            if exc.errno not in NO_ROOM:
                raise
            _settle_stdout()
            raise fail(
                f"the output could not be written: {exc.strerror or exc}; what was written "
                "of it is incomplete"
            ) from None


def _settle_stdout() -> None:
    """Let stdout's buffer go (to /dev/null when its own disk is full), so the exit does not
    fail once more on flushing it."""
    try:
        sys.stdout.flush()
    except OSError:
        with contextlib.suppress(OSError, ValueError):
            null = os.open(os.devnull, os.O_WRONLY)
            os.dup2(null, sys.stdout.fileno())
            os.close(null)


class TbhookCommand(TyperCommand):
    """Every tbhook command: arguments in its usage line as their help names them (``ID``,
    ``DEST``), not as typer marks a required one (``{ID}``)."""

    def collect_usage_pieces(self, ctx: Any) -> list[str]:
        pieces = [self.options_metavar] if self.options_metavar else []
        for param in self.get_params(ctx):
            if param.param_type_name == "argument" and param.metavar:
                pieces.append(param.metavar if param.required else f"[{param.metavar}]")
            else:
                pieces.extend(param.get_usage_pieces(ctx))
        return pieces


def say(line: str) -> None:
    """A line for the person on stderr (what was done on the way, never data)."""
    typer.echo(line, err=True)


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


def http_url(value: Optional[str], option: str) -> Optional[str]:
    """An http:// or https:// URL with a host (where tbhook posts, or points a page)."""
    from urllib.parse import urlsplit

    if value is None:
        return None
    try:
        parts = urlsplit(value)
        port_ok = parts.port is None or parts.port > 0  # reading .port checks the number
    except ValueError:
        parts, port_ok = None, False
    if parts is None or parts.scheme not in ("http", "https") or not parts.hostname or not port_ok:
        raise typer.BadParameter(
            f"{value!r} is not an http:// or https:// URL", param_hint=f"'{option}'"
        )
    return value


def parse_size(value: Optional[str], option: str) -> Optional[int]:
    """``500M``, ``2G``, ``64K`` or plain bytes."""
    if value is None:
        return None
    units = {"K": 1024, "M": 1024**2, "G": 1024**3}
    text = value.strip().upper().removesuffix("B").removesuffix("I")
    unit = units[text[-1]] if text[-1:] in units else 1
    try:  # ASCII digits only, as every number a person types ('٣M' is no size)
        number = parse_decimal(text[:-1] if unit > 1 else text) * unit
    except ValueError:
        number = 0
    if not 64 * 1024 <= number < 2**62:
        raise typer.BadParameter(
            f"{value!r} is not a size of at least 64K, such as 500M or 2G", param_hint=f"'{option}'"
        )
    return int(number)


def db_size(help: str) -> Any:
    """``--max-db-size`` (serve's cap; doctor's check of it): a size read into bytes."""
    return typer.Option(
        "--max-db-size",
        metavar="SIZE",
        help=help,
        callback=lambda value: parse_size(value, "--max-db-size"),
    )


# An id: ASCII digits, 64-bit (Tracebuzz's ids and tbhook's are SQLite integers).
INT64: dict[str, Any] = {"parser": _converted(parse_id), "metavar": "ID"}


def given(ctx: Any, name: str, environment: bool = True) -> bool:
    """Whether the user gave option ``name`` on the command line (or in the environment)."""
    source = ctx.get_parameter_source(name)
    sources = ("COMMANDLINE", "ENVIRONMENT") if environment else ("COMMANDLINE",)
    return source is not None and source.name in sources


# -- the format option ----------------------------------------------------------------------


def format_option(*names: str, default: str | None = None) -> Any:
    """``--format/-f``, choosing among ``names`` of the format registry (all by default)."""
    choices = names or tuple(FORMATS)
    unknown = set(choices) - set(FORMATS)
    assert not unknown, f"not in the format registry: {unknown}"
    # A str Enum of the choices: typer checks them, and each member is its own name.
    names_enum = Enum("Format", {name: name for name in choices}, type=str)  # type: ignore[misc]
    return Annotated[
        names_enum,
        typer.Option(
            "--format",
            "-f",
            metavar="|".join(choices),
            help=f"Output format.  [default: {default or choices[0]}]",
            show_default=False,
        ),
    ]


if TYPE_CHECKING:  # to a type checker, each is a str
    FormatOption: TypeAlias = str
    TailFormat: TypeAlias = str
    ExportFormat: TypeAlias = str
    OneFormat: TypeAlias = str
else:
    FormatOption = format_option("table", "json", "ndjson", "csv")
    TailFormat = format_option("text", "ndjson")
    ExportFormat = format_option("csv", "ndjson")
    OneFormat = format_option("table", "json", "ndjson")


class LogFormat(str, Enum):
    """``serve --log-format``: the choices of ``tbhook.receiver.log.FORMATS``."""

    human = "human"
    json = "json"

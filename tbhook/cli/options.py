"""What every command shares: the database option, the filter bundle, the limit, the format
option, errors and the way a store is opened for reading."""

from __future__ import annotations

import contextlib
import copy
import functools
import inspect
import sys
import typing
from collections.abc import Callable, Iterator
from datetime import timezone, tzinfo
from enum import Enum
from typing import TYPE_CHECKING, Annotated, Any, Optional, TypeAlias, TypeVar

import typer
from typer.core import TyperCommand

from tbhook.errors import TbhookError
from tbhook.model.events import SCHEMAS
from tbhook.model.filters import Filters, parse_count, parse_id, parse_path, parse_sender
from tbhook.model.targets import check_target
from tbhook.model.times import empty_range, parse_when, parse_zone, said, when_note
from tbhook.output.formats import FORMATS

if TYPE_CHECKING:
    from tbhook.model.hours import Clock
    from tbhook.store import Store
from tbhook.model.text import clean, for_terminal, on_terminal

DEFAULT_DB = "tbhook.db"
DEFAULT_LIMIT = 50  # every listing: events, cases, quarantine, tail's backlog


def _database(value: str) -> str:
    """A file path, or a PostgreSQL URL that can be one (checked before anything opens it);
    another scheme (mysql://) is a usage error, never a file name."""
    try:
        check_target(value)
    except TbhookError as exc:
        raise typer.BadParameter(str(exc)) from None
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


def in_range(low: float, high: float | None = None) -> Callable[[Any], Any]:
    """A typer callback: a number from ``low`` (to ``high``), or a usage error saying so.
    (typer's own min/max would print ``0<=x<=9223372036854775807`` in every help.)"""

    def check(value: Any) -> Any:
        if value is None or (low <= value and (high is None or value <= high)):
            return value
        bound = f"from {low:g} to {high:g}" if high is not None else f"at least {low:g}"
        raise typer.BadParameter(f"{value} is not a number {bound}")

    return check


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


LimitOption = Annotated[
    int,
    typer.Option(
        "--limit", "-n", metavar="N", help="At most N rows (0: all).", **whole_number(0, 2**63 - 1)
    ),
]


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
    try:
        number = float(text[:-1]) * units[text[-1]] if text[-1:] in units else float(text)
    except ValueError:
        number = 0
    if not 64 * 1024 <= number < 2**62:
        raise typer.BadParameter(
            f"{value!r} is not a size of at least 64K, such as 500M or 2G", param_hint=f"'{option}'"
        )
    return int(number)


# An id: ASCII digits, 64-bit (Tracebuzz's ids and tbhook's are SQLite integers).
INT64: dict[str, Any] = {"parser": _converted(parse_id), "metavar": "ID"}


def _moment(until: bool = False) -> Callable[[typer.CallbackParam, Optional[str]], Any]:
    """A typer callback that checks a moment's text and keeps it (it is read once the
    command's --tz is known, ``make_filters``); how a number was read is said on stderr."""

    def check(param: typer.CallbackParam, value: Optional[str]) -> Any:
        _converted(functools.partial(parse_when, until=until))(value)
        note = when_note(value) if value is not None else None
        if note:
            typer.echo(f"Note: {param.opts[0]} {note}", err=True)
        return value

    return check


# -- the filter bundle ----------------------------------------------------------------------
# Every read command filters the same way. Each entry is one option: its parameter name is
# the field of ``Filters`` it sets, so a new filter is one entry here and one field there.
FILTER_OPTIONS: dict[str, Any] = {
    "events": Annotated[
        Optional[list[str]],
        typer.Option("--event", metavar="NAME", help="Only this event name (repeatable)."),
    ],
    "case": Annotated[Optional[int], typer.Option("--case", help="Only this caseId.", **INT64)],
    "person": Annotated[
        Optional[int],
        typer.Option("--person", help="Only this personId and everyone merged with it.", **INT64),
    ],
    "search_id": Annotated[
        Optional[int], typer.Option("--search-id", help="Only this searchId.", **INT64)
    ],
    "source": Annotated[
        Optional[int], typer.Option("--source", help="Only this sourceId.", **INT64)
    ],
    "sender": Annotated[
        Optional[str],
        typer.Option(
            "--sender",
            metavar="customer|agent",
            help="Only messages from the customer or an agent.",
            callback=_converted(parse_sender),
        ),
    ],
    "since": Annotated[
        Optional[str],
        typer.Option(
            "--since",
            metavar="WHEN",
            help="From this moment: 2024-05-01, 2024-05-01T09:30+02:00, Unix seconds "
            "(1663831826; 13 digits: milliseconds), or an age: 30m, 2h, 7d. Without an "
            "offset, in --tz (UTC).",
            callback=_moment(),
        ),
    ],
    "until": Annotated[
        Optional[str],
        typer.Option(
            "--until",
            metavar="WHEN",
            help="Up to this moment, included (a bare date includes that day).",
            callback=_moment(until=True),
        ),
    ],
    "text": Annotated[
        Optional[str],
        typer.Option(
            "--text",
            metavar="TEXT",
            help="Only events whose raw body contains TEXT (as it was sent: a JSON body "
            'holds "Müller" as the customer typed it, or escaped as \\u00fc).',
        ),
    ],
    "path": Annotated[
        Optional[str],
        typer.Option(
            "--path",
            metavar="PATH",
            help="Only what was posted to this path (one receiver, several Tracebuzz "
            "profiles: /profile-a, /profile-b).",
            callback=_converted(parse_path),
        ),
    ],
}

Command = TypeVar("Command", bound=Callable[..., Any])


def filter_options(command: Command) -> Command:
    """Give ``command`` the filter options in place of its ``filters: Filters`` parameter
    (in the manner of sqlite-utils' ``output_options``): typer sees the options, the command
    gets one ``Filters``."""
    return _with_filters(command, ())


def case_filter_options(command: Command) -> Command:
    """``filter_options`` for a command that counts whole cases: --event, --sender and
    --text, which would leave out some of a case's events, are not in its help (given, the
    command refuses them in words)."""
    return _with_filters(command, ("events", "sender", "text"))


def _with_filters(command: Command, hidden: tuple[str, ...]) -> Command:
    signature = inspect.signature(command, eval_str=True)
    parameters = []
    for parameter in signature.parameters.values():
        if parameter.name == "filters":
            parameters += [
                inspect.Parameter(
                    name,
                    inspect.Parameter.KEYWORD_ONLY,
                    default=None,
                    annotation=_hidden(a) if name in hidden else a,
                )
                for name, a in FILTER_OPTIONS.items()
            ]
        else:
            parameters.append(parameter.replace(kind=inspect.Parameter.KEYWORD_ONLY))

    @functools.wraps(command)
    def with_filters(**values: Any) -> Any:
        given = {name: values.pop(name) for name in FILTER_OPTIONS}
        zone = display_zone(values.get("tz"), values.get("local", False))
        return command(**values, filters=make_filters(given, zone))

    with_filters.__signature__ = signature.replace(parameters=parameters)  # type: ignore[attr-defined]
    with_filters.__annotations__ = {p.name: p.annotation for p in parameters}
    return with_filters  # type: ignore[return-value]


def _hidden(annotation: Any) -> Any:
    """An option's annotation with the option left out of --help."""
    kind, info = typing.get_args(annotation)
    info = copy.copy(info)
    info.hidden = True
    return Annotated[kind, info]


def make_filters(given: dict[str, Any], zone: tzinfo | None = None) -> Filters:
    """The options' values as Filters, a moment without an offset read in ``zone`` (the
    command's --tz; UTC when None); ``--since`` not before ``--until`` is a usage error."""
    values: dict[str, Any] = {
        name: tuple(v) if isinstance(v, list) else v for name, v in given.items()
    }
    for name in ("since", "until"):
        if isinstance(values.get(name), str):
            values[name] = parse_when(
                values[name], until=name == "until", zone=zone or timezone.utc
            )
    if values.get("events") is None:  # typer's None for a list option given no value
        values["events"] = ()
    since, until = values.get("since"), values.get("until")
    problem = empty_range(since, until, ("--since", "--until"))
    if problem:
        raise typer.BadParameter(problem, param_hint="'--since' / '--until'")
    return Filters(**values)


def table_layout(fmt: str, spec: Callable[[Any], Any]) -> Any:
    """A listing's streamed table layout (``spec(listings)``), made only when a table is
    wanted: the layout asks the store a few questions, and rich costs about 40 ms to load."""
    if getattr(fmt, "value", fmt) != "table":
        return None
    from tbhook.output import listings  # rich: only a table loads it

    return spec(listings)


# -- raw bodies -----------------------------------------------------------------------------


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


def given(ctx: Any, name: str, environment: bool = True) -> bool:
    """Whether the user gave option ``name`` on the command line (or in the environment)."""
    source = ctx.get_parameter_source(name)
    sources = ("COMMANDLINE", "ENVIRONMENT") if environment else ("COMMANDLINE",)
    return source is not None and source.name in sources


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


# -- time zones ---------------------------------------------------------------------------

ZoneOption = Annotated[
    Optional[str],
    typer.Option(
        "--tz",
        metavar="ZONE",
        envvar="TBHOOK_TZ",
        help="Show times in tables and tail in this zone (Europe/Amsterdam, or local); "
        "json and csv stay UTC.",
    ),
]
LocalOption = Annotated[
    bool, typer.Option("--local", help="Show times in this machine's zone (as --tz local).")
]


HoursOption = Annotated[
    Optional[str],
    typer.Option(
        "--hours",
        metavar="SPEC",
        help='Count durations in business hours only, in --tz: "mon-fri 09:00-17:30" '
        '(several: "mon-fri 08:30-12:00,13:00-17:30; sat 10:00-14:00").',
    ),
]
HolidaysOption = Annotated[
    Optional[list[str]],
    typer.Option(
        "--holidays",
        metavar="COUNTRY|FILE",
        help="Closed days for --hours: a country's public holidays (NL, DE, US-CA) or a file "
        "of dates, one YYYY-MM-DD a line; repeat to combine.",
    ),
]


def business_clock(
    hours: Optional[str], holidays: Optional[list[str]], zone: tzinfo | None
) -> Clock | None:
    """The clock of ``--hours`` in ``zone`` (UTC when None), closed on ``--holidays``; None
    without --hours. A spec or a holiday that cannot be read is a usage error naming it."""
    from tbhook.model.hours import Clock, ClosedDays, SpecError, parse_hours

    if hours is None:
        if holidays:
            raise typer.BadParameter(
                "closed days need open hours: add --hours, like --hours 'mon-fri 09:00-17:30'",
                param_hint="'--holidays'",
            )
        return None
    try:
        spec = parse_hours(hours)
    except SpecError as exc:
        raise typer.BadParameter(f"cannot read {hours!r}: {exc}", param_hint="'--hours'") from None
    closed = ClosedDays()
    for value in holidays or ():
        try:
            closed.add(value)
        except SpecError as exc:
            raise typer.BadParameter(str(exc), param_hint="'--holidays'") from None
    return Clock(spec, zone or timezone.utc, closed)


def display_zone(tz: Optional[str], local: bool) -> tzinfo | None:
    """The zone tables show times in: None for UTC as stored."""
    if tz is not None and local:
        raise typer.BadParameter("give --tz ZONE or --local, not both", param_hint="'--tz'")
    if local:
        tz = "local"
    if tz is None:
        return None
    try:
        return parse_zone(tz)
    except ValueError as exc:
        raise typer.BadParameter(str(exc), param_hint="'--tz'") from None


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


# -- writing ---------------------------------------------------------------------------------


def open_for_writing(db: str, notice: Callable[[str], None] | None = None) -> Store:
    """The database opened for writing: migrated first, saying so on stderr when that takes
    minutes (call inside ``reported_errors``)."""
    from tbhook.store import open_store  # the store loads when a command opens one

    return open_store(db, notice=notice or say)


def say(line: str) -> None:
    """A line for the person on stderr (what was done on the way, never data)."""
    typer.echo(line, err=True)


# -- reading ---------------------------------------------------------------------------------


@contextlib.contextmanager
def reading(db: str, current: bool = True) -> Iterator[Store]:
    """The database opened read-only, errors reported as ``Error: ...``."""
    with reported_errors():
        from tbhook.store import open_reader  # see open_for_writing

        store = open_reader(db, current)
        try:
            yield store
        finally:
            store.close()


def explain_empty(store: Store, filters: Filters, what: str = "events", then: str = "") -> None:
    """Say on stderr why a filtered answer is empty: the database is, or the first filter that
    matches nothing on its own, or that each matches but not together; ``then`` ends the line
    (what happens next)."""

    def say(why: str) -> None:
        sys.stderr.write(f"No {what}: {why}{then}\n")
        sys.stderr.flush()

    if not store.reads.count():
        say("the database is empty (nothing received yet)")
        return
    if filters == Filters():
        if what == "cases":
            say("no message or close names a caseId")
        return
    for name in FILTER_OPTIONS:
        value = getattr(filters, name)
        if value is None or value == ():
            continue
        if name == "events":
            for event in value:
                if not store.reads.any_matching(Filters(events=(event,))):
                    say(
                        f'no event named "{clean(event)}"{_did_you_mean(event, SCHEMAS)}; '
                        f"known: {', '.join(SCHEMAS)}"
                    )
                    return
            continue
        if not store.reads.any_matching(Filters(**{name: value})):
            say(_nothing_for(name, value))
            return
    say("each filter matches events, but no event matches them all")


def _did_you_mean(name: str, known: Any) -> str:
    close = [k for k in known if k.lower() == name.lower()]
    return f' (did you mean "{close[0]}"? names are case-sensitive)' if close else ""


def _nothing_for(name: str, value: Any) -> str:
    if name in ("since", "until"):
        # until is exclusive: its last second included is the one before
        moment = said(value) if name == "since" else said(value - 1)
        return f"no event has a timestamp {'from' if name == 'since' else 'up to'} {moment}"
    if name == "sender":
        return f"no message from {'an agent' if value else 'the customer'}"
    if name == "person":
        return f"no event names person {value} or anyone merged with them"
    if name == "path":
        return f"no event was posted to {clean(value)}"
    if name == "text":
        return f'no raw body contains "{clean(value)}" (byte for byte, as it was sent)'
    option = {"case": "caseId", "search_id": "searchId", "source": "sourceId"}[name]
    return f"no event has {option} {value}"


def console(stderr: bool = False):
    from rich.console import Console  # about 40 ms: only what writes to a person loads it

    return Console(stderr=stderr, highlight=False)


def progress():
    """A transient progress bar on stderr, shown only when stderr is a terminal (a cron job's
    log gets no bar and no blank line)."""
    from rich.progress import Progress  # about 60 ms: only a long command loads it

    return Progress(console=console(stderr=True), transient=True, disable=not sys.stderr.isatty())

"""The tbhook command line: options in, errors out as ``Error: ...``. No SQL, no HTTP here."""

from __future__ import annotations

import contextlib
import json
import re
import sqlite3
import sys
from collections.abc import Callable, Iterable, Iterator
from enum import Enum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Optional

import typer

from tbhook import __version__
from tbhook.errors import TbhookError
from tbhook.filters import Filters, parse_sender, parse_when
from tbhook.output import EVENT_FIELDS, Format

app = typer.Typer(
    help="Receive, keep and read Tracebuzz webhooks.",
    no_args_is_help=True,
    rich_markup_mode=None,
    pretty_exceptions_enable=False,
)

DEFAULT_DB = Path("tbhook.db")
DbOption = Annotated[
    Path,
    typer.Option("--db", envvar="TBHOOK_DB", help="SQLite database file.", show_default=True),
]
if TYPE_CHECKING:
    from tbhook.store import EventStore

_TOKEN = re.compile(r"^[!#$%&'*+.^_`|~0-9A-Za-z-]+$")


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


def _version(value: bool) -> None:
    if value:
        typer.echo(f"tbhook {__version__} (SQLite {sqlite3.sqlite_version})")
        raise typer.Exit()


@app.callback()
def main(
    version: Annotated[
        Optional[bool],
        typer.Option("--version", callback=_version, is_eager=True, help="Show the version."),
    ] = None,
) -> None:
    """Receive, keep and read Tracebuzz webhooks."""


@app.command()
def serve(
    db: DbOption = DEFAULT_DB,
    host: Annotated[str, typer.Option(help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(min=0, max=65535, help="Port (0 picks a free one).")] = 8080,
    header_name: Annotated[
        Optional[str],
        typer.Option(envvar="TBHOOK_HEADER_NAME", help="Custom header Tracebuzz must send."),
    ] = None,
    header_value: Annotated[
        Optional[str],
        typer.Option(
            envvar="TBHOOK_HEADER_VALUE",
            help="Its secret content (prefer the env var).",
            show_default=False,
        ),
    ] = None,
    max_body: Annotated[int, typer.Option(min=1, help="Largest body accepted, in bytes.")] = (
        1024 * 1024
    ),
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No line per delivery.")] = False,
) -> None:
    """Receive Tracebuzz webhooks and append every delivery to the database."""
    from tbhook import server
    from tbhook.store import EventStore

    auth = _auth(header_name, header_value)
    with reported_errors():
        store = EventStore.open(db)  # before binding: a bad --db fails whatever the port
        try:
            sock = server.bind(host, port)
        except TbhookError:
            store.close()
            raise
    try:
        server.serve(
            store,
            sock,
            auth=auth,
            max_body=max_body,
            quiet=quiet,
            on_ready=lambda: _announce(store, sock, host, auth),
        )
    finally:
        store.close()
    sys.stderr.write("tbhook stopped; every acknowledged event is stored.\n")


def _announce(store, sock, host: str, auth) -> None:  # noqa: ANN001 - lazy server import
    from tbhook import server

    bound_host, bound_port = sock.getsockname()[:2]
    shown_host = f"[{bound_host}]" if ":" in bound_host else bound_host
    err = sys.stderr
    err.write(f"tbhook {__version__} receiving on http://{shown_host}:{bound_port}/ (any path)\n")
    counts = f"{store.count()} events, {store.count('quarantine')} quarantined"
    err.write(f"  database: {store.path} ({counts})\n")
    if auth:
        err.write(f"  requires header: {auth.name}\n")
    elif not server.is_loopback(host):
        err.write(
            f"Warning: listening on {host} with no --header-name/--header-value: "
            "anyone who can reach this port can write events.\n"
        )
    err.write("Press Ctrl+C to stop.\n")
    err.flush()


def _auth(name: Optional[str], value: Optional[str]):  # noqa: ANN202 - lazy server import
    from tbhook.server import Auth

    if not name and not value:
        return None
    if not name or not value:
        raise typer.BadParameter(
            "give both --header-name and --header-value, or neither",
            param_hint="'--header-name' / '--header-value'",
        )
    if not _TOKEN.match(name):
        raise typer.BadParameter(
            f"{name!r} is not a valid HTTP header name", param_hint="'--header-name'"
        )
    return Auth(name, value)


# -- reading the log --------------------------------------------------------------------


def _when(until: bool) -> Callable[[Optional[str]], Optional[int]]:
    def convert(value: Optional[str]) -> Optional[int]:
        if value is None:
            return None
        try:
            return parse_when(value, until=until)
        except ValueError as exc:
            raise typer.BadParameter(str(exc)) from None

    return convert


def _id(value: Optional[int]) -> Optional[int]:
    """Tracebuzz IDs are SQLite integers: 64-bit."""
    if value is not None and not -(2**63) <= value < 2**63:
        raise typer.BadParameter(f"{value} does not fit in a 64-bit integer")
    return value


INT64: dict[str, Any] = {"callback": _id, "metavar": "ID"}


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


def _filters(event, case, person, search_id, source, sender, since, until) -> Filters:  # noqa: ANN001
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
def reading(db: Path) -> Iterator[EventStore]:
    """The database opened read-only, errors reported as ``Error: ...``."""
    from tbhook.store import EventStore

    with reported_errors():
        store = EventStore.open_readonly(db)
        try:
            yield store
        except sqlite3.Error as exc:
            raise TbhookError(f"cannot read {db}: {exc}") from exc
        finally:
            store.close()


def _console(stderr: bool = False):  # noqa: ANN202 - rich is imported lazily
    from rich.console import Console

    return Console(stderr=stderr, highlight=False)


def emit(
    records: Iterable[dict[str, Any]],
    fmt: Format,
    fields: tuple[str, ...],
    table: Callable[[Iterable[dict[str, Any]]], Any] | None = None,
) -> None:
    """Rows out: a rich table for people, or streamed json/ndjson/csv for programs."""
    from tbhook.output import write_records

    if fmt is Format.table and table:
        _console().print(table(records))
    else:
        write_records(records, fmt, fields, sys.stdout)


class Order(str, Enum):
    asc = "asc"
    desc = "desc"


@app.command()
def events(
    db: DbOption = DEFAULT_DB,
    event: EventOpt = None,
    case: CaseOpt = None,
    person: PersonOpt = None,
    search_id: SearchOpt = None,
    source: SourceOpt = None,
    sender: SenderOpt = None,
    since: SinceOpt = None,
    until: UntilOpt = None,
    limit: Annotated[int, typer.Option(min=0, help="At most this many (0: all).")] = 50,
    order: Annotated[Order, typer.Option(help="By timestamp, then id.")] = Order.desc,
    fmt: FormatOpt = Format.table,
) -> None:
    """The filtered log, newest first."""
    from tbhook.output import event_record, events_table

    filters = _filters(event, case, person, search_id, source, sender, since, until)
    with reading(db) as store:
        canonical = store.canonical_lookup() if 0 < limit <= 1000 else store.resolver().canonical
        rows = store.events(filters, descending=order is Order.desc, limit=limit)
        records = (event_record(row, canonical) for row in rows)
        emit(records, fmt, EVENT_FIELDS, events_table)


class TailFormat(str, Enum):
    text = "text"
    ndjson = "ndjson"


@app.command()
def tail(
    db: DbOption = DEFAULT_DB,
    event: EventOpt = None,
    case: CaseOpt = None,
    person: PersonOpt = None,
    search_id: SearchOpt = None,
    source: SourceOpt = None,
    sender: SenderOpt = None,
    since: SinceOpt = None,
    until: UntilOpt = None,
    lines: Annotated[int, typer.Option("-n", "--lines", min=0, help="Show the last N first.")] = 10,
    follow: Annotated[bool, typer.Option(help="Keep printing new events until Ctrl-C.")] = True,
    fmt: Annotated[
        TailFormat, typer.Option("--format", "-f", help="Readable lines, or ndjson for jq.")
    ] = TailFormat.text,
) -> None:
    """Watch events arrive: the last N matching events, then new ones as they are stored."""
    from tbhook.follow import follow_events

    filters = _filters(event, case, person, search_id, source, sender, since, until)
    if follow and not db.exists():
        sys.stderr.write(f"Waiting for {db} to appear (start `tbhook serve --db {db}`)...\n")
        sys.stderr.flush()
    try:
        with reported_errors():
            follow_events(db, filters, lines, follow, fmt.value, _console())
    except KeyboardInterrupt:
        raise typer.Exit(0) from None


@app.command()
def person(
    person_id: Annotated[
        int, typer.Argument(help="A personId.", callback=_id, metavar="PERSON_ID")
    ],
    db: DbOption = DEFAULT_DB,
    fmt: FormatOpt = Format.table,
) -> None:
    """A person's canonical ID, every alias, and the merge history in time order."""
    from tbhook.filters import iso_time
    from tbhook.output import table

    with reading(db) as store:
        group = store.person_group(person_id)
    merges = [
        {
            "oldPersonId": m.oldPersonId,
            "newPersonId": m.newPersonId,
            "timestamp": m.timestamp,
            "time": iso_time(m.timestamp),
        }
        for m in group.merges
    ]
    record = {
        "personId": group.personId,
        "canonicalPersonId": group.canonicalPersonId,
        "aliases": group.aliases,
        "merges": merges,
    }
    if fmt in (Format.json, Format.ndjson):
        typer.echo(json.dumps(record, indent=2 if fmt is Format.json else None))
    elif fmt is Format.csv:
        emit(merges, fmt, ("oldPersonId", "newPersonId", "timestamp", "time"))
    else:
        console = _console()
        console.print(f"person {group.personId} is now [bold]{group.canonicalPersonId}[/]")
        console.print("aliases: " + ", ".join(str(a) for a in group.aliases))
        if merges:
            console.print(table(merges, ("time", "oldPersonId", "newPersonId"), "merges"))
        else:
            console.print("no merges")


@app.command()
def case(
    case_id: Annotated[int, typer.Argument(help="A caseId.", callback=_id, metavar="CASE_ID")],
    db: DbOption = DEFAULT_DB,
    fmt: FormatOpt = Format.table,
) -> None:
    """A case's timeline, customer and agent messages then the close, with its metrics."""
    from tbhook.cases import METRICS, summarize
    from tbhook.output import event_record, events_table, table

    with reading(db) as store:
        canonical = store.canonical_lookup()
        rows = list(store.events(Filters(case=case_id)))
        if not rows:
            raise fail(f"no events for case {case_id}")
        summary = summarize(case_id, rows, canonical)
        records = [event_record(row, canonical) for row in rows]
    if fmt in (Format.json, Format.ndjson):
        document = {**summary, "events": records}
        typer.echo(json.dumps(document, indent=2 if fmt is Format.json else None))
    elif fmt is Format.csv:
        emit(records, fmt, EVENT_FIELDS, events_table)
    else:
        console = _console()
        console.print(events_table(records, title=f"case {case_id}"))
        metrics = [{"metric": key, "value": summary[key]} for key in METRICS[1:]]
        console.print(table(metrics, ("metric", "value")))


@app.command()
def cases(
    db: DbOption = DEFAULT_DB,
    event: EventOpt = None,
    case: CaseOpt = None,
    person: PersonOpt = None,
    search_id: SearchOpt = None,
    source: SourceOpt = None,
    sender: SenderOpt = None,
    since: SinceOpt = None,
    until: UntilOpt = None,
    fmt: FormatOpt = Format.table,
) -> None:
    """One row per case with a matching event, with its metrics: the analyst's table."""
    from tbhook.cases import METRICS, summarize_all
    from tbhook.output import cases_table

    filters = _filters(event, case, person, search_id, source, sender, since, until)
    with reading(db) as store:
        canonical = store.resolver().canonical
        records = summarize_all(store.case_events(filters), canonical)
        emit(records, fmt, METRICS, cases_table)


class ExportFormat(str, Enum):
    csv = "csv"
    ndjson = "ndjson"


@app.command()
def export(
    db: DbOption = DEFAULT_DB,
    event: EventOpt = None,
    case: CaseOpt = None,
    person: PersonOpt = None,
    search_id: SearchOpt = None,
    source: SourceOpt = None,
    sender: SenderOpt = None,
    since: SinceOpt = None,
    until: UntilOpt = None,
    fmt: Annotated[ExportFormat, typer.Option("--format", "-f", help="Output format.")] = (
        ExportFormat.csv
    ),
    output: Annotated[
        Optional[Path], typer.Option("--output", "-o", help="Write here (atomically).")
    ] = None,
) -> None:
    """Every matching event in arrival order, with a stable set of columns."""
    from tbhook.output import event_record, write_file, write_records

    filters = _filters(event, case, person, search_id, source, sender, since, until)
    with reading(db) as store:
        canonical = store.resolver().canonical
        records = (
            event_record(row, canonical) for row in store.events(filters, order_by="arrival")
        )
        if output is None:
            write_records(records, Format(fmt.value), EVENT_FIELDS, sys.stdout)
            return
        total = store.count_matching(filters)
        written = write_file(records, Format(fmt.value), EVENT_FIELDS, output, total)
    sys.stderr.write(f"Wrote {written} events to {output}\n")


@app.command()
def stats(
    db: DbOption = DEFAULT_DB,
    event: EventOpt = None,
    case: CaseOpt = None,
    person: PersonOpt = None,
    search_id: SearchOpt = None,
    source: SourceOpt = None,
    sender: SenderOpt = None,
    since: SinceOpt = None,
    until: UntilOpt = None,
    fmt: FormatOpt = Format.table,
) -> None:
    """Counts by event, sender, typeId label and sourceId, and events per day as a bar chart."""
    from tbhook import stats as counting

    filters = _filters(event, case, person, search_id, source, sender, since, until)
    with reading(db) as store:
        counts = counting.aggregate(store.stats(filters))
    if fmt in (Format.json, Format.ndjson):
        typer.echo(json.dumps(counts, indent=2 if fmt is Format.json else None))
        return
    if fmt is Format.csv:
        emit(counting.rows(counts), fmt, ("section", "key", "count"))
        return
    console = _console()
    console.print(counting.table(counts))
    per_day = counts["perDay"]
    largest = max(per_day.values(), default=0)
    for day, count in per_day.items():
        console.print(f"{day}  {counting.bar(count, largest)} {count}")


@app.command()
def quarantine(db: DbOption = DEFAULT_DB, fmt: FormatOpt = Format.table) -> None:
    """Deliveries that were kept but are not readable events: when, where, why, what."""
    from tbhook.output import clean, table

    fields = ("id", "receivedAt", "deliveries", "path", "reason", "bodySize", "bodyStart")
    shown = ("id", "receivedAt", "path", "reason", "bodyStart")
    with reading(db) as store:
        records = (
            {**row, "bodyStart": clean(row["bodyStart"].decode("utf-8", "replace"))}
            for row in store.quarantined()
        )
        emit(records, fmt, fields, lambda rows: table(rows, shown, "quarantine"))

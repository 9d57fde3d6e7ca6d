"""The commands that read the log: events, event, tail, person, case, cases, export, stats,
quarantine."""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Callable, Iterator
from enum import Enum
from operator import itemgetter
from typing import IO, Annotated, Any, Optional

import typer

from tbhook.cli.options import (
    DEFAULT_DB,
    DEFAULT_LIMIT,
    DbOption,
    ExportFormat,
    FormatOption,
    LimitOption,
    OneFormat,
    TailFormat,
    destination,
    explain_empty,
    fail,
    filter_options,
    open_for_writing,
    reading,
    reported_errors,
    valid_id,
)
from tbhook.events import EVENT_FIELDS
from tbhook.filters import Filters
from tbhook.output.describe import FORWARD_FIELDS
from tbhook.output.formats import Answer, write


class Order(str, Enum):
    asc = "asc"
    desc = "desc"


OrderOption = Annotated[Order, typer.Option(help="Newest (desc) or oldest (asc) first.")]
RawOption = Annotated[
    bool, typer.Option("--raw", help="Write the body byte for byte to stdout, and nothing else.")
]


PAGE = 1000  # up to this many rows, canonical IDs are looked up for the page's persons only


def _page(store: Any, rows: Any, limit: int, person: Callable[[Any], Any]) -> tuple[Any, Any]:
    """The rows, and canonical person IDs for them: for a page, from the merges of its own
    persons (a few queries); for everything, from all merges at once."""
    if not 0 < limit <= PAGE:
        return rows, store.resolver().canonical
    rows = list(rows)
    return rows, store.canonical_for(person(row) for row in rows)


def _table(fmt: str, spec: Callable[[], Any]) -> Any:
    """A listing's streamed table layout, asked of the store only when a table is wanted."""
    return spec() if getattr(fmt, "value", fmt) == "table" else None


def _event_person(row: dict) -> Any:
    return row["personId"] if row["personId"] is not None else row["newPersonId"]


@filter_options
def events(
    db: DbOption = DEFAULT_DB,
    filters: Filters = Filters(),
    limit: LimitOption = DEFAULT_LIMIT,
    order: OrderOption = Order.desc,
    fmt: FormatOption = "table",
) -> None:
    """The filtered log, newest first (by Tracebuzz's timestamp)."""
    from tbhook.output import listings
    from tbhook.output.describe import event_record

    with reading(db) as store:
        rows = store.events(
            filters, descending=order is Order.desc, limit=limit, with_forwards=True
        )
        rows, canonical = _page(store, rows, limit, _event_person)
        answer = Answer(
            records=(event_record(row, canonical) for row in rows),
            fields=(*EVENT_FIELDS, *FORWARD_FIELDS),
            spec=_table(
                fmt,
                lambda: listings.events(store.widths(), store.event_names(), store.has_merges()),
            ),
            total=lambda: store.count_matching(filters),
            limit=limit,
        )
        if not write(answer, fmt):
            explain_empty(store, filters)


def event(
    event_id: Annotated[int, typer.Argument(help="An event id.", callback=valid_id, metavar="ID")],
    db: DbOption = DEFAULT_DB,
    raw: RawOption = False,
    fmt: OneFormat = "table",
) -> None:
    """One stored event in full: every column, the person it resolves to now, the forward
    state, and the raw body (pretty-printed JSON, or --raw byte for byte)."""
    from tbhook.output.describe import body_document, body_lines, event_record
    from tbhook.output.tables import event_detail

    with reading(db) as store:
        row = store.event_row(event_id)
        if row is None:
            newest = store.max_id()
            raise fail(f"no event #{event_id} (ids run to {newest})" if newest else "no events")
        canonical = store.canonical_lookup()
        record = {**event_record(row, canonical), **_extra(row)}
    if raw:
        _write_raw(row["body"])
        return
    document = {**record, **body_document(row["body"])}
    write(
        Answer(document=document, table=lambda _: event_detail(record, body_lines(row["body"]))),
        fmt,
    )


def _extra(row: dict) -> dict:
    """What `event ID` shows beyond a listing's record: the delivery facts, the forward."""
    names = (
        "lastReceivedAt",
        "path",
        "forwardTarget",
        "forwardState",
        "forwardAttempts",
        "forwardStatus",
        "forwardError",
        "forwardLastAttemptAt",
        "forwardNextAttemptAt",
    )
    return {name: row.get(name) for name in names}


def _write_raw(body: bytes) -> None:
    """The body byte for byte, for a pipe or a file; on a terminal, with its control
    characters escaped (a body is sender text)."""
    from tbhook.output.safe import for_terminal, on_terminal

    if on_terminal(sys.stdout):
        sys.stdout.write(for_terminal(body.decode("utf-8", "backslashreplace")))
        sys.stdout.flush()
        return
    sys.stdout.flush()
    sys.stdout.buffer.write(body)
    sys.stdout.buffer.flush()


def _backlog(value: str) -> int | None:
    """tail's -n: how many of the last events to show first: a number (0: none, as Unix
    `tail -n 0 -f`) or ``all``. Internally None is none and 0 is all (``Feed.backlog``)."""
    text = value.strip().lower()
    if text == "all":
        return 0
    if not text.isdigit():
        raise typer.BadParameter(
            f"{value!r} is not a number of events or all", param_hint="'-n' / '--limit'"
        )
    number = int(text)
    if number >= 2**63:
        raise typer.BadParameter(
            f"{value} is more than any log holds; use all", param_hint="'-n' / '--limit'"
        )
    return number or None


@filter_options
def tail(
    db: DbOption = DEFAULT_DB,
    filters: Filters = Filters(),
    limit: Annotated[
        str,
        typer.Option(
            "--limit",
            "-n",
            "--lines",
            metavar="N|all",
            help="Show the last N matching events first (0: none, all: every one).",
        ),
    ] = str(DEFAULT_LIMIT),
    new: Annotated[
        bool, typer.Option("--new", help="Only what arrives from now on (the same as -n 0).")
    ] = False,
    retries: Annotated[
        bool,
        typer.Option("--retries", help="Also show redeliveries of stored events as they come."),
    ] = False,
    quarantine: Annotated[
        bool,
        typer.Option("--quarantine", help="Also show deliveries kept in quarantine (unreadable)."),
    ] = False,
    follow: Annotated[bool, typer.Option(help="Keep printing new events until Ctrl-C.")] = True,
    fmt: TailFormat = "text",
) -> None:
    """Watch events arrive: the last N matching events, then new ones as they are stored."""
    from tbhook.follow import Feed, Stopped, follow_events, open_when_ready, stopped_by_signals

    backlog = None if new else _backlog(limit)
    feed = Feed(filters, backlog=backlog, retries=retries, quarantine=quarantine)

    def notice(line: str) -> None:
        sys.stderr.write(line + "\n")
        sys.stderr.flush()

    try:
        with stopped_by_signals(), reported_errors():
            store = open_when_ready(db, follow, notice)
            try:
                if not store.any_matching(filters):
                    explain_empty(
                        store, filters, "events", "; waiting for new ones" if follow else ""
                    )
                follow_events(store, feed, follow, fmt)
            finally:
                store.close()
    except (Stopped, KeyboardInterrupt):
        raise typer.Exit(0) from None


def person(
    person_id: Annotated[
        int, typer.Argument(help="A personId.", callback=valid_id, metavar="PERSON_ID")
    ],
    db: DbOption = DEFAULT_DB,
    fmt: FormatOption = "table",
) -> None:
    """A person's canonical ID, every alias, and the merge history in time order."""
    from tbhook.filters import iso_time
    from tbhook.output.tables import person_view

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
    write(
        Answer(
            records=merges,
            fields=("oldPersonId", "newPersonId", "timestamp", "time"),
            document=record,
            table=lambda _: person_view(record),
        ),
        fmt,
    )


def case(
    case_id: Annotated[int, typer.Argument(help="A caseId.", callback=valid_id, metavar="CASE_ID")],
    db: DbOption = DEFAULT_DB,
    fmt: FormatOption = "table",
) -> None:
    """A case's timeline, customer and agent messages then the close, with its metrics."""
    from tbhook.cases import CASE_COLUMNS, summarize
    from tbhook.output.describe import event_record
    from tbhook.output.tables import case_view

    with reading(db) as store:
        canonical = store.canonical_lookup()
        rows = list(store.events(Filters(case=case_id)))
        if not rows:
            raise fail(f"no events for case {case_id}")
        summary = summarize(case_id, [[row[c] for c in CASE_COLUMNS] for row in rows], canonical)
        records = [event_record(row, canonical) for row in rows]
    write(
        Answer(
            records=records,
            fields=EVENT_FIELDS,
            document={**summary, "events": records},
            table=lambda shown: case_view(case_id, shown, summary),
        ),
        fmt,
    )


@filter_options
def cases(
    db: DbOption = DEFAULT_DB,
    filters: Filters = Filters(),
    limit: LimitOption = DEFAULT_LIMIT,
    order: Annotated[Order, typer.Option(help="Highest (desc) or lowest (asc) caseId first.")] = (
        Order.desc
    ),
    fmt: FormatOption = "table",
) -> None:
    """One row per case with a matching event, with its metrics: the analyst's table."""
    from tbhook.cases import METRICS, summarize_all
    from tbhook.output import listings

    with reading(db) as store:
        rows = store.case_events(filters, descending=order is Order.desc, limit=limit)
        rows, canonical = _page(store, rows, limit, itemgetter(3))  # CASE_COLUMNS' personId
        answer = Answer(
            records=summarize_all(rows, canonical),
            fields=METRICS,
            spec=_table(fmt, lambda: listings.cases(store.widths(), store.has_merges())),
            total=lambda: store.count_cases(filters),
            limit=limit,
        )
        if not write(answer, fmt):
            explain_empty(store, filters, "cases")


@contextlib.contextmanager
def _big_buffer(stream: IO[str]) -> Iterator[IO[str]]:
    """stdout with a 1 MiB buffer of its own: a million lines in a few hundred writes; on a
    terminal, sender text with its control characters escaped."""
    from tbhook.output.safe import TerminalStream, on_terminal

    if on_terminal(stream):
        yield TerminalStream(stream)  # type: ignore[misc]
        return
    try:
        fd = stream.fileno()
    except (OSError, ValueError):  # not a real file (a test runner's capture)
        yield stream
        return
    stream.flush()
    with open(fd, "w", 1 << 20, "utf-8", newline="", closefd=False) as out:
        yield out


@filter_options
def export(
    db: DbOption = DEFAULT_DB,
    filters: Filters = Filters(),
    fmt: ExportFormat = "csv",
    output: Annotated[
        Optional[str],
        typer.Option(
            "--output", "-o", metavar="FILE", help="Write here (atomically), not to stdout."
        ),
    ] = None,
    force: Annotated[
        bool,
        typer.Option("--force", help="Replace FILE if it exists, once the export is complete."),
    ] = False,
) -> None:
    """Every matching event in arrival order, with a stable set of columns."""
    from tbhook.export import export as write_export
    from tbhook.output.formats import write_file

    fmt = getattr(fmt, "value", fmt)  # a plain name, for a forked worker
    path = None
    if output is not None:
        with reported_errors():
            path = destination(db, output, "export to another file", force)
    elif force:
        raise typer.BadParameter("--force replaces an --output file", param_hint="'--force'")
    with reading(db) as store:
        if path is None:
            with _big_buffer(sys.stdout) as out:
                written = write_export(store, filters, fmt, EVENT_FIELDS, out)
        else:
            total = store.count_matching(filters)
            written = write_file(
                path,
                total,
                lambda stream, advance: write_export(
                    store, filters, fmt, EVENT_FIELDS, stream, advance
                ),
            )
        if not written:
            explain_empty(store, filters)
    if output is not None:
        sys.stderr.write(f"Wrote {written} events to {output}\n")


@filter_options
def stats(
    db: DbOption = DEFAULT_DB,
    filters: Filters = Filters(),
    fmt: FormatOption = "table",
) -> None:
    """Counts by event, sender, typeId label and sourceId, and events per day as a bar chart."""
    from tbhook import stats as counting

    with reading(db) as store:
        counts = counting.aggregate(counting.groups(store, filters))
        write(
            Answer(
                records=counting.rows(counts),
                fields=("section", "key", "count"),
                document=counts,
                table=lambda _: counting.view(counts),
            ),
            fmt,
        )
        if not counts["events"]:
            explain_empty(store, filters)


def quarantine(
    args: Annotated[
        Optional[list[str]],
        typer.Argument(
            metavar="[ID | retry [ID...]]",
            help="Nothing: list them. ID: show one in full. retry: parse again (all, or these "
            "IDs) and move each now readable into events.",
            show_default=False,
        ),
    ] = None,
    db: DbOption = DEFAULT_DB,
    limit: LimitOption = DEFAULT_LIMIT,
    raw: RawOption = False,
    fmt: FormatOption = "table",
) -> None:
    """Deliveries kept but not readable as events: list them, show one, or retry them."""
    words = list(args or ())
    if words[:1] == ["retry"]:
        _retry(db, _ids(words[1:]), fmt)
    elif len(words) == 1:
        _quarantined_one(db, _ids(words)[0], raw, fmt)
    elif words:
        raise typer.BadParameter(
            "give one ID, or retry and any IDs", param_hint="'[ID | retry [ID...]]'"
        )
    else:
        _quarantine_list(db, limit, fmt)


def _ids(words: list[str]) -> list[int]:
    try:
        ids = [int(word.removeprefix("#")) for word in words]
    except ValueError:
        bad = next(w for w in words if not w.removeprefix("#").lstrip("-").isdigit())
        raise typer.BadParameter(
            f"{bad!r} is not a quarantine id", param_hint="'[ID | retry [ID...]]'"
        ) from None
    for value in ids:
        valid_id(value)
    return ids


def _quarantine_list(db: str, limit: int, fmt: str) -> None:
    from tbhook.output import listings
    from tbhook.output.safe import clean

    fields = ("id", "receivedAt", "lastReceivedAt", "deliveries", "path", "reason", "bodySize")
    with reading(db) as store:
        rows = store.quarantined(limit, descending=True)
        answer = Answer(
            records=(
                {**row, "bodyStart": clean(row["bodyStart"].decode("utf-8", "replace"))}
                for row in rows
            ),
            fields=(*fields, "bodyStart"),
            spec=_table(fmt, lambda: listings.quarantine(store.widths())),
            total=lambda: store.count("quarantine"),
            limit=limit,
        )
        if not write(answer, fmt) and fmt == "table":
            sys.stderr.write("Nothing in quarantine: every delivery was readable\n")


def _quarantined_one(db: str, quarantine_id: int, raw: bool, fmt: str) -> None:
    from tbhook.output.describe import body_document, body_lines
    from tbhook.output.tables import quarantine_detail

    with reading(db) as store:
        row = store.quarantine_row(quarantine_id)
    if row is None:
        raise fail(
            f"no quarantined delivery #{quarantine_id} (see `tbhook quarantine`; one moved "
            "by `quarantine retry` is among the events now)"
        )
    if raw:
        _write_raw(row["body"])
        return
    record = {k: v for k, v in row.items() if k not in ("body", "bodySha256")}
    document = {**record, **body_document(row["body"])}
    write(
        Answer(
            records=[document],  # csv: every field but the body itself
            fields=tuple(k for k in document if k not in ("body", "bodyText")),
            document=document,
            table=lambda _: quarantine_detail(record, body_lines(row["body"])),
        ),
        fmt,
    )


def _retry(db: str, ids: list[int], fmt: str) -> None:
    from tbhook.events import parse
    from tbhook.output.tables import retry_table

    with reported_errors():
        store = open_for_writing(db)
        try:
            missing = store.not_quarantined(ids)
            if missing:  # a mistyped id: nothing is retried
                shown = ", ".join(f"#{i}" for i in missing)
                raise fail(
                    f"not in quarantine: {shown} (see `tbhook quarantine`; one moved by an "
                    "earlier retry is among the events now)"
                )
            results = list(store.recover_quarantined(ids or None, parse))
        finally:
            store.close()
    records = [
        {
            "quarantineId": r.quarantine_id,
            "outcome": (
                "missing"  # moved by another retry meanwhile
                if r.missing
                else "unreadable"
                if r.reason
                else "merged"
                if r.merged
                else "moved"
            ),
            "eventId": r.event_id,
            "event": r.event,
            "reason": r.reason,
        }
        for r in results
    ]
    moved = sum(r["eventId"] is not None for r in records)
    still = sum(r["outcome"] == "unreadable" for r in records)
    write(
        Answer(
            records=records,
            fields=("quarantineId", "outcome", "eventId", "event", "reason"),
            table=retry_table,
        ),
        fmt,
    )
    if not records:
        sys.stderr.write("Nothing in quarantine to retry\n")
        return
    sys.stderr.write(
        f"Moved {moved} of {len(records)} quarantined deliveries into events"
        + (f"; {still} still unreadable, kept in quarantine" if still else "")
        + "\n"
    )

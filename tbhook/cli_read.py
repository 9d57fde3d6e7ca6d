"""The commands that read the log: events, tail, person, case, cases, export, stats, quarantine."""

from __future__ import annotations

import contextlib
import json
import sys
from collections.abc import Iterator
from enum import Enum
from pathlib import Path
from typing import IO, Annotated, Optional

import typer

from tbhook.cli_options import (
    DEFAULT_DB,
    CaseOpt,
    DbOption,
    EventOpt,
    FormatOpt,
    PersonOpt,
    SearchOpt,
    SenderOpt,
    SinceOpt,
    SourceOpt,
    UntilOpt,
    console,
    emit,
    fail,
    filters_from,
    reading,
    reported_errors,
    valid_id,
)
from tbhook.filters import Filters
from tbhook.output import EVENT_FIELDS, FORWARD_FIELDS, Format
from tbhook.text import cell


class Order(str, Enum):
    asc = "asc"
    desc = "desc"


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

    filters = filters_from(event, case, person, search_id, source, sender, since, until)
    with reading(db) as store:
        canonical = store.canonical_lookup() if 0 < limit <= 1000 else store.resolver().canonical
        rows = store.events(
            filters, descending=order is Order.desc, limit=limit, with_forwards=True
        )
        records = (event_record(row, canonical) for row in rows)
        emit(records, fmt, (*EVENT_FIELDS, *FORWARD_FIELDS), events_table)


class TailFormat(str, Enum):
    text = "text"
    ndjson = "ndjson"


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
    from tbhook.follow import follow_events, stopped_by_signals

    filters = filters_from(event, case, person, search_id, source, sender, since, until)
    from tbhook.store import is_url

    if follow and not is_url(db) and not Path(db).exists():
        sys.stderr.write(f"Waiting for {db} to appear (start `tbhook serve --db {db}`)...\n")
        sys.stderr.flush()
    try:
        with stopped_by_signals(), reported_errors():
            follow_events(db, filters, lines, follow, fmt.value, console())
    except KeyboardInterrupt:
        raise typer.Exit(0) from None


def person(
    person_id: Annotated[
        int, typer.Argument(help="A personId.", callback=valid_id, metavar="PERSON_ID")
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
        out = console()
        out.print(f"person {group.personId} is now [bold]{group.canonicalPersonId}[/]")
        out.print("aliases: " + ", ".join(str(a) for a in group.aliases))
        if merges:
            out.print(table(merges, ("time", "oldPersonId", "newPersonId"), "merges"))
        else:
            out.print("no merges")


def case(
    case_id: Annotated[int, typer.Argument(help="A caseId.", callback=valid_id, metavar="CASE_ID")],
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
        out = console()
        out.print(events_table(records, title=f"case {case_id}"))
        metrics = [{"metric": key, "value": summary[key]} for key in METRICS[1:]]
        out.print(table(metrics, ("metric", "value")))


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

    filters = filters_from(event, case, person, search_id, source, sender, since, until)
    with reading(db) as store:
        canonical = store.resolver().canonical
        records = summarize_all(store.case_events(filters), canonical)
        emit(records, fmt, METRICS, cases_table)


@contextlib.contextmanager
def _big_buffer(stream: IO[str]) -> Iterator[IO[str]]:
    """stdout with a 1 MiB buffer of its own: a million lines in a few hundred writes."""
    try:
        fd = stream.fileno()
    except (OSError, ValueError):  # not a real file (a test runner's capture)
        yield stream
        return
    stream.flush()
    with open(fd, "w", 1 << 20, "utf-8", newline="", closefd=False) as out:
        yield out


class ExportFormat(str, Enum):
    csv = "csv"
    ndjson = "ndjson"


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
    from tbhook.export import export as write_export
    from tbhook.output import write_file

    filters = filters_from(event, case, person, search_id, source, sender, since, until)
    with reading(db) as store:
        if output is not None:
            from tbhook.files import refuse_same

            with reported_errors():
                refuse_same(db, output, "export to another file")
        if output is None:
            with _big_buffer(sys.stdout) as out:
                write_export(store, filters, fmt.value, EVENT_FIELDS, out)
            return
        total = store.count_matching(filters)
        written = write_file(
            output,
            total,
            lambda stream, advance: write_export(
                store, filters, fmt.value, EVENT_FIELDS, stream, advance
            ),
        )
    sys.stderr.write(f"Wrote {written} events to {output}\n")


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

    filters = filters_from(event, case, person, search_id, source, sender, since, until)
    with reading(db) as store:
        counts = counting.aggregate(counting.groups(store, filters))
    if fmt in (Format.json, Format.ndjson):
        typer.echo(json.dumps(counts, indent=2 if fmt is Format.json else None))
        return
    if fmt is Format.csv:
        emit(counting.rows(counts), fmt, ("section", "key", "count"))
        return
    out = console()
    out.print(counting.table(counts))
    note = counting.unknown_note(counts)
    if note:
        out.print(cell(note))
    per_day = counts["perDay"]
    largest = max(per_day.values(), default=0)
    for day, count in per_day.items():
        out.print(f"{day}  {counting.bar(count, largest)} {count}")


def quarantine(db: DbOption = DEFAULT_DB, fmt: FormatOpt = Format.table) -> None:
    """Deliveries that were kept but are not readable events: when, where, why, what."""
    from tbhook.output import table
    from tbhook.text import clean

    fields = ("id", "receivedAt", "deliveries", "path", "reason", "bodySize", "bodyStart")
    shown = ("id", "receivedAt", "path", "reason", "bodyStart")
    with reading(db) as store:
        records = (
            {**row, "bodyStart": clean(row["bodyStart"].decode("utf-8", "replace"))}
            for row in store.quarantined()
        )
        emit(records, fmt, fields, lambda rows: table(rows, shown, "quarantine"))

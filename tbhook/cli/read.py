"""The commands that read the log: events, event, tail, person, case, cases, export, stats,
quarantine."""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Iterator
from typing import IO, Annotated, Any, Optional

import typer

from tbhook import questions
from tbhook.cli.access import following, reading
from tbhook.cli.asking import asks
from tbhook.cli.options import (
    DEFAULT_DB,
    DEFAULT_LIMIT,
    INT64,
    DbOption,
    ExportFormat,
    FormatOption,
    OneFormat,
    TailFormat,
    fail,
    reported_errors,
    say,
)
from tbhook.cli.printing import listed, refuse_with_raw, say_empty, write_raw
from tbhook.model.events import EVENT_FIELDS
from tbhook.model.query import Asked
from tbhook.model.text import TerminalStream, on_terminal
from tbhook.output.describe import body_lines
from tbhook.output.formats import Answer, write, write_file
from tbhook.transfer.files import descriptor, destination, streamable

RawOption = Annotated[
    bool, typer.Option("--raw", help="Write the body byte for byte to stdout, and nothing else.")
]


@asks("events")
def events(db: DbOption = DEFAULT_DB, asked: Asked = Asked(), fmt: FormatOption = "table") -> None:
    """The filtered log, newest first (by Tracebuzz's timestamp)."""
    _write_listing(
        db,
        asked,
        fmt,
        questions.events,
        lambda listings, reads: listings.events(
            reads.widths(), reads.event_names(), reads.has_merges(), zone=asked.zone
        ),
    )


def _write_listing(
    db: str, asked: Asked, fmt: str, question: Any, layout: Any, what: str = "events"
) -> None:
    """A list question's answer in ``fmt`` (a table laid out by ``layout(listings, reads)``),
    or why it is empty."""
    with reading(db) as store:
        found = question(store, asked)
        answer = listed(found, fmt, asked.limit, lambda listings: layout(listings, store.reads))
        if not write(answer, fmt):
            say_empty(
                store, asked.filters, what, before=asked.past if what == "cases" else asked.before
            )


@asks("event")
def event(
    ctx: typer.Context,
    event_id: Annotated[int, typer.Argument(help="An event id.", **INT64)],
    db: DbOption = DEFAULT_DB,
    raw: RawOption = False,
    fmt: OneFormat = "table",
    asked: Asked = Asked(),
) -> None:
    """One stored event in full: every column, the person it resolves to now, the forward
    state, and the raw body (pretty-printed JSON, or --raw byte for byte)."""
    refuse_with_raw(ctx, raw, ("fmt", "tz", "local"))
    zone = asked.zone
    from tbhook.output.tables import event_detail  # rich (about 40 ms): a table's only

    with reading(db) as store:
        found = questions.event(store, event_id)
        if found is None:
            newest = store.reads.max_id()
            raise fail(f"no event #{event_id} (ids run to {newest})" if newest else "no events")
    record, document, body = found
    if raw:
        write_raw(body)
        return
    write(
        Answer(document=document, table=lambda _: event_detail(record, body_lines(body), zone)),
        fmt,
    )


def _also(name: str, what: str) -> Any:
    """A flag of tail's for more to follow besides new events."""
    return typer.Option(name, help=f"Also show {what} as they come.")


def _backlog(value: str) -> int | None:
    """tail's -n: how many of the last events to show first: a number (0: none, as Unix
    `tail -n 0 -f`) or ``all``. Internally None is none and 0 is all (``Feed.backlog``)."""
    text = value.strip().lower()
    if text == "all":
        return 0
    if not (text.isascii() and text.isdigit()):  # '١' is a digit to isdigit, not to people
        raise typer.BadParameter(
            f"{value!r} is not a number of events or all", param_hint="'-n' / '--limit'"
        )
    number = int(text)
    if number >= 2**63:
        raise typer.BadParameter(
            f"{value} is more than any log holds; use all", param_hint="'-n' / '--limit'"
        )
    return number or None


@asks("tail")
def tail(
    db: DbOption = DEFAULT_DB,
    asked: Asked = Asked(),
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
    retries: Annotated[bool, _also("--retries", "redeliveries of stored events")] = False,
    quarantine: Annotated[bool, _also("--quarantine", "deliveries kept in quarantine")] = False,
    follow: Annotated[bool, typer.Option(help="Keep printing new events until Ctrl-C.")] = True,
    fmt: TailFormat = "text",
) -> None:
    """Watch events arrive: the last N matching events, then new ones as they are stored."""
    # The modules doing a command's work load when it runs (see tbhook.cli.dev).
    from tbhook.follow import Following, follow_events

    filters = asked.filters
    backlog = None if new else _backlog(limit)
    feed = Following(filters, backlog=backlog, retries=retries, quarantine=quarantine)
    with following(db, follow) as store:
        if not store.reads.any_matching(filters):
            say_empty(store, filters, "events", "; waiting for new ones" if follow else "")
        follow_events(store, feed, follow, fmt, zone=asked.zone)


@asks("person")
def person(
    person_id: Annotated[
        int, typer.Argument(help="A personId.", **{**INT64, "metavar": "PERSON_ID"})
    ],
    db: DbOption = DEFAULT_DB,
    fmt: FormatOption = "table",
    asked: Asked = Asked(),
) -> None:
    """A person's canonical ID, every alias, and the merge history in time order."""
    zone = asked.zone
    from tbhook.output.tables import person_view  # rich (about 40 ms): a table's only

    with reading(db) as store:
        record = questions.person(store, person_id)
    write(
        Answer(
            records=record["merges"],
            fields=questions.MERGE_FIELDS,
            document=record,
            table=lambda _: person_view(record, zone),
        ),
        fmt,
    )


@asks("case")
def case(
    case_id: Annotated[int, typer.Argument(help="A caseId.", **{**INT64, "metavar": "CASE_ID"})],
    db: DbOption = DEFAULT_DB,
    fmt: FormatOption = "table",
    asked: Asked = Asked(),
) -> None:
    """A case's timeline, customer and agent messages then the close, with its metrics."""
    zone, clock = asked.zone, asked.clock
    from tbhook.output.tables import case_view  # rich (about 40 ms): a table's only

    with reading(db) as store:
        found = questions.case(store, case_id, clock.between if clock else None)
        if found is None:
            raise fail(f"no events for case {case_id}")
        summary, records = found
    write(
        Answer(
            records=records,
            fields=EVENT_FIELDS,
            document={**summary, "events": records},
            table=lambda shown: case_view(case_id, shown, summary, zone),
        ),
        fmt,
    )


@asks("cases")
def cases(db: DbOption = DEFAULT_DB, asked: Asked = Asked(), fmt: FormatOption = "table") -> None:
    """One row per case with a matching event, with its metrics: the analyst's table."""
    _write_listing(
        db,
        asked,
        fmt,
        questions.cases,
        lambda listings, reads: listings.cases(reads.widths(), reads.has_merges(), asked.zone),
        "cases",
    )


@contextlib.contextmanager
def _big_buffer(stream: IO[str]) -> Iterator[IO[str]]:
    """stdout with a 1 MiB buffer of its own: a million lines in a few hundred writes; on a
    terminal, sender text with its control characters escaped."""
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


@contextlib.contextmanager
def _opened(output: str | None) -> Iterator[IO[str]]:
    """Where an export streams: stdout (no --output, or -), or a device or a pipe opened
    for writing as it is (never replaced by a file)."""
    fd = 1 if output in (None, "-") else descriptor(output)
    if fd == 1:
        yield sys.stdout
        return
    try:
        if fd is not None:  # /dev/stderr, /dev/fd/3: as the shell opened it (>> appends)
            stream = open(os.dup(fd), "w", encoding="utf-8", newline="")  # noqa: SIM115
        else:
            stream = open(str(output), "w", encoding="utf-8", newline="")  # noqa: SIM115
    except OSError as exc:
        raise fail(f"cannot write {output}: {exc.strerror or exc}") from None
    with stream:
        yield stream


@asks("export")
def export(
    db: DbOption = DEFAULT_DB,
    asked: Asked = Asked(),
    fmt: ExportFormat = "csv",
    output: Annotated[
        Optional[str],
        typer.Option(
            "--output",
            "-o",
            metavar="FILE",
            help="Write here (atomically), not to stdout; a device or a pipe (/dev/stdout) is "
            "written to directly, and - is stdout.",
        ),
    ] = None,
    force: Annotated[
        bool,
        typer.Option("--force", help="Replace FILE if it exists, once the export is complete."),
    ] = False,
) -> None:
    """Every matching event in arrival order, with a stable set of columns."""
    from tbhook.transfer.export import export as write_export  # see tail

    fmt = getattr(fmt, "value", fmt)  # a plain name, for a forked worker
    filters = asked.filters
    path = None
    stream = output == "-" or (output is not None and streamable(output))
    if output is not None and not stream:
        with reported_errors():
            path = destination(db, output, "export to another file", say, force=force)
    elif force and output is None:
        raise typer.BadParameter("--force replaces an --output file", param_hint="'--force'")
    with reading(db) as store:
        if path is None:
            with _opened(output) as raw, _big_buffer(raw) as out:
                written = write_export(store, filters, fmt, EVENT_FIELDS, out)
        else:
            total = store.reads.count_matching(filters)
            written = write_file(
                path,
                total,
                lambda stream, advance: write_export(
                    store, filters, fmt, EVENT_FIELDS, stream, advance
                ),
            )
        if not written:
            say_empty(store, filters)
    if output not in (None, "-"):
        sys.stderr.write(f"Wrote {written} events to {output}\n")


def _stats_view(counts: dict[str, Any]) -> Any:
    from tbhook.output import views  # rich (about 40 ms): only when a table is drawn

    return views.stats_view(counts)


@asks("stats")
def stats(db: DbOption = DEFAULT_DB, asked: Asked = Asked(), fmt: FormatOption = "table") -> None:
    """Counts by event, sender, typeId label and sourceId, and events per day as a bar chart."""
    from tbhook import stats as counting  # see tail

    filters = asked.filters
    with reading(db) as store:
        counts = counting.aggregate(counting.groups(store, filters))
        write(
            Answer(
                records=counting.rows(counts),
                fields=("section", "key", "count"),
                document=counts,
                table=lambda _: _stats_view(counts),
            ),
            fmt,
        )
        if not counts["events"]:
            say_empty(store, filters)

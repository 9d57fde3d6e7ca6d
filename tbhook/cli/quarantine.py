"""`tbhook quarantine`: deliveries kept but not readable as events. List them, show one in
full, retry them with today's rules, or drop the ones a person has looked at and does not
want (Tracebuzz's empty test on saving a webhook, say)."""

from __future__ import annotations

import sys
from typing import Annotated, Any, Optional

import typer
from typer.core import TyperGroup

from tbhook import questions
from tbhook.cli.access import open_for_writing, reading
from tbhook.cli.asking import asks
from tbhook.cli.options import (
    DEFAULT_DB,
    DbOption,
    FormatOption,
    TbhookCommand,
    fail,
    given,
    reported_errors,
)
from tbhook.cli.printing import listed, refuse_with_raw, write_raw
from tbhook.model.events import parse
from tbhook.model.filters import parse_id
from tbhook.model.query import Asked
from tbhook.output.describe import body_lines
from tbhook.output.formats import Answer, write


class _ById(TyperGroup):
    """`tbhook quarantine 7` is `tbhook quarantine show 7`."""

    def resolve_command(self, ctx: Any, args: list[str]) -> Any:
        word = args[0].removeprefix("#") if args else ""
        if word.isdigit():  # '٣' too: `show` says it is no id, in words (no "No such command")
            args = ["show", *args]
        return super().resolve_command(ctx, args)


app = typer.Typer(
    cls=_ById,
    invoke_without_command=True,
    rich_markup_mode=None,
    short_help="List, show, retry or drop unreadable deliveries.",
)


def _database(ctx: typer.Context, db: str) -> str:
    """The subcommand's --db, or the group's when only that was given
    (`tbhook quarantine --db x.db retry`)."""
    parent = ctx.parent
    if parent is not None and not given(ctx, "db") and given(parent, "db"):
        return parent.params["db"]
    return db


@app.callback()
@asks("quarantine")
def quarantine(
    ctx: typer.Context,
    db: DbOption = DEFAULT_DB,
    asked: Asked = Asked(),
    fmt: FormatOption = "table",
) -> None:
    """Deliveries kept but not readable as events, newest first; `quarantine ID` shows one,
    `quarantine retry` parses them again, `quarantine drop ID...` deletes them."""
    if ctx.invoked_subcommand is not None:
        return

    zone, limit = asked.zone, asked.limit
    with reading(db) as store:
        answer = listed(
            questions.quarantined(store, limit),
            fmt,
            limit,
            lambda listings: listings.quarantine(store.reads.widths(), zone),
        )
        if not write(answer, fmt) and getattr(fmt, "value", fmt) == "table":
            sys.stderr.write("Nothing in quarantine: every delivery was readable\n")


IdArgument = Annotated[
    str, typer.Argument(metavar="ID", help="A quarantine id (as `tbhook quarantine` lists).")
]
IdsArgument = Annotated[
    Optional[list[str]], typer.Argument(metavar="ID...", help="Quarantine ids.", show_default=False)
]


@app.command(cls=TbhookCommand, short_help="One of them in full, body included.")
@asks("quarantine show")
def show(
    ctx: typer.Context,
    quarantine_id: IdArgument,
    db: DbOption = DEFAULT_DB,
    raw: Annotated[
        bool,
        typer.Option("--raw", help="Write the body byte for byte to stdout, and nothing else."),
    ] = False,
    fmt: FormatOption = "table",
    asked: Asked = Asked(),
) -> None:
    """One quarantined delivery in full: why, when, where from, and its body as it came."""
    from tbhook.output.tables import quarantine_detail  # rich (about 40 ms): a table's only

    refuse_with_raw(ctx, raw, ("fmt", "tz", "local"))
    zone = asked.zone
    [number] = _ids([quarantine_id])
    with reading(_database(ctx, db)) as store:
        found = questions.quarantine_item(store, number)
    if found is None:
        raise fail(
            f"no quarantined delivery #{number} (see `tbhook quarantine`; one moved "
            "by `quarantine retry` is among the events now)"
        )
    record, document, body = found
    if raw:
        write_raw(body)
        return
    write(
        Answer(
            records=[document],  # csv: every field but the body itself
            fields=tuple(k for k in document if k not in ("body", "bodyText")),
            document=document,
            table=lambda _: quarantine_detail(record, body_lines(body), zone),
        ),
        fmt,
    )


@app.command(cls=TbhookCommand, short_help="Parse them again; move the readable to events.")
def retry(
    ctx: typer.Context,
    ids: IdsArgument = None,
    db: DbOption = DEFAULT_DB,
    fmt: FormatOption = "table",
) -> None:
    """Parse them again with today's rules (all, or these IDs) and move each now readable
    into events, with its receive times and deliveries."""
    from tbhook.output.tables import retry_table  # rich (about 40 ms): a table's only

    numbers = _ids(ids or [])
    with reported_errors():
        store = open_for_writing(_database(ctx, db))
        try:
            _refuse_missing(store, numbers)
            results = list(store.upkeep.recover_quarantined(numbers or None, parse))
        finally:
            store.close()
    records = list(questions.retried(results))
    moved = sum(r["eventId"] is not None for r in records)
    still = sum(r["outcome"] == "unreadable" for r in records)
    write(
        Answer(
            records=records,
            fields=questions.RETRY_FIELDS,
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


@app.command(cls=TbhookCommand, short_help="Delete some for good, by id.")
def drop(
    ctx: typer.Context,
    ids: IdsArgument = None,
    db: DbOption = DEFAULT_DB,
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Do not ask for confirmation.")] = False,
) -> None:
    """Delete these quarantined deliveries for good (look at each first: `quarantine ID`)."""
    if not ids:
        raise typer.BadParameter(
            "name the deliveries to drop (see `tbhook quarantine`); nothing is dropped without "
            "its id",
            param_hint="'ID...'",
        )
    numbers = sorted(set(_ids(ids)))
    with reported_errors():
        store = open_for_writing(_database(ctx, db))
        try:
            _refuse_missing(store, numbers)
            shown = ", ".join(f"#{n}" for n in numbers)
            question = f"Delete quarantined {shown} for good?"
            if not yes and not sys.stdin.isatty():
                raise fail(f"{question[:-1]}: pass --yes to confirm without a prompt")
            if not yes and not typer.confirm(question, err=True):
                raise fail("nothing dropped")
            dropped = store.upkeep.drop_quarantined(numbers)
        finally:
            store.close()
    noun = "delivery" if dropped == 1 else "deliveries"
    sys.stdout.write(f"Dropped {dropped} quarantined {noun}: {shown}\n")


def _refuse_missing(store: Any, numbers: list[int]) -> None:
    missing = store.reads.not_quarantined(numbers)
    if missing:  # a mistyped id: nothing is done
        shown = ", ".join(f"#{i}" for i in missing)
        raise fail(
            f"not in quarantine: {shown} (see `tbhook quarantine`; one moved by an earlier "
            "retry is among the events now)"
        )


def _ids(words: list[str]) -> list[int]:
    try:
        return [parse_id(word.removeprefix("#"), "a quarantine id") for word in words]
    except ValueError as exc:
        raise typer.BadParameter(str(exc), param_hint="'ID'") from None

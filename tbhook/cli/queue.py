"""`tbhook queue`: who is waiting for an agent now, for how long, against the team's SLA."""

from __future__ import annotations

import time
from typing import Annotated, Any

import typer

from tbhook.cli.access import following, reading
from tbhook.cli.asking import asks
from tbhook.cli.options import DEFAULT_DB, DbOption, FormatOption
from tbhook.model.query import Asked
from tbhook.output.formats import write


@asks("queue")
def queue(
    db: DbOption = DEFAULT_DB,
    asked: Asked = Asked(),
    follow: Annotated[
        bool,
        typer.Option(
            "--follow",
            help="Keep the queue current until Ctrl-C, as deliveries arrive and as time "
            "passes: the table drawn again in place on a terminal, or one ndjson line per "
            "change (waiting, breached, updated, left) when piped.",
        ),
    ] = False,
    fmt: FormatOption = "table",
) -> None:
    """The cases waiting for an agent (the customer wrote last, and no agent message or
    close answered), oldest first: how long each has waited and, with --sla, the time left
    before its target. The table ends with how many wait, have breached and are at risk
    (less than a quarter of their target left)."""
    from tbhook.output import queue as shown
    from tbhook.queue_feed import asking_of, snapshot

    hours = asked.clock.hours.spec if asked.clock else None
    asking = asking_of(asked)
    if follow:
        _check_follow(asked, fmt)
        _follow(db, asking, fmt, asked.zone, hours, asked.limit)
        return
    with reading(db) as store:
        found = snapshot(store, asking, int(time.time())).answer
    write(shown.answer(found, fmt, asked.zone, hours, asked.limit), fmt)


def _check_follow(asked: Asked, fmt: str) -> None:
    if asked.at is not None:
        raise typer.BadParameter(
            "--at is the queue as it stood at one moment, --follow keeps it current from now "
            "on: give one of them",
            param_hint="'--follow'",
        )
    if getattr(fmt, "value", fmt) not in ("table", "ndjson"):
        raise typer.BadParameter(
            "--follow draws the table again in place, or writes one ndjson line per change; "
            f"-f {getattr(fmt, 'value', fmt)} writes one answer",
            param_hint="'--follow'",
        )


def _follow(db: str, asking: Any, fmt: str, zone: Any, hours: Any, limit: int) -> None:
    """Until Ctrl-C or SIGTERM, which end it quietly (exit 0), as they end `tail`."""
    from tbhook.output import queue as shown
    from tbhook.queue_feed import followed

    with following(db) as store:
        shown.follow(followed(store, asking), fmt, zone, hours, limit, asking.sla is not None)

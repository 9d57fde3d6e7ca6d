"""The developer loop: send, generate, import, replay.

Like the other command modules, this one imports at the top only what parsing the command
line needs; a command imports the module that does its work when it runs, so every command
starts without loading every other's (startup is part of every command's time: 20 ms of 120
for `tbhook --version`)."""

from __future__ import annotations

import os
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Annotated, Any, Optional

import typer

from tbhook.cli.access import open_for_writing, reading
from tbhook.cli.asking import asks
from tbhook.cli.options import DEFAULT_DB, DbOption, fail, reported_errors, whole_number
from tbhook.cli.printing import progress
from tbhook.errors import TbhookError
from tbhook.model.events import parse
from tbhook.model.filters import parse_decimal
from tbhook.model.query import Asked
from tbhook.model.times import parse_when
from tbhook.model.words import describe_parsed
from tbhook.transfer.payloads import bodies, open_source, override, parse_assignment

LOCAL_SERVE = "http://127.0.0.1:8080/"
HeaderName = Annotated[
    Optional[str],
    typer.Option(
        envvar="TBHOOK_HEADER_NAME", metavar="NAME", help="Custom header to send with each body."
    ),
]
HeaderValue = Annotated[
    Optional[str],
    typer.Option(
        envvar="TBHOOK_HEADER_VALUE", metavar="SECRET", help="Its content.", show_default=False
    ),
]


def _assignments(values: Optional[list[str]], option: str) -> dict[str, Any]:
    try:
        return dict(parse_assignment(value) for value in values or ())
    except ValueError as exc:
        raise typer.BadParameter(str(exc), param_hint=f"'{option}'") from None


def _rate(value: Optional[str]) -> Optional[float]:
    """``20``, ``20/s`` or ``0.5/s``: deliveries per second."""
    if value is None:
        return None
    try:
        rate = parse_decimal(value.strip().removesuffix("/s"))  # ASCII: '٣/s' is no rate
    except ValueError:
        rate = 0.0
    if not 0 < rate < float("inf"):
        raise typer.BadParameter(
            f"{value!r} is not a positive rate such as 20/s", param_hint="'--rate'"
        )
    return rate


def _reply_note(reply: Any) -> str:
    """What a tbhook receiver said about the delivery, from its JSON answer."""
    answer = reply.json()
    if not isinstance(answer, dict):
        return ""
    if answer.get("quarantined"):
        return f" -> quarantined #{answer.get('quarantineId')}"
    if "id" in answer:
        return f" -> #{answer['id']}" + (" (duplicate)" if answer.get("duplicate") else "")
    if "error" in answer:
        return f" ({answer['error']})"
    return ""


def send(
    sources: Annotated[
        list[str],
        typer.Argument(
            metavar="SAMPLE_OR_FILE...",
            help="Sample names (see samples/), JSON or NDJSON files, or - for stdin.",
        ),
    ],
    to: Annotated[str, typer.Option(metavar="URL", help="Where to POST.")] = LOCAL_SERVE,
    header_name: HeaderName = None,
    header_value: HeaderValue = None,
    set_: Annotated[
        Optional[list[str]],
        typer.Option(
            "--set",
            metavar="KEY=VALUE",
            help="Change a field the event has (JSON-typed); events without it are left alone.",
        ),
    ] = None,
    add: Annotated[
        Optional[list[str]],
        typer.Option("--add", metavar="KEY=VALUE", help="Set a field, adding it if missing."),
    ] = None,
    now: Annotated[bool, typer.Option("--now", help="Stamp the current time.")] = False,
) -> None:
    """POST sample or recorded events to a receiver; exit 1 unless every one got a 200."""
    from tbhook.transfer.client import Poster, PostFailed, auth_headers  # http.client: 15 ms

    assignments = _assignments(set_, "--set")
    additions = _assignments(add, "--add")
    timestamp = int(time.time()) if now else None
    failed = 0
    used: set[str] = set()
    with reported_errors():
        poster = Poster(to, auth_headers(header_name, header_value))
        for source in sources:
            stream, label = open_source(source)
            sent = 0
            for _line, raw in bodies(stream):
                sent += 1
                body, applied = override(raw, assignments, timestamp, additions)
                used |= applied
                summary = describe_parsed(parse(body))
                try:
                    reply = poster.post(body)
                except PostFailed as exc:
                    typer.echo(f"ERR {summary}: {exc}")
                    failed += 1
                    continue
                failed += not reply.ok
                typer.echo(f"{reply.status} {summary}{_reply_note(reply)}")
            _complete(stream)
            if not sent:
                poster.close()
                raise fail(f"nothing to send: {label} holds no body (only blank lines, or nothing)")
        poster.close()
    for key in sorted(set(assignments) - used):
        typer.echo(
            f"Warning: no event sent had {key!r}, so --set {key}=... changed nothing "
            "(--add adds a field)",
            err=True,
        )
    if failed:
        raise typer.Exit(1)


def generate(
    count: Annotated[
        int,
        typer.Option("--count", "-c", metavar="N", help="How many events.", **whole_number(0)),
    ],
    seed: Annotated[
        int, typer.Option(metavar="N", help="Same seed, same events.", **whole_number(0))
    ] = 0,
    start: Annotated[
        Optional[str],
        typer.Option(metavar="ISO", help="First timestamp.  [default: 2024-01-01T00:00:00Z]"),
    ] = None,
    persons: Annotated[
        int, typer.Option(metavar="N", help="How many distinct persons.", **whole_number(1))
    ] = 1000,
    rate: Annotated[str, typer.Option(metavar="R/s", help="Events per second of event time.")] = (
        "10/s"
    ),
) -> None:
    """Write realistic, deterministic Tracebuzz events as NDJSON to stdout."""
    from tbhook.transfer import generate as generating  # see the module's docstring

    try:
        first = parse_when(start) if start else generating.DEFAULT_START
    except ValueError as exc:
        raise typer.BadParameter(str(exc), param_hint="'--start'") from None
    generator = generating.Generator(
        seed=seed, start=first, persons=persons, rate=_rate(rate) or 10.0
    )
    write = sys.stdout.write
    chunk: list[str] = []
    for line in generator.lines(count):
        chunk.append(line)
        if len(chunk) == 2000:
            write("\n".join(chunk) + "\n")
            chunk.clear()
    if chunk:
        write("\n".join(chunk) + "\n")


def import_(
    file: Annotated[str, typer.Argument(metavar="FILE|-", help="NDJSON or a JSON array.")],
    db: DbOption = DEFAULT_DB,
) -> None:
    """Load events through the receiver's parsing, dedupe and quarantine rules."""
    from tbhook.transfer.importer import import_stream  # see the module's docstring

    if file != "-" and not Path(file).is_file():
        raise fail(f"no file at {file}")
    with reported_errors():
        _refuse_database(db, "/dev/stdin" if file == "-" else file)
        stream, label = open_source(file)
        size = os.fstat(stream.fileno()).st_size if file != "-" else None
        store = open_for_writing(db)
        try:
            with progress() as bar:
                task = bar.add_task(f"importing {label}", total=size or None)
                result = import_stream(store, stream, label, lambda n: bar.advance(task, n))
        finally:
            store.close()
    lines = result.quarantined_lines
    shown = ", ".join(str(n) for n in lines[:10]) + (", ..." if len(lines) > 10 else "")
    already = result.already_quarantined
    typer.echo(
        f"Imported {label}: {result.inserted} inserted, {result.duplicates} duplicates, "
        f"{result.quarantined} quarantined"
        + (f" (lines {shown})" if lines else "")
        + (f", {already} already in quarantine" if already else "")
    )
    with reported_errors():
        _complete(stream)


def _refuse_database(db: str, file: str) -> None:
    """The database itself (any spelling, its -wal or -shm) or another SQLite file is no
    NDJSON: read as lines, its pages would fill the quarantine with binary junk."""
    from tbhook.model.targets import is_url
    from tbhook.transfer.files import is_sqlite, refuse_same

    if not is_url(db):
        refuse_same(db, file, "import reads events from another file (NDJSON or a JSON array)")
    if file != "/dev/stdin" and is_sqlite(file):  # stdin cannot be peeked at
        raise TbhookError(
            f"{file} is a SQLite database, not NDJSON or a JSON array; to fold another "
            f"tbhook log into this one, run `tbhook merge {file}`"
        )


def _complete(stream: Any) -> None:
    """Raise when a compressed file ended early: what came before the cut was read."""
    check = getattr(stream, "check", None)
    if check is not None:
        check()


@asks("replay")
def replay(
    to: Annotated[str, typer.Option(metavar="URL", help="Where to POST the stored bodies.")],
    db: DbOption = DEFAULT_DB,
    asked: Asked = Asked(),
    rate: Annotated[
        Optional[str], typer.Option(metavar="N/s", help="At most N deliveries per second.")
    ] = None,
    header_name: HeaderName = None,
    header_value: HeaderValue = None,
) -> None:
    """Re-send stored raw bodies, byte for byte, in arrival order; exit 1 if any failed."""
    from tbhook.transfer.client import Poster, PostFailed, auth_headers  # http.client: 15 ms

    per_second = _rate(rate)
    filters = asked.filters
    statuses: Counter[str] = Counter()
    unreachable = None
    with reading(db) as store:
        poster = Poster(to, auth_headers(header_name, header_value))
        total = store.reads.count_matching(filters)
        started = time.monotonic()
        with progress() as bar:
            task = bar.add_task(f"replaying to {to}", total=total)
            for sent, (_id, body) in enumerate(store.reads.bodies(filters)):
                if per_second:
                    time.sleep(max(0.0, started + sent / per_second - time.monotonic()))
                try:
                    statuses[str(poster.post(body).status)] += 1
                except PostFailed as exc:
                    if not statuses:  # nothing has ever answered: nothing is listening
                        unreachable = exc
                        break
                    statuses["no answer"] += 1
                bar.advance(task)
        poster.close()
    if unreachable is not None:
        raise fail(f"{unreachable}; 0 of {total} events replayed")
    delivered = statuses.get("200", 0)
    summary = ", ".join(f"{count} x {status}" for status, count in sorted(statuses.items()))
    if not statuses:
        typer.echo(f"Replayed nothing to {to}: no event matched")
    elif delivered == total:
        typer.echo(f"Replayed {total} events to {to}: {summary}")
    else:
        typer.echo(f"Replayed {delivered} of {total} events to {to}: {summary}")
    if set(statuses) - {"200"}:
        raise typer.Exit(1)

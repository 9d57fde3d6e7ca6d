"""Running it for months: doctor, backup, prune and merge."""

from __future__ import annotations

import contextlib
import os
import sys
from datetime import datetime, timezone
from pathlib import Path
from typing import Annotated, Any, Optional

import typer

from tbhook import questions
from tbhook.cli.access import open_for_writing, reading
from tbhook.cli.alerting import DoctorNotifyOption, send_doctor_alerts, unreadable, urls
from tbhook.cli.options import (
    DEFAULT_DB,
    DbOption,
    FormatOption,
    db_size,
    fail,
    reported_errors,
    say,
)
from tbhook.cli.printing import progress
from tbhook.errors import TbhookError
from tbhook.model import health as rules
from tbhook.model.targets import is_url, shown
from tbhook.model.times import iso_time, parse_when
from tbhook.output.formats import Answer, write
from tbhook.transfer.files import (
    clear_stale,
    destination,
    new_file,
    refuse_same,
    replacing,
    stale_temporaries,
    who_left,
)


def _age(value: Optional[str]) -> Optional[int]:
    if value is None:
        return None

    try:
        return int(datetime.now(timezone.utc).timestamp()) - parse_when(value)
    except ValueError as exc:
        raise typer.BadParameter(str(exc)) from None


def doctor(
    db: DbOption = DEFAULT_DB,
    stale: Annotated[
        Optional[str],
        typer.Option(
            metavar="AGE",
            help="Fail when the last delivery is older than this (30m, 1h, 2d).",
            callback=_age,
        ),
    ] = None,
    quick: Annotated[bool, typer.Option("--quick", help="quick_check, not integrity_check.")] = (
        False
    ),
    max_db_size: Annotated[
        Optional[str], db_size("The receiver's --max-db-size (default: what it recorded).")
    ] = None,
    fmt: FormatOption = "table",
    notify: DoctorNotifyOption = None,
) -> None:
    """A health report; exit 1 when something is wrong, for cron or a monitor."""
    given: Optional[int] = max_db_size  # type: ignore[assignment]  # the callback made it bytes
    stale_seconds: Optional[int] = stale  # type: ignore[assignment]  # the callback made it seconds
    try:
        from tbhook.store import open_reader  # see open_for_writing

        store = open_reader(db, current=False)
    except TbhookError as exc:
        if notify:  # a database that cannot be read at all is the first thing to tell
            send_doctor_alerts(unreadable(db, str(exc)), urls(notify), db)
        raise fail(str(exc)) from None
    with reported_errors():
        try:
            report = questions.health(
                store, quick=quick, stale_seconds=stale_seconds, max_db_size=given
            )
        finally:
            store.close()
    # A test commit of its own once the reader is closed: a reader still open would keep the
    # write-ahead log it leaves behind.
    cap = report["maxDbSizeBytes"] if report["backend"] == "sqlite" else None
    questions.add_checks(report, _commit_checks(db, cap, report["pendingMigrations"]))
    questions.add_checks(report, rules.temporary_checks(_temporaries(db)))
    answer = Answer(
        records=rules.rows(report),
        fields=("check", "status", "detail"),
        document=report,
        table=lambda rows: _doctor_view(report, rows),
        notes=rules.notes(report),
    )
    write(answer, fmt)
    if notify:
        send_doctor_alerts(report, urls(notify), db)
    if not report["ok"]:
        raise typer.Exit(1)


def _doctor_view(report: dict[str, Any], rows: list[Any]) -> Any:
    from tbhook.output import views  # rich (about 40 ms): only when a table is drawn

    return views.doctor_view(report, rows)


def _temporaries(db: str) -> list[tuple[str, str, int]]:
    """What killed tbhook commands left beside a SQLite database (a backup, an export or an
    archive they were writing): each temporary, who left it, its size."""
    if is_url(db):
        return []
    found = []
    for path in stale_temporaries(Path(db).parent):
        with contextlib.suppress(OSError):  # removed meanwhile
            found.append((str(path), who_left(path), path.stat().st_size))
    return found


def _commit_checks(db: str, cap: Optional[int], pending: list[str]) -> list[dict[str, str]]:
    """Whether a delivery could be committed now, asked as the receiver's /healthz asks it
    (``Store.commit_check``): the same reasons, in the same words."""
    if pending:
        return [{"check": "commit", "status": "warn", "message": "not tried: migrations pending"}]
    if not is_url(db) and os.geteuid() != 0 and not os.access(db, os.W_OK):
        # Run from cron as another user than the receiver's: the receiver's answer is not
        # this user's (root tries: a read-only mount or an immutable file fails for all).
        message = "not tried: this user cannot write the file (run doctor as the receiver's user)"
        return [{"check": "commit", "status": "warn", "message": message}]
    try:
        from tbhook.store import open_store  # loads when it runs (see tbhook.cli.dev)

        store = open_store(db, max_bytes=cap)
    except TbhookError as exc:
        why: Optional[str] = str(exc)
    else:
        try:
            why = store.commit_check()
        finally:
            store.close()
    if why:
        return [{"check": "commit", "status": "fail", "message": why}]
    message = "a test commit succeeded: deliveries can be stored"
    return [{"check": "commit", "status": "ok", "message": message}]


def backup(
    dest: Annotated[
        str, typer.Argument(metavar="DEST", help="A new file, or a directory to put one in.")
    ],
    db: DbOption = DEFAULT_DB,
    force: Annotated[
        bool,
        typer.Option(
            "--force", help="Replace DEST, an earlier backup, once the new copy is complete."
        ),
    ] = False,
) -> None:
    """A consistent copy of the database, safe while `tbhook serve` keeps writing."""
    if is_url(db):
        raise fail(
            "backup copies a SQLite file; for PostgreSQL use its own tools, such as "
            f"pg_dump --format=custom --file=tbhook.dump '{shown(db)}'"
        )
    if dest and Path(dest).is_dir():  # "" is no directory, though Path("") is "."
        stamp = datetime.now(timezone.utc).strftime("%Y%m%d-%H%M%S")
        dest = str(Path(dest) / f"{Path(db).stem}-{stamp}.db")
    with reading(db, current=False) as store, reported_errors():
        # Everything is checked before DEST is touched; DEST is replaced only by a finished copy,
        # written 0600 from its first byte under a temporary name the next backup recognises.
        why = "a backup must be another file"
        path = destination(db, dest, why, say, force=force, backup_of=store.reads.log_id(),
                           command="backup", name="DEST")  # fmt: skip
        with replacing(path, "backup") as temp:
            store.backup(str(temp))
            from tbhook.store import open_reader  # see doctor

            copy = open_reader(temp, current=False)
            try:
                events, integrity = copy.reads.count(), copy.integrity(quick=True)
            finally:
                copy.close()
            if integrity != ["ok"]:
                raise fail(f"the copy failed its check ({integrity[0]}); {dest} left as it was")
    size = os.path.getsize(path) / (1024 * 1024)
    sys.stdout.write(f"Backed up {events} events to {dest} ({size:.1f} MiB, checked)\n")


def merge(
    other: Annotated[
        Path,
        typer.Argument(metavar="OTHER", help="The other receiver's database (or a backup)."),
    ],
    db: DbOption = DEFAULT_DB,
) -> None:
    """Fold another tbhook log into this one: two receivers for one Tracebuzz, one log."""
    with reported_errors():
        if is_url(str(other)):
            raise fail("merge takes a SQLite file (another receiver's log, or a backup of it)")
        refuse_same(db, other, "nothing to merge")
        from tbhook.store import open_reader  # see doctor

        source = open_reader(other)  # it exists, it is tbhook's, it is current
        waiting = source.reads.count() + source.reads.count("quarantine")
        source.close()
        store = open_for_writing(db)
        try:
            with progress() as bar:
                task = bar.add_task(f"merging {other}", total=waiting)
                result = store.upkeep.merge_from(str(other), lambda n: bar.advance(task, n))
            total = store.reads.count()
        finally:
            store.close()
    before = result["mergedBefore"]
    if before and not result["added"] and not result["alreadyHere"] and not result["quarantine"]:
        sys.stdout.write(
            f"Nothing new in {other} since it was last merged (up to its event #{before}); "
            f"{total} events here\n"
        )
        return
    sys.stdout.write(
        f"Merged {other}: {result['added']} new events, {result['alreadyHere']} already here "
        f"(their deliveries added), {result['quarantine']} new quarantined; {total} events now\n"
    )


def prune(
    before: Annotated[
        str,
        typer.Option(
            metavar="WHEN", help="Delete events whose timestamp is before this (date or age)."
        ),
    ],
    db: DbOption = DEFAULT_DB,
    archive: Annotated[
        Optional[str],
        typer.Option(
            metavar="FILE.ndjson.gz",
            help="First write them here, for `tbhook import` (required, or --no-archive).",
        ),
    ] = None,
    no_archive: Annotated[
        bool, typer.Option("--no-archive", help="Delete them for good, with no archive.")
    ] = False,
    append: Annotated[
        bool,
        typer.Option(
            "--append",
            help="Add to an existing archive (a new gzip member; bodies it holds are skipped).",
        ),
    ] = False,
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Do not ask for confirmation.")] = False,
) -> None:
    """Delete old events, after archiving them; merges that persons still need are kept."""

    try:
        cutoff = parse_when(before)
    except ValueError as exc:
        raise typer.BadParameter(str(exc), param_hint="'--before'") from None
    if archive is None and not no_archive:
        raise typer.BadParameter(
            "give --archive FILE.ndjson.gz to keep what is deleted, or --no-archive to delete "
            "it for good",
            param_hint="'--archive' / '--no-archive'",
        )
    if archive is not None and no_archive:
        raise typer.BadParameter(
            "--archive and --no-archive contradict each other",
            param_hint="'--archive' / '--no-archive'",
        )
    if append and archive is None:
        raise typer.BadParameter("--append adds to an --archive", param_hint="'--append'")
    path: Optional[Path] = None
    known: set[bytes] = set()  # the lines the archive holds already
    with reported_errors():
        if archive is not None:
            path, known = _archive_destination(db, archive, append)
        store = open_for_writing(db)
    try:
        ids, kept = store.upkeep.prune_plan(cutoff)
        when = iso_time(cutoff)
        if not ids:
            sys.stdout.write(f"Nothing to prune before {when}\n")
            return
        question = f"Delete {len(ids)} events from before {when}"
        question += f" (archived to {archive} first)?" if archive else " for good, with no archive?"
        if not yes and not sys.stdin.isatty():
            raise fail(f"{question[:-1]}: pass --yes to confirm without a prompt")
        if not yes and not typer.confirm(question, err=True):
            raise fail("nothing deleted")
        skipped = 0
        with reported_errors(), progress() as bar:
            if path is not None:  # archived, fsynced, read back and checked, then deleted
                from tbhook.transfer.retention import archived_then_deleted

                archiving = bar.add_task(f"archiving to {archive}", total=len(ids))
                deleting = bar.add_task("deleting", total=len(ids))
                _, skipped = archived_then_deleted(
                    store,
                    path,
                    ids,
                    known,
                    archived=lambda n: bar.advance(archiving, n),
                    deleted=lambda n: bar.advance(deleting, n),
                )
            else:
                task = bar.add_task("deleting", total=len(ids))
                store.upkeep.delete_events(ids, lambda n: bar.advance(task, n))
    finally:
        store.close()
    kept_text = f"; kept {kept} older merges that remaining persons resolve through" if kept else ""
    where = f", archived to {archive}" if archive else ""
    if skipped:
        where += f" ({skipped} of them already there, from an earlier prune)"
    sys.stdout.write(f"Pruned {len(ids)} events from before {when}{where}{kept_text}\n")


def _archive_destination(db: str, archive: str, append: bool) -> tuple[Path, set[bytes]]:
    """The archive checked before anything is deleted: not the database or one of its files,
    and, when it exists, added to only with --append and only if it is a tbhook archive; and
    the keys of the lines it holds."""
    refuse_same(db, archive, "the archive must be another file")
    try:
        # A device or a pipe is refused: the archive is read back and on disk before a
        # single event is deleted.
        path = new_file(archive, force=True, name="--archive")
    except TbhookError as exc:
        raise TbhookError(f"{exc}; nothing was deleted") from None
    if path.exists() and not append:
        raise fail(f"{archive} exists (use --append to add to it, or another name)")
    clear_stale(path.parent, "prune", say)
    if not path.exists():
        return path, set()
    from tbhook.transfer import archive as archives  # see prune

    with progress() as bar:  # refuses what is not an archive, before the confirmation
        task = bar.add_task(f"reading {archive}", total=None)
        return path, archives.lines_in(path, lambda n: bar.advance(task, n))

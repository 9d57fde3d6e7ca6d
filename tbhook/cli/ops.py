"""Running it for months: doctor and backup."""

from __future__ import annotations

import os
import sys
from datetime import datetime, timezone
from pathlib import Path
from typing import Annotated, Any, Optional

import typer

from tbhook.cli.options import (
    DEFAULT_DB,
    DbOption,
    FormatOption,
    destination,
    fail,
    open_for_writing,
    parse_size,
    progress,
    reading,
    reported_errors,
)
from tbhook.errors import StoreUnavailable, TbhookError
from tbhook.events import SCHEDULE_MINUTES
from tbhook.output.describe import duration
from tbhook.output.formats import Answer, write

UNREADABLE: dict[str, Any] = {
    "events": None,
    "byEvent": {},
    "retriedEvents": 0,
    "extraDeliveries": 0,
    "lateDeliveries": 0,
    "maxLagSeconds": None,
    "lastReceivedAt": None,
    "quarantined": 0,
    "testDeliveries": 0,
}
LATE_SECONDS = 300  # a delivery this much after its event means Tracebuzz was retrying
# The spec's table, read two ways: each value the wait after the previous failure (their sum),
# or each value the time since the first failure (the last value alone).
OUTAGE_HOURS = (SCHEDULE_MINUTES[-1] / 60, sum(SCHEDULE_MINUTES) / 60)


def _age(value: Optional[str]) -> Optional[int]:
    if value is None:
        return None
    from tbhook.filters import parse_when

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
        Optional[str],
        typer.Option(
            metavar="SIZE",
            help="The receiver's --max-db-size (default: what it recorded in the database).",
            callback=lambda value: parse_size(value, "--max-db-size"),
        ),
    ] = None,
    fmt: FormatOption = "table",
) -> None:
    """A health report; exit 1 when something is wrong, for cron or a monitor."""
    with reading(db, current=False) as store:
        # A damaged file is what a doctor is for: report each failure, do not stop at it.
        integrity = store.integrity(quick)
        applied, pending = store.schema()
        try:
            health = store.upkeep.health(LATE_SECONDS)
            unknown = store.upkeep.unknown_values()
        except StoreUnavailable as exc:
            health, unknown = {**UNREADABLE, "scanError": str(exc)}, []
        facts = store.server_facts()
        recorded = store.reads.meta().get("maxDbSize")
        backend, shown = store.dialect.name, store.path
        durability = store.durability_warning()
    given: Optional[int] = max_db_size  # type: ignore[assignment]  # the callback made it bytes
    cap = given or (int(recorded) if recorded else None)
    stale_seconds: Optional[int] = stale  # type: ignore[assignment]  # the callback made it seconds
    checks = _checks(integrity, pending, health, stale_seconds, backend)
    checks += _commit_checks(db, cap if backend == "sqlite" else None, pending)
    if backend == "sqlite":
        checks += _space_checks(facts["usedBytes"], cap)
    checks += _unknown_checks(unknown) + _durability_checks(durability, facts)
    report: dict[str, Any] = {
        "database": shown,
        "backend": backend,
        **facts,
        "maxDbSizeBytes": cap,
        "integrity": integrity[:10],
        "schema": applied[-1] if applied else None,
        "pendingMigrations": pending,
        **health,
        "unknownValues": [{"field": f, "value": v, "events": n} for f, v, n in unknown],
        "lastReceivedAgeSeconds": _seconds_since(health["lastReceivedAt"]),
        "checks": checks,
        "ok": all(check["status"] != "fail" for check in checks),
        "outageBudgetHours": [round(hours, 1) for hours in OUTAGE_HOURS],
    }
    answer = Answer(
        records=_report_rows(report),
        fields=("check", "status", "detail"),
        document=report,
        table=lambda rows: _report_view(report, rows),
        notes=_report_notes(report),
    )
    write(answer, fmt)
    if not report["ok"]:
        raise typer.Exit(1)


NEAR_CAP = 0.9  # warn from this share of --max-db-size; fail at the cap


def _commit_checks(db: str, cap: Optional[int], pending: list[str]) -> list[dict[str, str]]:
    """Whether a delivery could be committed now, asked as the receiver's /healthz asks it
    (``Store.commit_check``): the same reasons, in the same words."""
    from tbhook.errors import TbhookError
    from tbhook.store import is_url, open_store

    if pending:
        return [{"check": "commit", "status": "warn", "message": "not tried: migrations pending"}]
    if not is_url(db) and os.geteuid() != 0 and not os.access(db, os.W_OK):
        # Run from cron as another user than the receiver's: the receiver's answer is not
        # this user's (root tries: a read-only mount or an immutable file fails for all).
        message = "not tried: this user cannot write the file (run doctor as the receiver's user)"
        return [{"check": "commit", "status": "warn", "message": message}]
    try:
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


def _space_checks(used: int, cap: Optional[int]) -> list[dict[str, str]]:
    from tbhook.errors import human_size

    if not cap:
        return []
    share = used / cap
    where = f"{human_size(used)} of its --max-db-size cap of {human_size(cap)} ({share:.0%})"
    if share >= 0.99:
        status = "fail"
        message = f"the database holds {where}: deliveries get 503; raise the cap or prune"
    elif share >= NEAR_CAP:
        status, message = "warn", f"the database holds {where}: raise the cap or prune soon"
    else:
        status, message = "ok", f"the database holds {where}"
    return [{"check": "size cap", "status": status, "message": message}]


def _unknown_checks(unknown: list[tuple[str, int, int]]) -> list[dict[str, str]]:
    if not unknown:
        return []
    listed = ", ".join(f"{field} {value} ({n} events)" for field, value, n in unknown)
    return [
        {
            "check": "unknown values",
            "status": "warn",
            "message": f"values the Tracebuzz documentation does not list: {listed}; kept as "
            "events, labelled unknown: has Tracebuzz added a message type?",
        }
    ]


def _report_rows(report: dict[str, Any]) -> list[dict[str, str]]:
    """The report as (check, status, detail) rows: the facts first, then every check."""
    mib = 1024 * 1024
    by_event = ", ".join(f"{n} {name}" for name, n in report["byEvent"].items())
    if report["backend"] == "sqlite":
        where = (
            "file",
            f"{report['sizeBytes'] / mib:.1f} MiB, WAL {report['walBytes'] / mib:.1f} MiB",
        )
    else:
        where = (
            "server",
            f"PostgreSQL {report['serverVersion']}, {report['databaseBytes'] / mib:.1f} MiB, "
            f"synchronous_commit {report['synchronousCommit']}",
        )
    rows = [
        where,
        ("schema version", str(report["schema"])),
        ("events", f"{report['events']}" + (f" ({by_event})" if by_event else "")),
        ("last received", str(report["lastReceivedAt"] or "never")),
    ]
    facts = [{"check": name, "status": "", "detail": detail} for name, detail in rows]
    checks = [
        {"check": c["check"], "status": c["status"], "detail": c["message"]}
        for c in report["checks"]
    ]
    return facts + checks


def _seconds_since(iso: Optional[str]) -> Optional[int]:
    if iso is None:
        return None
    moment = datetime.fromisoformat(iso.replace("Z", "+00:00"))
    return int((datetime.now(timezone.utc) - moment).total_seconds())


def _durability_checks(warning: Optional[str], facts: dict[str, Any]) -> list[dict[str, str]]:
    if "synchronousCommit" not in facts:
        return []  # SQLite: synchronous=FULL is set by tbhook itself
    if warning:
        message = warning.removeprefix("Warning: ")
        return [{"check": "durability", "status": "fail", "message": message}]
    setting = facts["synchronousCommit"]
    message = f"synchronous_commit is {setting}: a 200 means the commit is on disk"
    return [{"check": "durability", "status": "ok", "message": message}]


def _checks(
    integrity: list[str],
    pending: list[str],
    health: dict[str, Any],
    stale: Optional[int],
    backend: str = "sqlite",
) -> list[dict[str, str]]:
    checks = []

    def check(name: str, status: str, message: str) -> None:
        checks.append({"check": name, "status": status, "message": message})

    if backend != "sqlite":
        check("integrity", "ok", "left to PostgreSQL (data checksums, amcheck)")
    elif integrity == ["ok"]:
        check("integrity", "ok", "the database file is sound")
    else:
        check("integrity", "fail", "; ".join(integrity[:3]) + ": restore the last backup")
    if "scanError" in health:
        check("events", "fail", f"cannot read the events: {health['scanError']}")
    if pending:
        check("schema", "warn", f"{len(pending)} migrations pending: run `tbhook serve` once")
    else:
        check("schema", "ok", "up to date")
    age = _seconds_since(health["lastReceivedAt"])
    if age is None:
        check("last delivery", "warn" if stale is None else "fail", "nothing received yet")
    elif stale is not None and age > stale:
        check(
            "last delivery",
            "fail",
            f"the last delivery was {duration(age)} ago, more than {duration(stale)}: "
            "is the receiver reachable, and is the webhook still enabled in Tracebuzz?",
        )
    else:
        check("last delivery", "ok", f"{duration(age)} ago")
    tests = health.get("testDeliveries", 0)
    unreadable = health["quarantined"] - tests
    kept = (
        f"; {tests} empty test {'delivery' if tests == 1 else 'deliveries'} from saving the "
        "webhook kept in quarantine"
        if tests
        else ""
    )
    if unreadable:
        check(
            "quarantine",
            "warn",
            f"{unreadable} deliveries were kept but could not be read: see `tbhook quarantine`"
            + kept,
        )
    else:
        check("quarantine", "ok", "every delivery was readable" + kept)
    late = health["lateDeliveries"]
    if late:
        check(
            "late deliveries",
            "warn",
            f"{late} events arrived more than {LATE_SECONDS // 60} minutes after they happened "
            f"(up to {duration(health['maxLagSeconds'])}): the receiver was down or "
            "failing and Tracebuzz was retrying",
        )
    else:
        check("late deliveries", "ok", "none")
    if health["extraDeliveries"]:
        check(
            "retries",
            "ok",
            f"{health['retriedEvents']} events arrived more than once "
            f"({health['extraDeliveries']} extra deliveries, kept once each)",
        )
    return checks


def _report_view(report: dict[str, Any], rows: list[Any]):  # noqa: ANN202
    from tbhook.output.tables import PROSE, Column, fitted, text

    styles = {"ok": "green", "warn": "yellow", "fail": "bold red", "": ""}
    columns = (Column("check"), Column("status"), Column("detail", PROSE))
    cells = [
        [row["check"], text(row["status"], styles[row["status"]]), row["detail"]] for row in rows
    ]
    return fitted(columns, cells, title=f"tbhook doctor: {report['database']}")


def _report_notes(report: dict[str, Any]) -> list[Any]:
    from rich.text import Text

    low, high = report["outageBudgetHours"]
    minutes = ", ".join(str(m) for m in SCHEDULE_MINUTES)
    budget = (
        f"Tracebuzz retries a failed delivery after {minutes} minutes, then disables the "
        f"webhook. An outage longer than {low:.0f} to {high:.0f} hours (depending on how the "
        "spec's table is read) loses events and needs the webhook re-enabled by saving it "
        "in Tracebuzz."
    )
    verdict = "healthy" if report["ok"] else "something is wrong"
    return [budget, Text(verdict, style="green" if report["ok"] else "bold red")]


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
    from tbhook.files import replacing
    from tbhook.store import is_url, open_reader, shown

    if is_url(db):
        raise fail(
            "backup copies a SQLite file; for PostgreSQL use its own tools, such as "
            f"pg_dump --format=custom --file=tbhook.dump '{shown(db)}'"
        )
    if Path(dest).is_dir():
        stamp = datetime.now(timezone.utc).strftime("%Y%m%d-%H%M%S")
        dest = str(Path(dest) / f"{Path(db).stem}-{stamp}.db")
    with reading(db, current=False) as store, reported_errors():
        # Everything is checked before DEST is touched; DEST is replaced only by a finished copy.
        path = destination(db, dest, "a backup must be another file", force, store.reads.log_id())
        with replacing(path) as temp:
            store.backup(str(temp))
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
    from tbhook.files import refuse_same
    from tbhook.store import is_url, open_reader

    with reported_errors():
        if is_url(str(other)):
            raise fail("merge takes a SQLite file (another receiver's log, or a backup of it)")
        refuse_same(db, other, "nothing to merge")
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
    from tbhook import archive as archives
    from tbhook.filters import iso_time, parse_when

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
            if path is not None:
                task = bar.add_task(f"archiving to {archive}", total=len(ids))
                _, skipped = archives.write(
                    path, store.upkeep.archive_bodies(ids), known, lambda n: bar.advance(task, n)
                )
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
    from tbhook import archive as archives
    from tbhook.files import new_file, refuse_same

    refuse_same(db, archive, "the archive must be another file")
    try:
        path = new_file(archive, force=True)
    except TbhookError as exc:
        raise TbhookError(f"{exc}; nothing was deleted") from None
    if path.exists() and not append:
        raise fail(f"{archive} exists (use --append to add to it, or another name)")
    if not path.exists():
        return path, set()
    with progress() as bar:  # refuses what is not an archive, before the confirmation
        task = bar.add_task(f"reading {archive}", total=None)
        return path, archives.lines_in(path, lambda n: bar.advance(task, n))

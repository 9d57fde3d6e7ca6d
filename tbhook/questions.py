"""The questions the read commands and the console's pages answer, each as records or a
document and the fields a machine format writes. `tbhook events -f json` and the console's
`/events.json` are the same function's answer, written by the same writer
(``tbhook.output.formats``): the two can never say different things."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, replace
from operator import attrgetter, itemgetter
from typing import Any

from tbhook.model.cases import BUSINESS_METRICS as BUSINESS
from tbhook.model.cases import CASE_COLUMNS, METRICS, Summary, summaries, summarize, summarize_all
from tbhook.model.events import EVENT_FIELDS
from tbhook.model.filters import Filters
from tbhook.model.text import clean
from tbhook.model.times import iso_time
from tbhook.output.describe import FORWARD_FIELDS, body_document, event_record

PAGE = 1000  # up to this many rows, canonical IDs come from the page's own persons' merges
EVENT_LIST_FIELDS = (*EVENT_FIELDS, *FORWARD_FIELDS)
QUARANTINE_FIELDS = (
    "id",
    "receivedAt",
    "lastReceivedAt",
    "deliveries",
    "path",
    "reason",
    "bodySize",
    "bodyStart",
)
MERGE_FIELDS = ("oldPersonId", "newPersonId", "timestamp", "time")
DETAIL_FIELDS = (
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


@dataclass
class Listing:
    """Rows of a list question: ``records`` (streamed), the ``fields`` they carry, and how
    many there were before the limit (``total``, counted only when asked)."""

    records: Iterable[dict[str, Any]]
    fields: tuple[str, ...]
    total: Callable[[], int]


def page(store: Any, rows: Any, limit: int | None, person: Callable[[Any], Any]) -> tuple[Any, Any]:
    """The rows, and canonical person IDs for them: for a page, from the merges of its own
    persons (a few queries); for everything, from all merges at once."""
    if not limit or not 0 < limit <= PAGE:
        return rows, store.persons.resolver().canonical
    rows = list(rows)
    return rows, store.persons.for_persons(person(row) for row in rows)


def _event_person(row: dict) -> Any:
    return row["personId"] if row["personId"] is not None else row["newPersonId"]


def events(
    store: Any,
    filters: Filters,
    limit: int | None,
    *,
    descending: bool = True,
    order_by: str = "time",
    before: int | None = None,
) -> Listing:
    """`tbhook events`: the matching events (``order_by`` time or arrival; ``before``: only
    ids below it, the console's next page)."""
    rows = store.reads.events(
        filters,
        order_by=order_by,
        descending=descending,
        limit=limit,
        upto_id=before - 1 if before is not None else None,
        with_forwards=True,
    )
    rows, canonical = page(store, rows, limit, _event_person)
    return Listing(
        (event_record(row, canonical) for row in rows),
        EVENT_LIST_FIELDS,
        lambda: store.reads.count_matching(filters),
    )


def event(store: Any, event_id: int) -> tuple[dict, dict, bytes] | None:
    """`tbhook event ID`: its record with the delivery and forward facts, the document a
    machine format writes (the body in it), and the raw body; None when there is none."""
    row = store.reads.event_row(event_id)
    if row is None:
        return None
    canonical = store.persons.lookup()
    record = {**event_record(row, canonical), **{name: row.get(name) for name in DETAIL_FIELDS}}
    body = bytes(row["body"])
    return record, {**record, **body_document(body)}, body


def person(store: Any, person_id: int) -> dict[str, Any]:
    """`tbhook person ID`: the canonical ID, every alias, the merges in time order."""
    group = store.persons.group(person_id)
    merges = [
        {
            "oldPersonId": m.oldPersonId,
            "newPersonId": m.newPersonId,
            "timestamp": m.timestamp,
            "time": iso_time(m.timestamp),
        }
        for m in group.merges
    ]
    return {
        "personId": group.personId,
        "canonicalPersonId": group.canonicalPersonId,
        "aliases": group.aliases,
        "merges": merges,
    }


def case(
    store: Any, case_id: int, duration: Callable[[int, int], int] | None = None
) -> tuple[dict[str, Any], list[dict[str, Any]]] | None:
    """`tbhook case ID`: its metrics and its events' records in time order; None when no
    event names it."""
    canonical = store.persons.lookup()
    rows = list(store.reads.events(Filters(case=case_id)))
    if not rows:
        return None
    timeline = sorted((tuple(row[c] for c in CASE_COLUMNS) for row in rows), key=itemgetter(2, 3))
    found = next(summaries(timeline), None) or Summary(case_id)
    return summarize(found, canonical, duration), [event_record(row, canonical) for row in rows]


def cases(
    store: Any,
    filters: Filters,
    limit: int | None,
    *,
    descending: bool = True,
    duration: Callable[[int, int], int] | None = None,
) -> Listing:
    """`tbhook cases`: one record per case with a matching event. Every case comes from the
    summaries every write keeps (the same rows a recount from the events gives,
    tests/test_timelines.py); with filters, from the matching events."""
    fields = METRICS + (BUSINESS if duration else ())
    listed = store.timelines.listing(descending, limit) if filters == Filters() else None
    if listed is not None:
        found, canonical = page(store, listed, limit, attrgetter("personId"))
        return Listing(
            (summarize(summary, canonical, duration) for summary in found),
            fields,
            store.timelines.count,
        )
    rows = store.reads.case_events(filters, descending=descending, limit=limit)
    rows, canonical = page(store, rows, limit, itemgetter(CASE_COLUMNS.index("personId")))
    return Listing(
        summarize_all(rows, canonical, duration), fields, lambda: store.reads.count_cases(filters)
    )


def quarantined(store: Any, limit: int | None) -> Listing:
    """`tbhook quarantine`: deliveries kept but not readable, newest first."""
    rows = store.reads.quarantined(limit, descending=True)
    return Listing(
        (_quarantine_record(row) for row in rows),
        QUARANTINE_FIELDS,
        lambda: store.reads.count("quarantine"),
    )


def _quarantine_record(row: dict) -> dict:
    return {**row, "bodyStart": clean(row["bodyStart"].decode("utf-8", "replace"))}


def quarantine_item(store: Any, quarantine_id: int) -> tuple[dict, dict, bytes] | None:
    """`tbhook quarantine ID`: its record, the document with its body, the raw body."""
    row = store.reads.quarantine_row(quarantine_id)
    if row is None:
        return None
    record = {k: v for k, v in row.items() if k not in ("body", "bodySha256")}
    body = bytes(row["body"])
    return record, {**record, **body_document(body)}, body


def retried(results: Iterable[Any]) -> Iterator[dict[str, Any]]:
    """`tbhook quarantine retry`: what became of each retried delivery."""
    for r in results:
        outcome = (
            "missing"  # moved by another retry meanwhile
            if r.missing
            else "unreadable"
            if r.reason
            else "merged"
            if r.merged
            else "moved"
        )
        yield {
            "quarantineId": r.quarantine_id,
            "outcome": outcome,
            "eventId": r.event_id,
            "event": r.event,
            "reason": r.reason,
        }


RETRY_FIELDS = ("quarantineId", "outcome", "eventId", "event", "reason")


def health(
    store: Any,
    *,
    quick: bool = False,
    stale_seconds: int | None = None,
    max_db_size: int | None = None,
) -> dict[str, Any]:
    """`tbhook doctor`: the facts and the checks (``tbhook.model.health``'s rules). A damaged file
    is what a doctor is for: each failure is reported, none stops it. A writer's question
    (could a delivery be committed now) is added by those that may ask it, once this
    reader is closed: ``add_checks``."""
    from tbhook.errors import StoreUnavailable
    from tbhook.model import health as rules

    integrity = store.integrity(quick)
    applied, pending = store.schema()
    try:
        found = store.upkeep.health(rules.LATE_SECONDS)
        unknown = store.upkeep.unknown_values()
    except StoreUnavailable as exc:
        found, unknown = {**rules.UNREADABLE, "scanError": str(exc)}, []
    facts = store.server_facts()
    recorded = store.reads.meta().get("maxDbSize")
    backend = store.dialect.name
    durability = store.durability_warning()
    cap = max_db_size or (int(recorded) if recorded else None)
    retention = retention_facts(store)
    kept = (retention or {}).get("lastReceivedAt")
    if kept and (found["lastReceivedAt"] or "") < kept:  # pruned since: the pass kept it
        found = {**found, "lastReceivedAt": kept}
    checks = rules.checks(integrity, pending, found, stale_seconds, backend)
    if backend == "sqlite":
        checks += rules.space_checks(facts["usedBytes"], cap)
    checks += rules.unknown_checks(unknown) + rules.durability_checks(durability, facts)
    checks += rules.retention_checks(retention)
    return {
        "database": store.path,
        "backend": backend,
        **facts,
        "maxDbSizeBytes": cap,
        "integrity": integrity[:10],
        "schema": applied[-1] if applied else None,
        "pendingMigrations": pending,
        **found,
        "unknownValues": [{"field": f, "value": v, "events": n} for f, v, n in unknown],
        "lastReceivedAgeSeconds": rules.seconds_since(found["lastReceivedAt"]),
        "checks": checks,
        "ok": all(check["status"] != "fail" for check in checks),
        "outageBudgetHours": [round(hours, 1) for hours in rules.OUTAGE_HOURS],
        "retention": retention,
    }


def retention_facts(store: Any) -> dict[str, Any] | None:
    """What `serve --retain` recorded (window, passes), with the archive directory's size and
    free space as they are now; None when retention never ran on this database."""
    import shutil
    from pathlib import Path

    from tbhook.transfer.retention import archive_size, state_of

    state = state_of(store)
    if not state:
        return None
    directory = Path(state.get("archiveDir", ""))
    state["archiveFiles"], state["archiveBytes"] = archive_size(directory)
    try:
        state["archiveFreeBytes"] = shutil.disk_usage(directory).free
    except OSError:
        state["archiveFreeBytes"] = None
    return state


def add_checks(report: dict[str, Any], checks: list[dict[str, str]]) -> dict[str, Any]:
    """``report`` (from ``health``) with more checks, and ``ok`` counted again."""
    report["checks"] = [*report["checks"], *checks]
    report["ok"] = all(check["status"] != "fail" for check in report["checks"])
    return report


def report(
    store: Any,
    filters: Filters,
    by: str,
    zone: Any,
    clock: Any,
    now: int,
    sla: Any = None,
    tallied: bool = True,
) -> Any:
    """`tbhook report`: the periods (or sources, or agents) ``filters`` choose, counted from
    the kept tallies where they answer (``tbhook.model.tallies``), else from the kept case
    summaries (``tbhook.model.report``); the same report either way (``tallied`` False: the
    summaries always). With ``sla`` (a ``queue.Sla``), the shares within it. Raises
    ``TooManyPeriods``, told which events stretch the range and what would fit."""
    from tbhook.model.periods import TooManyPeriods
    from tbhook.store.timelines import TIMELINE_EVENTS

    try:
        return _counted(store, filters, by, zone, clock, now, sla, tallied)
    except TooManyPeriods as exc:  # which events stretch it, and a report that fits
        ends = [
            [
                (row["id"], row["timestamp"])
                for row in store.reads.events(
                    replace(filters, events=TIMELINE_EVENTS), descending=last, limit=5
                )
            ]
            for last in (False, True)
        ]
        exc.explain(*ends)
        raise


def _counted(
    store: Any, filters: Filters, by: str, zone: Any, clock: Any, now: int, sla: Any, tallied: bool
) -> Any:
    """The report, from the tallies where they answer, else from the case summaries."""
    from tbhook.model import tallies
    from tbhook.model.periods import period_bounds, report_range
    from tbhook.model.report import empty
    from tbhook.model.report import report as count
    from tbhook.store.timelines import Selection

    start, end = period_bounds(filters.since, filters.until, now, by, zone)
    selection = Selection(filters, start, end)
    span = store.timelines.span(selection) if start is None else None
    if (
        tallied
        and tallies.answers(by, filters, clock)
        and store.tallies.available()
        and not store.timelines.pending()
    ):
        periods = report_range(by, zone, start, end, now, span)
        if periods is None:
            return empty(by, sla)
        if tallies.aligned(periods):
            rows = store.tallies.rows(periods.start, periods.end, filters.source)
            opened = store.tallies.open_at(periods.start, filters.source)
            return tallies.report(periods, by, rows, opened, sla)
    return count(
        store.timelines.read(selection),
        by,
        zone,
        clock.between if clock else None,
        since=start,
        until=end,
        open_before=lambda _start: store.timelines.open_before(selection, by),
        now=now,
        span=span,
        sla=sla,
    )


@dataclass
class QueueAnswer:
    """`tbhook queue`: the rows (``fields``), the whole queue in one line (``standing``),
    and the moment it was taken at (Unix seconds)."""

    records: list[dict[str, Any]]
    fields: tuple[str, ...]
    standing: Any
    at: int


def queue(
    store: Any,
    waiting: Any,
    limit: int | None,
    *,
    now: int,
    clock: Any = None,
    sla: Any = None,
    kept: bool = True,
) -> QueueAnswer:
    """`tbhook queue`: the cases waiting for an agent at ``waiting.at`` (None: ``now``),
    oldest first, the first ``limit`` of them, with seconds waited on ``clock`` (None:
    wall-clock) and against ``sla`` (a ``queue.Sla``). From the waits every write keeps
    (with counts in SQL), else counted again (``kept`` False: always; the two agree)."""
    from tbhook.model import queue as model
    from tbhook.model.hours import duration

    at = waiting.at if waiting.at is not None else now
    seconds = duration(clock)
    if kept and store.queue.answers(waiting):
        waits = store.queue.oldest(waiting, limit)
        standing = model.Standing()
        if waits:
            oldest = waits[0][1]
            limits = model.thresholds(sla or model.Sla(), seconds, at, oldest)
            count, breached, risky = store.queue.standing(waiting, limits)
            standing = model.Standing(
                count, breached, risky - breached, model.waited(seconds, oldest, at)
            )
    else:
        everyone = model.ordered(store.queue.recounted(waiting))
        standing = model.Standing.of(
            [model.record(wait, lambda person: person, seconds, at, sla) for wait in everyone]
        )
        waits = everyone[:limit] if limit else everyone
    waits, canonical = page(store, waits, limit, itemgetter(6))
    return QueueAnswer(
        [model.record(wait, canonical, seconds, at, sla) for wait in waits],
        model.FIELDS + (model.SLA_FIELDS if sla is not None else ()),
        standing,
        at,
    )

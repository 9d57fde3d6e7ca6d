"""The questions the read commands and the console's pages answer, each as records or a
document and the fields a machine format writes. `tbhook events -f json` and the console's
`/events.json` are the same function's answer, written by the same writer
(``tbhook.output.formats``): the two can never say different things."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field, fields, replace
from datetime import timezone
from operator import attrgetter, itemgetter
from typing import TYPE_CHECKING, Any, Protocol

from tbhook.model.cases import BUSINESS_METRICS as BUSINESS
from tbhook.model.cases import CASE_COLUMNS, METRICS, Summary, summaries, summarize, summarize_all
from tbhook.model.events import EVENT_FIELDS, SCHEMAS
from tbhook.model.filters import Filters
from tbhook.model.persons import person_of
from tbhook.model.query import Asked, QueryError
from tbhook.model.text import clean
from tbhook.model.times import iso_time
from tbhook.output.describe import FORWARD_FIELDS, body_document, event_record

if TYPE_CHECKING:
    from tbhook.store.persons import Persons
    from tbhook.store.queue import Queue
    from tbhook.store.reads import Reads
    from tbhook.store.sql import Dialect
    from tbhook.store.tallies import Tallies
    from tbhook.store.timelines import Timelines
    from tbhook.store.upkeep import Upkeep


class Readable(Protocol):
    """What the questions ask of a store: its read jobs and the facts doctor reports
    (``tbhook.store.Store`` is one, SQLite's or PostgreSQL's)."""

    path: str
    dialect: Dialect
    reads: Reads
    persons: Persons
    timelines: Timelines
    upkeep: Upkeep
    tallies: Tallies
    queue: Queue

    def integrity(self, quick: bool = False) -> list[str]: ...

    def schema(self) -> tuple[list[str], list[str]]: ...

    def server_facts(self) -> dict[str, Any]: ...

    def durability_warning(self) -> str | None: ...


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


def page(
    store: Readable, rows: Any, limit: int | None, person: Callable[[Any], Any]
) -> tuple[Any, Any]:
    """The rows, and canonical person IDs for them: for a page, from the merges of its own
    persons (a few queries); for everything, from all merges at once."""
    if not limit or not 0 < limit <= PAGE:
        return rows, store.persons.resolver().canonical
    rows = list(rows)
    return rows, store.persons.for_persons(person(row) for row in rows)


def events(store: Readable, asked: Asked) -> Listing:
    """`tbhook events`: the matching events, by ``asked.sort`` (time or arrival) in its
    order, at most ``asked.limit`` (0: all); ``asked.before``: only ids below it, the next
    page."""
    filters, limit, before = asked.filters, asked.limit, asked.before
    rows = store.reads.events(
        filters,
        order_by=asked.sort,
        descending=asked.descending,
        limit=limit,
        upto_id=before - 1 if before is not None else None,
        with_forwards=True,
    )
    rows, canonical = page(store, rows, limit, person_of)
    return Listing(
        (event_record(row, canonical) for row in rows),
        EVENT_LIST_FIELDS,
        lambda: store.reads.count_matching(filters),
    )


def why_empty(
    store: Readable, filters: Filters, what: str = "events", before: int | None = None
) -> str | None:
    """Why a question about ``what`` has no answer, in words: the database is empty, the
    page asked for (``before``) is past the last one, the first filter that matches nothing
    on its own, or that each matches but not together; None when nothing explains it."""
    if not store.reads.count():
        return "the database is empty (nothing received yet)"
    if before is not None:  # the next page (of cases: past this caseId in the order listed)
        matching = " matching these filters" if filters != Filters() else ""
        if what == "cases":
            return f"no case{matching} is past caseId {before} in this order"
        return f"none{matching} has an id below {before}"
    if filters == Filters():
        return "no message or close names a caseId" if what == "cases" else None
    for found in fields(Filters):
        value = getattr(filters, found.name)
        if value is None or value == ():
            continue
        param = found.metadata["param"]
        for alone in value if param.many else (value,):
            one: dict[str, Any] = {found.name: (alone,) if param.many else alone}
            if not store.reads.any_matching(Filters(**one)):
                why = param.nothing(alone)
                if found.name == "events":
                    why += f"{_did_you_mean(alone, SCHEMAS)}; known: {', '.join(SCHEMAS)}"
                return why
    return "each filter matches events, but no event matches them all"


def _did_you_mean(name: str, known: Any) -> str:
    close = [k for k in known if k.lower() == name.lower()]
    return f' (did you mean "{close[0]}"? names are case-sensitive)' if close else ""


def event(store: Readable, event_id: int) -> tuple[dict, dict, bytes] | None:
    """`tbhook event ID`: its record with the delivery and forward facts, the document a
    machine format writes (the body in it), and the raw body; None when there is none."""
    row = store.reads.event_row(event_id)
    if row is None:
        return None
    canonical = store.persons.lookup()
    record = {**event_record(row, canonical), **{name: row.get(name) for name in DETAIL_FIELDS}}
    body = bytes(row["body"])
    return record, {**record, **body_document(body)}, body


def person(store: Readable, person_id: int) -> dict[str, Any]:
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
    store: Readable, case_id: int, duration: Callable[[int, int], int] | None = None
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


def cases(store: Readable, asked: Asked) -> Listing:
    """`tbhook cases`: one record per case with a matching event, in caseId order (past
    ``asked.past``: the next page), durations in ``asked.clock``'s business hours when it
    has one. Every case comes from the summaries every write keeps (the same rows a recount
    from the events gives, tests/test_timelines.py); with filters, from the matching events."""
    filters, limit, descending, past = asked.filters, asked.limit, asked.descending, asked.past
    duration = asked.clock.between if asked.clock else None
    fields = METRICS + (BUSINESS if duration else ())
    listed = store.timelines.listing(descending, limit, past) if filters == Filters() else None
    if listed is not None:
        found, canonical = page(store, listed, limit, attrgetter("personId"))
        return Listing(
            (summarize(summary, canonical, duration) for summary in found),
            fields,
            store.timelines.count,
        )
    rows = store.reads.case_events(filters, descending=descending, limit=limit, past=past)
    rows, canonical = page(store, rows, limit, itemgetter(CASE_COLUMNS.index("personId")))
    return Listing(
        summarize_all(rows, canonical, duration), fields, lambda: store.reads.count_cases(filters)
    )


def quarantined(store: Readable, limit: int | None) -> Listing:
    """`tbhook quarantine`: deliveries kept but not readable, newest first."""
    rows = store.reads.quarantined(limit, descending=True)
    return Listing(
        (_quarantine_record(row) for row in rows),
        QUARANTINE_FIELDS,
        lambda: store.reads.count("quarantine"),
    )


def _quarantine_record(row: dict) -> dict:
    return {**row, "bodyStart": clean(row["bodyStart"].decode("utf-8", "replace"))}


def quarantine_item(store: Readable, quarantine_id: int) -> tuple[dict, dict, bytes] | None:
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
    store: Readable,
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


def report(store: Readable, asked: Asked, now: int, tallied: bool = True) -> Any:
    """`tbhook report`: the periods (or sources, or agents) ``asked`` chooses, counted from
    the kept tallies where they answer (``tbhook.model.tallies``), else from the kept case
    summaries (``tbhook.model.report``); the same report either way (``tallied`` False: the
    summaries always). With ``asked.sla``, the shares within it. Too many periods is a
    QueryError that names the events stretching the range and a report that would fit."""
    from tbhook.model.periods import TooManyPeriods
    from tbhook.store.timelines import TIMELINE_EVENTS

    try:
        return _report(store, asked, now, tallied)
    except TooManyPeriods as exc:  # which events stretch it, and a report that fits
        stretching = replace(asked.filters, events=TIMELINE_EVENTS)
        ends = [
            [
                (row["id"], row["timestamp"])
                for row in store.reads.events(stretching, descending=last, limit=5)
            ]
            for last in (False, True)
        ]
        exc.explain(*ends)
        sentence = f"{exc}" if exc.fix else f"{exc}: choose fewer with since and until"
        raise QueryError(("by",), sentence, exc.fix) from None


def _report(store: Readable, asked: Asked, now: int, tallied: bool) -> Any:
    from tbhook.model import tallies
    from tbhook.model.periods import default_range, period_bounds, report_range
    from tbhook.model.report import empty
    from tbhook.model.report import report as count
    from tbhook.store.timelines import Selection

    filters, by, clock, sla = asked.filters, asked.by, asked.clock, asked.sla
    if filters.since is None and filters.until is None and by == "day":
        whole = store.timelines.span(Selection(filters))
        if whole is None:
            return empty(by, sla)
        chosen = default_range(whole, now)
        if chosen is not None:
            filters = replace(filters, since=chosen[0], until=chosen[1])
    zone = asked.zone or timezone.utc
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
    and the moment it was taken at (Unix seconds); what the rows were made from (the waits,
    their persons, the clock and targets), so ``later`` can move them on."""

    records: list[dict[str, Any]]
    fields: tuple[str, ...]
    standing: Any
    at: int
    waits: list[Any] = field(default_factory=list, repr=False)
    canonical: Callable[[Any], Any] = field(default=lambda person: person, repr=False)
    seconds: Callable[[int, int], int] = field(default=lambda start, end: end - start, repr=False)
    sla: Any = None

    def later(self, now: int) -> QueueAnswer:
        """The same waits at ``now`` (the store not asked): each row's seconds, and whether it
        has breached or is at risk, moved on; the counts of the whole queue as they were
        asked, unless every wait is a row (then counted again)."""
        from tbhook.model import queue as model

        records = [model.record(w, self.canonical, self.seconds, now, self.sla) for w in self.waits]
        standing = self.standing
        if len(records) == standing.waiting:
            standing = model.Standing.of(records)
        elif self.waits:
            standing = replace(standing, oldest=model.waited(self.seconds, self.waits[0][1], now))
        return replace(self, records=records, standing=standing, at=now)


def queue(
    store: Readable,
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
    waits: list[Any]
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
    # The waits are cut already: a short list (a few persons) whatever the limit.
    waits, canonical = page(store, waits, len(waits) or 1, itemgetter(6))
    return QueueAnswer(
        [model.record(wait, canonical, seconds, at, sla) for wait in waits],
        model.FIELDS + (model.SLA_FIELDS if sla is not None else ()),
        standing,
        at,
        waits,
        canonical,
        seconds,
        sla,
    )

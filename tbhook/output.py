"""Render events for people: one readable line per event, and safe text."""

from __future__ import annotations

import csv
import json
from collections.abc import Callable, Iterable, Mapping, Sequence
from enum import Enum
from pathlib import Path
from typing import IO, Any

from tbhook.errors import TbhookError
from tbhook.events import PAYLOAD_COLUMNS, Event, Unreadable, label
from tbhook.filters import iso_time
from tbhook.text import CSV_LINE_END, cell, clean, csv_value

EVENT_FIELDS = (
    "id",
    "receivedAt",
    "event",
    "timestamp",
    "time",
    *PAYLOAD_COLUMNS,
    "canonicalPersonId",
    "deliveries",
)
FORWARD_FIELDS = ("forwardState", "forwardAttempts", "forwardStatus")
EVENT_STYLES = {"newResult": "cyan", "caseClosed": "magenta", "profileMerged": "yellow"}


class Format(str, Enum):
    table = "table"
    json = "json"
    ndjson = "ndjson"
    csv = "csv"


def type_label(type_id: Any) -> str:
    return label("typeId", type_id) or ""


def sender_label(own: Any) -> str:
    return label("own", own) or ""


def describe(row: Mapping[str, Any]) -> str:
    """A one-line summary of an event row: its name, the main ids, who sent it."""
    event = row.get("event")
    if event == "newResult":
        text = (
            f"newResult     case {row['caseId']} person {row['personId']} "
            f"{sender_label(row['own'])} {type_label(row['typeId'])} "
            f"(result {row['resultId']}, source {row['sourceId']})"
        )
    elif event == "caseClosed":
        reason = row["reasonId"] if row["reasonId"] is not None else "none"
        text = (
            f"caseClosed    case {row['caseId']} person {row['personId']} "
            f"closed by agent {row['agentId']} (reason {reason})"
        )
    elif event == "profileMerged":
        old, new = row["oldPersonId"], row["newPersonId"]
        text = f"profileMerged person {old} -> {new}" + (" (no change)" if old == new else "")
    else:
        ids = " ".join(
            f"{key} {row[key]}" for key in ("caseId", "personId") if row.get(key) is not None
        )
        text = f"{clean(event)} (undocumented event, kept) {ids}".rstrip()
    path = row.get("path")
    if path and path != "/":
        text += f" on {clean(path)}"
    return text


def describe_parsed(parsed: Event | Unreadable, path: str = "/") -> str:
    """``describe`` for a body as parsed, before it has a row."""
    if isinstance(parsed, Event):
        return describe({"event": parsed.event, "path": path, **parsed.values})
    return f"unreadable: {clean(parsed.reason)}" + (f" on {clean(path)}" if path != "/" else "")


def event_style(row: Mapping[str, Any]) -> str:
    if row.get("event") == "newResult" and row.get("own") == 1:
        return "green"
    return EVENT_STYLES.get(str(row.get("event")), "white")


def event_record(row: Mapping[str, Any], canonical: Callable[[Any], Any]) -> dict[str, Any]:
    """An event row as the read commands show it: Tracebuzz's names plus time and canonical ID."""
    person = row["personId"] if row["personId"] is not None else row["newPersonId"]
    record = {key: row.get(key) for key in EVENT_FIELDS}
    record["time"] = iso_time(row["timestamp"])
    record["canonicalPersonId"] = canonical(person)
    for key in FORWARD_FIELDS:
        if key in row:
            record[key] = row[key]
    return record


def write_records(
    records: Iterable[Mapping[str, Any]], fmt: Format, fields: Sequence[str], stream: IO[str]
) -> int:
    """Stream records as json, ndjson or csv (constant memory); return how many were written."""
    count = 0
    if fmt is Format.csv:
        writer = csv.writer(stream, lineterminator=CSV_LINE_END)
        writer.writerow(fields)
        for record in records:
            writer.writerow([csv_value(record.get(field)) for field in fields])
            count += 1
    elif fmt is Format.ndjson:
        for record in records:
            stream.write(json.dumps({field: record.get(field) for field in fields}) + "\n")
            count += 1
    else:
        stream.write("[")
        for record in records:
            item = json.dumps({field: record.get(field) for field in fields})
            stream.write(("\n" if count == 0 else ",\n") + item)
            count += 1
        stream.write("\n]\n" if count else "]\n")
    return count


def write_file(
    output: Path, total: int, write: Callable[[IO[str], Callable[[int], None]], int]
) -> int:
    """Run ``write(stream, advance)`` into a temp file beside ``output`` with a progress bar on
    stderr, fsync, then rename into place: readers never see half a file, and whatever was at
    ``output`` stays until the new file is complete."""
    from rich.console import Console
    from rich.progress import Progress

    from tbhook.files import create_private, replacing

    with replacing(output) as temp:
        try:
            # Opened before the progress bar starts, so a bad path is one clean error line.
            stream = create_private(temp)
        except OSError as exc:
            raise TbhookError(f"cannot write {output}: {exc.strerror or exc}") from exc
        shown = Progress(console=Console(stderr=True), transient=True, disable=not _stderr_tty())
        with stream, shown as progress:
            task = progress.add_task(f"exporting to {output}", total=total)
            written = write(stream, lambda n: progress.advance(task, n))
    return written


def _stderr_tty() -> bool:
    import sys

    return sys.stderr.isatty()


def table(
    records: Iterable[Mapping[str, Any]],
    fields: Sequence[str],
    title: str | None = None,
):
    """A rich Table of ``fields`` for a bounded number of records."""
    from rich.table import Table

    result = Table(title=title, header_style="bold")
    for field in fields:
        wrap = field in _PROSE  # numbers and times stay on one line, prose wraps
        result.add_column(field, overflow="fold", no_wrap=not wrap)
    for record in records:
        result.add_row(*(cell(record.get(field)) for field in fields))
    return result


_PROSE = {"reason", "bodyStart", "key"}


def cases_table(summaries: Iterable[Mapping[str, Any]]):
    """Case metrics for people: the json and csv formats carry every metric in full."""
    from rich.table import Table

    result = Table(header_style="bold")
    for column in ("case", "person", "messages", "first message", "reply", "to close", "state"):
        result.add_column(column, no_wrap=True, justify="right" if column != "state" else "left")
    for case in summaries:
        person = case["personId"]
        if case["canonicalPersonId"] not in (None, person):
            person = f"{person} -> {case['canonicalPersonId']}"
        state = "closed" if case["closed"] else "open"
        result.add_row(
            str(case["caseId"]),
            cell(person),
            f"{case['messages']} ({case['customerMessages']} customer, "
            f"{case['agentMessages']} agent)",
            cell((case["firstMessageAt"] or "")[:16].replace("T", " ")),
            duration(case["firstResponseSeconds"]),
            duration(case["secondsToClose"]),
            state + (", reopened" if case["reopened"] else ""),
        )
    return result


def duration(seconds: int | None) -> str:
    """Seconds for people: 90s, 10m, 3h05m, 2d04h."""
    if seconds is None:
        return ""
    if seconds < 0:
        return "-" + duration(-seconds)
    if seconds < 120:
        return f"{seconds}s"
    if seconds < 7200:
        return f"{seconds // 60}m"
    if seconds < 172800:
        return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"
    return f"{seconds // 86400}d{seconds % 86400 // 3600:02d}h"


def events_table(records: Iterable[Mapping[str, Any]], title: str | None = None):
    """Events for people: who said what, when, on which case."""
    from rich.table import Table

    result = Table(title=title, header_style="bold")
    for column in ("id", "time", "event", "case", "person", "who", "what"):
        result.add_column(column, overflow="fold", no_wrap=column != "what")
    for row in records:
        result.add_row(
            str(row["id"]),
            cell(row["time"]),
            f"[{event_style(row)}]{cell(row['event'])}[/]",
            cell(row["caseId"]),
            cell(_person(row)),
            cell(_who(row)),
            cell(_what(row) + _forward(row)),
        )
    return result


def _person(row: Mapping[str, Any]) -> str:
    person = row["personId"] if row["personId"] is not None else row["newPersonId"]
    if person is None:
        return ""
    canonical = row.get("canonicalPersonId")
    return f"{person} -> {canonical}" if canonical not in (None, person) else str(person)


def _who(row: Mapping[str, Any]) -> str:
    if row["event"] == "newResult":
        return sender_label(row["own"])
    if row["event"] == "caseClosed":
        return f"agent {row['agentId']}"
    return ""


def _forward(row: Mapping[str, Any]) -> str:
    state = row.get("forwardState")
    if state is None:
        return ""
    status = f" {row['forwardStatus']}" if row.get("forwardStatus") else ""
    return f", forward {state}{status} after {row['forwardAttempts']} attempts"


def _what(row: Mapping[str, Any]) -> str:
    if row["event"] == "newResult":
        return type_label(row["typeId"])
    if row["event"] == "caseClosed":
        return "closed" + (f", reason {row['reasonId']}" if row["reasonId"] is not None else "")
    if row["event"] == "profileMerged":
        return f"merged {row['oldPersonId']} into {row['newPersonId']}"
    return ""

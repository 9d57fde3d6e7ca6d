"""Render events for people: one readable line per event, and safe text."""

from __future__ import annotations

import csv
import json
import os
from collections.abc import Callable, Iterable, Mapping, Sequence
from enum import Enum
from pathlib import Path
from typing import IO, Any

from tbhook.errors import TbhookError
from tbhook.events import PAYLOAD_COLUMNS, SENDER_LABELS, TYPE_LABELS, Event, Unreadable
from tbhook.filters import iso_time

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


_CONTROL = {i: f"\\x{i:02x}" for i in (*range(0x20), 0x7F)}
_CONTROL.update({ord("\n"): "\\n", ord("\r"): "\\r", ord("\t"): "\\t"})


def clean(text: object) -> str:
    """Text safe for one terminal or log line: control characters (CR, LF, ESC...) escaped."""
    return str(text).translate(_CONTROL)


def type_label(type_id: Any) -> str:
    return TYPE_LABELS.get(type_id, f"type {type_id}")


def sender_label(own: Any) -> str:
    return SENDER_LABELS.get(own, f"own={own}")


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
        writer = csv.writer(stream, lineterminator="\n")
        writer.writerow(fields)
        for record in records:
            writer.writerow([_csv_cell(record.get(field)) for field in fields])
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
    stderr, fsync, then rename into place: readers never see half a file."""
    from rich.console import Console
    from rich.progress import Progress

    temp = output.with_name(f".{output.name}.{os.getpid()}.tmp")
    try:
        # Opened before the progress bar starts, so a bad path is one clean error line.
        stream = open(temp, "w", newline="", encoding="utf-8")  # noqa: SIM115
    except OSError as exc:
        raise TbhookError(f"cannot write {output}: {exc.strerror or exc}") from exc
    try:
        with stream, Progress(console=Console(stderr=True), transient=True) as progress:
            task = progress.add_task(f"exporting to {output}", total=total)
            written = write(stream, lambda n: progress.advance(task, n))
            stream.flush()
            os.fsync(stream.fileno())
        os.replace(temp, output)
    except OSError as exc:
        raise TbhookError(f"cannot write {output}: {exc.strerror or exc}") from exc
    finally:
        temp.unlink(missing_ok=True)
    return written


_FORMULA = ("=", "+", "-", "@", "\t", "\r")


def _csv_cell(value: Any) -> Any:
    """Keep spreadsheets from running a text cell as a formula; numbers stay numbers."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str) and value[:1] in _FORMULA:
        return "'" + value
    return value


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
        result.add_row(*(_cell(record.get(field)) for field in fields))
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
            _cell(person),
            f"{case['messages']} ({case['customerMessages']} customer, "
            f"{case['agentMessages']} agent)",
            _cell((case["firstMessageAt"] or "")[:16].replace("T", " ")),
            duration(case["firstResponseSeconds"]),
            duration(case["secondsToClose"]),
            state + (", reopened" if case["reopened"] else ""),
        )
    return result


def duration(seconds: int | None) -> str:
    """Seconds for people: 90s, 10m, 3h05m, 2d04h."""
    if seconds is None:
        return ""
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
            _cell(row["time"]),
            f"[{event_style(row)}]{_cell(row['event'])}[/]",
            _cell(row["caseId"]),
            _person(row),
            _who(row),
            _what(row) + _forward(row),
        )
    return result


def _cell(value: Any) -> str:
    from rich.markup import escape

    if isinstance(value, bool):
        return "yes" if value else "no"
    return "" if value is None else escape(clean(value))


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

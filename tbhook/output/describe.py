"""What the read commands show of an event: its record (Tracebuzz's names, the time, the
canonical person), its style, durations and times for people, and its body made readable."""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from datetime import datetime, tzinfo
from typing import Any

from tbhook.model.events import EVENT_FIELDS
from tbhook.model.persons import person_of
from tbhook.model.text import clean
from tbhook.model.times import iso_time

FORWARD_FIELDS = ("forwardState", "forwardAttempts", "forwardStatus")
EVENT_STYLES = {"newResult": "cyan", "caseClosed": "magenta", "profileMerged": "yellow"}


def event_style(row: Mapping[str, Any]) -> str:
    if row.get("event") == "newResult" and row.get("own") == 1:
        return "green"
    return EVENT_STYLES.get(str(row.get("event")), "white")


def event_record(row: Mapping[str, Any], canonical: Callable[[Any], Any]) -> dict[str, Any]:
    """An event row as the read commands show it: Tracebuzz's names plus time and canonical ID."""
    person = person_of(row)
    record = {key: row.get(key) for key in EVENT_FIELDS}
    record["time"] = iso_time(row["timestamp"])
    record["canonicalPersonId"] = canonical(person)
    for key in FORWARD_FIELDS:
        if key in row:
            record[key] = row[key]
    return record


def shown_time(value: str | None, zone: tzinfo | None = None) -> str | None:
    """A stored UTC time (``2024-05-01T09:30:26Z``, a receivedAt with milliseconds) as a table
    shows it: unchanged, or in ``zone`` with its abbreviation (``2024-05-01 11:30:26 CEST``,
    so a daylight-saving hour is never ambiguous)."""
    if value is None or zone is None:
        return value
    try:
        moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return value
    return moment.astimezone(zone).strftime("%Y-%m-%d %H:%M:%S %Z")


def shown_metric(key: str, value: Any, zone: tzinfo | None = None) -> Any:
    """A case's metric as `case ID` and the case page show it: a time as every time, a
    duration as every duration with its seconds (``33h11m (119460 s)``), yes or no."""
    from tbhook.model.times import duration

    if value is None:
        return None
    if key.endswith("Seconds") or key.startswith("seconds"):
        return f"{duration(value)} ({value} s)"
    if key.endswith("At"):
        return shown_time(value, zone)
    if isinstance(value, bool):
        return "yes" if value else "no"
    return value


def parsed_body(body: bytes) -> tuple[bool, Any]:
    """A raw body as JSON (True, the value) when it is exactly that (strict UTF-8, no repeated
    keys, no number a float cannot hold), else (False, its text with undecodable bytes shown
    as ``\\xNN``): what `event ID` and `quarantine ID` show."""

    def pairs(items: list[tuple[str, Any]]) -> dict[str, Any]:
        if len({key for key, _ in items}) < len(items):
            raise ValueError("a repeated key")  # a dict would hide one of them
        return dict(items)

    def number(text: str) -> float:
        value = float(text)
        if value in (float("inf"), float("-inf")):
            raise ValueError("a number out of range")
        return value

    try:
        return True, json.loads(
            body.decode("utf-8"),
            object_pairs_hook=pairs,
            parse_float=number,
            parse_constant=lambda name: (_ for _ in ()).throw(ValueError(name)),
        )
    except (UnicodeDecodeError, ValueError, RecursionError):
        return False, body.decode("utf-8", "backslashreplace")


def body_lines(body: bytes) -> tuple[str, list[str]]:
    """The body for a terminal: ``("JSON", pretty-printed lines)`` or ``("text", lines)``,
    every line with its control characters escaped (a body is sender text)."""
    is_json, value = parsed_body(body)
    if is_json:
        text = json.dumps(value, indent=2, ensure_ascii=False)
        return "JSON", [clean(line) for line in text.split("\n")]
    return "not JSON", [clean(line) for line in value.split("\n")]


def body_document(body: bytes) -> dict[str, Any]:
    """The body in a JSON answer: ``body`` as the JSON value it is, or null with ``bodyText``."""
    is_json, value = parsed_body(body)
    document: dict[str, Any] = {"bodySize": len(body)}
    import hashlib  # see store.rows.row_params

    document["bodySha256"] = hashlib.sha256(body).hexdigest()
    if is_json:
        document["body"] = value
    else:
        document["body"], document["bodyText"] = None, value
    return document


def footer(shown: int, total: int | None) -> str | None:
    """``50 of 200,000 shown; -n 0 for all`` when a limit cut the answer."""
    if total is None or total <= shown:
        return None
    return f"{shown:,} of {total:,} shown; -n 0 for all"

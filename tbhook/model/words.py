"""Events in words: the one-line summary of an event that the receiver's log and `tail`
print, and the labels of Tracebuzz's enumerated values. Pure, and light enough for the
receiver to import."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from tbhook.model.events import Event, Unreadable, label
from tbhook.model.text import clean


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


def short(row: Mapping[str, Any]) -> str:
    """What an event says, without the ids a listing shows in columns of their own: the
    console's "what"."""
    event = row.get("event")
    if event == "newResult":
        text = f"{sender_label(row.get('own'))} {type_label(row.get('typeId'))}"
        if row.get("sourceId") is not None:
            text += f" · source {row['sourceId']}"
    elif event == "caseClosed":
        text = f"closed by agent {row.get('agentId')}"
        if row.get("reasonId") is not None:
            text += f" · reason {row['reasonId']}"
    elif event == "profileMerged":
        old, new = row.get("oldPersonId"), row.get("newPersonId")
        text = f"person {old} → {new}" + (" (no change)" if old == new else "")
    else:
        text = f"{clean(event)} (undocumented event, kept)"
    return text.strip()


def human_size(size: int) -> str:
    """Bytes as people write them: 64 KiB, 500 MiB, 1.5 GiB."""
    for unit, factor in (("GiB", 1024**3), ("MiB", 1024**2), ("KiB", 1024)):
        if size >= factor:
            value = size / factor
            return f"{value:.0f} {unit}" if value == int(value) else f"{value:.1f} {unit}"
    return f"{size} bytes"


def counted(number: int, noun: str, nouns: str | None = None) -> str:
    """A count and its noun, singular for one: 1 delivery, 2 deliveries, 1,537 events."""
    return f"{number:,} {noun if number == 1 else nouns or noun + 's'}"

"""Render events for people: one readable line per event, and safe text."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from tbhook.events import SENDER_LABELS, TYPE_LABELS

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

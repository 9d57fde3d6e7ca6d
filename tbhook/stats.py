"""Counts for `tbhook stats`: grouped in the store, folded into sections here."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Iterator
from typing import Any

from tbhook.model.events import ENUMERATED
from tbhook.model.filters import Filters
from tbhook.model.words import sender_label, type_label
from tbhook.store import Store, stats_groups
from tbhook.store.sql import IdRange
from tbhook.transfer.split import in_halves, reading

SECTIONS = ("byEvent", "bySender", "byType", "bySource", "perDay")


def groups(store: Store, filters: Filters) -> Iterator[dict[str, Any]]:
    """Grouped counts of the matching events: kept counts when the store has them, else the
    two halves of a big log on two cores."""
    if store.reads.stats_is_cheap(filters):
        return stats_groups(store.reads.stats_counter(filters))
    halves = in_halves(
        store, filters, lambda here, part, ids: here.reads.stats_counter(part, ids), _count_part
    )
    return stats_groups(sum(halves, Counter()))


def _count_part(db: str, filters: Filters, ids: IdRange) -> Counter:
    return reading(db, lambda store: store.reads.stats_counter(filters, ids))


def aggregate(groups: Iterable[dict[str, Any]]) -> dict[str, Any]:
    """Total and per-section counts. Sender, type and source count messages (newResult) only."""
    counters: dict[str, Counter] = {section: Counter() for section in SECTIONS}
    unknown: dict[str, Counter] = {key: Counter() for key in ENUMERATED}
    total = 0
    for group in groups:
        n = group["n"]
        total += n
        counters["byEvent"][group["event"]] += n
        if group["event"] == "newResult":
            counters["bySender"][sender_label(group["own"])] += n
            counters["byType"][type_label(group["typeId"])] += n
            counters["bySource"][str(group["sourceId"])] += n
            for key, known in ENUMERATED.items():
                if group[key] not in known:
                    unknown[key][str(group[key])] += n
        counters["perDay"][group["day"] or "unknown"] += n
    result: dict[str, Any] = {"events": total}
    for section, counter in counters.items():
        # Ties in a fixed order (by name), whatever order the engine returned the rows in.
        most = sorted(counter.items(), key=lambda item: (-item[1], str(item[0])))
        ordered = sorted(counter.items()) if section == "perDay" else most
        result[section] = dict(ordered)
    # Values the spec does not list (a new message type): kept as events, and shown here.
    result["unknownValues"] = {
        key: dict(sorted(counter.items(), key=lambda item: (-item[1], item[0])))
        for key, counter in unknown.items()
    }
    return result


def unknown_note(counts: dict[str, Any]) -> str | None:
    """One line naming the values the spec does not list, or None."""
    parts = [
        f"{key} {value} ({n})"
        for key, values in counts["unknownValues"].items()
        for value, n in values.items()
    ]
    if not parts:
        return None
    return "values the Tracebuzz documentation does not list (kept as events): " + ", ".join(parts)


def rows(counts: dict[str, Any]) -> Iterable[dict[str, Any]]:
    """The counts as flat rows (section, key, count), for csv and ndjson."""
    yield {"section": "total", "key": "events", "count": counts["events"]}
    for section in SECTIONS:
        for key, count in counts[section].items():
            yield {"section": section, "key": key, "count": count}
    for field, values in counts["unknownValues"].items():
        for value, count in values.items():
            yield {"section": f"unknown {field}", "key": value, "count": count}

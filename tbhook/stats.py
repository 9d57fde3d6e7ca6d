"""Counts for `tbhook stats`: grouped in the store, folded into sections here."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Iterator
from typing import Any

from tbhook.filters import Filters
from tbhook.output import sender_label, type_label
from tbhook.split import in_halves, reading
from tbhook.store import EventStore

SECTIONS = ("byEvent", "bySender", "byType", "bySource", "perDay")


def groups(store: EventStore, filters: Filters) -> Iterator[dict[str, Any]]:
    """Grouped counts of the matching events, the two halves of a big log on two cores."""
    halves = in_halves(store, filters, EventStore.stats_counter, _count_part)
    return EventStore.stats_groups(sum(halves, Counter()))


def _count_part(db: str, filters: Filters) -> Counter:
    return reading(db, lambda store: store.stats_counter(filters))


def aggregate(groups: Iterable[dict[str, Any]]) -> dict[str, Any]:
    """Total and per-section counts. Sender, type and source count messages (newResult) only."""
    counters: dict[str, Counter] = {section: Counter() for section in SECTIONS}
    total = 0
    for group in groups:
        n = group["n"]
        total += n
        counters["byEvent"][group["event"]] += n
        if group["event"] == "newResult":
            counters["bySender"][sender_label(group["own"])] += n
            counters["byType"][type_label(group["typeId"])] += n
            counters["bySource"][str(group["sourceId"])] += n
        counters["perDay"][group["day"] or "unknown"] += n
    result: dict[str, Any] = {"events": total}
    for section, counter in counters.items():
        ordered = sorted(counter.items()) if section == "perDay" else counter.most_common()
        result[section] = dict(ordered)
    return result


def rows(counts: dict[str, Any]) -> Iterable[dict[str, Any]]:
    """The counts as flat rows (section, key, count), for csv and ndjson."""
    yield {"section": "total", "key": "events", "count": counts["events"]}
    for section in SECTIONS:
        for key, count in counts[section].items():
            yield {"section": section, "key": key, "count": count}


def bar(count: int, largest: int, width: int = 40) -> str:
    """A horizontal bar of block characters, scaled so ``largest`` fills ``width``."""
    if not largest:
        return ""
    eighths = round(count / largest * width * 8)
    full, part = divmod(eighths, 8)
    return "█" * full + ("" if not part else " ▏▎▍▌▋▊▉"[part])


def table(counts: dict[str, Any]):
    """One rich table of every section, with each count's share of its section."""
    from rich.table import Table

    result = Table(title=f"{counts['events']} events", header_style="bold")
    result.add_column("by")
    result.add_column("value")
    result.add_column("count", justify="right")
    result.add_column("share", justify="right")
    for section in SECTIONS[:-1]:
        total = sum(counts[section].values())
        for i, (key, count) in enumerate(counts[section].items()):
            label = section[2:].lower() if i == 0 else ""
            result.add_row(label, str(key), str(count), f"{count / total:.0%}")
        result.add_section()
    return result

"""The views of the commands whose answer is one document (`stats`, `doctor`): how each looks
in a terminal, drawn with rich (imported here at the top: only a table pays for it)."""

from __future__ import annotations

from typing import Any

from rich.console import Group
from rich.text import Text

from tbhook.model.text import clean
from tbhook.output.tables import PROSE, Column, fitted, text
from tbhook.stats import SECTIONS, unknown_note

# -- stats --------------------------------------------------------------------------------


def stats_view(counts: dict[str, Any]):
    """For people: one table of every section with each count's share of its section, any
    values the spec does not list, then events per day as a bar chart."""
    rows = []
    for section in SECTIONS[:-1]:
        shares = percentages(list(counts[section].values()))
        for i, ((key, count), share) in enumerate(
            zip(counts[section].items(), shares, strict=True)
        ):
            rows.append([section[2:].lower() if i == 0 else "", key, count, f"{share}%"])
    columns = (
        Column("by"),
        Column("value", "text"),
        Column("count", justify="right"),
        Column("share", justify="right"),
    )
    parts: list[Any] = [fitted(columns, rows, title=f"{counts['events']} events")]
    note = unknown_note(counts)
    if note:
        parts.append(Text(clean(note)))
    per_day = counts["perDay"]
    largest = max(per_day.values(), default=0)
    parts += [Text(f"{day}  {bar(n, largest)} {n}") for day, n in per_day.items()]
    return Group(*parts)


def bar(count: int, largest: int, width: int = 40) -> str:
    """A horizontal bar of block characters, scaled so ``largest`` fills ``width``."""
    if not largest:
        return ""
    eighths = round(count / largest * width * 8)
    full, part = divmod(eighths, 8)
    return "█" * full + ("" if not part else " ▏▎▍▌▋▊▉"[part])


def percentages(counts: list[int]) -> list[int]:
    """Whole percentages that add up to exactly 100 (largest remainder), so a section's shares
    never read 101% or 99% in all."""
    total = sum(counts)
    if not total:
        return [0] * len(counts)
    exact = [count * 100 / total for count in counts]
    shares = [int(x) for x in exact]
    by_remainder = sorted(range(len(counts)), key=lambda i: exact[i] - shares[i], reverse=True)
    for i in by_remainder[: 100 - sum(shares)]:
        shares[i] += 1
    return shares


# -- doctor -------------------------------------------------------------------------------


def doctor_view(report: dict[str, Any], rows: list[Any]):
    styles = {"ok": "green", "warn": "yellow", "fail": "bold red", "": ""}
    columns = (Column("check"), Column("status"), Column("detail", PROSE))
    cells = [
        [row["check"], text(row["status"], styles[row["status"]]), row["detail"]] for row in rows
    ]
    return fitted(columns, cells, title=f"tbhook doctor: {report['database']}")


# -- report -------------------------------------------------------------------------------

# Each number: its field, its header, and when it goes on a narrow terminal (0: never;
# the highest first).
REPORT_COLUMNS = tuple(
    (field, Column(header, justify="right", drop=drop))
    for field, header, drop in (
        ("newCases", "new", 0), ("closedCases", "closed", 0), ("openAtEnd", "open", 0),
        ("customerMessages", "customer", 3), ("agentMessages", "agent", 3),
        ("firstResponseMedian", "1st reply", 0), ("firstResponseP90", "p90", 4),
        ("replies", "replies", 2), ("replyMedian", "reply", 1), ("replyP90", "p90", 4),
        ("unanswered", "unanswered", 2),
        ("resolutionMedian", "resolved", 0), ("resolutionP90", "p90", 4),
        ("reopenRate", "reopened", 1), ("oneTouchRate", "1-touch", 1),
        ("firstWithinSla", "1st in SLA", 0), ("repliesWithinSla", "in SLA", 0),
    )
)  # fmt: skip
DURATIONS = {"firstResponseMedian", "firstResponseP90", "replyMedian", "replyP90"} | {
    "resolutionMedian",
    "resolutionP90",
}
RATES = {"reopenRate", "oneTouchRate", "firstWithinSla", "repliesWithinSla"}


def report_view(
    key: str, rows: list[dict[str, Any]], totals: dict[str, Any] | None, title: str
) -> Any:
    """For people: one row per period (source, agent) and the whole range's totals under a
    rule (None: none); durations as 3h05m, rates as percentages; a column with no value
    anywhere (the message columns by agent) left out."""
    from tbhook.model.times import duration

    def cell(name: str, value: Any) -> Any:
        if value is None:
            return ""
        if name in DURATIONS:
            return duration(value)
        if name in RATES:
            return f"{value * 100:.1f}%"
        return value

    used = [
        (name, column)
        for name, column in REPORT_COLUMNS
        if any(row.get(name) is not None for row in (*rows, *([totals] if totals else [])))
    ]
    columns = (Column(key), *(column for _, column in used))
    cells = [[_group(row[key]), *(cell(name, row[name]) for name, _ in used)] for row in rows]
    footer = ["total", *(cell(name, totals[name]) for name, _ in used)] if totals else None
    return fitted(columns, cells, title=title, footer=footer)


def _group(value: Any) -> Any:
    return "(none)" if value is None else value

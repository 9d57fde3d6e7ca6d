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

REPORT_COLUMNS = (
    ("newCases", Column("new", justify="right")),
    ("closedCases", Column("closed", justify="right")),
    ("openAtEnd", Column("open", justify="right")),
    ("customerMessages", Column("customer", justify="right", drop=3)),
    ("agentMessages", Column("agent", justify="right", drop=3)),
    ("firstResponseMedian", Column("1st reply", justify="right")),
    ("firstResponseP90", Column("p90", justify="right", drop=4)),
    ("replies", Column("replies", justify="right", drop=2)),
    ("replyMedian", Column("reply", justify="right", drop=1)),
    ("replyP90", Column("p90", justify="right", drop=4)),
    ("unanswered", Column("unanswered", justify="right", drop=2)),
    ("resolutionMedian", Column("resolved", justify="right")),
    ("resolutionP90", Column("p90", justify="right", drop=4)),
    ("reopenRate", Column("reopened", justify="right", drop=1)),
    ("oneTouchRate", Column("1-touch", justify="right", drop=1)),
    ("firstWithinSla", Column("1st in SLA", justify="right")),
    ("repliesWithinSla", Column("in SLA", justify="right")),
)
DURATIONS = {"firstResponseMedian", "firstResponseP90", "replyMedian", "replyP90"} | {
    "resolutionMedian",
    "resolutionP90",
}
RATES = {"reopenRate", "oneTouchRate", "firstWithinSla", "repliesWithinSla"}


def report_view(key: str, rows: list[dict[str, Any]], totals: dict[str, Any], title: str):
    """For people: one row per period (source, agent) and the whole range's totals under a
    rule; durations as 3h05m, rates as percentages; a column with no value anywhere (the
    message columns by agent) left out."""
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
        if any(row.get(name) is not None for row in (*rows, totals))
    ]
    columns = (Column(key), *(column for _, column in used))
    cells = [[_group(row[key]), *(cell(name, row[name]) for name, _ in used)] for row in rows]
    footer = ["total", *(cell(name, totals[name]) for name, _ in used)]
    return fitted(columns, cells, title=title, footer=footer)


def _group(value: Any) -> Any:
    return "(none)" if value is None else value

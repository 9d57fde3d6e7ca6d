"""The views of the commands whose answer is one document (`stats`, `doctor`): how each looks
in a terminal, drawn with rich (imported here at the top: only a table pays for it)."""

from __future__ import annotations

from typing import Any

from rich.console import Group
from rich.text import Text

from tbhook.output.tables import PROSE, Column, fitted, text
from tbhook.stats import SECTIONS, unknown_note
from tbhook.text import clean

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

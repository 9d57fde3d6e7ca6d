"""Tables for people, sized to the terminal.

Rules for every table: ids, case and person numbers, counts and times are never cut or
wrapped; when the terminal is too narrow, optional columns go first (least useful first); free
text is truncated with an ellipsis, and prose (a reason, a doctor's advice) wraps. Every cell is
a ``rich.text.Text`` made from cleaned text, so nothing a sender wrote is read as markup or
reaches the terminal as a control sequence.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import tzinfo
from typing import IO, Any

from rich import box
from rich.cells import cell_len
from rich.console import Console, Group
from rich.table import Table
from rich.text import Text

from tbhook.model.events import PAYLOAD_COLUMNS
from tbhook.model.persons import person_of
from tbhook.model.text import clean
from tbhook.model.times import duration
from tbhook.model.words import describe, sender_label, type_label
from tbhook.output.describe import event_style, shown_metric, shown_time

KEY, TEXT, PROSE = "key", "text", "prose"
MIN_TEXT = 6  # the narrowest a truncated text column gets ("newRe…")
ROOMY = 12  # optional columns go before a text column gets narrower than this
GAP = 3  # between two columns: a space of padding either side of a blank rule


@dataclass(frozen=True)
class Column:
    name: str
    kind: str = KEY  # KEY: never cut; TEXT: ellipsis; PROSE: wraps
    drop: int = 0  # 0: always shown; when too narrow, the highest number goes first
    justify: str = "left"


def console(out: IO[str] | None = None):

    return Console(file=out, highlight=False, soft_wrap=False)


def text(value: Any, style: str | None = None):
    """A cell: the value as plain text, control characters escaped, never markup."""

    if value is None:
        return Text("")
    if isinstance(value, bool):
        value = "yes" if value else "no"
    return Text(clean(value), style=style or "")


def plan(
    columns: Sequence[Column], natural: Sequence[int], width: int
) -> tuple[list[int], dict[int, int]] | None:
    """Which columns to show and how wide each is, given each one's natural width: optional
    columns go (highest ``drop`` first) until the rest fit; None when even the columns that
    always show do not fit with their numbers whole (then each row is a block instead)."""
    shown = list(range(len(columns)))

    def needed(indexes: list[int], least: bool = False) -> int:
        roomy = {
            KEY: 10**9,
            TEXT: MIN_TEXT if least else ROOMY,
            PROSE: MIN_TEXT if least else 2 * ROOMY,
        }
        total = sum(min(natural[i], roomy[columns[i].kind]) for i in indexes)
        return total + GAP * (len(indexes) - 1)

    for i in sorted((i for i, c in enumerate(columns) if c.drop), key=lambda i: -columns[i].drop):
        if needed(shown) <= width:
            break
        shown.remove(i)
    if needed(shown, least=True) > width:
        return None
    return shown, _widths(columns, list(natural), shown, width)


def fitted(
    columns: Sequence[Column],
    rows: Iterable[Sequence[Any]],
    title: str | None = None,
    width: int | None = None,
    header: bool = True,
    footer: Sequence[Any] | None = None,
):
    """A rich Table of ``rows`` (cells: values or Text) that fits ``width`` (the terminal's),
    with ``footer`` (a totals row) under a rule; where its numbers cannot fit whole, one
    ``name: value`` block per row instead."""

    rows = [*rows, *([footer] if footer is not None else [])]
    cells = [[c if hasattr(c, "plain") else text(c) for c in row] for row in rows]
    width = width or console().width
    natural = [
        max([cell_len(column.name), *(cell_len(row[i].plain) for row in cells)])
        for i, column in enumerate(columns)
    ]
    laid = plan(columns, natural, width)
    if laid is None:
        return _blocks(columns, cells, title, width)
    shown, widths = laid
    table = Table(
        title=title,
        box=box.SIMPLE_HEAD if header else None,
        header_style="bold",
        pad_edge=False,
        show_edge=False,
        show_header=header,
        title_justify="left",
    )
    for i in shown:
        column = columns[i]
        table.add_column(
            column.name,
            justify=column.justify,  # type: ignore[arg-type]
            width=widths[i],
            no_wrap=column.kind != PROSE,
            overflow="fold" if column.kind == PROSE else "ellipsis",
        )
    for n, row in enumerate(cells):
        last = footer is not None and n == len(cells) - 1
        if last:
            table.add_section()
        table.add_row(*(row[i] for i in shown), style="bold" if last else None)
    hidden = [column.name for i, column in enumerate(columns) if i not in shown]
    if hidden:  # said, not silently gone
        table.caption = (
            f"not shown at this width: {', '.join(hidden)} (a wider terminal, or --format csv)"
        )
        table.caption_justify = "left"
        table.caption_style = "dim"
    return table


def _blocks(columns: Sequence[Column], cells: list[list[Any]], title: str | None, width: int):
    """Rows too wide for the terminal as ``name: value`` blocks: numbers whole, text wrapped."""

    parts: list[Any] = [text(title, "bold")] if title else []
    for row in cells:
        block = Table.grid(padding=(0, 1))
        block.add_column(justify="right", style="bold", no_wrap=True)
        block.add_column(overflow="fold")
        for column, cell in zip(columns, row, strict=True):
            if cell.plain:
                block.add_row(column.name + ":", cell)
        parts += [block, text("")]
    return Group(*parts)


def _widths(columns: Sequence[Column], natural: list[int], shown: list[int], width: int) -> dict:
    """Key columns at their natural width; then text columns share what is left, those
    always shown whole first (an event's name before the optional "what" is cut), then the
    narrowest wants first (at most ROOMY each when prose is waiting), then prose gets the
    rest; none below MIN_TEXT."""
    widths = {i: natural[i] for i in shown if columns[i].kind == KEY}
    left = width - sum(widths.values()) - GAP * (len(shown) - 1)
    prose = [i for i in shown if columns[i].kind == PROSE]
    for group in ([i for i in shown if columns[i].kind == TEXT], prose):
        for n, i in enumerate(sorted(group, key=lambda i: (columns[i].drop > 0, natural[i]))):
            after = len(group) - n - 1
            if columns[i].drop == 0 and group is not prose:  # the others keep MIN_TEXT
                share = max(MIN_TEXT, left - MIN_TEXT * after)
            else:
                share = max(MIN_TEXT, left // (after + 1))
            if prose and group is not prose:
                share = min(share, max(ROOMY, left // (len(group) + len(prose))))
            widths[i] = min(natural[i], share)
            left -= widths[i]
    return widths


# -- the tables of the read commands -------------------------------------------------------

EVENT_COLUMNS = (
    Column("id", justify="right"),
    Column("time"),
    Column("event", TEXT),
    Column("case", justify="right"),
    Column("person", justify="right"),
    Column("now", justify="right", drop=2),  # the person's current ID, after merges
    Column("what", TEXT, drop=1),  # who sent what, the close, the merge; the forward
)


def events_table(
    records: Sequence[Mapping[str, Any]], title: str | None = None, zone: tzinfo | None = None
):
    """Events for people: when, which case and person, who said what."""
    merged = any(r.get("canonicalPersonId") not in (None, person_of(r)) for r in records)
    columns = EVENT_COLUMNS if merged else [c for c in EVENT_COLUMNS if c.name != "now"]
    rows = [[_text(cell) for cell in event_cells(row, merged, zone)] for row in records]
    return fitted(columns, rows, title)


def event_cells(row: Mapping[str, Any], merged: bool, zone: tzinfo | None = None) -> list[Any]:
    """An event's cells in ``EVENT_COLUMNS`` (without "now" unless ``merged``): values, or
    (value, style); times in ``zone`` when given (UTC as stored otherwise)."""
    person = person_of(row)
    cells: list[Any] = [
        row["id"],
        shown_time(row["time"], zone),
        (row["event"], event_style(row)),
        row["caseId"],
        person,
    ]
    if merged:
        now = row.get("canonicalPersonId")
        cells.append(now if now != person else None)
    cells.append(_what(row) + _forward(row))
    return cells


def _text(cell: Any):
    return text(*cell) if isinstance(cell, tuple) else cell


CASE_COLUMNS = (
    Column("case", justify="right"),
    Column("person", justify="right"),
    Column("now", justify="right", drop=5),
    Column("messages", justify="right"),
    Column("customer", justify="right", drop=4),
    Column("agent", justify="right", drop=4),
    Column("first message", drop=3),
    Column("reply", justify="right", drop=2),
    Column("resolved in", justify="right", drop=1),
    Column("state", TEXT),
)


def cases_table(summaries: Sequence[Mapping[str, Any]], zone: tzinfo | None = None):
    """Case metrics for people: the json and csv formats carry every metric in full."""
    rows = [case_cells(case, merged=True, zone=zone) for case in summaries]
    merged = any(row[2] is not None for row in rows)
    keep = [i for i, c in enumerate(CASE_COLUMNS) if merged or c.name != "now"]
    return fitted([CASE_COLUMNS[i] for i in keep], [[row[i] for i in keep] for row in rows])


def case_cells(case: Mapping[str, Any], merged: bool, zone: tzinfo | None = None) -> list[Any]:
    """A case summary's cells in ``CASE_COLUMNS`` (without "now" unless ``merged``)."""
    now = case["canonicalPersonId"]
    reopens = case["reopens"]
    state = ("closed" if case["closed"] else "open") + (
        f", reopened {reopens}x" if reopens > 1 else ", reopened" if reopens else ""
    )
    cells = [
        case["caseId"],
        case["personId"],
        now if now != case["personId"] else None,
        case["messages"],
        case["customerMessages"],
        case["agentMessages"],
        (shown_time(case["firstMessageAt"], zone) or "")[:16].replace("T", " "),
        duration(case["firstResponseSeconds"]),
        duration(case["resolutionSeconds"]),
        state,
    ]
    if not merged:
        del cells[2]
    return cells


def records_table(
    records: Sequence[Mapping[str, Any]],
    columns: Sequence[Column],
    title: str | None = None,
):
    """Any records, a column per field named by ``columns``."""
    rows = [[record.get(column.name) for column in columns] for record in records]
    return fitted(columns, rows, title)


def _forward(row: Mapping[str, Any]) -> str:
    state = row.get("forwardState")
    if state is None:
        return ""
    status = f" {row['forwardStatus']}" if row.get("forwardStatus") else ""
    return f", forward {state}{status} after {row['forwardAttempts']} attempts"


def _what(row: Mapping[str, Any]) -> str:
    if row["event"] == "newResult":
        return f"{sender_label(row['own'])} {type_label(row['typeId'])}"
    if row["event"] == "caseClosed":
        reason = f", reason {row['reasonId']}" if row["reasonId"] is not None else ""
        return f"closed by agent {row['agentId']}{reason}"
    if row["event"] == "profileMerged":
        return f"merged {row['oldPersonId']} into {row['newPersonId']}"
    return ""


DETAIL_COLUMNS = (Column("field"), Column("value", PROSE))


def detail(title: Any, pairs: Sequence[tuple[str, Any]], body: tuple[str, list[str]] | None = None):
    """One stored delivery in full: a title line, its fields (empty ones left out), then its
    body, pretty-printed JSON or escaped text, with nothing cut."""

    rows = [(name, value) for name, value in pairs if value not in (None, "")]
    parts: list[Any] = [title if hasattr(title, "plain") else Text(clean(title), style="bold")]
    parts.append(fitted(DETAIL_COLUMNS, rows, header=False))
    if body is not None:
        kind, lines = body
        parts.append(Text(f"body ({kind}):", style="bold"))
        parts.append(Text("\n".join(lines)))
    return Group(*parts)


def event_detail(
    record: Mapping[str, Any], body: tuple[str, list[str]], zone: tzinfo | None = None
):
    """`event ID`: the event's one-line summary, every column, the forward, the body."""

    person = person_of(record)
    now = record.get("canonicalPersonId")
    pairs: list[tuple[str, Any]] = [
        ("receivedAt", shown_time(record["receivedAt"], zone)),
        ("lastReceivedAt", shown_time(record["lastReceivedAt"], zone)),
        ("deliveries", record["deliveries"]),
        ("path", record["path"]),
        ("event", record["event"]),
        (
            "timestamp",
            f"{record['timestamp']} ({shown_time(record['time'], zone) or 'out of range'})",
        ),
    ]
    for column in PAYLOAD_COLUMNS:
        value = record.get(column)
        if column == "externalPersonId" and value is None and record["event"] == "caseClosed":
            value = "false (none)"  # the spec sends false when there is none
        pairs.append((column, value))
    if person is not None and now not in (None, person):
        pairs.append(("canonicalPersonId", f"{now} (person {person} was merged into it)"))
    if record.get("forwardState"):
        status = f", last answer {record['forwardStatus']}" if record.get("forwardStatus") else ""
        error = f", last error: {record['forwardError']}" if record.get("forwardError") else ""
        pairs.append(
            (
                "forward",
                f"{record['forwardState']} after {record['forwardAttempts']} attempts to "
                f"{record['forwardTarget']}{status}{error}",
            )
        )
    title = Text(f"event #{record['id']}  ", style="bold")
    title.append(" ".join(clean(describe(record)).split()), style=event_style(record))
    return detail(title, pairs, body)


def quarantine_detail(
    record: Mapping[str, Any], body: tuple[str, list[str]], zone: tzinfo | None = None
):
    """`quarantine ID`: why it was kept aside, when, where from, and the body as it came."""
    pairs = [
        ("reason", record["reason"]),
        ("receivedAt", shown_time(record["receivedAt"], zone)),
        ("lastReceivedAt", shown_time(record["lastReceivedAt"], zone)),
        ("deliveries", record["deliveries"]),
        ("path", record["path"]),
        ("import line", record.get("line")),
    ]
    return detail(f"quarantined #{record['id']}", pairs, body)


QUARANTINE_COLUMNS = (
    Column("id", justify="right"),
    Column("received"),
    Column("deliveries", justify="right", drop=3),
    Column("path", TEXT, drop=2),
    Column("reason", PROSE),
    Column("body starts", TEXT, drop=1),
)


def quarantine_table(records: Sequence[Mapping[str, Any]]):
    """Quarantined deliveries, the full reason wrapped, the body's start cut."""
    return fitted(QUARANTINE_COLUMNS, [quarantine_cells(r) for r in records])


def quarantine_cells(r: Mapping[str, Any], zone: tzinfo | None = None) -> list[Any]:
    # To the second, ISO with Z as every other time (in ``zone`` as every other, when given).
    stamp = r["receivedAt"][:19] + "Z" if r["receivedAt"] else None
    return [
        r["id"],
        shown_time(stamp, zone) or "",
        r["deliveries"],
        r["path"],
        r["reason"],
        r["bodyStart"],
    ]


RETRY_COLUMNS = (
    Column("quarantined", justify="right"),
    Column("outcome"),
    Column("event", justify="right"),
    Column("name", TEXT, drop=1),
    Column("reason", PROSE),
)


def retry_table(records: Sequence[Mapping[str, Any]]):
    """What `quarantine retry` did with each delivery."""
    words = {
        "moved": "moved",
        "merged": "moved (was stored)",
        "unreadable": "still unreadable",
        "missing": "not in quarantine",
    }
    rows = [
        [
            r["quarantineId"],
            text(words[r["outcome"]], "green" if r["eventId"] else "yellow"),
            r["eventId"],
            r["event"],
            r["reason"],
        ]
        for r in records
    ]
    return fitted(RETRY_COLUMNS, rows)


def person_view(record: Mapping[str, Any], zone: tzinfo | None = None):
    """`person ID`: who they are now, their aliases, and the merges in time order."""

    heading = Text(f"person {record['personId']} is now ")
    heading.append(str(record["canonicalPersonId"]), style="bold")
    parts: list[Any] = [heading, Text("aliases: " + ", ".join(map(str, record["aliases"])))]
    if record["merges"]:
        columns = (
            Column("time"),
            Column("oldPersonId", justify="right"),
            Column("newPersonId", justify="right"),
        )
        merges = [{**m, "time": shown_time(m["time"], zone)} for m in record["merges"]]
        parts.append(records_table(merges, columns, "merges"))
    else:
        parts.append(Text("no merges"))
    return Group(*parts)


def case_view(
    case_id: int,
    records: Sequence[Mapping[str, Any]],
    summary: Mapping[str, Any],
    zone: tzinfo | None = None,
):
    """`case ID`: its timeline, then its metrics."""

    metrics = [
        {"metric": key, "value": shown_metric(key, value, zone)}
        for key, value in summary.items()
        if key != "caseId"
    ]
    columns = (Column("metric"), Column("value", TEXT))
    return Group(
        events_table(records, title=f"case {case_id}", zone=zone), records_table(metrics, columns)
    )

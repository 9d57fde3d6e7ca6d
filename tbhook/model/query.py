"""What a question is asked with, read from text: one table of parameters for the command
line's options (``--key``) and the console's query string (``key=``), so both faces read the
same words into the same arguments, with the same defaults and the same errors.

A new filter is one field of ``Filters`` (which names its parameter) and one clause in
``tbhook.store.sql``; a new argument of a question, one entry in ``PARAMS`` and one field
of ``Asked``. Pure: no I/O but reading a --holidays file, which only the command line allows.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, fields, replace
from datetime import timezone, tzinfo
from typing import TYPE_CHECKING, Any

from tbhook.model.filters import Filters, parse_count, parse_id
from tbhook.model.params import Param, as_given, either, one_of
from tbhook.model.queue import Sla, parse_sla
from tbhook.model.report import BY
from tbhook.model.text import quoted
from tbhook.model.times import empty_range, parse_when, parse_zone, when_note

if TYPE_CHECKING:
    from tbhook.model.hours import Clock

DEFAULT_LIMIT = 50  # every listing: events, cases, quarantine, tail's backlog
SORTS = ("time", "arrival")
ORDERS = ("desc", "asc")


class QueryError(ValueError):
    """A value that cannot be read: the parameters it is about (``keys``, spelled as both
    faces spell them, without ``--``), a sentence that says what is wrong, and parameters
    that would work (``fix``: key to value), which each face spells its own way."""

    def __init__(self, keys: tuple[str, ...], sentence: str, fix: dict[str, str] | None = None):
        super().__init__(sentence)
        self.keys = keys
        self.sentence = sentence
        self.fix = fix or {}

    def advised(self, spell: Callable[[str, str], str], joined: str) -> str:
        """The sentence, and the fix as the face writes parameters (``--since X``,
        ``since=X``)."""
        if not self.fix:
            return self.sentence
        return f"{self.sentence}; try " + joined.join(spell(k, v) for k, v in self.fix.items())


@dataclass(frozen=True)
class Asked:
    """A question's arguments: the filters, and what a listing, the report or the stream
    takes besides. ``zone`` is the one ``tz`` named (None: the face's own, else UTC)."""

    filters: Filters = Filters()
    limit: int = DEFAULT_LIMIT  # 0: all
    before: int | None = None  # only events with a lower id: the next page
    past: int | None = None  # only cases past this caseId in the order listed: the next page
    after: int | None = None  # the stream: what came after this id, then what comes
    sort: str = "time"
    order: str = "desc"
    by: str = "day"
    zone: tzinfo | None = None
    clock: Clock | None = None
    sla: Sla | None = None  # targets per kind of wait (report, queue)
    sources: tuple[int, ...] = ()  # the queue's --source, repeatable there (Question.many)
    at: int | None = None  # the queue as it stood then (None: now)
    total: bool = True  # the report's machine formats end with the whole range's row
    notes: tuple[tuple[str, str], ...] = ()  # (key, how its value was read): for the reader

    @property
    def descending(self) -> bool:
        return self.order == "desc"


def _event_id(text: str, _zone: tzinfo) -> int:
    return parse_id(text, "an event id")


def _case_id(text: str, _zone: tzinfo) -> int:
    return parse_id(text, "a caseId")


def _limit(text: str, _zone: tzinfo) -> int:
    return parse_count(text, 0, 2**63 - 1)


def _sla(text: str, _zone: tzinfo) -> Sla:
    try:
        return parse_sla(text)
    except ValueError as exc:
        raise ValueError(f"cannot read {quoted(text)}: {exc}") from None


def _yes(text: str, _zone: tzinfo) -> bool:
    if text not in ("yes", "no"):
        raise ValueError(f"{text!r} is not one of yes or no")
    return text == "yes"


def _moment(text: str, zone: tzinfo) -> int:
    return parse_when(text, zone=zone)


def _zone(text: str, _zone: tzinfo) -> tzinfo:
    return parse_zone(text)


# The filters (each field of Filters brings its own), then the questions' other arguments.
PARAMS: dict[str, Param] = {
    p.key: p
    for p in (
        *(replace(f.metadata["param"], name=f.name, filter=True) for f in fields(Filters)),
        Param("limit", _limit, "N", "At most N rows (0: all).", default=str(DEFAULT_LIMIT),
              short="-n"),
        Param("before", _event_id, "ID", "Only events with a lower id: the next page."),
        Param("past", _case_id, "CASEID",
              "Only cases past this caseId in the order listed (lower ids, or higher with "
              "--order asc): the next page."),
        Param("after", _event_id, "ID", "What came after this event id, then what comes."),
        Param("sort", one_of(SORTS), "|".join(SORTS),
              "By Tracebuzz's timestamp, or in the order the events arrived here.",
              default="time"),
        Param("order", one_of(ORDERS), "asc|desc", "Newest (desc) or oldest (asc) first.",
              default="desc"),
        Param("by", one_of(BY), "|".join(BY),
              "One row per day, ISO week or month (in --tz), per source (of each case's first "
              "message) or per agent (who first closed each case).", default="day"),
        Param("tz", _zone, "ZONE",
              "Show times in tables and tail in this zone (Europe/Amsterdam, or local); json "
              "and csv stay UTC.", envvar="TBHOOK_TZ"),
        Param("hours", as_given, "SPEC",  # read with the holidays, into one clock (_clock)
              'Count durations in business hours only, in --tz: "mon-fri 09:00-17:30" '
              '(several: "mon-fri 08:30-12:00,13:00-17:30; sat 10:00-14:00").'),
        Param("sla", _sla, "SPEC",
              'Targets per kind of wait, in business hours with --hours: "first=1h,reply=4h" '
              "(first: no agent has replied in the case yet; reply: one has)."),
        Param("at", _moment, "WHEN",
              "The queue as it stood at this moment (events stamped up to it): "
              "2024-05-01T09:30 (in --tz), Unix seconds, an age: 2h, or now (the default).",
              moment=True),
        Param("total", _yes, "yes|no",
              "End the rows with the whole range's (period: total), in csv, json and ndjson "
              "as in the table.", default="yes", flag=True),
        Param("holidays", as_given, "COUNTRY|FILE",
              "Closed days for --hours: a country's public holidays (NL, DE, US-CA) or a file "
              "of dates, one YYYY-MM-DD a line; repeat to combine.", many=True),
    )
}  # fmt: skip
for _key, _param in PARAMS.items():  # an argument's name is its key's words: sort, search_id
    if not _param.name:
        PARAMS[_key] = replace(_param, name=_key.replace("-", "_"))
FILTERS = tuple(key for key, p in PARAMS.items() if p.filter)
# What a report can choose cases by: their first message's (the kept summaries').
CASE_FILTERS = ("case", "person", "search-id", "source", "since", "until", "path")


@dataclass(frozen=True)
class Question:
    """What one command (and its page) is asked with: the keys it takes, those it refuses
    in words (``refused``: why), help of its own for some, and filters it takes more than
    once (``many``: each read into the ``Asked`` field named in the plural, ``sources``)."""

    keys: tuple[str, ...]
    refused: tuple[str, ...] = ()
    why: str = ""
    help: Mapping[str, str] = field(default_factory=dict)
    many: tuple[str, ...] = ()


WHOLE_CASES = "a report counts whole cases; it cannot leave out some of their events"
QUESTIONS: dict[str, Question] = {
    "events": Question((*FILTERS, "limit", "before", "sort", "order", "tz")),
    "cases": Question(
        (*FILTERS, "limit", "past", "order", "tz", "hours", "holidays"),
        help={"order": "Highest (desc) or lowest (asc) caseId first."},
    ),
    "report": Question(
        (*CASE_FILTERS, "event", "sender", "text", "by", "tz", "hours", "holidays", "sla", "total"),
        refused=("event", "sender", "text"),
        why=WHOLE_CASES,
        help={"tz": "The zone of the days, weeks and months, and of --hours (default: UTC)."},
    ),
    "stream": Question((*FILTERS, "after", "tz")),
    "tail": Question((*FILTERS, "tz")),
    "export": Question(FILTERS),
    "stats": Question(FILTERS),
    "replay": Question(FILTERS),
    "quarantine": Question(("limit", "tz")),
    "quarantine show": Question(("tz",)),
    "event": Question(("tz",)),
    "event raw": Question(()),  # the body byte for byte: nothing changes how it is shown
    "person": Question(("tz",)),
    "case": Question(("tz", "hours", "holidays")),
    "queue": Question(
        ("source", "path", "hours", "tz", "holidays", "sla", "at", "limit"),
        help={
            "source": "Only cases waiting on this sourceId (that of the customer's latest "
            "message; repeatable).",
            "tz": "The zone of --hours, and of the times in the table (default: UTC).",
        },
        many=("source",),
    ),
    "serve": Question(
        ("sla", "hours", "holidays", "tz"),
        help={
            "sla": "Alert (`sla`, to --notify, and in the log) when a case waits past its "
            'target: "first=1h,reply=4h", in business hours with --hours; once per wait, '
            "resolved when an agent answers.",
            "tz": "The zone of --hours (default: UTC).",
        },
    ),
    "health": Question(()),
    "ui": Question(("tz",), help={"tz": "Show times on the pages in this zone (or local)."}),
}


def read(
    question: str,
    given: Mapping[str, str | Sequence[str] | None],
    zone: tzinfo | None = None,
    *,
    most: int | None = None,
    files: bool = True,
) -> Asked:
    """The arguments of ``question`` from ``given`` (text by key: a value, a list for a
    repeatable key; blank is not given); a moment without an offset is read in the zone
    ``tz`` names, else in ``zone``, else in UTC. ``most``: the largest ``limit`` allowed
    (0, all, is then refused); ``files``: whether --holidays may name a file. Raises
    QueryError."""
    asked = QUESTIONS[question]
    texts = _texts(asked, given)
    if "tz" in texts:
        zone = _read_one(PARAMS["tz"], texts["tz"][-1], timezone.utc)
    moments = zone or timezone.utc
    arguments: dict[str, Any] = {}
    filtering: dict[str, Any] = {}
    notes: list[tuple[str, str]] = []
    for key in asked.keys:
        param = PARAMS[key]
        found = texts.get(key) or ([param.default] if param.default is not None else [])
        if not found or key in ("tz", "hours", "holidays"):
            continue
        if key in asked.many:  # a filter this question takes more than once: its own field
            arguments[f"{param.name}s"] = tuple(_read_one(param, t, moments) for t in found)
            continue
        value = (
            tuple(_read_one(param, text, moments) for text in found)
            if param.many
            else _read_one(param, found[-1], moments)
        )
        if param.verbatim:  # searched for as it was given, spaces and all
            value = _raw(given[key])
        (filtering if param.filter else arguments)[param.name] = value
        note = when_note(found[-1]) if param.moment else None
        if note:
            notes.append((key, note))
    problem = empty_range(filtering.get("since"), filtering.get("until"), ("since", "until"))
    if problem:
        raise QueryError(("since", "until"), problem)
    if most is not None and not 0 < arguments.get("limit", 1) <= most:
        raise QueryError(("limit",), f"a page shows from 1 to {most} rows")
    hours = texts.get("hours", [])
    clock = _clock(hours[-1] if hours else None, texts.get("holidays", []), moments, files)
    return Asked(
        filters=Filters(**filtering), zone=zone, clock=clock, notes=tuple(notes), **arguments
    )


SPECS = ("sla", "hours")  # given empty on the command line: a mistake, not "none"


def refuse_empty(given: Mapping[str, str | Sequence[str] | None]) -> None:
    """An SLA or hours spec given, but empty (``--sla ""``), refused as its reader refuses
    it; a page's empty field is no spec, and ``read`` leaves it out. Raises QueryError."""
    for key in SPECS:
        value = given.get(key)
        if isinstance(value, str) and not value.strip():
            if key == "hours":
                _clock(value, [], timezone.utc, False)
            _read_one(PARAMS[key], value, timezone.utc)


def _texts(
    asked: Question, given: Mapping[str, str | Sequence[str] | None]
) -> dict[str, list[str]]:
    """The values given, by key: stripped, the blank left out; a key the question does not
    take, or refuses, is a QueryError."""
    texts: dict[str, list[str]] = {}
    for key, value in given.items():
        if key not in asked.keys:
            takes = f"these are {either(asked.keys)}" if asked.keys else "it takes none"
            raise QueryError((quoted(key),), f"not a parameter here ({takes})")
        values = [value] if isinstance(value, str) else list(value or ())
        found = [text.strip() for text in values if text and text.strip()]
        if found and key in asked.refused:
            raise QueryError((key,), asked.why)
        if found:
            texts[key] = found
    return texts


def _read_one(param: Param, text: str, zone: tzinfo) -> Any:
    try:
        return param.read(text, zone)
    except ValueError as exc:
        raise QueryError((param.key,), str(exc)) from None


def _raw(value: str | Sequence[str] | None) -> str:
    values = [value] if isinstance(value, str) else list(value or ())
    return [text for text in values if text and text.strip()][-1]


def _clock(hours: str | None, holidays: list[str], zone: tzinfo, files: bool) -> Clock | None:
    """The business clock: ``hours`` in ``zone``, closed on ``holidays`` (countries, or files
    of dates where ``files``); None without hours."""
    from tbhook.model.hours import (
        COUNTRIES,
        Clock,
        ClosedDays,
        SpecError,
        country,
        names_a_file,
        parse_hours,
    )

    if hours is None:
        if holidays:
            raise QueryError(
                ("holidays",),
                "closed days need open hours: give hours too, like 'mon-fri 09:00-17:30'",
            )
        return None
    try:
        spec = parse_hours(hours)
    except SpecError as exc:
        raise QueryError(("hours",), f"cannot read {quoted(hours)}: {exc}") from None
    closed = ClosedDays()
    for value in holidays:
        try:
            if files:
                closed.add(value)
            elif names_a_file(value):  # a page may not make the console read a file
                raise SpecError(
                    f"{quoted(value)} names a file, and a page takes only country codes {COUNTRIES}"
                )
            else:
                closed.calendars.append(country(value))
        except SpecError as exc:
            raise QueryError(("holidays",), str(exc)) from None
    return Clock(spec, zone, closed)

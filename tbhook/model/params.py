"""A parameter of the questions, as both faces ask for it: ``--key`` on the command line,
``key=`` in the console's query string, read from the same text by the same function into
the same value, with the same sentence when it cannot be. Pure, no I/O."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import tzinfo
from typing import Any

from tbhook.model.text import quoted

Read = Callable[[str, tzinfo], Any]  # the text (stripped, never blank), the zone of moments


@dataclass(frozen=True)
class Param:
    """One parameter: how it is spelled (``key``, ``short``), read (``read``: a ValueError
    says what is wrong) and described (``metavar``, ``help``), and for a filter, what it
    says when no event matches it alone (``nothing``)."""

    key: str
    read: Read
    metavar: str
    help: str
    name: str = ""  # the argument it sets: a field of Filters, or of Asked (the key's words)
    many: bool = False  # given more than once, each value counts
    default: str | None = None
    short: str | None = None  # the command line's short spelling (-n)
    envvar: str | None = None
    verbatim: bool = False  # the value as given, spaces kept (text searched for)
    moment: bool = False  # a moment: how a bare number was read is noted (when_note)
    nothing: Callable[[Any], str] | None = None  # "no event has caseId 7"
    filter: bool = False
    flag: bool = False  # yes or no: on the command line --key and --no-key


def filter_field(*param: Any, default: Any = None, **details: Any) -> Any:
    """A field of Filters, and the parameter that sets it (``Param``'s arguments): one entry
    for a new filter."""
    return field(default=default, metadata={"param": Param(*param, **details)})


def one_of(choices: Sequence[str]) -> Read:
    def read(text: str, _zone: tzinfo) -> str:
        if text not in choices:
            raise ValueError(f"{quoted(text)} is not one of {either(choices)}")
        return text

    return read


def plain(read: Callable[[str], Any]) -> Read:
    """A reader that needs no zone."""
    return lambda text, _zone: read(text)


def as_given(text: str, _zone: tzinfo) -> str:
    return text


def either(words: Sequence[str]) -> str:
    """``a, b or c``."""
    return ", ".join(words[:-1]) + " or " + words[-1] if len(words) > 1 else words[0]

"""Sender text is hostile: made safe for terminals, tables and spreadsheets. Pure, no I/O.

A sender controls the event name, the path, the quarantine reason (it quotes the body) and the
body itself. Each of those may reach a terminal (escape sequences), a rich table (markup such as
``[link=...]``) or a spreadsheet (a formula), so every writer goes through this module.
"""

from __future__ import annotations

from typing import Any

# First characters that make a spreadsheet read a cell as a formula (OWASP's CSV injection list:
# = + - @, tab, CR, LF; NUL from ASVS 1.2.10), and the full-width forms some spreadsheets
# normalize to them.
FORMULA_STARTS = (
    "=",
    "+",
    "-",
    "@",
    "\t",
    "\r",
    "\n",
    "\0",
    "\uff1d",
    "\uff0b",
    "\uff0d",
    "\uff20",
)
# RFC 4180 line endings: with them, the csv module quotes any field holding a CR or an LF.
CSV_LINE_END = "\r\n"

_CONTROL = {i: f"\\x{i:02x}" for i in (*range(0x20), *range(0x7F, 0xA0))}
_CONTROL.update({ord("\n"): "\\n", ord("\r"): "\\r", ord("\t"): "\\t"})
# Line and paragraph separators and the bidirectional overrides can reorder or break a line too.
_CONTROL.update(
    {
        c: f"\\u{c:04x}"
        for c in (0x2028, 0x2029, *range(0x202A, 0x202F), 0x2066, 0x2067, 0x2068, 0x2069)
    }
)


# What may reach a terminal as it is: line breaks and tabs. Everything else in _CONTROL is shown
# escaped, so a sender's ESC, OSC or C1 sequence cannot retitle, recolour or rewrite the screen.
_TERMINAL = {k: v for k, v in _CONTROL.items() if k not in (ord("\n"), ord("\t"))}


def for_terminal(text: str) -> str:
    """Machine output (csv, json, a raw body) bound for a terminal: control characters escaped
    but line breaks and tabs. Piped or written to a file, the same output keeps its bytes."""
    return text.replace("\r\n", "\n").translate(_TERMINAL)


class TerminalStream:
    """A text stream that writes through ``for_terminal``: what every machine format writes
    when stdout is a terminal."""

    def __init__(self, out: Any) -> None:
        self._out = out

    def write(self, text: str) -> int:
        return self._out.write(for_terminal(text))

    def writelines(self, lines: Any) -> None:
        for line in lines:
            self.write(line)

    def flush(self) -> None:
        self._out.flush()

    def isatty(self) -> bool:
        return True


def on_terminal(out: Any) -> bool:
    try:
        return bool(out.isatty())
    except (AttributeError, ValueError):
        return False


QUOTED = 40  # characters of a value that a sentence quotes back


def quoted(text: str, most: int = QUOTED) -> str:
    """A value someone gave, as a sentence quotes it back: in quotes (it reads as the value
    given, never as tbhook's words), control characters escaped, cut after ``most``
    characters with ``...`` after the quote (a parameter cannot put a sentence on a page)."""
    return repr(text[:most]) + ("..." if len(text) > most else "")


def clean(text: object) -> str:
    """Text safe for one terminal or log line: control characters (CR, LF, ESC...) escaped."""
    return str(text).translate(_CONTROL)


def csv_value(value: Any) -> Any:
    """Keep spreadsheets from running a text cell as a formula; numbers stay numbers."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str) and value.startswith(FORMULA_STARTS):
        return "'" + value
    return value

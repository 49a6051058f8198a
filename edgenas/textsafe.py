"""Text from devices, files and arguments, made safe to print on a terminal through rich.

Two dangers: rich *markup* (a device string or file name holding ``[/x]`` crashed the CLI with a
MarkupError; ``[bold]..[/bold]`` was silently swallowed) and terminal *control sequences* (ANSI escapes,
carriage returns, bells, OSC titles) that let a device drive the user's terminal. ``esc`` does both for a
value interpolated into markup (and keeps it on one line); ``clean`` only strips controls (for plain text,
JSON-free output).
"""

from __future__ import annotations

import re
from typing import Any

from rich.console import Console
from rich.markup import escape as _escape_markup

#: CSI (ESC [ ... final), OSC (ESC ] ... BEL or ST), other two-byte ESC sequences, and 8-bit CSI
_ANSI = re.compile(r"\x1b\[[0-?]*[ -/]*[@-~]|\x1b\][^\x07\x1b]*(?:\x07|\x1b\\)?|\x1b[@-Z\\-_]|\x9b[0-?]*[ -/]*[@-~]")
#: C0 controls but tab and newline, DEL, C1 controls; plus the bidi overrides that can reorder text
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069]")


def clean(value: Any, max_len: int | None = None) -> str:
    """``str(value)`` without ANSI escape sequences and control characters (tab and newline kept)."""
    text = _CONTROL.sub("", _ANSI.sub("", str(value)))
    if max_len is not None and len(text) > max_len:
        text = text[: max(0, max_len - 1)] + "…"
    return text


def brief(value: Any, max_len: int = 60) -> str:
    """``repr(value)`` cleaned and cut after ``max_len`` characters: a bad value named in an error message."""
    return clean(repr(value), max_len)


def counted(n: int, noun: str) -> str:
    """``n`` and ``noun``, in the plural unless ``n`` is 1: "1 point", "0 points", "6 measurements"."""
    return f"{n} {noun}{'' if n == 1 else 's'}"


#: the most characters of a message (and of its hint) an error line shows
LINE_MAX = 1000


def one_line(value: Any, max_len: int = LINE_MAX) -> str:
    """``clean(value)`` on one line (newlines and tabs become spaces), cut after ``max_len`` characters
    with a note of how many were cut: an error line that echoes an 80,000-character value stays a line."""
    text = " ".join(clean(value).split())
    if len(text) > max_len:
        text = f"{text[:max_len]}… ({len(text) - max_len} more characters)"
    return text


def esc(value: Any, max_len: int | None = None) -> str:
    """``value`` cleaned of control characters, on one line (a newline or tab becomes a space, so a device
    cannot forge lines of output such as a ``runtimes:`` line), escaped for rich markup: prints as it is."""
    return _escape_markup(clean(value, max_len).replace("\n", " ").replace("\t", " "))


class SafeConsole(Console):
    """A rich console that strips control characters and ANSI sequences from every string it is given
    (a safety net under ``esc``: markup in interpolated values must still be escaped by the caller), and
    prints emoji codes as they are: ``:x:`` in a column name or ``/etc/passwd`` is text, not an emoji."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("emoji", False)
        super().__init__(*args, **kwargs)
        # rich takes an all-digit COLUMNS (LINES) as the size and prints nothing at 0: COLUMNS=0 hid every
        # line, errors included; such a value is ignored (the terminal's size, else 80 x 25)
        if kwargs.get("width") is None and self._width is not None and self._width < 1:
            self._width = None
        if kwargs.get("height") is None and self._height is not None and self._height < 1:
            self._height = None

    def print(self, *objects: Any, **kwargs: Any) -> None:  # type: ignore[override]
        super().print(*(clean(o) if isinstance(o, str) else o for o in objects), **kwargs)

r"""Text from devices, files and arguments, made safe to print on a terminal through rich.

Two dangers: rich *markup* (a device string or file name holding ``[/x]`` crashed the CLI with a
MarkupError; ``[bold]..[/bold]`` was silently swallowed) and terminal *control sequences* (ANSI escapes,
carriage returns, bells, OSC titles) that let a device drive the user's terminal. ``esc`` does both for a
value interpolated into markup (and keeps it on one line); ``clean`` only strips controls (for plain text,
JSON-free output). An error line (``one_line``) shows controls escaped instead (``\x1b[31m``, as ``repr`` and
the errors naming a device do), so it names the value given, not another one. Lone surrogates (the bytes of a
file name that is not UTF-8, ``\x9b`` read as ``\udc9b``) are not characters: each function shows them escaped
(``\udc9b``), never writes the raw byte (``\x9b`` is an 8-bit CSI on some terminals).
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
#: lone surrogates: undecodable bytes of a name read with surrogateescape (or a ``\ud800`` from JSON)
_SURROGATE = re.compile(r"[\ud800-\udfff]")
#: what an error line shows escaped: the controls (tab and newline too: ``one_line`` makes them spaces first)
_UNSHOWN = re.compile(r"[\x00-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069\ud800-\udfff]")
_SHORT = {"\t": "\\t", "\n": "\\n", "\r": "\\r"}


def _escaped(match: re.Match[str]) -> str:
    r"""The escape ``repr`` writes for a character: ``\x1b``, ``\x9b``, ``\u202e``, ``\udc9b``."""
    char = match.group()
    code = ord(char)
    return _SHORT.get(char) or (f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}")


def shown(value: Any) -> str:
    r"""``str(value)`` with every control character, bidi override and lone surrogate escaped as ``repr``
    escapes it (``a\x1b[31mb``): what is printed is the value, visibly, not a shorter one."""
    return _UNSHOWN.sub(_escaped, str(value))


def clean(value: Any, max_len: int | None = None) -> str:
    r"""``str(value)`` without ANSI escape sequences and control characters (tab and newline kept); a lone
    surrogate (an undecodable byte of a file name) is escaped (``\udc9b``): dropped, the name would be another."""
    text = _SURROGATE.sub(_escaped, _CONTROL.sub("", _ANSI.sub("", str(value))))
    if max_len is not None and len(text) > max_len:
        text = text[: max(0, max_len - 1)] + "…"
    return text


def brief(value: Any, max_len: int = 60) -> str:
    """``repr(value)`` cleaned and cut after ``max_len`` characters: a bad value named in an error message."""
    return clean(repr(value), max_len)


def counted(n: int, noun: str) -> str:
    """``n`` and ``noun``, in the plural unless ``n`` is 1: "1 point", "0 points", "6 measurements"."""
    return f"{n} {noun}{'' if n == 1 else 's'}"


#: what ``one_line`` makes a space (other whitespace controls, ``\r`` alone among them, are escaped)
_LINE_BREAK = re.compile(r"\r?\n|\t")

#: the most characters of a message (and of its hint) an error line shows
LINE_MAX = 1000


def one_line(value: Any, max_len: int = LINE_MAX) -> str:
    r"""``shown(value)`` on one line (newlines and tabs become spaces, other controls are escaped, not dropped:
    ``'\x1b[31mr1'`` is not run ``r1``), cut after ``max_len`` characters with a note of how many were cut: an
    error line that echoes an 80,000-character value stays a line."""
    text = " ".join(shown(_LINE_BREAK.sub(" ", str(value))).split())
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

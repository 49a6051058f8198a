"""Strategy options: what a strategy declares (``Option``) and how a given value becomes its declared type.

Apart from ``base`` (the strategy interface), so that modules below it (``draws``: the ``sampling`` option)
declare options without importing the interface that uses them.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping

from edgenas.errors import InputError

#: the largest population (or CMA-ES popsize) a strategy takes: WOA and CMA-ES allocate per member up front, and
#: 10**12 was a 43.7 TiB array (an internal error) or a CMA-ES that never asked; a search rarely uses 1,000
MAX_POPULATION = 100_000


def population_option(default: int | None, least: int) -> "Option":
    """A population size option: an integer from ``least`` to ``MAX_POPULATION``."""
    return Option(default, int, lambda v: least <= v <= MAX_POPULATION, f"must be from {least} to {MAX_POPULATION}")


@dataclass(frozen=True)
class Option:
    """A declared strategy option: default, type and a check (message when it fails). ``per_space``: the
    default for a family of spaces where it differs (``{"mbv3": 0.01}``; None there: it does not apply),
    what ``edgenas list`` shows beside the default. ``listed``: what ``edgenas list`` shows instead of a
    default that a search replaces (``n_objectives``: the search's count); None: not listed, an option with
    one allowed value in this strategy (CMA-ES's ``n_objectives``: 1, kept so that the requests that give it read)."""

    default: Any
    type: type
    check: Callable[[Any], bool] = field(default=lambda v: True)
    message: str = ""
    per_space: Mapping[str, Any] = field(default_factory=dict)
    listed: str | None = ""


_TRUE, _FALSE = ("true", "yes", "on", "1"), ("false", "no", "off", "0")


def convert_option(strategy: str, key: str, value: Any, kind: type) -> Any:
    """An option's value as its declared type: ``bool("false")`` is True and ``int(5.5)`` is 5, so both are
    spelled out; a float must be finite (inf or 1e308 made strategies fail mid-run)."""
    want = {bool: "true or false", float: "a finite number", int: "an integer", str: "a string",
            tuple: "a list"}.get(kind, f"a {kind.__name__}")
    bad = InputError(f"strategy '{strategy}': option {key}={value!r} is not {want}")
    if kind is bool:
        if isinstance(value, bool):
            return value
        text = str(value).strip().lower()
        if text not in _TRUE + _FALSE:
            raise bad
        return text in _TRUE
    if isinstance(value, bool) and kind in (int, float):
        raise bad
    if kind is int and isinstance(value, float):
        if not (math.isfinite(value) and value.is_integer()):
            raise bad
        return int(value)
    if not isinstance(value, kind):
        try:
            value = kind(value)
        except (TypeError, ValueError, OverflowError):
            raise bad from None
    if kind is float and not math.isfinite(value):
        raise bad
    return value

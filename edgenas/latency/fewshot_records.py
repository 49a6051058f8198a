"""Reading a few-shot latency record (``luts/DEVICE/fewshot/SPACE.json``) as untrusted input.

Every model of ``edgenas.latency.fewshot*`` reads its part of the record with these checkers, inside
``reading_model``: a number must be a finite number (not a bool, not a string), a count a whole number
in range, an array a flat list of finite numbers of the length its configuration implies. An edited
record is one ``InputError`` naming the file, never an IndexError or a TypeError at the first prediction.
"""

from __future__ import annotations

import math
from contextlib import contextmanager
from functools import partial
from typing import Any, Iterator

import numpy as np

from edgenas.errors import InputError
from edgenas.limits import MAX_INT, is_finite, is_whole
from edgenas.textsafe import brief

_short = partial(brief, max_len=40)  # a bad value as an error names it


@contextmanager
def reading_model(where: str = "") -> Iterator[None]:
    """Read a few-shot model record inside this: a missing key, a wrong type or an inconsistent value
    (``KeyError``, ``TypeError``, ``ValueError``, ``AttributeError``, an overflow) becomes one ``InputError`` naming
    ``where`` (the file) with the hint to refit; an ``InputError`` raised inside gets the same prefix."""
    prefix = f"{where}: " if where else ""
    try:
        yield
    except InputError as exc:
        if not prefix:
            raise
        raise InputError(f"{prefix}{exc.message}", hint=exc.hint) from None
    except (KeyError, TypeError, ValueError, AttributeError, ArithmeticError) as exc:
        raise InputError(f"{prefix}malformed few-shot latency model ({exc})",
                         hint="refit it: edgenas device add DEVICE --fewshot 20") from None


def record_number(value: Any, what: str, *, low: float | None = None, high: float | None = None,
                  positive: bool = False) -> float:
    """A finite number of a few-shot record (an int or a float; not a bool, not a string), at least ``low`` and
    at most ``high``, > 0 with ``positive``; else a ``ValueError`` naming ``what`` (``reading_model`` makes it an
    InputError)."""
    try:
        ok = is_finite(value) and math.isfinite(float(value))
    except OverflowError:  # an int too large for a float
        ok = False
    if not ok:
        raise ValueError(f"{what} must be a finite number, got {_short(value)}")
    v = float(value)
    if (positive and not v > 0) or (low is not None and v < low):
        raise ValueError(f"{what} must be {'> 0' if positive else f'>= {low:g}'}, got {v:g}")
    if high is not None and v > high:
        raise ValueError(f"{what} must be <= {high:.0f}, got {v:g}")
    return v


def record_count(value: Any, what: str, *, low: int = 0, high: int = MAX_INT) -> int:
    """A whole number of a few-shot record (an int, not a bool) from ``low`` to ``high``."""
    if not is_whole(value) or not low <= value <= high:
        raise ValueError(f"{what} must be a whole number from {low} to {high}, got {_short(value)}")
    return int(value)


def record_vector(value: Any, what: str, size: int | None = None, *, positive: bool = False) -> np.ndarray:
    """A flat list of finite numbers (of ``size`` of them, when given; all > 0 with ``positive``) of a
    few-shot record, as a 1-D float array: nested lists, bools, strings and nulls are refused."""
    if not isinstance(value, list):
        raise ValueError(f"{what} must be a list of numbers, got {_short(value)}")
    if size is not None and len(value) != size:
        raise ValueError(f"{what} must hold {size} numbers, got {len(value)}")
    if not all(type(v) is float or type(v) is int for v in value):  # JSON's numbers; a bool is no number
        bad = next(v for v in value if type(v) is not float and type(v) is not int)
        raise ValueError(f"{what} must be a list of numbers, holds {_short(bad)}")
    try:
        a = np.array(value, dtype=float).reshape(len(value))
    except OverflowError:
        a = np.full(len(value), np.inf)
    if not np.isfinite(a).all() or (positive and not (a > 0).all()):
        raise ValueError(f"{what} must hold finite numbers{' > 0' if positive else ''}")
    return a


def record_strings(value: Any, what: str, size: int | None = None) -> list[str]:
    """A list of strings of a few-shot record (of ``size`` of them, when given)."""
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise ValueError(f"{what} must be a list of strings, got {_short(value)}")
    if size is not None and len(value) != size:
        raise ValueError(f"{what} must hold {size} names, got {len(value)}")
    return list(value)


def record_table(value: Any, what: str) -> dict:
    """A JSON object (``inner``, ``config``) of a few-shot record; null is an empty one."""
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise ValueError(f"{what} must be a JSON object, got {_short(value)}")
    return dict(value)

"""Settings given once: a key repeated under one flag, a dedicated flag and the option that is its twin.

A setting given twice was taken once and the other dropped without a word: ``--strategy-opt tournament=2
--strategy-opt tournament=3`` kept 3, ``--minimise params`` twice was recorded twice, ``--population 6`` lost
to ``--strategy-opt population=4``. Each is one ``InputError`` instead, in the style of ``--device local
--device local`` ("device listed twice") and of ``--eta`` with ``--strategy-opt eta=``. Light (the CLI's
start-up imports it): the errors only.
"""

from __future__ import annotations

from typing import Any, Iterable

from edgenas.errors import InputError


def times(n: int) -> str:
    return "twice" if n == 2 else f"{n} times"


def listed(values: list[Any]) -> str:
    """``2 and 3``, ``1, 2 and 3``."""
    shown = [str(v) for v in values]
    return shown[0] if len(shown) == 1 else f"{', '.join(shown[:-1])} and {shown[-1]}"


def check_once(flag: str, items: Iterable[tuple[Any, Any]], hint: str = "give it once") -> None:
    """Refuse a key given more than once under ``flag``: ``items`` are (key, value) as given, value None for a
    flag of keys only (``--minimise params``). The first key repeated is named, with the values it was given."""
    keys: list[Any] = []
    values: list[list[Any]] = []
    for k, v in items:  # a list, not a dict: a key from the Python API need not be hashable
        if k in keys:
            values[keys.index(k)].append(v)
        else:
            keys.append(k)
            values.append([v])
    for k, vs in zip(keys, values):
        if len(vs) > 1:
            given = "" if all(v is None for v in vs) else f": {listed(vs)}"
            raise InputError(f"{flag} {k} is given {times(len(vs))}{given}", hint=hint)


def both_set(flag: str, value: Any, opt_flag: str, key: str, opt_value: Any, what: str) -> InputError:
    """The error for a dedicated flag given together with its twin option (``--population 6`` and
    ``--strategy-opt population=4``): the option's value won, or the flag's, without a word."""
    shown = flag if value is None else f"{flag} {value}"
    return InputError(f"{shown} and {opt_flag} {key}={opt_value} both set {what}", hint=f"give it once, as {flag}")

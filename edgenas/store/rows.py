"""Rows of the experiment database read back, checked: the one place where a row becomes Python values.

The database is a file anyone can edit (``sqlite3 edgenas.db "update runs set config='x'"``), and SQLite
keeps whatever is written whatever the column's type: text in ``seed``, ``{{`` in a JSON column. So rows are
selected *raw* (``raw_columns``: JSON as its text, everything else as the driver gives it) and each value
is checked against the column's kind (``decode_row``); a value that does not fit is one ``DamagedRowError``
naming the database, the table, the run (or row) and the column, never a ``JSONDecodeError`` or a value
of the wrong type met later while printing.
"""

from __future__ import annotations

from typing import Any, Callable, Mapping

import sqlalchemy as sa

from edgenas.errors import InputError
from edgenas.kinds import is_budget_ms, is_run_id, is_scores, is_warm_start
from edgenas.limits import is_count, is_finite, is_number, loads_json_limited
from edgenas.textsafe import brief as _short


class DamagedRowError(InputError):
    """A row of the experiment database holds a value its column cannot hold (edited or damaged)."""

    def __init__(self, where: str, table: str, key: str, column: str, problem: str, *, hint: str) -> None:
        super().__init__(f"damaged row in the experiment database {where}: table {table}, {key}, "
                         f"column {column}: {problem}", hint=hint)
        self.table, self.key, self.column = table, key, column


def row_arch(space: Any, arch: Any, where: str, table: str, key: str, *, hint: str) -> Any:
    """``space.from_dict(arch)`` of an architecture read from a row: one that is not of the space (edited, or
    imported before imports checked) is that row's ``DamagedRowError``; it was a bare "r=99 is not one of 24, 28,
    32" that named no database, table or row."""
    try:
        return space.from_dict(arch)
    except InputError as exc:
        raise DamagedRowError(where, table, key, "arch", exc.message, hint=hint) from None


def raw_columns(table: sa.Table, dialect: str) -> list[Any]:
    """The table's columns for a ``select`` that leaves decoding to ``decode_row``: a JSON column as its
    text (PostgreSQL: cast to text; SQLite holds the text itself), any other without the driver-side
    conversion SQLAlchemy adds (a Boolean column holding ``'yy'`` would raise ValueError while fetched)."""
    out = []
    for col in table.c:
        if isinstance(col.type, sa.JSON) and dialect != "sqlite":
            out.append(sa.cast(col, sa.Text).label(col.name))
        else:
            out.append(sa.type_coerce(col, sa.types.NullType()).label(col.name))
    return out


# ----------------------------------------------------------------------------- kinds of values
def _text(v: Any) -> bool:
    return isinstance(v, str)


def _object(v: Any) -> bool:
    return isinstance(v, dict)


def _arch(v: Any) -> bool:
    """An architecture record, or a cell string (a DARTS run)."""
    return isinstance(v, (dict, str))


def _bool(v: Any) -> bool:
    return isinstance(v, bool) or (is_number(v) and v in (0, 1))


#: kind -> (check, what it must be)
KINDS: dict[str, tuple[Callable[[Any], bool], str]] = {
    "run_id": (is_run_id, "a run id (hex digits)"),
    "text": (_text, "text"),
    "number": (is_finite, "a finite number"),
    "count": (is_count, "a whole number from 0"),
    "bool": (_bool, "a boolean (0 or 1)"),
    "budget": (is_budget_ms, "a latency budget in ms (a number from 0)"),
    "object": (_object, "a JSON object"),
    "scores": (is_scores, "a JSON object of numbers"),
    "arch": (_arch, "an architecture record (a JSON object) or a cell string"),
    "warm_start": (is_warm_start, "a warm-start record (transferred, candidates, note)"),
}
JSON_KINDS = {"object", "scores", "arch", "warm_start"}

#: table -> column -> kind ("?" at the end: null allowed)
COLUMNS: dict[str, dict[str, str]] = {
    "runs": {"id": "run_id", "created_at": "number", "finished_at": "number?", "status": "text", "space": "text",
             "strategy": "text", "seed": "count", "objective": "text", "out_dir": "text", "config": "object",
             "request": "object?", "task": "object", "n_evaluations": "count", "best_number": "count?",
             "best_value": "number?", "best_arch": "arch?", "warm_start": "warm_start?", "rerun_of": "run_id?"},
    "run_devices": {"run_id": "run_id", "position": "count", "device": "text", "kind": "text",
                    "fingerprint_hash": "text?", "lut_hash": "text?", "lut_ref": "text?", "budget_ms": "budget?"},
    "evaluations": {"run_id": "run_id", "number": "count", "arch": "arch", "objectives": "scores",
                    "latency_ms": "scores", "constraints": "scores", "feasible": "bool", "value": "number?",
                    "wall_s": "number"},
    "fronts": {"run_id": "run_id", "front": "text", "position": "count", "number": "count"},
    "measurements": {"record": "object"},
}


def decode_row(row: Any, table: str, *, where: str, key: str, hint: str) -> dict[str, Any]:
    """The row's values (a SQLAlchemy row of ``raw_columns``, or a mapping), JSON decoded and each checked
    against its column's kind; ``key`` names the row in the error ("run 0b9d...", "row 12")."""
    values = dict(row._mapping) if hasattr(row, "_mapping") else dict(row)
    out: dict[str, Any] = {}
    for name, value in values.items():
        kind = COLUMNS[table].get(name)
        if kind is None:  # a column without a check (the measurements' filter columns)
            out[name] = value
            continue
        optional = kind.endswith("?")
        kind = kind.rstrip("?")
        if kind in JSON_KINDS and isinstance(value, (str, bytes)):
            try:
                value = loads_json_limited(value, "JSON")
            except InputError as exc:
                raise DamagedRowError(where, table, key, name, exc.message, hint=hint) from None
        if value is None and optional:
            out[name] = None
            continue
        check, what = KINDS[kind]
        if not check(value):
            raise DamagedRowError(where, table, key, name, f"expected {what}, got {_short(value)}", hint=hint)
        out[name] = bool(value) if kind == "bool" else int(value) if kind == "count" else value
    return out


def run_hint(out_dir: Any = None) -> str:
    """What to do about a damaged run row: import its folder again (the id is the folder's, so the
    import replaces the row), or restore the database."""
    folder = out_dir if isinstance(out_dir, str) and out_dir else "RUN_FOLDER"
    return (f"the experiment database was edited or damaged: re-import the run to replace it "
            f"(edgenas runs import {folder}), or restore the database from a backup")


def key_of(row: Any, column: str = "id") -> str:
    """'run ID' for messages (the id as stored, even when it is not one)."""
    m: Mapping[str, Any] = row._mapping if hasattr(row, "_mapping") else row
    return f"run {_short(m.get(column)) if not isinstance(m.get(column), str) else m.get(column)}"

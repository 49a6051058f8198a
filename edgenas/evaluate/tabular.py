"""Tabular benchmarks: accuracy and measured latency looked up in CSVs (NAS-Bench-201 style).

A table's first two columns are ``index, arch`` (each once: a whole number, a NAS-Bench-201 cell string);
every other column is a number: ``*_ms`` columns are latencies, the rest metrics (``cifar10_test``,
``cifar10_valid_12ep``, ...). Several tables of the same architectures (e.g. ``nb201_hw.csv`` and
``nb201_valid.csv``) are joined on ``index`` and checked on ``arch`` (``join_tables``). ``tabular`` (an
``EVALUATORS`` entry) scores an architecture by one column (``objective``, what the search optimises) and can
look up others it does not optimise (``report``, e.g. the test accuracy of a search run on validation
accuracy); ``TableLatency`` serves one ``*_ms`` column as a latency model (``predict_many`` / exact
``min_latency``), e.g. for ``--latency-column raspi4_ms``.
"""

from __future__ import annotations

import itertools
import math
import os
from functools import lru_cache
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from edgenas.errors import InputError
from edgenas.evaluate.base import EVALUATORS, Evaluator
from edgenas.io import read_csv

REQUIRED = ("index", "arch")


class Table:
    """A parsed benchmark table (or several joined): arch string -> row number, and float columns."""

    def __init__(self, path: Path, archs: list[str], columns: dict[str, np.ndarray],
                 paths: tuple[Path, ...] | None = None) -> None:
        self.path = path
        self.paths = paths or (path,)
        self.archs = archs
        self.columns = columns
        self.row = {a: i for i, a in enumerate(archs)}

    @property
    def name(self) -> str:
        return " + ".join(p.name for p in self.paths)

    @property
    def metric_columns(self) -> list[str]:
        return [c for c in self.columns if c != "index"]

    @property
    def latency_columns(self) -> list[str]:
        return [c for c in self.columns if c.endswith("_ms")]

    def column(self, name: str, *, latency: bool = False) -> np.ndarray:
        names = self.latency_columns if latency else self.metric_columns
        if name not in names:
            kind = "latency column" if latency else "column"
            raise InputError(f"table {self.name}: no {kind} '{name}'",
                             hint=f"columns: {', '.join(names) or 'none'}")
        return self.columns[name]

    def objective_column(self, name: str) -> np.ndarray:
        """A column a search maximises: an accuracy, never a ``*_ms`` latency (``--objective raspi4_ms`` ran
        and maximised latency)."""
        if name in self.latency_columns:
            accuracy = [c for c in self.metric_columns if c not in self.latency_columns]
            raise InputError(f"table {self.name}: '{name}' is a latency column (*_ms), not an accuracy to maximise",
                             hint=f"optimise an accuracy column ({', '.join(accuracy) or 'none'}); a latency column "
                                  "is a budget: --latency-column with --max-latency-ms")
        return self.column(name)

    def lookup(self, arch_strings: Sequence[str]) -> np.ndarray:
        """Row numbers (-1 for strings not in the table)."""
        return np.array([self.row.get(s, -1) for s in arch_strings], dtype=np.int64)


@lru_cache(maxsize=8)
def _load(path: str, mtime: float) -> Table:
    p = Path(path)
    header, rows, _ = read_csv(p, "benchmark table")
    if len(header) < 3 or tuple(header[:2]) != REQUIRED:
        raise InputError(f"benchmark table {p}: the first columns must be index, arch, followed by "
                         f"at least one number column (got {', '.join(header) or 'nothing'})")
    archs, values = _parse_rows(p, header, rows)
    del rows
    if not archs:
        raise InputError(f"benchmark table {p} has no rows")
    if len(set(archs)) != len(archs):
        raise InputError(f"benchmark table {p}: an architecture appears twice")
    arr = np.asarray(values, dtype=float)
    if len(np.unique(arr[:, 0])) != len(arr):  # one table was not checked, two were (join_tables)
        raise InputError(f"benchmark table {p}: an index appears twice",
                         hint="the first column numbers the architectures 0, 1, 2, ..., each once")
    names = [header[0], *header[2:]]
    return Table(p, archs, {c: arr[:, i] for i, c in enumerate(names)})


@lru_cache(maxsize=1)
def _cells() -> frozenset[str]:
    """Every NAS-Bench-201 cell string (``parse_arch_string`` accepts exactly these)."""
    from edgenas.spaces.nb201_string import OPS, arch_string

    return frozenset(arch_string(ops) for ops in itertools.product(OPS, repeat=6))


def _parse_rows(p: Path, header: list[str], rows: list[list[str]]) -> tuple[list[str], list[list[float]]]:
    """Each row's arch string and its numbers (``index`` first); a row that is not a nb201 cell, whole numbers
    and finite values is one ``InputError`` naming its line."""
    cells = _cells()
    archs: list[str] = []
    values: list[list[float]] = []
    for n, row in enumerate(rows, start=2):
        if not row:
            continue
        if len(row) != len(header):
            raise InputError(f"benchmark table {p}, line {n}: {len(row)} fields, expected {len(header)}")
        try:
            nums = [float(v) for v in [row[0], *row[2:]]]
        except ValueError:
            raise InputError(f"benchmark table {p}, line {n}: a value is not a number") from None
        if not all(math.isfinite(v) for v in nums):
            raise InputError(f"benchmark table {p}, line {n}: a value is not finite")
        if not (nums[0].is_integer() and 0 <= nums[0] < 2 ** 53):  # novm: float's; 5.5 was joined as 5
            raise InputError(f"benchmark table {p}, line {n}: index {row[0]!r} is not a whole number from 0",
                             hint="the first column numbers the architectures 0, 1, 2, ...")
        if row[1] not in cells:  # a search on such a table scored nothing and wrote its run
            raise InputError(f"benchmark table {p}, line {n}: {row[1][:80]!r} is not a nb201 cell",
                             hint="arch must read like '|op~0|+|op~0|op~1|+|op~0|op~1|op~2|'")
        archs.append(row[1])
        values.append(nums)
    return archs, values


def load_table(path: str | os.PathLike) -> Table:
    """Parse (once per file version) a benchmark table; bad input is one clear ``InputError``."""
    from edgenas.safenames import check_utf8_path

    check_utf8_path(path, "benchmark table")  # its path is recorded with the run
    try:
        p = Path(path).resolve()
        mtime = p.stat().st_mtime
    except FileNotFoundError:
        raise InputError(f"benchmark table not found: {Path(path)}", hint="check the --table path") from None
    except (OSError, RuntimeError) as exc:  # a symbolic link loop (RuntimeError before Python 3.13)
        raise InputError(f"cannot read benchmark table {Path(path)}: {getattr(exc, 'strerror', None) or exc}",
                         hint="check the --table path") from None
    except ValueError:  # a NUL byte, which no path holds (the OS layer refuses it with a bare ValueError)
        raise InputError(f"benchmark table path {str(path)!r} holds a NUL byte",
                         hint="check the --table path") from None
    return _load(str(p), mtime)


def join_tables(paths: Sequence[str | os.PathLike] | str | os.PathLike) -> Table:
    """Load one table, or several joined on ``index`` (checked: the same ``arch`` for every index).

    Columns other than ``index`` must not repeat across tables. One path returns ``load_table``'s table.
    """
    items = [paths] if isinstance(paths, (str, os.PathLike)) else list(paths)
    if not items:
        raise InputError("no benchmark table given", hint="pass --table PATH (repeatable)")
    tables = [load_table(p) for p in items]
    if len(tables) == 1:
        return tables[0]
    base = tables[0]
    index = base.columns["index"]
    pos = {int(v): i for i, v in enumerate(index)}  # each index once (_load)
    columns = dict(base.columns)
    for t in tables[1:]:
        other = t.columns["index"]
        if len(other) != len(index) or set(int(v) for v in other) != set(pos):
            raise InputError(f"benchmark tables {base.path.name} and {t.path.name} do not hold the same "
                             "indices", hint="join tables of the same architectures (one row per index)")
        order = np.array([pos[int(v)] for v in other])   # row of t -> row of base
        for i, r in enumerate(order):
            if t.archs[i] != base.archs[r]:
                raise InputError(f"benchmark tables {base.path.name} and {t.path.name} disagree on "
                                 f"index {int(other[i])}: {base.archs[r]!r} vs {t.archs[i]!r}",
                                 hint="the tables must list the same architecture for each index")
        for name, col in t.columns.items():
            if name == "index":
                continue
            if name in columns:
                raise InputError(f"column '{name}' appears in more than one table ({t.path.name})",
                                 hint="join tables with distinct columns")
            joined = np.empty_like(col)
            joined[order] = col
            columns[name] = joined
    return Table(base.path, base.archs, columns, tuple(t.path for t in tables))


def _arch_strings(space: Any, archs: Sequence[Any]) -> list[str]:
    return [space.to_dict(a)["arch"] for a in archs]


_ALL: dict[str, list[str]] = {}


def _all_arch_strings(space: Any) -> list[str] | None:
    """Every architecture of a space that can list them (nb201's 15,625), as table strings; made once per
    process. None for a space too large to list."""
    everything = getattr(space, "all_archs", None)
    if everything is None:
        return None
    if space.name not in _ALL:
        _ALL[space.name] = _arch_strings(space, everything())
    return _ALL[space.name]


class TabularEvaluator(Evaluator):
    """Looks accuracy up in a benchmark table (-inf for architectures the table lacks)."""

    name = "tabular"

    def __init__(self, space: Any, table: Table, objective: str, report: Sequence[str] = ()) -> None:
        super().__init__(space)
        if getattr(space, "name", None) != "nb201":
            raise InputError(f"the tabular evaluator needs the nb201 space, not '{getattr(space, 'name', space)}'")
        self.table = table
        self.objective = objective
        self.values = table.objective_column(objective)
        self.report_columns = {c: table.column(c) for c in dict.fromkeys(report) if c != objective}
        self.metric = f"{objective} ({table.name})"

    def _lookup(self, archs: Sequence[Any], values: np.ndarray) -> np.ndarray:
        rows = self.table.lookup(_arch_strings(self.space, archs))
        out = np.full(len(rows), -np.inf)
        out[rows >= 0] = values[rows[rows >= 0]]
        return out

    def evaluate(self, archs: Sequence[Any]) -> np.ndarray:
        return self._lookup(archs, self.values)

    def report(self, archs: Sequence[Any]) -> dict[str, np.ndarray]:
        """The ``report`` columns (recorded with each evaluation, never optimised)."""
        return {c: self._lookup(archs, v) for c, v in self.report_columns.items()}

    def describe(self) -> dict[str, Any]:
        return {"name": self.name, "metric": self.metric, "table": str(self.table.path),
                "tables": [str(p) for p in self.table.paths], "objective": self.objective,
                "report": list(self.report_columns)}


@EVALUATORS.register("tabular", help="look accuracy up in NAS-Bench-201 style CSVs "
                                     "(table=PATH or list, objective=COLUMN, report=COLUMN or list)")
def make_tabular(space: Any, *, seed: int = 0,
                 table: str | os.PathLike | Sequence[str | os.PathLike] | None = None,
                 objective: str = "cifar10_test", report: str | Sequence[str] | None = None) -> TabularEvaluator:
    if table is None or (not isinstance(table, (str, os.PathLike)) and not list(table)):
        raise InputError("the tabular evaluator needs a table", hint="pass table=PATH (--table)")
    return TabularEvaluator(space, join_tables(table), objective, report_names(report, "tabular"))


def report_names(report: str | Sequence[str] | None, evaluator: str) -> list[str]:
    """An evaluator's ``report=`` option (one column name or a list of them) as a list of names."""
    if isinstance(report, int) and not isinstance(report, bool):  # --eval-opt report=12: a column named 12
        report = str(report)
    if report is not None and not isinstance(report, (str, list, tuple)):  # it was "'int' object is not iterable"
        raise InputError(f"{evaluator}: report= takes column names, not {report!r}", hint="e.g. report=cifar10_test")
    cols = [] if report is None else [report] if isinstance(report, str) else list(report)
    if not all(isinstance(c, str) for c in cols):
        raise InputError(f"{evaluator}: report= takes column names", hint="e.g. report=cifar10_test")
    return cols


class TableLatency:
    """One ``*_ms`` column of a benchmark table as a latency model (exact ``min_latency``)."""

    def __init__(self, table: str | os.PathLike | Sequence[str | os.PathLike] | Table, column: str,
                 space: Any | None = None) -> None:
        from edgenas.spaces import SPACES
        from edgenas.spaces import nb201  # noqa: F401  (registers the space)

        self.table = table if isinstance(table, Table) else join_tables(table)
        self.column = column
        self.values = self.table.column(column, latency=True)
        bad = ~(np.isfinite(self.values) & (self.values > 0))
        if bad.any():  # a negated or zeroed column made every network feasible at "-21.2 ms" or "0.0 ms"
            i = int(np.argmax(bad))
            raise InputError(f"table {self.table.name}: latency column '{column}' holds {int(bad.sum()):,} values "
                             f"that are not positive finite times (first: {float(self.values[i])!r} for "
                             f"{self.table.archs[i]})", hint="a latency budget needs a measured time for every row")
        self.space = space if space is not None else SPACES.get("nb201")
        if getattr(self.space, "name", None) != "nb201":  # check_covers gave None: "latency model lacks predict_many"
            raise InputError(f"a benchmark table's latency column needs the nb201 space, not "
                             f"'{getattr(self.space, 'name', self.space)}'",
                             hint="time another space's networks on a device (--device) instead")

    def check_covers(self) -> "TableLatency":
        """Every architecture of the space has a row (a search calls this before it starts: it samples any
        of them, and one the table lacked stopped it mid-run, its run folder written)."""
        strings = _all_arch_strings(self.space)
        if strings is None:
            return self
        rows = self.table.lookup(strings)
        if np.any(rows < 0):
            first = strings[int(np.argmax(rows < 0))]
            raise InputError(f"latency column '{self.column}': {int(np.sum(rows < 0)):,} of the space's "
                             f"{len(strings):,} architectures are not in the table (e.g. {first}); a search "
                             "samples any of them",
                             hint="use a table of every architecture of the space, such as nb201_hw.csv")
        return self

    def predict_many(self, archs: Sequence[Any]) -> np.ndarray:
        rows = self.table.lookup(_arch_strings(self.space, archs))
        if np.any(rows < 0):
            missing = _arch_strings(self.space, [a for a, r in zip(archs, rows) if r < 0])[0]
            raise InputError(f"latency column '{self.column}': architecture {missing} is not in the table")
        return self.values[rows]

    def min_latency(self) -> tuple[float, Any]:
        i = int(np.argmin(self.values))
        return float(self.values[i]), self.space.from_string(self.table.archs[i])

"""Tabular benchmarks: accuracy and measured latency looked up in a CSV (NAS-Bench-201 style).

The table's first five columns are ``index, arch, cifar10_test, cifar100_test, imagenet16_test``;
any number of ``*_ms`` latency columns follow. ``tabular`` (an ``EVALUATORS`` entry) scores an
architecture by one accuracy column; ``TableLatency`` serves one ``*_ms`` column as a latency model
(``predict_many`` / exact ``min_latency``), e.g. for ``--latency-column raspi4_ms``.
"""

from __future__ import annotations

import csv
import math
import os
from functools import lru_cache
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from edgenas.errors import InputError
from edgenas.evaluate.base import EVALUATORS, Evaluator

REQUIRED = ("index", "arch", "cifar10_test", "cifar100_test", "imagenet16_test")


class Table:
    """A parsed benchmark table: arch string -> row number, and float columns."""

    def __init__(self, path: Path, archs: list[str], columns: dict[str, np.ndarray]) -> None:
        self.path = path
        self.archs = archs
        self.columns = columns
        self.row = {a: i for i, a in enumerate(archs)}

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
            raise InputError(f"table {self.path}: no {kind} '{name}'",
                             hint=f"columns: {', '.join(names) or 'none'}")
        return self.columns[name]

    def lookup(self, arch_strings: Sequence[str]) -> np.ndarray:
        """Row numbers (-1 for strings not in the table)."""
        return np.array([self.row.get(s, -1) for s in arch_strings], dtype=np.int64)


@lru_cache(maxsize=8)
def _load(path: str, mtime: float) -> Table:
    p = Path(path)
    try:
        fh = open(p, newline="", encoding="utf-8")
    except FileNotFoundError:
        raise InputError(f"benchmark table not found: {p}", hint="check the --table path") from None
    except OSError as exc:
        raise InputError(f"cannot read benchmark table {p}: {exc}") from None
    with fh:
        reader = csv.reader(fh)
        header = next(reader, None)
        if not header or tuple(header[:5]) != REQUIRED:
            missing = [c for c in REQUIRED if c not in (header or [])]
            raise InputError(f"benchmark table {p}: the first columns must be {', '.join(REQUIRED)}"
                             + (f" (missing: {', '.join(missing)})" if missing else ""))
        extra = header[5:]
        bad = [c for c in extra if not c.endswith("_ms")]
        if bad:
            raise InputError(f"benchmark table {p}: extra columns must be latencies named *_ms, "
                             f"got {', '.join(bad)}")
        archs: list[str] = []
        values: list[list[float]] = []
        for n, row in enumerate(reader, start=2):
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
            archs.append(row[1])
            values.append(nums)
    if not archs:
        raise InputError(f"benchmark table {p} has no rows")
    if len(set(archs)) != len(archs):
        raise InputError(f"benchmark table {p}: an architecture appears twice")
    arr = np.asarray(values, dtype=float)
    names = [header[0], *header[2:]]
    return Table(p, archs, {c: arr[:, i] for i, c in enumerate(names)})


def load_table(path: str | os.PathLike) -> Table:
    """Parse (once per file version) a benchmark table; bad input is one clear ``InputError``."""
    p = Path(path).resolve()
    try:
        mtime = p.stat().st_mtime
    except FileNotFoundError:
        raise InputError(f"benchmark table not found: {p}", hint="check the --table path") from None
    return _load(str(p), mtime)


def _arch_strings(space: Any, archs: Sequence[Any]) -> list[str]:
    return [space.to_dict(a)["arch"] for a in archs]


class TabularEvaluator(Evaluator):
    """Looks accuracy up in a benchmark table (-inf for architectures the table lacks)."""

    name = "tabular"

    def __init__(self, space: Any, table: Table, objective: str) -> None:
        super().__init__(space)
        if getattr(space, "name", None) != "nb201":
            raise InputError(f"the tabular evaluator needs the nb201 space, not '{getattr(space, 'name', space)}'")
        self.table = table
        self.objective = objective
        self.values = table.column(objective)
        self.metric = f"{objective} ({table.path.name})"

    def evaluate(self, archs: Sequence[Any]) -> np.ndarray:
        rows = self.table.lookup(_arch_strings(self.space, archs))
        out = np.full(len(rows), -np.inf)
        out[rows >= 0] = self.values[rows[rows >= 0]]
        return out

    def describe(self) -> dict[str, Any]:
        return {"name": self.name, "metric": self.metric, "table": str(self.table.path),
                "objective": self.objective}


@EVALUATORS.register("tabular", help="look accuracy up in a NAS-Bench-201 style CSV (table=, objective=)")
def make_tabular(space: Any, *, seed: int = 0, table: str | os.PathLike | None = None,
                 objective: str = "cifar10_test") -> TabularEvaluator:
    if table is None:
        raise InputError("the tabular evaluator needs a table", hint="pass table=PATH (--table)")
    return TabularEvaluator(space, load_table(table), objective)


class TableLatency:
    """One ``*_ms`` column of a benchmark table as a latency model (exact ``min_latency``)."""

    def __init__(self, table: str | os.PathLike | Table, column: str, space: Any | None = None) -> None:
        from edgenas.spaces import SPACES
        from edgenas.spaces import nb201  # noqa: F401  (registers the space)

        self.table = table if isinstance(table, Table) else load_table(table)
        self.column = column
        self.values = self.table.column(column, latency=True)
        self.space = space if space is not None else SPACES.get("nb201")

    def predict_many(self, archs: Sequence[Any]) -> np.ndarray:
        rows = self.table.lookup(_arch_strings(self.space, archs))
        if np.any(rows < 0):
            missing = _arch_strings(self.space, [a for a, r in zip(archs, rows) if r < 0])[0]
            raise InputError(f"latency column '{self.column}': architecture {missing} is not in the table")
        return self.values[rows]

    def min_latency(self) -> tuple[float, Any]:
        i = int(np.argmin(self.values))
        return float(self.values[i]), self.space.from_string(self.table.archs[i])

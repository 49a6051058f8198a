"""NAS-Bench-201 at several fidelities: the 12-epoch and 200-epoch columns of ``nb201_valid.csv``
joined (on ``index``, with ``arch`` checked equal) with the 200-epoch test columns of ``nb201_hw.csv``.

``nb201-fidelity`` (an ``EVALUATORS`` entry) looks one column of the joined table up, e.g.
``column=cifar10_valid_12ep`` (cheap rung) or ``column=cifar10_valid`` (200 epochs); a multi-fidelity
search optimises validation columns and reports the test column of what it chose.
"""

from __future__ import annotations

import csv
import math
import os
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from edgenas.errors import InputError
from edgenas.evaluate.base import EVALUATORS, Evaluator


@dataclass(frozen=True)
class FidelityTable:
    """Arch string -> row; float columns from both files (the hw file's test/latency columns included)."""

    archs: tuple[str, ...]
    columns: dict[str, np.ndarray]
    sources: tuple[str, ...]

    def row_of(self, arch_strings: Sequence[str]) -> np.ndarray:
        rows = _rows(self.archs)
        return np.array([rows.get(s, -1) for s in arch_strings], dtype=np.int64)

    def column(self, name: str) -> np.ndarray:
        if name not in self.columns:
            raise InputError(f"nb201 fidelity table: no column '{name}'",
                             hint=f"columns: {', '.join(sorted(self.columns))}")
        return self.columns[name]


@lru_cache(maxsize=4)
def _rows(archs: tuple[str, ...]) -> dict[str, int]:
    return {a: i for i, a in enumerate(archs)}


def _read(path: Path) -> tuple[list[str], list[str], dict[str, list[float]]]:
    try:
        fh = open(path, newline="", encoding="utf-8")
    except OSError as exc:
        raise InputError(f"cannot read nb201 table {path}: {exc.strerror or exc}",
                         hint="pass the path of nb201_valid.csv (../shared/data/nb201/)") from None
    with fh:
        reader = csv.reader(fh)
        header = next(reader, None) or []
        if header[:2] != ["index", "arch"]:
            raise InputError(f"{path}: the first columns must be index, arch")
        idx, archs, cols = [], [], {c: [] for c in header[2:]}
        for n, row in enumerate(reader, start=2):
            if not row:
                continue
            if len(row) != len(header):
                raise InputError(f"{path}, line {n}: {len(row)} fields, expected {len(header)}")
            try:
                vals = [float(v) for v in row[2:]]
                idx.append(int(row[0]))
            except ValueError:
                raise InputError(f"{path}, line {n}: a value is not a number") from None
            if not all(math.isfinite(v) for v in vals):
                raise InputError(f"{path}, line {n}: a value is not finite")
            archs.append(row[1])
            for c, v in zip(header[2:], vals):
                cols[c].append(v)
    if idx != list(range(len(idx))) or not idx:
        raise InputError(f"{path}: rows must be indices 0..N-1 in order")
    return idx, archs, cols


@lru_cache(maxsize=4)
def _load(valid: str, hw: str | None, _mtimes: tuple[float, ...]) -> FidelityTable:
    _, archs, cols = _read(Path(valid))
    sources = [valid]
    if hw is not None:
        _, archs2, cols2 = _read(Path(hw))
        if archs2 != archs:
            raise InputError(f"{hw} and {valid} differ in their rows (index/arch)",
                             hint="both must be the 15,625 NAS-Bench-201 cells in index order")
        for c, v in cols2.items():
            cols.setdefault(c, v)
        sources.append(hw)
    return FidelityTable(tuple(archs), {c: np.asarray(v, dtype=float) for c, v in cols.items()}, tuple(sources))


def load_fidelity_table(valid: str | os.PathLike, hw: str | os.PathLike | None = "auto") -> FidelityTable:
    """The joined table; ``hw="auto"`` takes ``nb201_hw.csv`` next to ``valid`` when it exists."""
    vp = Path(valid).resolve()
    if not vp.is_file():
        raise InputError(f"nb201 table not found: {vp}", hint="pass the path of nb201_valid.csv")
    if hw == "auto":
        cand = vp.with_name("nb201_hw.csv")
        hw = cand if cand.is_file() else None
    hp = None if hw is None else Path(hw).resolve()
    if hp is not None and not hp.is_file():
        raise InputError(f"nb201 table not found: {hp}")
    mt = tuple(p.stat().st_mtime for p in (vp, hp) if p is not None)
    return _load(str(vp), None if hp is None else str(hp), mt)


class FidelityEvaluator(Evaluator):
    """One column of the joined NB-201 table (-inf for cells the table lacks)."""

    name = "nb201-fidelity"

    def __init__(self, space: Any, table: FidelityTable, column: str) -> None:
        super().__init__(space)
        if getattr(space, "name", None) != "nb201":
            raise InputError(f"the nb201-fidelity evaluator needs the nb201 space, not '{space.name}'")
        self.table, self.column = table, column
        self.values = table.column(column)
        self.metric = f"{column} (%)"

    def lookup(self, archs: Sequence[Any], column: str | None = None) -> np.ndarray:
        values = self.values if column is None else self.table.column(column)
        rows = self.table.row_of([self.space.to_dict(a)["arch"] for a in archs])
        out = np.full(len(rows), -np.inf)
        out[rows >= 0] = values[rows[rows >= 0]]
        return out

    def evaluate(self, archs: Sequence[Any]) -> np.ndarray:
        return self.lookup(archs)

    def describe(self) -> dict[str, Any]:
        return {"name": self.name, "metric": self.metric, "column": self.column,
                "tables": list(self.table.sources)}


@EVALUATORS.register("nb201-fidelity", help="a column of nb201_valid.csv joined with nb201_hw.csv "
                                            "(table=PATH, column=cifar10_valid_12ep|cifar10_valid|...)")
def make_fidelity(space: Any, *, seed: int = 0, table: str | None = None, hw: str | None = "auto",
                  column: str = "cifar10_valid_12ep") -> FidelityEvaluator:
    if table is None:
        raise InputError("the nb201-fidelity evaluator needs table=PATH to nb201_valid.csv")
    return FidelityEvaluator(space, load_fidelity_table(table, hw), column)

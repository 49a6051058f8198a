"""NAS-Bench-201 at several fidelities: the 12-epoch and 200-epoch columns of ``nb201_valid.csv``
joined (on ``index``, with ``arch`` checked equal) with the 200-epoch test columns of ``nb201_hw.csv``.

``nb201-fidelity`` (an ``EVALUATORS`` entry) looks one column of the joined table up, e.g.
``column=cifar10_valid_12ep`` (cheap rung) or ``column=cifar10_valid`` (200 epochs); a multi-fidelity
search optimises validation columns, and with ``report=cifar10_test`` on its last rung records the test
column of every architecture that rung scored, so ``best.json`` carries the test accuracy of the one
it chose (as ``--report`` does for a ``--table`` search).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from edgenas.errors import InputError
from edgenas.evaluate.base import EVALUATORS, Evaluator
from edgenas.evaluate.tabular import Table, join_tables, report_names


def load_fidelity_table(valid: str | os.PathLike, hw: str | os.PathLike | None = "auto") -> Table:
    """``nb201_valid.csv`` joined with ``nb201_hw.csv`` by the tabular evaluator's ``join_tables`` (on
    ``index``, ``arch`` checked); ``hw="auto"`` takes ``nb201_hw.csv`` next to ``valid`` when it exists."""
    vp = Path(valid).resolve()
    if not vp.is_file():
        raise InputError(f"nb201 table not found: {vp}", hint="pass the path of nb201_valid.csv")
    if hw == "auto":
        cand = vp.with_name("nb201_hw.csv")
        hw = cand if cand.is_file() else None
    return join_tables([vp] if hw is None else [vp, Path(hw).resolve()])


class FidelityEvaluator(Evaluator):
    """One column of the joined NB-201 table (-inf for cells the table lacks)."""

    name = "nb201-fidelity"

    def __init__(self, space: Any, table: Table, column: str, report: Sequence[str] = ()) -> None:
        super().__init__(space)
        if getattr(space, "name", None) != "nb201":
            raise InputError(f"the nb201-fidelity evaluator needs the nb201 space, not '{space.name}'")
        self.table, self.column = table, column
        self.values = table.objective_column(column)
        self.report_columns = [c for c in dict.fromkeys(report) if c != column]
        for c in self.report_columns:
            table.column(c)  # an unknown column is one InputError now, not at the first evaluation
        self.metric = f"{column} (%)"

    def lookup(self, archs: Sequence[Any], column: str | None = None) -> np.ndarray:
        values = self.values if column is None else self.table.column(column)
        rows = self.table.lookup([self.space.to_dict(a)["arch"] for a in archs])
        out = np.full(len(rows), -np.inf)
        out[rows >= 0] = values[rows[rows >= 0]]
        return out

    def evaluate(self, archs: Sequence[Any]) -> np.ndarray:
        return self.lookup(archs)

    def report(self, archs: Sequence[Any]) -> dict[str, np.ndarray]:
        """The ``report`` columns (recorded with each evaluation, never optimised)."""
        return {c: self.lookup(archs, c) for c in self.report_columns}

    def describe(self) -> dict[str, Any]:
        return {"name": self.name, "metric": self.metric, "column": self.column,
                "tables": [str(p) for p in self.table.paths], "report": list(self.report_columns)}


@EVALUATORS.register("nb201-fidelity", help="a column of nb201_valid.csv joined with nb201_hw.csv "
                                            "(table=PATH, column=cifar10_valid_12ep|cifar10_valid|..., "
                                            "report=cifar10_test: recorded, not optimised)")
def make_fidelity(space: Any, *, seed: int = 0, table: str | None = None, hw: str | None = "auto",
                  column: str = "cifar10_valid_12ep", report: str | Sequence[str] | None = None) -> FidelityEvaluator:
    if table is None:
        raise InputError("the nb201-fidelity evaluator needs table=PATH to nb201_valid.csv")
    return FidelityEvaluator(space, load_fidelity_table(table, hw), column, report_names(report, "nb201-fidelity"))

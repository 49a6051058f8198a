"""Reading past runs back: side-by-side comparison (``edgenas runs compare``)."""

from __future__ import annotations

import math
from typing import Any, Sequence

from edgenas.store.experiment import ExperimentDB
from edgenas.store.runs import evaluation_values, get_run


def best_reached_at(values: Sequence[float], feasible: Sequence[bool]) -> int | None:
    """1-based number of evaluations after which the best feasible value was first reached."""
    best, at = -math.inf, None
    for i, (v, ok) in enumerate(zip(values, feasible), 1):
        if ok and v > best:
            best, at = v, i
    return at


def compare_runs(db: ExperimentDB, refs: Sequence[str]) -> list[dict[str, Any]]:
    rows = []
    for ref in refs:
        r = get_run(db, ref)
        scored = evaluation_values(db, r.id)   # the objective's value column, not every record decoded
        values = [-math.inf if v is None else float(v) for _, v, _ in scored]
        rows.append({"id": r.id, "space": r.space, "dataset": r.task.get("dataset"), "strategy": r.strategy,
                     "seed": r.seed, "evaluations": r.n_evaluations, "objective": r.objective,
                     "best_value": r.best_value, "best_reached_at": best_reached_at(values, [f for _, _, f in scored]),
                     "budgets_ms": {d.device: d.budget_ms for d in r.devices if d.budget_ms is not None},
                     "transferred": len((r.warm_start or {}).get("transferred", [])), "rerun_of": r.rerun_of})
    return rows

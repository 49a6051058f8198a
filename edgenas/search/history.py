"""Reading past runs back: side-by-side comparison (``edgenas runs compare``)."""

from __future__ import annotations

import math
from typing import Any, Sequence

from edgenas.store.experiment import ExperimentDB
from edgenas.store.runs import evaluation_values, get_run


def best_reached_at(values: Sequence[float], feasible: Sequence[bool], best: float | None) -> int | None:
    """1-based number of evaluations after which a feasible one first scored ``best``, the run's recorded best
    value (a tie later is not a new best); None for a run with no best (none of its evaluations feasible) or one
    none of whose feasible evaluations scored it."""
    if best is None or not math.isfinite(best):
        return None
    return next((i for i, (v, ok) in enumerate(zip(values, feasible), 1) if ok and v == best), None)


def compare_runs(db: ExperimentDB, refs: Sequence[str]) -> list[dict[str, Any]]:
    """One row per run: its best value as recorded (``runs show``'s, from its ``best.json``; a multi-fidelity
    run's is its last rung's) and after how many evaluations it was first reached, both of that one best. An
    ask/tell run stopped before it wrote best.json (SIGTERM, kill -9, Ctrl-C) is recorded with its best so far
    (``record.stopped_best``); one recorded with none has neither (its row gave a null best beside the count of
    evaluations to its log's best)."""
    rows = []
    for ref in refs:
        r = get_run(db, ref)
        scored = evaluation_values(db, r.id)   # the objective's value column, not every record decoded
        values = [-math.inf if v is None else float(v) for _, v, _ in scored]
        reached = best_reached_at(values, [f for _, _, f in scored], r.best_value)
        rows.append({"id": r.id, "space": r.space, "dataset": r.task.get("dataset"), "strategy": r.strategy,
                     "seed": r.seed, "evaluations": r.n_evaluations, "objective": r.objective,
                     "best_value": r.best_value, "best_reached_at": reached,
                     "budgets_ms": {d.device: d.budget_ms for d in r.devices if d.budget_ms is not None},
                     "transferred": len((r.warm_start or {}).get("transferred", [])), "rerun_of": r.rerun_of})
    return rows

"""Plot data of the comparison page: convergence curves and fronts of several runs, hypervolume per run.

Hypervolume is taken per device in (accuracy up, latency down) over each run's feasible evaluations,
against one reference box shared by all runs: the worst accuracy and the largest latency (or the
budget, when every run has the same one) seen in any run, and the best of each as the ideal corner.
It is reported as the fraction of that box a run's front dominates, so runs are comparable (0..1). Runs whose
objective is a loss (DARTS) are compared with lower taken as better.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np

from edgenas.report.run_data import ConvergenceData, ParetoData, convergence_data, pareto_data
from edgenas.report.source import RunData
from edgenas.search.pareto import hypervolume


@dataclass(frozen=True)
class HypervolumeRow:
    run: str
    device: str
    hypervolume: float           # fraction of the shared box
    n_front: int


@dataclass(frozen=True)
class BudgetLine:
    ms: float
    runs: list[str]              # the runs with this budget on the device


@dataclass(frozen=True)
class CompareData:
    runs: list[str]
    objective: str
    unit: str
    devices: list[str]                           # devices every run has
    convergence: dict[str, ConvergenceData]      # run -> curve
    fronts: dict[str, dict[str, ParetoData]]     # device -> run -> data
    hypervolume: list[HypervolumeRow]
    reference: dict[str, tuple[float, float]]    # device -> (accuracy, latency) of the reference corner
    budgets: dict[str, list[BudgetLine]]         # device -> one line per distinct budget, in run order
    higher_is_better: bool = True


def compare_data(runs: Sequence[RunData]) -> CompareData:
    if not runs:
        raise ValueError("nothing to compare")
    objective, sign = runs[0].objective, (1.0 if runs[0].higher_is_better else -1.0)
    common = [d for d in runs[0].budgets if all(d in r.budgets for r in runs[1:])]
    conv = {r.id: convergence_data(r) for r in runs}
    fronts = {d: {r.id: pareto_data(r, d) for r in runs} for d in common}
    rows, refs = [], {}
    for d in common:
        feas = [p for pd in fronts[d].values() for p in pd.points if p.feasible]
        if not feas:
            continue
        acc = np.array([sign * p.accuracy for p in feas])   # higher is better
        lat = np.array([p.latency_ms for p in feas])
        budgets = {r.budgets.get(d) for r in runs}
        lat_ref = budgets.pop() if len(budgets) == 1 and None not in budgets else float(lat.max())
        lat_ref = max(lat_ref, float(lat.max()))
        refs[d] = (float(sign * acc.min()), float(lat_ref))
        # in the box's own units, the reference corner at (1, 1): the hypervolume is the share of the box
        best, worst, fastest = float(acc.max()), float(acc.min()), float(lat.min())
        for r in runs:
            pts = fronts[d][r.id].front
            if not (best > worst and lat_ref > fastest):  # an empty box
                rows.append(HypervolumeRow(r.id, d, 0.0, len(pts)))
                continue
            F = np.array([[_share(best, sign * p.accuracy, best, worst) for p in pts],
                          [_share(p.latency_ms, fastest, lat_ref, fastest) for p in pts]]).T
            rows.append(HypervolumeRow(r.id, d, float(hypervolume(F, np.ones(2))), len(pts)))
    return CompareData([r.id for r in runs], objective, runs[0].objective_unit, common, conv, fronts, rows, refs,
                       {d: budget_lines(runs, d) for d in common}, runs[0].higher_is_better)


def _share(a: float, b: float, hi: float, lo: float) -> float:
    """(a - b) / (hi - lo), taken in halves: finite for any finite numbers (accepted objectives of -1e308 and
    1e308 made a box of inf, numpy's overflow warnings on the terminal and hypervolumes of nan)."""
    return (a / 2 - b / 2) / (hi / 2 - lo / 2)


def budget_lines(runs: Sequence[RunData], device: str) -> list[BudgetLine]:
    """One line per distinct budget of ``runs`` on ``device`` (runs without one have none), in run order."""
    lines: dict[float, list[str]] = {}
    for r in runs:
        if r.budgets.get(device) is not None:
            lines.setdefault(r.budgets[device], []).append(r.id)
    return [BudgetLine(ms, ids) for ms, ids in lines.items()]

"""Plot data of a run page, computed apart from rendering (tested on values, as optuna's visualisation).

Each function takes a parsed run (``RunData``) and returns a frozen record with plain numbers:

* ``pareto_data``: per device, every evaluation (accuracy vs predicted latency), the feasible front,
  the budget and the chosen architecture;
* ``convergence_data``: the best feasible accuracy after each evaluation, against the evaluation
  count and the wall time;
* ``breakdown_data``: the chosen architecture's blocks in order, grouped by stage, each block's share
  of the predicted (raw LUT) latency on each device with a LUT;
* ``deployment_data``: measured vs predicted latency of the deployed architectures of the run's space.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from edgenas.limits import is_finite
from edgenas.report.columns import arch_label
from edgenas.report.source import DataSource, RunData
from edgenas.search.pareto import pareto_mask
from edgenas.search.results import best_key


@dataclass(frozen=True, slots=True)
class Point:
    number: int
    latency_ms: float
    accuracy: float
    feasible: bool
    label: str = ""


@dataclass(frozen=True)
class ParetoData:
    device: str
    objective: str
    unit: str
    points: list[Point]
    front: list[Point]           # feasible, non-dominated in (accuracy up, latency down), by latency
    budget_ms: float | None
    chosen: Point | None
    higher_is_better: bool = True
    measured: bool = False       # the latency is a benchmark table's measured column, not a prediction


@dataclass(frozen=True)
class ConvergenceData:
    objective: str
    unit: str
    numbers: list[int]           # 1-based evaluation counts
    wall_s: list[float]
    best: list[float | None]     # best feasible accuracy so far (None before the first feasible one)
    higher_is_better: bool = True


@dataclass(frozen=True)
class BlockShare:
    index: int
    stage: str
    key: str
    ms: float
    share: float                 # of the raw predicted latency (overhead included as its own row)


@dataclass(frozen=True)
class Breakdown:
    device: str
    total_ms: float              # raw LUT prediction (overhead + net block costs)
    predicted_ms: float          # after the LUT's calibration
    blocks: list[BlockShare]
    lut: str                     # fingerprint hash of the table used


@dataclass(frozen=True)
class BreakdownData:
    arch: dict[str, Any] | None
    devices: list[Breakdown]
    missing: dict[str, str] = field(default_factory=dict)   # device -> why no breakdown


@dataclass(frozen=True)
class Deployment:
    device: str
    predicted_ms: float
    measured_ms: float
    chosen: bool
    measurement_id: str
    error: float                 # predicted / measured - 1


def pareto_data(run: RunData, device: str) -> ParetoData:
    acc, sign, c = run.objective, (1.0 if run.higher_is_better else -1.0), run.cols
    a, lat = c.objective_values(acc), c.latencies(device)
    idx = np.flatnonzero(np.isfinite(a) & np.isfinite(lat))
    pts = [Point(n, x, y, f, c.labels[i]) for i, n, x, y, f in zip(
        idx.tolist(), c.number[idx].tolist(), lat[idx].tolist(), a[idx].tolist(), c.feasible[idx].tolist())]
    ok = [p for p in pts if p.feasible]
    front: list[Point] = []
    if ok:
        good = idx[c.feasible[idx]]
        mask = pareto_mask(np.column_stack([-sign * a[good], lat[good]]))
        front = sorted((p for p, m in zip(ok, mask) if m), key=lambda p: (p.latency_ms, -sign * p.accuracy, p.number))
    chosen, budget = None, run.budgets.get(device)
    if run.best_number is not None:
        chosen = next((p for p in pts if p.number == run.best_number), None)
        lat = ((run.best or {}).get("latency_ms") or {}).get(device)
        if run.darts and chosen is not None and is_finite(lat):
            # best.json's network, at its epoch's loss (a greedy repair may have changed that epoch's argmax)
            chosen = replace(chosen, latency_ms=float(lat), feasible=budget is None or lat <= budget,
                             label=arch_label(run.best.get("arch")))
    elif ok and run.darts:  # a DARTS run still training: the lowest loss so far (ties: the faster)
        chosen = max(ok, key=lambda p: (sign * p.accuracy, -p.latency_ms, -p.number))
    elif ok:  # a running search: the best so far, as the search chooses its best when it ends
        number = _running_best(run)
        chosen = next((p for p in ok if p.number == number), None)
    return ParetoData(device, acc, run.objective_unit, pts, front, budget, chosen, run.higher_is_better,
                      device in run.table_columns)


def _running_best(run: RunData) -> int | None:
    """The number of the evaluation a running search would choose now (``results.best_key``): on accuracy, then
    its latencies on every device as shares of their budgets (not only the plotted device's), then the extra
    objectives it minimises, then the first."""
    budgets, c = run.budgets, run.cols
    extra = [k for k in ("params", "flops") if k in ((run.request or {}).get("minimise") or ())]
    a = c.objective_values(run.objective)
    lats = [c.latencies(d) for d in budgets]     # NaN where not finite, as best_key wants
    extras = [c.objective_values(k) for k in extra]
    keyed = {}
    for i in np.flatnonzero(c.feasible & np.isfinite(a)).tolist():
        number = int(c.number[i])
        keyed[number] = best_key(float(a[i]), [float(x[i]) for x in lats], list(budgets.values()),
                                 [float(x[i]) for x in extras], number)
    return max(keyed, key=keyed.__getitem__) if keyed else None


def best_so_far(run: RunData) -> dict[str, Any] | None:
    """The best so far of an ask/tell run that has written no best.json (a search writes it when it ends: one
    running, or stopped by kill -9, SIGTERM or Ctrl-C), as best.json's fields: the evaluation it would choose now
    (``_running_best``, the plots' star), as ``runs import`` records a stopped run's (``record.stopped_best``).
    None where best.json is written, for DARTS and multi-fidelity runs, or with no feasible evaluation."""
    if run.best is not None or run.darts or run.last_rung is not None:
        return None
    number, c = _running_best(run), run.cols
    if number is None:
        return None
    i = int(np.flatnonzero(c.number == number)[0])
    return {"arch": c.archs[i], "objectives": {k: float(v[i]) for k, v in c.objectives.items() if np.isfinite(v[i])},
            "latency_ms": {d: float(v[i]) for d, v in c.latency_ms.items() if np.isfinite(v[i])}, "number": number}


def convergence_data(run: RunData) -> ConvergenceData:
    acc, sign, c = run.objective, (1.0 if run.higher_is_better else -1.0), run.cols
    a = c.objective_values(acc)
    # the best so far as a running maximum of the signed values (-inf: none feasible yet); sign * (sign * a) is a
    running = np.maximum.accumulate(np.where(c.feasible & np.isfinite(a), sign * a, -np.inf)) if len(c) else a
    curve = [None if r == -np.inf else sign * r for r in running.tolist()]
    return ConvergenceData(acc, run.objective_unit, list(range(1, len(c) + 1)), c.wall_s.tolist(), curve,
                           run.higher_is_better)


def block_stages(space: Any, arch: Any) -> list[str]:
    """A stage label for each of ``space.block_keys(arch)``, in order."""
    keys = space.block_keys(arch)
    cfg = getattr(space, "config", None)
    if cfg is not None and hasattr(arch, "d"):      # elastic MobileNetV3
        labels = ["stem", "first block"]
        for s, depth in enumerate(arch.d):
            labels += [f"stage {s + 1}"] * depth
        labels += ["head"] * (len(keys) - len(labels))
        return labels[: len(keys)]
    out = []
    for k in keys:                                    # nb201 and other spaces: from the key's kind
        parts = k.split("-")
        kind = parts[1] if len(parts) > 1 else "block"
        if kind == "op":
            s = next((p for p in parts if p.startswith("s") and p[1:].isdigit()), "")
            out.append(f"cell {s[1:]}x{s[1:]}" if s else "cell")
        else:
            out.append(kind)
    return out


def breakdown_data(run: RunData, source: DataSource) -> BreakdownData:
    from edgenas.errors import InputError
    from edgenas.latency.predictor import LatencyPredictor
    from edgenas.spaces import get_space

    arch_rec = (run.best or {}).get("arch")
    if arch_rec is None:  # still running: the best so far
        if run.darts:  # the lowest loss so far, as the first device's plot marks it
            p = [pareto_data(run, d).chosen for d in run.budgets][:1]
            num = p[0].number if p and p[0] else None
        else:
            num = _running_best(run)
        at = np.flatnonzero(run.cols.number == num) if num is not None else []
        arch_rec = run.cols.archs[at[0]] if len(at) else None
    if arch_rec is None:
        return BreakdownData(None, [], {d: "no feasible architecture yet" for d in run.budgets})
    space = get_space(run.space)
    arch = space.from_dict(arch_rec)
    keys, stages = space.block_keys(arch), block_stages(space, arch)
    out, missing = [], {}
    for device in run.budgets:
        lut = None
        try:
            lut = next((t for t in source.luts(device) if t.space == space.name), None)
        except InputError:
            pass
        if lut is None:
            missing[device] = "no LUT (a benchmark-table column or an unprofiled device)"
            continue
        try:
            pred = LatencyPredictor(lut, space)
        except InputError as exc:
            missing[device] = str(exc)
            continue
        raw = pred.predict_raw(arch)
        if not raw > 0:  # every cost 0: a table edited by hand (a device's timings are > 0); no shares of 0 ms
            missing[device] = "its LUT gives this network 0 ms (no block has a cost): rebuild the table"
            continue
        blocks = [BlockShare(0, "overhead", "runtime overhead (once per inference)", pred.overhead_ms,
                             pred.overhead_ms / raw)]
        blocks += [BlockShare(i + 1, st, k, pred.key_cost[k], pred.key_cost[k] / raw)
                   for i, (k, st) in enumerate(zip(keys, stages))]
        out.append(Breakdown(device, raw, pred.predict(arch), blocks, lut.fingerprint_hash))
    return BreakdownData(dict(arch_rec), out, missing)


def deployment_data(run: RunData, source: DataSource) -> list[Deployment]:
    from edgenas.errors import InputError
    from edgenas.spaces import get_space

    space = get_space(run.space)
    chosen = (run.best or {}).get("arch")
    chosen_id = space.arch_id(space.from_dict(chosen)) if chosen else None
    out = []
    for device in run.budgets:
        for m in source.measurements(device=device, space=space.name):
            measured = m.stats.get("nominal_ms") or m.stats.get("median_ms")
            if m.predicted_ms is None or not is_finite(measured) or measured <= 0:
                continue
            try:
                same = chosen_id is not None and space.arch_id(space.from_dict(m.arch)) == chosen_id
            except InputError:  # a row edited or written by another version: the device page lists it, no run
                continue
            out.append(Deployment(device, float(m.predicted_ms), float(measured), same, m.id,
                                  float(m.predicted_ms) / float(measured) - 1.0))
    return out

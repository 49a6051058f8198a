"""Runs whose chosen architecture a device's new latency table invalidates (``edgenas runs stale``).

A run chose its architecture for latency budgets under the tables of that time (each device's LUT, or
a benchmark table's column, recorded with its SHA-256). When a device's table is rebuilt or rescaled
(``fleet refresh``), every finished run on that device is re-checked under the current table:

* **over budget**: the chosen architecture's predicted latency now exceeds a budget;
* **no longer best**: another architecture the run evaluated now meets every budget and is more
  accurate than the chosen one (the front moved under the new table).

Runs whose tables are unchanged (same hash) are not stale; runs whose table is no longer at hand are
reported as ``unknown``, not guessed; a run already repeated (``search --rerun``, finished) is not
listed again (its re-run is checked instead).
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from edgenas.errors import EdgenasError
from edgenas.project import Project
from edgenas.store.experiment import ExperimentDB
from edgenas.store.rows import row_arch, run_hint
from edgenas.store.runs import RunDevice, RunRecord, list_runs, run_evaluations


@dataclass(frozen=True)
class StaleRun:
    run_id: str
    out_dir: str
    space: str
    status: str                         # over_budget | not_best | unknown
    reason: str
    devices: tuple[str, ...]            # the devices whose table changed
    chosen_number: int | None = None
    chosen_then_ms: dict[str, float] | None = None
    chosen_now_ms: dict[str, float] | None = None
    better_number: int | None = None

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__, devices=list(self.devices))


def current_model(project: Project, space: Any, dev: RunDevice) -> tuple[Any | None, str | None]:
    """(the device's latency model now, its hash); (None, None) when it is no longer at hand. A device that ran on
    its few-shot model and has been profiled since is predicted by its LUT, as a search there would be now (it
    was checked against the refitted few-shot model, which nothing uses once a LUT exists)."""
    from edgenas.search.record import column_hash, record_hash

    try:
        if dev.kind == "fewshot":
            from edgenas.latency.store import LutStore

            if LutStore(project.luts_dir).list(dev.device, space.name):  # as ``launch.build_problem`` chooses
                return current_model(project, space, dataclasses.replace(dev, kind="lut"))
        if dev.kind == "table" and dev.lut_ref and "#" in dev.lut_ref:
            from edgenas.evaluate.tabular import TableLatency

            path, column = dev.lut_ref.rsplit("#", 1)
            model = TableLatency(path, column, space)
            return model, column_hash(model.values)
        if dev.kind == "lut":
            from edgenas.latency.predictor import LatencyPredictor
            from edgenas.latency.store import LutStore

            lut = LutStore(project.luts_dir).latest(dev.device, space.name)
            return LatencyPredictor(lut, space), record_hash(lut)
        if dev.kind == "fewshot":
            from edgenas.latency.fewshot_model import load_latency_model

            model = load_latency_model(project.luts_dir, dev.device, space)
            return (None, None) if model is None else (model, record_hash(model.model))
    except EdgenasError:
        return None, None
    return None, None


def check_run(db: ExperimentDB, project: Project, run: RunRecord,
              models: dict[tuple[Any, ...], tuple[Any, str | None]] | None = None) -> StaleRun | None:
    """``models`` (one dict per ``find_stale``) keeps each device's current model and hash: every run reloaded,
    re-checked and re-hashed the same table (4.8 s for 150 runs on an 870-entry LUT)."""
    from edgenas.spaces import get_space

    budgeted = [d for d in run.devices if d.budget_ms is not None]
    if run.best_arch is None or not budgeted:
        return None
    space, models = get_space(run.space), {} if models is None else models
    now: dict[str, Any] = {}
    changed, lost = [], []
    for d in budgeted:
        key = (d.kind, d.device, space.name, d.lut_ref if d.kind == "table" else None)
        if key not in models:
            models[key] = current_model(project, space, d)
        model, h = models[key]
        if model is None:
            lost.append(d.device)
        elif h != d.lut_hash:
            changed.append(d.device)
            now[d.device] = model
    if lost and not changed:
        return StaleRun(run.id, run.out_dir, run.space, "unknown",
                        f"the latency table of {', '.join(lost)} is no longer at hand", tuple(lost), run.best_number)
    if not changed:
        return None
    evals = run_evaluations(db, run.id)
    hint = run_hint(run.out_dir)
    chosen = row_arch(space, run.best_arch, db.where, "runs", f"run {run.id}", hint=hint)
    then = {d: float(e.latency_ms[d]) for e in evals if e.number == run.best_number for d in changed
            if d in e.latency_ms}
    chosen_now = {d: float(now[d].predict_many([chosen])[0]) for d in changed}
    over = [d.device for d in budgeted if d.device in chosen_now and chosen_now[d.device] > d.budget_ms]
    base = dict(run_id=run.id, out_dir=run.out_dir, space=run.space, devices=tuple(changed),
                chosen_number=run.best_number, chosen_then_ms=then, chosen_now_ms=chosen_now)
    if over:
        d = next(x for x in budgeted if x.device == over[0])
        return StaleRun(status="over_budget", reason=f"the chosen architecture (#{run.best_number}) now takes "
                        f"{chosen_now[d.device]:.4g} ms on {d.device} > budget {d.budget_ms:.4g} ms "
                        f"(was {then.get(d.device, float('nan')):.4g} ms)", **base)
    archs = [row_arch(space, e.arch, db.where, "evaluations", f"run {run.id}, evaluation {e.number}", hint=hint)
             for e in evals]
    lat = {d: np.asarray(now[d].predict_many(archs), float) for d in changed}
    ok = np.ones(len(evals), bool)
    for d in budgeted:
        v = lat[d.device] if d.device in lat else np.array([float(e.latency_ms.get(d.device, math.inf)) for e in evals])
        ok &= v <= d.budget_ms
    values = np.array([float(e.objectives.get(run.objective, -math.inf)) for e in evals])
    best_value = -math.inf if run.best_value is None else float(run.best_value)
    better = [i for i in np.flatnonzero(ok) if values[i] > best_value + 1e-12]
    if better:
        i = max(better, key=lambda j: (values[j], -evals[j].number))
        return StaleRun(status="not_best", reason=f"evaluation #{evals[i].number} ({run.objective} "
                        f"{values[i]:.4g} > {best_value:.4g}) now meets every budget", better_number=evals[i].number,
                        **base)
    return None


def find_stale(db: ExperimentDB, project: Project, *, device: str | None = None,
               space: str | None = None) -> tuple[list[StaleRun], int]:
    """(stale runs, number of runs checked): finished runs with a latency budget and a chosen
    architecture (on ``device`` if given)."""
    runs = [r for r in list_runs(db, space=space, device=device) if r.status == "complete"]
    rerun = {r.rerun_of for r in runs if r.rerun_of}
    runs = [r for r in runs if r.id not in rerun and r.best_arch is not None
            and any(d.budget_ms is not None for d in r.devices)]
    out, models = [], {}
    for r in runs:
        s = check_run(db, project, r, models)
        if s is not None and (device is None or device in s.devices):
            out.append(s)
    return out, len(runs)

"""What a finished run yields: the best feasible architecture and the Pareto fronts (pure data), and the
writer of ``best.json`` / ``pareto.json``."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np

from edgenas.io import atomic_write_json
from edgenas.search.base import Trial
from edgenas.search.pareto import pareto_mask


@dataclass(frozen=True)
class SearchResult:
    """``best``: the feasible trial of highest accuracy (None when none was feasible); ``fronts``: per
    device, the feasible trials non-dominated in (accuracy, that device's latency); ``pareto``: the
    feasible trials non-dominated in all of the problem's objectives."""

    best: Trial | None
    best_arch: Any | None
    fronts: dict[str, list[Trial]]
    pareto: list[Trial]
    n_evaluations: int
    out_dir: Path
    stopped: str                      # "budget", "wall_time" or "exhausted" (nothing new left to evaluate)
    trials: list[Trial] = field(default_factory=list, repr=False)


def _front(trials: list[Trial], columns: list[np.ndarray]) -> list[Trial]:
    if not trials:
        return []
    F = np.column_stack(columns).astype(float)
    F[~np.isfinite(F)] = np.inf
    idx = np.flatnonzero(pareto_mask(F))
    idx = sorted(idx, key=lambda i: (tuple(F[i]), trials[i].number))
    return [trials[i] for i in idx]


def _first_of_each(trials: list[Trial], space: Any) -> list[Trial]:
    """The first evaluation of each architecture: one evaluated twice (a search may repeat one when its
    budget leaves few unseen) is one point of a front, not two (its values are the first's, cached)."""
    seen: set[str] = set()
    out = []
    for t in trials:
        key = space.arch_id(space.from_dict(t.arch))
        if key not in seen:
            seen.add(key)
            out.append(t)
    return out


def best_key(accuracy: float, latency_ms: Sequence[float], budgets_ms: Sequence[float | None],
             extra: Sequence[float], number: int) -> tuple[Any, ...]:
    """The order a run's best is chosen by (the largest key): the most accurate; of equally accurate ones the
    fastest (latencies summed as shares of their budgets, else in ms), then the smallest in the extra
    objectives, then the first evaluated: a choice no equally accurate evaluation dominates. Ties decided by
    evaluation order alone chose a network 250 times slower than an equally accurate one on the front
    (13,794 of nb201's 15,625 cifar10_test values are tied). A latency or extra value that is not finite
    counts as infinite."""
    def finite(v: float) -> float:
        return v if np.isfinite(v) else np.inf

    lat = sum(finite(ms) / (budget or 1.0) for ms, budget in zip(latency_ms, budgets_ms))
    return (accuracy, -lat, tuple(-finite(v) for v in extra), -number)


def choose_best(trials: Sequence[Trial], space: Any, accuracy: str, budgets_ms: Mapping[str, float | None],
                extra: Sequence[str]) -> Trial | None:
    """The run's best of ``trials`` (None when none is feasible): of the first evaluation of each architecture,
    feasible and of finite ``accuracy``, the one of largest ``best_key`` on the devices of ``budgets_ms`` (each
    one's budget, in the run's order) and the ``extra`` objectives. What ``summarise`` writes to best.json, and
    what a stopped run that wrote none (killed, interrupted) would have chosen of what it logged."""
    return _best_of(_feasible_firsts(trials, space, accuracy), accuracy, budgets_ms, extra)


def _feasible_firsts(trials: Sequence[Trial], space: Any, accuracy: str) -> list[Trial]:
    return _first_of_each([t for t in trials if t.feasible and np.isfinite(t.objectives[accuracy])], space)


def _best_of(ok: Sequence[Trial], accuracy: str, budgets_ms: Mapping[str, float | None],
             extra: Sequence[str]) -> Trial | None:
    return max(ok, key=lambda t: best_key(t.objectives[accuracy], [t.latency_ms[d] for d in budgets_ms],
                                          list(budgets_ms.values()), [t.objectives[k] for k in extra], t.number)
               ) if ok else None


def summarise(trials: list[Trial], problem: Any, out_dir: Path, stopped: str) -> SearchResult:
    acc = problem.accuracy_name
    ok = _feasible_firsts(trials, problem.space, acc)
    best = _best_of(ok, acc, {d.name: d.budget_ms for d in problem.devices}, list(problem.extra))
    neg_acc = np.array([-t.objectives[acc] for t in ok])
    fronts = {d.name: _front(ok, [neg_acc, np.array([t.latency_ms[d.name] for t in ok])])
              for d in problem.devices}
    cols = [neg_acc]
    cols += [np.array([t.latency_ms[d.name] for t in ok]) for d in problem.devices if d.is_objective]
    cols += [np.array([t.objectives[k] for t in ok]) for k in problem.extra]
    return SearchResult(best=best, best_arch=problem.space.from_dict(best.arch) if best else None,
                        fronts=fronts, pareto=_front(ok, cols), n_evaluations=len(trials),
                        out_dir=out_dir, stopped=stopped, trials=trials)


def _point(t: Trial, acc: str) -> dict[str, Any]:
    d = {"number": t.number, "arch": dict(t.arch), "accuracy": t.objectives[acc],
         "objectives": dict(t.objectives), "latency_ms": dict(t.latency_ms)}
    if t.report:
        d["report"] = dict(t.report)
    return d


def write_results(result: SearchResult, problem: Any, out_dir: Path) -> None:
    acc = problem.accuracy_name
    atomic_write_json(out_dir / "pareto.json", {
        "schema": 1, "objectives": problem.objective_names,
        "devices": {name: [_point(t, acc) for t in front] for name, front in result.fronts.items()},
        "front": [_point(t, acc) for t in result.pareto],
    })
    b = result.best
    atomic_write_json(out_dir / "best.json", {
        "arch": dict(b.arch) if b else None,
        "objectives": dict(b.objectives) if b else None,
        "latency_ms": dict(b.latency_ms) if b else None,
        "report": dict(b.report) if b else None,
        "number": b.number if b else None,
        "evaluations": result.n_evaluations,
        "stopped": result.stopped,
    })

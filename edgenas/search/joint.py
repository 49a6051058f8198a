"""Latency budgets on several devices that each can be met, but not by one architecture: told before a search.

``Problem.check_budgets`` refuses a budget below its device's fastest architecture, one device at a time. Budgets
of several devices can each pass that and still exclude each other: the fastest cell on one device is slow on
another. Such a search found nothing and said the wrong thing: ``random`` (and ``sh``/``hyperband``'s brackets)
drew nothing and ended "exhausted", "every architecture that meets the latency budget has been drawn"; the other
strategies spent their whole budget on infeasible candidates (``gp``: 20 evaluations in 8 minutes on nb201, in 15 s
under budgets it could meet); DARTS trained to the end to say that no cell meets every budget.

``check_joint`` tells it before anything runs (``launch_search``, a new run), cheapest first:

1. the devices' fastest architectures (the anchors): one that meets every budget settles it;
2. a space of at most ``MAX_LISTED`` gene vectors (nb201, mbv3-tiny) is listed whole, one prediction per device:
   exact, and when nothing meets every budget the run is refused (``JointInfeasibleError``) with, per device, the
   budget it would need with the others kept;
3. a larger space: ``SAMPLES`` uniform samples and repairs of the least violating toward each anchor; then, where
   every budgeted latency is a LUT's block sum (``LatencyPredictor``) and the space's ``min_latency`` exact, a
   Lagrangian bound: for weights w >= 0, no architecture meets every budget if the smallest weighted sum of raw
   latencies (each over its raw budget) exceeds the sum of the weights; that minimum is the space's exact
   ``min_latency`` over the weighted costs. A bound above is a proof, refused as in 2. Otherwise it is unknown:
   the search runs, with a warning, and a run that finds nothing says that nothing met the budgets together.

A resume is not checked here: it replays its log, and one whose tables changed so that nothing meets the budgets
any more is refused by the replay (``ReplayMismatch``, "a latency table changed since the run started").
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np

from edgenas.errors import JointInfeasibleError
from edgenas.search.candidates import novel_feasible, repair_toward_anchor
from edgenas.search.draws import listable
from edgenas.search.problem import plain_ms

#: uniform samples the bounded check of a space too large to list takes (predictor calls of ``CHUNK``)
SAMPLES, CHUNK = 2_000, 250
#: weights per pair of devices the Lagrangian bound tries (and as many random ones over all devices)
WEIGHTS = 64
#: a bound counts as a proof only above the weights' sum by this share (the sums are floats, in another order)
MARGIN = 1e-9


@dataclass(frozen=True)
class _Device:
    name: str
    model: Any
    budget: float
    min_ms: float
    fastest: Any


class _Budgets:
    """The budgets as ``Feasibility`` (``violation``, ``anchors``): what the bounded check samples and repairs with."""

    def __init__(self, devices: Sequence[_Device]) -> None:
        self.devices = list(devices)

    def latencies(self, archs: Sequence[Any]) -> np.ndarray:
        """(n devices, n archs) predicted latencies."""
        return np.stack([np.asarray(d.model.predict_many(archs), dtype=float) for d in self.devices])

    def violation(self, archs: Sequence[Any]) -> np.ndarray:
        lat = self.latencies(archs)
        b = np.array([d.budget for d in self.devices])[:, None]
        return (np.maximum(lat - b, 0.0) / b).sum(axis=0)

    def anchors(self) -> list[Any]:
        return [d.fastest for d in self.devices]


def check_joint(space: Any, targets: Sequence[Any], *, quantile: bool = False, seed: int = 0) -> str | None:
    """Refuse budgets of several devices (``DeviceTarget``s) that no architecture of ``space`` meets together
    (``JointInfeasibleError``), where that is certain; a warning to say where it is likely but unknown (none
    found in a space too large to list, no bound proves it); None where an architecture meets them all. A
    single budget is ``Problem.check_budgets``'s. ``quantile``: the budgets came from
    ``--max-latency-quantile`` (the hint says to raise it)."""
    devices = []
    for t in targets:
        if t.budget_ms is not None:
            ms, arch = t.model.min_latency()
            devices.append(_Device(t.name, t.model, float(t.budget_ms), float(ms), arch))
    if len(devices) < 2:
        return None
    budgets = _Budgets(devices)
    on_anchors = budgets.latencies(budgets.anchors())  # [device, anchor]
    b = np.array([d.budget for d in devices])
    if (on_anchors <= b[:, None]).all(axis=0).any():
        return None
    if listable(space):
        return _listed(space, budgets, on_anchors, quantile)
    rng = np.random.default_rng(seed)
    found, closest = novel_feasible(space, budgets, lambda: space.sample(rng), set(), SAMPLES, lambda _: CHUNK)
    if found is not None:
        return None
    starts = [closest] if closest is not None else []
    for start in starts + [d.fastest for d in devices]:
        for anchor in budgets.anchors():
            fixed = repair_toward_anchor(space, budgets, start, rng, anchors=[anchor])
            if float(budgets.violation([fixed])[0]) <= 0.0:
                return None
    why = _anchor_text(devices, on_anchors)
    if _bound_excludes(space, devices):
        raise _error(space, devices, why, {}, quantile, proof="a lower bound over the LUTs' block costs shows it")
    return (f"warning: the latency budgets of {_budget_list(devices)} may not be met together: none of "
            f"{SAMPLES:,} sampled architectures of space '{space.name}', nor their repairs toward each device's "
            f"fastest, meets them all ({why}); the search may find nothing within them (loosen a budget)")


def _listed(space: Any, budgets: _Budgets, on_anchors: np.ndarray, quantile: bool) -> None:
    """Every gene vector of a listable space against every budget: refused when none meets them all."""
    sizes = tuple(int(s) for s in space.gene_sizes())
    archs = [space.from_genes(g) for g in np.indices(sizes).reshape(len(sizes), -1).T]
    lat = budgets.latencies(archs)
    devices = budgets.devices
    b = np.array([d.budget for d in devices])[:, None]
    meets = lat <= b
    if meets.all(axis=0).any():
        return None
    needed = {}
    for i, d in enumerate(devices):  # the budget on d that the others leave it needing, where they leave any
        others = np.delete(meets, i, axis=0).all(axis=0)
        if others.any():
            needed[d.name] = float(lat[i, others].min())
    raise _error(space, devices, _anchor_text(devices, on_anchors), needed, quantile,
                 proof=f"none of its {len(archs):,} architectures does")


def _error(space: Any, devices: Sequence[_Device], why: str, needed: dict[str, float], quantile: bool, *,
           proof: str) -> JointInfeasibleError:
    message = (f"no architecture of space '{space.name}' meets the latency budgets of {_budget_list(devices)} "
               f"together, though each device alone can meet its own ({proof}: {why})")
    if quantile:
        hint = "raise --max-latency-quantile (each device's budget is that quantile of its own latencies)"
    elif needed:
        hint = "loosen a budget (--max-latency-ms): " + ", or ".join(
            f"'{name}' to at least {plain_ms(ms, up=True)} ms" for name, ms in needed.items())
        if len(devices) > 2:
            hint += ", each with the others as they are"
    else:
        hint = ("loosen a budget (--max-latency-ms)" if len(devices) == 2 else
                "loosen two or more budgets (--max-latency-ms): no single one is enough")
    return JointInfeasibleError(message, budgets={d.name: d.budget for d in devices}, needed=needed,
                                min_latency_ms=min(d.min_ms for d in devices), hint=hint)


def _budget_list(devices: Sequence[_Device]) -> str:
    parts = [f"'{d.name}' ({plain_ms(d.budget)} ms)" for d in devices]
    return parts[0] if len(parts) == 1 else ", ".join(parts[:-1]) + " and " + parts[-1]


def _anchor_text(devices: Sequence[_Device], on_anchors: np.ndarray) -> str:
    """Per device, what its fastest architecture takes on the first other device whose budget it breaks."""
    said = []
    for j, d in enumerate(devices):
        for i, other in enumerate(devices):
            if i != j and on_anchors[i, j] > other.budget:
                said.append(f"the fastest on '{d.name}' takes {_ms(float(on_anchors[i, j]))} ms on '{other.name}'")
                break
    return ", ".join(said)


def _ms(ms: float) -> str:
    """A predicted latency in 4 significant digits, without an exponent (``plain_ms`` keeps every digit)."""
    return np.format_float_positional(ms, precision=4, unique=False, fractional=False, trim="-")


def _bound_excludes(space: Any, devices: Sequence[_Device]) -> bool:
    """Whether a Lagrangian bound proves that no architecture meets every budget: only for LUT block sums
    (``LatencyPredictor``: raw = overhead + the blocks' costs, calibrated by an increasing map) in a space whose
    ``min_latency`` is exact (its own, not ``SearchSpace``'s greedy fallback)."""
    from edgenas.latency.predictor import LatencyPredictor
    from edgenas.spaces.base import SearchSpace

    if type(space).min_latency is SearchSpace.min_latency:
        return False
    if not all(isinstance(d.model, LatencyPredictor) for d in devices):
        return False
    raw_budget = [_raw_budget(d.model, d.budget) for d in devices]
    if not all(r is not None and r > 0 for r in raw_budget):
        return False
    n = len(devices)
    rng = np.random.default_rng(0)
    weights = [w for i in range(n) for j in range(i + 1, n) for t in np.linspace(0, 1, WEIGHTS + 2)[1:-1]
               for w in [_pair(n, i, j, t)]]
    weights += list(rng.dirichlet(np.ones(n), WEIGHTS)) if n > 2 else []
    for w in weights:
        scale = [wi / r for wi, r in zip(w, raw_budget)]
        keys = devices[0].model.key_cost.keys()
        cost = {k: sum(s * d.model.key_cost[k] for s, d in zip(scale, devices)) for k in keys}
        fixed = sum(s * d.model.overhead_ms for s, d in zip(scale, devices))
        low = fixed + float(space.min_latency(cost)[0])
        if low > float(sum(w)) * (1 + MARGIN):
            return True
    return False


def _pair(n: int, i: int, j: int, t: float) -> np.ndarray:
    w = np.zeros(n)
    w[i], w[j] = t, 1 - t
    return w


def _raw_budget(model: Any, budget: float) -> float | None:
    """The largest raw block sum whose calibrated latency is within ``budget`` (the calibration's inverse,
    ``e^a * raw^b``); the budget itself without one. None for a calibration it cannot invert."""
    cal = model.lut.calibration
    if cal is None:
        return budget
    a, b = float(cal.params["a"]), float(cal.params["b"])
    if not (b > 0 and math.isfinite(a)):
        return None
    raw = math.exp((math.log(budget) - a) / b)
    return raw * (1 + 1e-12) if math.isfinite(raw) else None

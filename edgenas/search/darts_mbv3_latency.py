"""Expected latency of the relaxed MobileNetV3 from a device's LUT, and the budget repair of the derived net.

With independent choices (kernel x expand per slot, depth per stage, resolution), the expected LUT sum is

    E[latency] = overhead + sum_r p(r) * ( fixed(r)
                 + sum_slots P(slot active) * sum_(k,e) p_slot(k,e) * LUT(r, slot, k, e) )

with ``P(slot j of stage s active) = sum over depths d > j of p_s(d)``: a sum of probabilities times
LUT entries, differentiable in every architecture weight, and at a one-hot point exactly the
predictor's raw sum. A LUT calibration (monotone) is applied as its local ratio, as for nb201.

``repair_to_budget``: the derived network (argmax of every decision) can miss a budget (the
relaxation's discretisation gap). It is then changed greedily, one decision at a time: among all
single changes (another kernel/expand in one active block, a smaller depth in one stage, another
resolution) that lower the total excess ``sum_d max(0, latency_d / budget_d - 1)`` (LUT predictions),
take the one that gives up the least log-probability per unit of excess removed; repeat until every
budget is met. Each step lowers the excess, so it ends; if it stalls above budget, the fastest
network of each device (``min_latency``, exact) is the last resort.
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np
import torch

from edgenas.errors import InputError
from edgenas.spaces.mbv3_config import MBV3Arch


class ExpectedLatencyMBV3:
    def __init__(self, name: str, model: Any, space: Any) -> None:
        cost = getattr(model, "key_cost", None) or {}
        if not cost or getattr(getattr(model, "space", None), "name", None) != space.name:
            raise InputError(f"device '{name}': DARTS needs a per-block LUT for the {space.name} space",
                             hint=f"profile it: edgenas profile {name} --space {space.name}")
        c = space.config
        self.name, self.model, self.space = name, model, space
        fixed, slot = space.cost_tables(cost)
        self.fixed = torch.tensor(fixed + float(getattr(model, "overhead_ms", 0.0)), dtype=torch.float64)
        self.slot = torch.tensor(slot.reshape(len(c.resolutions), c.n_slots, -1), dtype=torch.float64)
        pos = np.arange(c.n_slots) % c.max_depth
        # active[slot, d] = 1 when a stage of depth d_choices[d] runs this slot
        self.active = torch.tensor(pos[:, None] < np.asarray(c.d_choices)[None, :], dtype=torch.float64)
        self.stage = torch.as_tensor(np.arange(c.n_slots) // c.max_depth)

    def _cal(self, raw: float) -> float:
        fn = getattr(self.model, "_calibrate", None)
        return float(fn(np.array([raw]))[0]) if fn is not None else raw

    def __call__(self, p_ke: torch.Tensor, p_d: torch.Tensor, p_r: torch.Tensor) -> torch.Tensor:
        p_active = (p_d.double()[self.stage] * self.active).sum(-1)  # (n_slots,)
        per_slot = (self.slot * p_ke.double()[None]).sum(-1)  # (n_r, n_slots)
        raw = (p_r.double() * (self.fixed + per_slot @ p_active)).sum()
        ratio = self._cal(float(raw.detach())) / max(float(raw.detach()), 1e-12)
        return raw * ratio

    def of_arch(self, arch: MBV3Arch) -> float:
        return float(self.model.predict_many([arch])[0])


def _log_prob(arch: MBV3Arch, logp: dict[str, np.ndarray], config: Any) -> float:
    c, n_e = config, len(config.e_choices)
    total = float(logp["r"][c.resolutions.index(arch.r)])
    for s, d in enumerate(arch.d):
        total += float(logp["d"][s, c.d_choices.index(d)])
        for j in range(d):
            i = s * c.max_depth + j
            total += float(logp["ke"][i, c.ks_choices.index(arch.ks[i]) * n_e + c.e_choices.index(arch.e[i])])
    return total


def _neighbours(arch: MBV3Arch, config: Any) -> list[MBV3Arch]:
    c, out = config, []
    for s, d in enumerate(arch.d):
        for j in range(d):
            i = s * c.max_depth + j
            for k in c.ks_choices:
                for e in c.e_choices:
                    if (k, e) != (arch.ks[i], arch.e[i]):
                        ks, es = list(arch.ks), list(arch.e)
                        ks[i], es[i] = k, e
                        out.append(MBV3Arch(tuple(ks), tuple(es), arch.d, arch.r))
        for d2 in c.d_choices:
            if d2 < d:
                out.append(MBV3Arch(arch.ks, arch.e, arch.d[:s] + (d2,) + arch.d[s + 1:], arch.r))
    out.extend(MBV3Arch(arch.ks, arch.e, arch.d, r) for r in c.resolutions if r != arch.r)
    return out


def repair_to_budget(space: Any, arch: MBV3Arch, logp: dict[str, np.ndarray], models: Sequence[Any],
                     budgets: Sequence[float | None]) -> tuple[MBV3Arch, int, str]:
    """``(arch meeting every budget by the LUT, number of greedy steps, how)``; see the module doc."""
    pairs = [(m, b) for m, b in zip(models, budgets) if b is not None]

    def excess(archs: list[MBV3Arch]) -> np.ndarray:
        tot = np.zeros(len(archs))
        for m, b in pairs:
            tot += np.maximum(0.0, m.predict_many(archs) / b - 1.0)
        return tot

    arch = space.canonical(arch)
    cur, steps = float(excess([arch])[0]), 0
    if cur <= 0:
        return arch, 0, "argmax"
    while cur > 0:
        cands = [space.canonical(a) for a in _neighbours(arch, space.config)]
        ex = excess(cands)
        gain = cur - ex
        ok = np.flatnonzero(gain > 1e-12)
        if not len(ok):
            break
        here = _log_prob(arch, logp, space.config)
        loss = np.array([max(here - _log_prob(cands[i], logp, space.config), 0.0) for i in ok])
        best = int(ok[np.argmin((loss + 1e-9) / gain[ok])])
        arch, cur, steps = cands[best], float(ex[best]), steps + 1
    if cur <= 0:
        return arch, steps, "greedy repair"
    for m, _ in pairs:  # stalled: the fastest network of a device, if it meets every budget
        fastest = space.canonical(m.min_latency()[1])
        if excess([fastest])[0] <= 0:
            return fastest, steps, "fastest network"
    return arch, steps, "none met every budget"

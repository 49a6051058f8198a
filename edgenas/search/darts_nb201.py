"""The DARTS relaxation of the NAS-Bench-201 cell and its expected latency from a device's LUT.

``DartsNB201`` is the NAS-Bench-201 network with every cell edge a *mixed operation*: the
softmax(alpha_e)-weighted sum of the five ops (Liu et al., DARTS, 2019); one set of architecture
weights ``alpha`` (6 edges x 5 ops) is shared by all cells, as in NAS-Bench-201's DARTS baseline.
The search network may be narrower / shallower than the real one (``C``, ``N``); the latency term is
always that of the real network (C=16, N=5) on the device:

    E[latency] = fixed blocks + N * sum_stages sum_edges sum_ops p_e(op) * LUT(op, stage)

which is differentiable in ``alpha`` (a sum of probabilities times LUT entries).

Derivation (the remedy for the budgeted collapse onto the all-``none`` cell, see bench/RESULTS.md):
``derive`` takes the most probable op per edge *excluding* ``none``, as the original DARTS derivation
does (Liu et al. 2019, sec. 2.4: "zero operations are excluded"), and the latency term is the
expectation under that same distribution (``derivable_probs``: the softmax over the other four ops),
so the latency gradient can no longer make an edge cheaper by raising ``none`` (which costs 0 ms in
the LUT). ``BudgetDerivation`` then picks the most probable such cell whose predicted latency meets
every budget (all 4^6 = 4,096 cells are scored from the edges' log-probabilities), so the derived
cell fits whenever any ``none``-free cell does; only when none fits are cells with ``none`` allowed.
``BudgetDerivation.pick`` takes any per-(edge, op) score in place of the log-probabilities: the
perturbation scores of DARTS-PT (``darts_pt``) are the default selection, since ranking by alpha
collapses onto ``avg_pool_3x3`` here (bench/RESULTS.md, issue 15).
"""

from __future__ import annotations

from typing import Any, Mapping, Sequence

import numpy as np
import torch
from torch import nn

from edgenas.errors import InputError
from edgenas.spaces.nb201 import EDGES, N as REAL_N, OPS, STAGES, NB201Arch
from edgenas.spaces.nb201_net import ResidualReduction, make_op


class MixedOp(nn.Module):
    def __init__(self, channels: int, skip_dropout: float = 0.0) -> None:
        super().__init__()
        self.ops = nn.ModuleList(make_op(op, channels) for op in OPS)
        self.skip = OPS.index("skip_connect")
        self.drop = nn.Dropout(skip_dropout) if skip_dropout > 0 else None

    def forward(self, x: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
        out = 0
        for i, (w, op) in enumerate(zip(weights, self.ops)):
            y = op(x)
            if i == self.skip and self.drop is not None:  # P-DARTS: operation-level dropout on skips
                y = self.drop(y)
            out = out + w * y
        return out


class MixedCell(nn.Module):
    def __init__(self, channels: int, skip_dropout: float) -> None:
        super().__init__()
        self.edges = nn.ModuleList(MixedOp(channels, skip_dropout) for _ in EDGES)

    def forward(self, x: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
        nodes = [x]
        for to_node in (1, 2, 3):
            nodes.append(sum(self.edges[k](nodes[src], weights[k])
                             for k, (dst, src) in enumerate(EDGES) if dst == to_node))
        return nodes[3]


class DartsNB201(nn.Module):
    """The relaxed NAS-Bench-201 network; ``alpha`` is a separate parameter (not in ``weights()``)."""

    def __init__(self, C: int = 8, N: int = 1, num_classes: int = 10, skip_dropout: float = 0.0) -> None:
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, C, 3, padding=1, bias=False), nn.BatchNorm2d(C))
        layers: list[nn.Module] = []
        c_prev = C
        for stage, width in enumerate((C, 2 * C, 4 * C)):
            if stage:
                layers.append(ResidualReduction(c_prev, width))
            layers.extend(MixedCell(width, skip_dropout) for _ in range(N))
            c_prev = width
        self.cells = nn.ModuleList(layers)
        self.lastact = nn.Sequential(nn.BatchNorm2d(c_prev), nn.ReLU())
        self.classifier = nn.Linear(c_prev, num_classes)
        self.alpha = nn.Parameter(1e-3 * torch.randn(len(EDGES), len(OPS)))

    def weights(self) -> list[nn.Parameter]:
        return [p for n, p in self.named_parameters() if n != "alpha"]

    def probs(self) -> torch.Tensor:
        return torch.softmax(self.alpha, dim=-1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        w = self.probs()
        x = self.stem(x)
        for cell in self.cells:
            x = cell(x, w) if isinstance(cell, MixedCell) else cell(x)
        x = self.lastact(x).mean(dim=(2, 3))
        return self.classifier(x)


NONE = OPS.index("none")
#: the derivation's label when no cell meets every budget (the alpha argmax is kept); mbv3's word too
NONE_FITS = "none met every budget"


def derivable_probs(alpha: torch.Tensor) -> torch.Tensor:
    """Per-edge softmax over the ops a derivation may pick (all but ``none``); ``none``'s column is 0."""
    mask = torch.zeros(alpha.shape[-1], dtype=torch.bool)
    mask[NONE] = True
    return torch.softmax(alpha.masked_fill(mask, float("-inf")), dim=-1)


def derive(alpha: torch.Tensor) -> NB201Arch:
    """The original DARTS derivation: the strongest op per edge, ``none`` excluded."""
    return NB201Arch(tuple(OPS[int(i)] for i in derivable_probs(alpha.detach()).argmax(dim=-1)))


class BudgetDerivation:
    """The most probable cell that meets every latency budget by the devices' LUT predictions.

    ``predictors`` are ``(name, model)`` pairs with ``predict_many`` (over gene arrays); ``budgets``
    the matching budgets in ms (None: no budget). The latencies of all 15,625 cells are computed once.
    A cell's score is the sum over edges of log p_e(op) with p = ``derivable_probs``; ``none``-free
    cells come first, cells with ``none`` only when no ``none``-free cell fits.
    """

    def __init__(self, predictors: Sequence[tuple[str, Any]], budgets: Sequence[float | None]) -> None:
        grid = np.stack(np.meshgrid(*[np.arange(len(OPS))] * len(EDGES), indexing="ij"), -1)
        self.genes = grid.reshape(-1, len(EDGES))
        fits = np.ones(len(self.genes), dtype=bool)
        for (_, model), b in zip(predictors, budgets):
            if b is not None:
                fits &= np.asarray(model.predict_many(self.genes)) <= b
        no_none = (self.genes != NONE).all(axis=1)
        self.candidates = np.flatnonzero(fits & no_none) if (fits & no_none).any() else np.flatnonzero(fits)
        self.includes_none = not bool((fits & no_none).any())

    def __call__(self, alpha: torch.Tensor) -> NB201Arch | None:
        """The chosen cell, or None when no cell meets the budgets."""
        if not len(self.candidates):
            return None
        logp = torch.log_softmax(alpha.detach().double(), dim=-1).numpy()
        if not self.includes_none:  # renormalise over the four derivable ops
            logp = torch.log(derivable_probs(alpha.detach().double())).numpy()
        return self.pick(logp)

    def pick(self, scores: np.ndarray) -> NB201Arch | None:
        """The candidate cell with the largest sum over edges of ``scores[edge, op]`` (any per-op score:
        log-probabilities for the alpha selection, DARTS-PT's perturbation scores); ties: the first."""
        if not len(self.candidates):
            return None
        g = self.genes[self.candidates]
        score = np.asarray(scores, dtype=np.float64)[np.arange(len(EDGES)), g].sum(axis=1)
        return NB201Arch(tuple(OPS[int(i)] for i in g[int(np.argmax(score))]))


class ExpectedLatency:
    """Differentiable E[latency] (ms) of the real NB-201 network on one device from its LUT costs.

    ``model`` is a ``LatencyPredictor`` (or anything with ``key_cost`` and ``space``; ``overhead_ms``
    and ``_calibrate`` are used when present). A LUT calibration (monotone) is applied as its local
    ratio at the current point: E_cal = E_raw * cal(E_raw) / E_raw, the ratio held constant.
    """

    def __init__(self, name: str, model: Any) -> None:
        cost: Mapping[str, float] = getattr(model, "key_cost", None) or {}
        space = getattr(model, "space", None)
        if not cost or space is None or getattr(space, "name", None) != "nb201":
            raise InputError(f"device '{name}': DARTS needs a per-block LUT for the nb201 space",
                             hint=f"profile it: edgenas profile {name} --space nb201")
        self.name, self.model = name, model
        table = np.array([[cost[space.op_key(op, st)] for op in OPS] for st in range(len(STAGES))])
        self.per_op = torch.tensor(REAL_N * table.sum(axis=0), dtype=torch.float64)  # (5,) per edge
        fixed_keys = [k for k in space.block_keys(NB201Arch(("none",) * 6)) if "-op-" not in k]
        self.fixed = float(sum(cost[k] for k in fixed_keys)) + float(getattr(model, "overhead_ms", 0.0))

    def _cal(self, raw: float) -> float:
        fn = getattr(self.model, "_calibrate", None)
        return float(fn(np.array([raw]))[0]) if fn is not None else raw

    def __call__(self, probs: torch.Tensor) -> torch.Tensor:
        raw = self.fixed + (probs.double() * self.per_op).sum()
        ratio = self._cal(float(raw.detach())) / max(float(raw.detach()), 1e-12)
        return raw * ratio

    def of_argmax(self, probs: torch.Tensor) -> float:
        """The same sum for the cell of the argmax per edge of ``probs``, not differentiable."""
        onehot = torch.nn.functional.one_hot(probs.detach().argmax(dim=-1), probs.shape[-1])
        return float(self(onehot.double()))

    def of_arch(self, arch: NB201Arch) -> float:
        return float(self.model.predict_many([arch])[0])

"""The DARTS relaxation of the NAS-Bench-201 cell and its expected latency from a device's LUT.

``DartsNB201`` is the NAS-Bench-201 network with every cell edge a *mixed operation*: the
softmax(alpha_e)-weighted sum of the five ops (Liu et al., DARTS, 2019); one set of architecture
weights ``alpha`` (6 edges x 5 ops) is shared by all cells, as in NAS-Bench-201's DARTS baseline.
The search network may be narrower / shallower than the real one (``C``, ``N``); the latency term is
always that of the real network (C=16, N=5) on the device:

    E[latency] = fixed blocks + N * sum_stages sum_edges sum_ops p_e(op) * LUT(op, stage)

which is differentiable in ``alpha`` (a sum of probabilities times LUT entries). ``derive`` takes the
argmax op per edge (the standard NAS-Bench-201 DARTS derivation).
"""

from __future__ import annotations

from typing import Any, Mapping

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


def derive(alpha: torch.Tensor) -> NB201Arch:
    return NB201Arch(tuple(OPS[int(i)] for i in alpha.detach().argmax(dim=-1)))


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
        """The same sum for the derived cell (argmax per edge), not differentiable."""
        onehot = torch.nn.functional.one_hot(probs.detach().argmax(dim=-1), probs.shape[-1])
        return float(self(onehot.double()))

    def of_arch(self, arch: NB201Arch) -> float:
        return float(self.model.predict_many([arch])[0])

"""Perturbation-based operation selection for DARTS (DARTS-PT, Wang et al., ICLR 2021).

"Rethinking Architecture Selection in Differentiable NAS" shows that the magnitude of ``alpha`` does
not say how much an op contributes to the supernet: parameter-free ops (skip, pooling) grow large
alphas while the supernet relies on the convolutions. DARTS-PT scores an op by what the *trained
supernet* loses when that op is removed from its edge: mask it out of the mixture (its weight set
to 0, the other ops' weights unchanged) and measure the held-out accuracy.

    score[e, op] = acc(supernet) - acc(supernet without op on edge e)
                   + 1e-3 * (loss(without op on e) - loss(supernet))      (tie-break on the loss)

A larger score means the op matters more. ``none`` outputs zeros, so removing it changes nothing:
its score is 0. The paper projects one edge at a time and fine-tunes the supernet between edges;
here all 6 x 5 masks are scored on the same trained supernet (no fine-tuning, one pass of
6 x 4 + 1 evaluations), and the scores replace the log-probabilities in ``BudgetDerivation`` (a cell's
score = the sum of its ops' scores), so the budget is still met the same way. Evaluation is in eval
mode without gradients on a fixed subset of the held-out split: deterministic for a given seed.

The scores measure accuracy only, so with ``latency_weight`` (no budget) they would drop the trade-off the
loss learned: a weight of 30 delivered a cell 6x slower than the alpha-selected one (2.99 vs 0.49 ms; 2.43
ms with a weight of 0). ``pt_pick`` therefore holds the PT cell, on every device without a budget, to the
alpha-selected cell's predicted latency (``latency_limits``): the best-scoring cell no slower than it,
which is the alpha cell at worst.
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from edgenas.search.darts_nb201 import NONE, NONE_FITS, BudgetDerivation, DartsNB201, ExpectedLatency, MixedCell
from edgenas.spaces.nb201 import NB201Arch

SELECTIONS = ("alpha", "pt")


def _evaluate(net: DartsNB201, weights: torch.Tensor, x: torch.Tensor, y: torch.Tensor,
              batch: int) -> tuple[float, float]:
    correct, loss = 0, 0.0
    for i in range(0, len(x), batch):
        h = net.stem(x[i:i + batch])
        for cell in net.cells:
            h = cell(h, weights) if isinstance(cell, MixedCell) else cell(h)
        logits = net.classifier(net.lastact(h).mean(dim=(2, 3)))
        yi = y[i:i + batch]
        correct += int((logits.argmax(dim=-1) == yi).sum())
        loss += float(F.cross_entropy(logits, yi, reduction="sum"))
    return correct / len(x), loss / len(x)


def perturbation_scores(net: DartsNB201, x: torch.Tensor, y: torch.Tensor, *, batch: int = 128) -> np.ndarray:
    """(edges, ops) array: the drop of held-out accuracy (plus 1e-3 x the loss increase) per masked op."""
    was_training = net.training
    net.eval()
    try:
        with torch.no_grad():
            w = net.probs().detach()
            acc0, loss0 = _evaluate(net, w, x, y, batch)
            scores = np.zeros(tuple(w.shape))
            for e in range(w.shape[0]):
                for o in range(w.shape[1]):
                    if o == NONE:  # removing a zero op changes nothing
                        continue
                    masked = w.clone()
                    masked[e, o] = 0.0
                    acc, loss = _evaluate(net, masked, x, y, batch)
                    scores[e, o] = (acc0 - acc) + 1e-3 * (loss - loss0)
    finally:
        net.train(was_training)
    return scores


def pt_subset(n: int, k: int, seed: int) -> torch.Tensor:
    """The fixed held-out subset PT scores on: ``k`` of ``n`` indices (all when k >= n), seeded."""
    if k >= n:
        return torch.arange(n)
    g = torch.Generator().manual_seed(int(seed) * 7919 + 17)
    return torch.randperm(n, generator=g)[:k].sort().values


def latency_limits(terms: Sequence[ExpectedLatency], budgets: Sequence[float | None], latency_weight: float,
                   alpha_arch: NB201Arch) -> list[float | None] | None:
    """The budgets of the PT pick when the loss traded latency off at a fixed weight: on each device without a
    budget, the alpha-selected cell's predicted latency (the trade-off training learned); a budget stays as given.
    None when there is no such trade-off (a weight of 0, or a budget on every device)."""
    if not latency_weight > 0 or all(b is not None for b in budgets):
        return None
    return [t.of_arch(alpha_arch) if b is None else b for t, b in zip(terms, budgets)]


def pt_pick(scores: np.ndarray, derivation: BudgetDerivation, alpha_arch: NB201Arch,
            limits: Sequence[float | None] | None, predictors: Sequence[tuple[str, Any]]) -> tuple[NB201Arch, str]:
    """DARTS-PT's cell and its label: the best-scoring cell within every budget ("pt", or "pt-budget" when a budget
    changed the choice), then, with ``limits`` (``latency_limits``), no slower than the alpha cell on any
    unbudgeted device ("pt-latency" when that changed it: the alpha cell always qualifies); when no cell meets
    every budget, the alpha argmax (``NONE_FITS``)."""
    fit = derivation.pick(scores)
    if fit is None:
        return alpha_arch, NONE_FITS
    label = "pt" if fit == BudgetDerivation([], []).pick(scores) else "pt-budget"
    if limits is None:
        return fit, label
    faster = BudgetDerivation(predictors, limits).pick(scores) or alpha_arch
    return faster, label if faster == fit else "pt-latency"

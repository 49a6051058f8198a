"""DARTS-PT's scores against the supernet's own forward pass with one op's weight set to 0 (mutation audit)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from edgenas.search.darts_nb201 import NONE, DartsNB201
from edgenas.search.darts_pt import perturbation_scores, pt_subset


def test_each_score_is_the_accuracy_drop_plus_a_thousandth_of_the_loss_rise_over_uneven_batches():
    torch.manual_seed(0)
    net = DartsNB201(C=2, N=1)
    with torch.no_grad():
        net.alpha.copy_(torch.randn(6, 5))
        net.classifier.weight.mul_(1000.0)  # an untrained net's logits barely move when an op is masked
    x = torch.randn(11, 3, 8, 8, generator=torch.Generator().manual_seed(1))
    net.eval()
    with torch.no_grad():
        y = net(x).argmax(dim=-1)  # labels = the supernet's own predictions: masking an op costs accuracy
    scores = perturbation_scores(net, x, y, batch=4)  # 4 + 4 + 3: means over all 11, not per batch
    assert not net.training  # the mode it was in
    w = net.probs().detach()

    def acc_loss(weights):
        net.probs = lambda: weights  # the network's own forward with these mixture weights
        try:
            with torch.no_grad():
                logits = net(x)
        finally:
            del net.probs
        return float((logits.argmax(-1) == y).float().mean()), float(F.cross_entropy(logits, y))

    acc0, loss0 = acc_loss(w)
    acc_part, loss_part = np.zeros((6, 5)), np.zeros((6, 5))
    for e in range(6):
        for o in range(5):
            if o != NONE:
                masked = w.clone()
                masked[e, o] = 0.0  # the other ops keep their weights: no renormalisation
                acc, loss = acc_loss(masked)
                acc_part[e, o], loss_part[e, o] = acc0 - acc, 1e-3 * (loss - loss0)
    assert np.abs(scores - (acc_part + loss_part)).max() < 1e-6
    assert acc_part.max() > 0.05 and np.abs(loss_part).max() > 2e-5  # both parts are there to check
    assert np.all(scores[:, NONE] == 0)


def test_the_subset_is_all_indices_when_k_reaches_n_and_a_seeded_sorted_draw_otherwise():
    assert torch.equal(pt_subset(7, 7, 3), torch.arange(7)) and torch.equal(pt_subset(7, 9, 3), torch.arange(7))
    s = pt_subset(50, 10, 3)
    assert len(s) == 10 and len(set(s.tolist())) == 10 and torch.equal(s, s.sort().values) and int(s.max()) < 50
    assert pytest.approx(0) != float((s - torch.arange(10)).abs().sum())  # a draw, not the first k

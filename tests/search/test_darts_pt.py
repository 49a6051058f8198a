"""DARTS-PT's scores against the supernet's own forward pass with one op's weight set to 0 (mutation audit), and its
pick held to the alpha-selected cell's latency when the loss had a latency weight (made-up scores and tables)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from edgenas.search.darts_nb201 import NONE, NONE_FITS, BudgetDerivation, DartsNB201, ExpectedLatency
from edgenas.search.darts_pt import latency_limits, perturbation_scores, pt_pick, pt_subset
from edgenas.spaces.nb201 import OPS, NB201Arch


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


@pytest.fixture(scope="module")
def preds():
    from edgenas.latency.predictor import LatencyPredictor
    from edgenas.spaces import get_space
    from tests.search.tables import random_lut

    space = get_space("nb201")
    return [(d, LatencyPredictor(random_lut("nb201", s, device=d), space)) for d, s in (("a", 4), ("b", 5))]


def _cell(genes) -> NB201Arch:
    return NB201Arch(tuple(OPS[int(i)] for i in genes))


def test_with_a_latency_weight_the_pt_pick_is_the_best_scored_cell_no_slower_than_the_alpha_cell(preds):
    """Made-up scores and alpha cells on two devices without a budget, against a brute force over the 4,096
    none-free cells: the pick is never slower than the alpha cell on either device (which always qualifies),
    and it is labelled "pt-latency" exactly when the limit moved PT's own choice."""
    rng = np.random.default_rng(0)
    terms = [ExpectedLatency(n, m) for n, m in preds]
    free = BudgetDerivation(preds, [None, None])
    genes = free.genes
    ms = [np.asarray(m.predict_many(genes)) for _, m in preds]
    labels = []
    for _ in range(30):
        scores = rng.normal(size=(6, 5))
        scores[:, NONE] = 0.0
        alpha = _cell(rng.choice([i for i in range(5) if i != NONE], size=6))
        limits = latency_limits(terms, [None, None], 3.0, alpha)
        assert limits == [t.of_arch(alpha) for t in terms]
        arch, label = pt_pick(scores, free, alpha, limits, preds)
        ok = (genes != NONE).all(axis=1) & (ms[0] <= limits[0]) & (ms[1] <= limits[1])
        assert ok[(genes == [OPS.index(o) for o in alpha.ops]).all(axis=1)].all()  # the alpha cell qualifies
        sums = scores[np.arange(6), genes].sum(axis=1)
        assert arch == _cell(genes[ok][np.argmax(sums[ok])])
        assert all(t.of_arch(arch) <= t.of_arch(alpha) for t in terms)
        assert label == ("pt" if arch == free.pick(scores) else "pt-latency")
        labels.append(label)
    assert 0 < labels.count("pt") < len(labels)  # both cases were seen
    # scores that rise with each op's cost: PT's own choice is the slowest cell, the alpha cell the fastest
    scores = np.tile(terms[0].per_op.numpy(), (6, 1))
    fastest = _cell(genes[(genes != NONE).all(axis=1)][np.argmin(ms[0][(genes != NONE).all(axis=1)])])
    assert pt_pick(scores, free, fastest, latency_limits(terms[:1], [None], 30.0, fastest), preds[:1]) == \
        (fastest, "pt-latency")
    assert terms[0].of_arch(free.pick(scores)) > 1.2 * terms[0].of_arch(fastest)


def test_without_a_latency_weight_or_with_every_budget_given_the_pt_pick_is_as_before(preds):
    """No limits with a weight of 0 or a budget on every device: the pick and label of the rule before the
    latency limits ("pt", "pt-budget"; no cell within the budgets: the alpha cell, NONE_FITS). A device with a
    budget keeps it while another, without one, is held to the alpha cell's latency."""
    rng = np.random.default_rng(1)
    terms = [ExpectedLatency(n, m) for n, m in preds]
    lo = [m.min_latency()[0] for _, m in preds]
    alpha = _cell([1, 2, 3, 4, 1, 2])
    assert latency_limits(terms, [None, None], 0.0, alpha) is None
    assert latency_limits(terms, [2 * lo[0], 3 * lo[1]], 5.0, alpha) is None
    assert latency_limits(terms, [2 * lo[0], None], 5.0, alpha) == [2 * lo[0], terms[1].of_arch(alpha)]
    for budgets in ([None, None], [1.5 * lo[0], None], [1.5 * lo[0], 1.5 * lo[1]], [0.5 * lo[0], None]):
        derivation = BudgetDerivation(preds, budgets)
        for _ in range(5):
            scores = rng.normal(size=(6, 5))
            scores[:, NONE] = 0.0
            fit = derivation.pick(scores)  # the rule before: best within the budgets, else the alpha cell
            before = (alpha, NONE_FITS) if fit is None else \
                (fit, "pt" if fit == BudgetDerivation([], []).pick(scores) else "pt-budget")
            assert pt_pick(scores, derivation, alpha, None, preds) == before

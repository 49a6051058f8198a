"""The DARTS supernet of nb201 without a LUT: at a one-hot alpha it is the real NAS-Bench-201 network of the
derived cell, skip-dropout acts on skips in training only, and the alphas are per-edge distributions
(mutation audit)."""

from __future__ import annotations

import pytest
import torch

from edgenas.search.darts_nb201 import DartsNB201, MixedOp, derive
from edgenas.spaces import get_space
from edgenas.spaces.nb201 import OPS
from edgenas.spaces.nb201_net import build_nb201_network


def _one_hot_alpha(ops):
    """Alphas whose softmax is exactly the one-hot of ``ops`` (exp(-inf) is 0)."""
    alpha = torch.full((6, len(OPS)), float("-inf"))
    for e, op in enumerate(ops):
        alpha[e, OPS.index(op)] = 0.0
    return alpha


@pytest.mark.parametrize("ops", [
    ("nor_conv_3x3", "skip_connect", "none", "avg_pool_3x3", "nor_conv_1x1", "nor_conv_3x3"),
    ("avg_pool_3x3", "nor_conv_1x1", "skip_connect", "none", "nor_conv_3x3", "skip_connect"),
])
def test_at_a_one_hot_alpha_the_supernet_is_the_real_network_of_the_derived_cell(ops):
    torch.manual_seed(0)
    real = build_nb201_network(ops, C=4, N=1, num_classes=10).eval()
    net = DartsNB201(C=4, N=1, num_classes=10).eval()
    state = {}
    for key, value in real.state_dict().items():  # real cells.i.edges.k.* is cells.i.edges.k.ops.<its op>.*
        parts = key.split(".")
        if parts[0] == "cells" and parts[2] == "edges":
            parts[4:4] = ["ops", str(OPS.index(ops[int(parts[3])]))]
        state[".".join(parts)] = value
    state["alpha"] = _one_hot_alpha(ops)
    missing, unexpected = net.load_state_dict(state, strict=False)  # a shape of another width: an error here
    assert not unexpected and all(".ops." in k for k in missing)
    assert derive(net.alpha).ops == ops
    assert get_space("nb201").from_string(derive(net.alpha).string).ops == ops  # a cell string the space parses
    x = torch.randn(3, 3, 32, 32, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        torch.testing.assert_close(net(x), real(x), rtol=1e-5, atol=1e-6)


def test_the_alphas_are_a_softmax_per_edge_and_start_near_uniform():
    torch.manual_seed(0)
    net = DartsNB201(C=2, N=1)
    with torch.no_grad():
        net.alpha.copy_(torch.arange(30.0).reshape(6, 5) / 10)
    p = net.probs()
    torch.testing.assert_close(p.sum(dim=1), torch.ones(6))  # one distribution over the 5 ops per edge
    assert torch.all(p[:, 4] > p[:, 0])
    stds = []
    for seed in range(5):
        torch.manual_seed(seed)
        stds.append(float(DartsNB201(C=2, N=1).alpha.detach().std()))
    assert 0.7e-3 < sum(stds) / 5 < 1.3e-3  # DARTS's 1e-3 * N(0, 1): the search starts from uniform ops


def test_skip_dropout_drops_only_the_skip_and_only_in_training():
    x = torch.rand(64, 2, 4, 4) + 1.0
    skip = torch.zeros(len(OPS))
    skip[OPS.index("skip_connect")] = 1.0
    pool = torch.zeros(len(OPS))
    pool[OPS.index("avg_pool_3x3")] = 1.0
    torch.manual_seed(0)
    op = MixedOp(2, skip_dropout=0.5)
    y = op(x, skip)
    dropped = y == 0
    assert 0.3 < float(dropped.float().mean()) < 0.7               # P-DARTS: the skip dropped in training ...
    torch.testing.assert_close(y[~dropped], 2 * x[~dropped])        # ... kept ones scaled by 1 / (1 - p)
    expected_pool = torch.nn.AvgPool2d(3, stride=1, padding=1, count_include_pad=False)(x)
    torch.testing.assert_close(op(x, pool), expected_pool)          # no other op is dropped
    op.eval()
    torch.testing.assert_close(op(x, skip), x)                      # and nothing in evaluation
    torch.testing.assert_close(MixedOp(2)(x, skip), x)              # no dropout by default


def test_the_default_supernet_is_c8_n1_without_skip_dropout():
    net = DartsNB201()
    assert net.stem[0].out_channels == 8 and net.classifier.in_features == 32 and net.classifier.out_features == 10
    assert len(net.cells) == 3 + 2  # one cell per stage and the two reductions
    assert not any(isinstance(m, torch.nn.Dropout) for m in net.modules())

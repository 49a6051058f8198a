"""The NAS-Bench-201 torch network: shapes, parameter counts, validation, determinism."""

from __future__ import annotations

import pytest
import torch

from edgenas.errors import InputError
from edgenas.spaces.nb201_net import build_nb201_network, parse_nb201_string

torch.set_num_threads(1)


def n_params(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def test_output_shape_and_finite():
    torch.manual_seed(0)
    net = build_nb201_network(["nor_conv_3x3", "skip_connect", "avg_pool_3x3",
                               "nor_conv_1x1", "none", "nor_conv_3x3"])
    y = net.eval()(torch.randn(2, 3, 32, 32))
    assert y.shape == (2, 10)
    assert torch.isfinite(y).all()


def test_known_parameter_counts():
    # NAS-Bench-201 reports 0.073 M (no parametric op) and 1.531 M (all conv 3x3) on CIFAR-10.
    assert n_params(build_nb201_network(["none"] * 6)) == 73_306
    assert n_params(build_nb201_network(["skip_connect"] * 6)) == 73_306
    assert n_params(build_nb201_network(["nor_conv_3x3"] * 6)) == 1_531_546
    # one conv 3x3 edge per cell: 5 cells per stage, C*C*9 + 2C each
    one = ["nor_conv_3x3"] + ["none"] * 5
    per_stage = sum(5 * (c * c * 9 + 2 * c) for c in (16, 32, 64))
    assert n_params(build_nb201_network(one)) == 73_306 + per_stage


def test_all_none_network_runs_and_is_constant_in_input():
    torch.manual_seed(0)
    net = build_nb201_network(["none"] * 6).eval()
    y = net(torch.randn(3, 3, 32, 32))
    assert y.shape == (3, 10)
    # the cells output zeros, so every input gives the same logits
    assert torch.allclose(y[0], y[1]) and torch.allclose(y[1], y[2])


def test_params_increase_from_1x1_to_3x3():
    base = ["nor_conv_1x1", "skip_connect", "nor_conv_1x1", "none", "avg_pool_3x3", "nor_conv_1x1"]
    prev = n_params(build_nb201_network(base))
    for i in (0, 2, 5):
        base[i] = "nor_conv_3x3"
        now = n_params(build_nb201_network(base))
        assert now > prev
        prev = now


def test_invalid_op_and_length():
    with pytest.raises(InputError):
        build_nb201_network(["conv_5x5"] + ["none"] * 5)
    with pytest.raises(InputError):
        build_nb201_network(["none"] * 5)
    with pytest.raises(InputError):
        build_nb201_network(["none"] * 6, C=0)


def test_string_parsing_matches_edge_order():
    s = "|nor_conv_3x3~0|+|nor_conv_3x3~0|avg_pool_3x3~1|+|skip_connect~0|nor_conv_3x3~1|skip_connect~2|"
    assert parse_nb201_string(s) == ("nor_conv_3x3", "nor_conv_3x3", "avg_pool_3x3",
                                     "skip_connect", "nor_conv_3x3", "skip_connect")
    with pytest.raises(InputError):
        parse_nb201_string("|nor_conv_3x3~0|+|nor_conv_3x3~1|")


def test_deterministic_init_and_other_sizes():
    ops = ["nor_conv_3x3"] * 6
    torch.manual_seed(7)
    a = build_nb201_network(ops, C=8, N=1, num_classes=5)
    torch.manual_seed(7)
    b = build_nb201_network(ops, C=8, N=1, num_classes=5)
    for pa, pb in zip(a.parameters(), b.parameters()):
        assert torch.equal(pa, pb)
    x = torch.randn(1, 3, 16, 16)
    assert a.eval()(x).shape == (1, 5)

"""The NAS-Bench-201 torch network: shapes, parameter counts, validation, determinism."""

from __future__ import annotations

import itertools

import pytest
import torch

from edgenas.errors import InputError
from edgenas.spaces import get_space
from edgenas.spaces.nb201_net import (NB201Cell, ResidualReduction, build_nb201_network, make_op,
                                      parse_nb201_string)

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


def test_a_string_naming_an_unknown_op_is_refused_with_the_known_ops():
    s = "|nor_conv_3x3~0|+|nor_conv_3x3~0|conv_5x5~1|+|skip_connect~0|nor_conv_3x3~1|skip_connect~2|"
    for parse in (parse_nb201_string, build_nb201_network):
        with pytest.raises(InputError, match="malformed NAS-Bench-201 architecture string") as exc:
            parse(s)
        assert "conv_5x5" in str(exc.value) and "with ops none, skip_connect, nor_conv_1x1" in exc.value.hint
    with pytest.raises(InputError, match="unknown NAS-Bench-201 op 'conv_5x5'"):  # the ops list as such
        build_nb201_network(["conv_5x5"] + ["none"] * 5)


def test_relus_are_not_in_place_so_hooks_see_the_pre_activation():
    """NASWOT reads each ReLU's input in a forward hook: an in-place ReLU would have overwritten it."""
    torch.manual_seed(0)
    net = build_nb201_network(["nor_conv_3x3", "skip_connect", "nor_conv_1x1", "avg_pool_3x3", "nor_conv_3x3",
                               "skip_connect"], C=4, N=1).eval()
    seen = []
    relus = [m for m in net.modules() if isinstance(m, torch.nn.ReLU)]
    for m in relus:
        m.register_forward_hook(lambda mod, inp, out: seen.append(bool((inp[0] < 0).any())))
    with torch.no_grad():
        net(torch.randn(2, 3, 8, 8))
    assert len(seen) == len(relus) == 3 * 3 + 2 * 2 + 1 and all(seen)  # cells, reductions, lastact


def test_a_cell_sums_its_skip_paths_in_string_order():
    """With skip_connect / none edges, a cell's output is its input times the number of skip paths from node 0
    to node 3; the edges are in NAS-Bench-201 string order 1<-0, 2<-0, 2<-1, 3<-0, 3<-1, 3<-2."""
    x = torch.randn(1, 2, 3, 3)
    for on in itertools.product((0, 1), repeat=6):
        cell = NB201Cell(["skip_connect" if b else "none" for b in on], 2)
        paths = on[3] + on[0] * on[4] + on[1] * on[5] + on[0] * on[2] * on[5]  # 0-3, 0-1-3, 0-2-3, 0-1-2-3
        assert torch.allclose(cell(x), x * paths), on


@pytest.mark.parametrize("text", [
    "|none~0|+|none~0|none~1|",  # two nodes: three ops
    "|none~0|+|none~0|none~1|+|none~0|none~1|none~2|+|none~0|none~1|none~2|none~3|",  # four nodes: ten
    "|none~0|none~1|+|none~0|+|none~0|none~1|none~2|",  # six ops, but two edges into node 1
    "|none~0|+|none~0|none~1|+|none~0|none~2|none~1|",  # sources out of order
    "|none~0|+|none~0|none~1|+|none~0|none~1|none|",  # no source
    "|none~0|+|none~0|none~1|+|none~0|none~1|none~two|",
])
def test_a_string_that_is_not_three_nodes_of_numbered_edges_is_malformed(text):
    with pytest.raises(InputError, match="malformed NAS-Bench-201 architecture string"):
        parse_nb201_string(text)


def test_a_reduction_block_adds_its_shortcut_to_its_conv_branch():
    torch.manual_seed(0)
    block = ResidualReduction(2, 4).eval()
    x = torch.randn(1, 2, 8, 8)
    with torch.no_grad():
        y, shortcut, branch = block(x), block.shortcut(x), block.conv_b(block.conv_a(x))
    assert y.shape == (1, 4, 4, 4) and torch.allclose(y, shortcut + branch)
    assert not torch.allclose(y, shortcut) and not torch.allclose(y, branch)


def test_the_average_pool_leaves_out_the_padding():
    """NAS-Bench-201's avg_pool_3x3 has count_include_pad=False: a constant image stays constant to its corners."""
    x = torch.ones(1, 2, 4, 4)
    assert torch.equal(make_op("avg_pool_3x3", 2)(x), x)


Z = "|none~0|+|none~0|none~1|+|none~0|none~1|none~2|"


@pytest.mark.parametrize("text", [
    " " + Z, Z + "\n", "\t" + Z + " ",  # space around the string (strip() took it)
    Z.replace("|none~0|+", "||none~0||+", 1), Z.replace("|", ""), Z[1:], Z[:-1],  # not one bar each side of a node
    Z.replace("~1", "~ 1", 1), Z.replace("~1", "~01", 1), Z.replace("~1", "~+1", 1), Z.replace("~2", "~0_2"),
    Z.replace("~1", "~\u0661", 1), Z.replace("~0", "~-0", 1), Z.replace("~1", "~1 ", 1),  # int() took these for 0..2
])
def test_a_string_not_exactly_in_the_nb201_form_is_malformed_as_the_nb201_space_says(text):
    with pytest.raises(InputError, match="malformed NAS-Bench-201 architecture string"):
        parse_nb201_string(text)
    with pytest.raises(InputError, match="malformed NAS-Bench-201 architecture string"):
        get_space("nb201").from_string(text)
    assert parse_nb201_string(Z) == get_space("nb201").from_string(Z).ops == ("none",) * 6


@pytest.mark.parametrize("arch", [None, 5, [Z], Z.encode()])
def test_an_arch_that_is_not_a_string_is_malformed(arch):
    with pytest.raises(InputError, match="malformed NAS-Bench-201 architecture string"):
        parse_nb201_string(arch)

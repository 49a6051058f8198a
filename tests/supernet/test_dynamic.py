"""Weight sharing of the elastic layers, the largest network against a plain one, channel sorting, BN."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from edgenas.supernet import MBV3Supernet, recalibrate_bn
from edgenas.supernet.dynamic import DynamicPointConv2d, DynamicSeparableConv2d, build_act


def test_smaller_kernel_is_transformed_centre_of_largest():
    torch.manual_seed(0)
    conv = DynamicSeparableConv2d(8, (3, 5, 7), stride=1)
    assert {n for n, _ in conv.named_parameters()} == {"conv.weight", "7to5_matrix", "5to3_matrix"}  # OFA's names
    w = conv.conv.weight
    # identity transforms: the 5x5 and 3x3 filters are the centre crops of the 7x7 one
    assert torch.equal(conv.active_filter(8, 5), w[:, :, 1:6, 1:6])
    assert torch.equal(conv.active_filter(8, 3), w[:, :, 2:5, 2:5])
    with torch.no_grad():
        conv.get_parameter("7to5_matrix").add_(torch.randn(25, 25) * 0.1)
        conv.get_parameter("5to3_matrix").add_(torch.randn(9, 9) * 0.1)
    m75, m53 = conv.get_parameter("7to5_matrix"), conv.get_parameter("5to3_matrix")
    f5 = (w[:, :, 1:6, 1:6].reshape(8, 25) @ m75.T).reshape(8, 1, 5, 5)
    f3 = (f5[:, :, 1:4, 1:4].reshape(8, 9) @ m53.T).reshape(8, 1, 3, 3)
    assert torch.allclose(conv.active_filter(8, 5), f5, atol=1e-6)
    assert torch.allclose(conv.active_filter(8, 3), f3, atol=1e-6)
    # a 3x3 forward trains the 5x5 centre of the stored 7x7 weight (3x3 <- 5to3(5x5 <- 7to5(centre)))
    # and both matrices; the outer ring of the 7x7 weight gets no gradient
    conv.active_kernel_size = 3
    conv(torch.randn(2, 8, 9, 9)).sum().backward()
    grad = w.grad.abs().sum((0, 1))
    assert grad[1:6, 1:6].min() > 0 and grad.sum() == grad[1:6, 1:6].sum()
    assert m75.grad is not None and m53.grad is not None


def test_narrow_width_uses_the_same_parameters():
    conv = DynamicPointConv2d(16, 32)
    assert [n for n, _ in conv.named_parameters()] == ["conv.weight"]  # no bias, as in OFA
    conv.active_out_channel = 12
    w = conv.active_weight(10)
    assert w.shape == (12, 10, 1, 1) and w.data_ptr() == conv.conv.weight.data_ptr()
    conv(torch.randn(2, 10, 4, 4)).sum().backward()
    g = conv.conv.weight.grad
    assert g[:12, :10].abs().sum() > 0 and g[12:].abs().sum() == 0 and g[:, 10:].abs().sum() == 0


def _plain_forward(net: MBV3Supernet, x: torch.Tensor) -> torch.Tensor:
    """The largest network written out with full-size weights and plain torch functions."""
    def bn(t, m):
        return F.batch_norm(t, m.running_mean, m.running_var, m.weight, m.bias, False, 0.0, m.eps)

    def act(t, name):
        return F.relu(t) if name == "relu" else F.hardswish(t)

    c = net.config
    x = act(bn(F.conv2d(x, net.first_conv.conv.weight, None, c.stem_stride, 1), net.first_conv.bn), "hswish")
    b0 = net.blocks[0].conv
    y = act(bn(F.conv2d(x, b0.depth_conv.conv.weight, None, 1, 1, 1, x.shape[1]), b0.depth_conv.bn), "relu")
    x = x + bn(F.conv2d(y, b0.point_linear.conv.weight), b0.point_linear.bn)
    for block in net.blocks[1:]:
        m = block.conv
        y = act(bn(F.conv2d(x, m.inverted_bottleneck.conv.conv.weight), m.inverted_bottleneck.bn.bn), m.act_name)
        dw = m.depth_conv.conv.conv
        y = act(bn(F.conv2d(y, dw.weight, None, m.stride, 3, 1, y.shape[1]), m.depth_conv.bn.bn), m.act_name)
        if m.use_se:
            fc = m.depth_conv.se.fc
            s = F.relu(F.conv2d(y.mean((2, 3), keepdim=True), fc.reduce.weight, fc.reduce.bias))
            y = y * F.hardsigmoid(F.conv2d(s, fc.expand.weight, fc.expand.bias))
        y = bn(F.conv2d(y, m.point_linear.conv.conv.weight), m.point_linear.bn.bn)
        x = x + y if block.has_shortcut else y
    x = act(bn(F.conv2d(x, net.final_expand_layer.conv.weight), net.final_expand_layer.bn), "hswish")
    x = F.hardswish(F.conv2d(x.mean((2, 3), keepdim=True), net.feature_mix_layer.conv.weight))
    return F.linear(x.flatten(1), net.classifier.linear.weight, net.classifier.linear.bias)


def test_largest_arch_equals_plain_network(space, perturbed):
    net = perturbed(1)
    net.set_active(net.largest_arch())
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        out, ref = net(x), _plain_forward(net, x)
    assert out.abs().max() > 0.1
    assert (out - ref).abs().max() < 1e-5


def test_sort_channels_keeps_largest_and_orders_importance(space, perturbed):
    net = perturbed(2)
    x = torch.randn(2, 3, 32, 32)
    small = net.smallest_arch()
    with torch.no_grad():
        net.set_active(net.largest_arch())
        before_large = net(x)
        net.set_active(small)
        before_small = net(x[..., :24, :24])
        net.sort_channels()
        after_small = net(x[..., :24, :24])
        net.set_active(net.largest_arch())
        after_large = net(x)
    assert (before_large - after_large).abs().max() < 1e-4 * before_large.abs().max()  # sums in another order
    assert (before_small - after_small).abs().max() > 1e-4  # narrow slices now keep other channels
    for block in net.blocks[1:]:
        imp = block.conv.point_linear.conv.conv.weight.abs().sum((0, 2, 3))
        assert torch.all(imp[:-1] >= imp[1:])
        if block.conv.use_se:  # the squeeze-excite hidden units too, by the L1 norm of their expand weights
            se = block.conv.depth_conv.se.fc.expand.weight.abs().sum((0, 2, 3))
            assert torch.all(se[:-1] >= se[1:])


def test_bn_recalibration_sets_statistics_of_the_subnet(space, perturbed):
    net = perturbed(3)
    arch = net.random_arch(np.random.default_rng(0))
    net.set_active(arch)
    batches = [torch.randn(8, 3, 32, 32) * 2 + 1 for _ in range(2)]
    old = net.first_conv.bn.running_mean.clone()
    assert recalibrate_bn(net, batches, resolution=arch.r) == 2
    assert not net.training
    with torch.no_grad():  # the first BN's mean is now the average of the two batch means
        conv = net.first_conv.conv
        means = [conv(F.interpolate(b, size=(arch.r, arch.r), mode="bilinear")).mean((0, 2, 3))
                 for b in batches]
    new = net.first_conv.bn.running_mean
    assert (new - old).abs().max() > 0.1
    assert torch.allclose(new, (means[0] + means[1]) / 2, atol=1e-4)


def test_recalibration_restores_momenta_and_eval_mode_even_on_a_failing_batch(space, perturbed):
    from edgenas.supernet.bn import batchnorms

    net = perturbed(8)
    arch = net.smallest_arch()
    net.set_active(arch)
    stats = {k: v.clone() for k, v in net.state_dict().items() if "running" in k}
    net.train()
    assert recalibrate_bn(net, []) == 0 and not net.training  # no batches: statistics untouched
    assert all(torch.equal(v, net.state_dict()[k]) for k, v in stats.items())
    with pytest.raises(RuntimeError):  # 4 input channels: the stem conv fails mid-way
        recalibrate_bn(net, [torch.randn(2, 4, 16, 16)], resolution=arch.r)
    assert not net.training and {bn.momentum for bn in batchnorms(net)} == {0.1}
    with pytest.raises(RuntimeError):  # a good batch, then a bad one: the statistics are those of before
        recalibrate_bn(net, [torch.randn(2, 3, 16, 16), torch.randn(2, 4, 16, 16)], resolution=arch.r)
    assert all(torch.equal(v, net.state_dict()[k]) for k, v in stats.items())
    assert {int(bn.num_batches_tracked) for bn in batchnorms(net)} == {1}
    assert recalibrate_bn(net, [torch.randn(4, 3, 16, 16)], resolution=arch.r) == 1
    assert not net.training and {bn.momentum for bn in batchnorms(net)} == {0.1}


def test_bn_state_holds_only_running_statistics_and_restores_them(perturbed):
    from edgenas.supernet.bn import bn_state, load_bn_state

    net = perturbed(9)
    saved = bn_state(net)
    assert saved and all(k.rsplit(".", 1)[-1] in ("running_mean", "running_var", "num_batches_tracked")
                         for k in saved)
    assert len(saved) == 3 * len([m for m in net.modules() if isinstance(m, torch.nn.BatchNorm2d)])
    reference = {k: v.clone() for k, v in net.state_dict().items()}
    recalibrate_bn(net, [torch.randn(4, 3, 32, 32)])
    assert not all(torch.equal(reference[k], v) for k, v in net.state_dict().items())
    load_bn_state(net, saved)
    assert all(torch.equal(reference[k], v) for k, v in net.state_dict().items())


def test_recalibration_forgets_the_statistics_of_earlier_batches(space, perturbed):
    """Statistics are reset first: a network that saw other data (trained, ``num_batches_tracked`` > 0)
    ends with the same statistics as a fresh copy recalibrated on the same batches."""
    import copy

    seen = perturbed(10)
    arch = seen.smallest_arch()
    seen.set_active(arch)
    fresh = copy.deepcopy(seen)
    seen.train()
    with torch.no_grad():
        for _ in range(3):
            seen(torch.randn(4, 3, arch.r, arch.r) * 3 - 2)
    batches = [torch.randn(6, 3, arch.r, arch.r) for _ in range(2)]
    assert recalibrate_bn(seen, batches) == recalibrate_bn(fresh, batches) == 2
    a, b = seen.state_dict(), fresh.state_dict()
    stats = [k for k in a if k.rsplit(".", 1)[-1] in ("running_mean", "running_var", "num_batches_tracked")]
    assert stats and all(torch.allclose(a[k].float(), b[k].float(), atol=1e-6) for k in stats)
    assert int(a["first_conv.bn.num_batches_tracked"]) == 2


def test_set_active_refuses_an_architecture_of_another_shape_and_changes_nothing(space):
    net = MBV3Supernet(space.config)
    large, small = net.largest_arch(), net.smallest_arch()
    net.set_active(small)
    kernels = [(b.conv.depth_conv.conv.active_kernel_size, b.conv.active_middle) for b in net.blocks[1:]]
    for bad in (type(large)(ks=large.ks + (3,), e=large.e, d=large.d, r=large.r),
                type(large)(ks=large.ks, e=large.e + (3,), d=large.d, r=large.r),
                type(large)(ks=large.ks, e=large.e, d=large.d + (2,), r=large.r),
                type(large)(ks=large.ks, e=large.e, d=(1,) + large.d[1:], r=large.r),
                type(large)(ks=(4,) + large.ks[1:], e=large.e, d=large.d, r=large.r),  # no such kernel
                type(large)(ks=large.ks, e=large.e[:-1] + (8,), d=large.d, r=large.r),  # wider than stored
                type(large)(ks=large.ks, e=(1,) + large.e[1:], d=large.d, r=large.r)):  # narrower than any
        with pytest.raises(ValueError, match="does not fit|not in"):
            net.set_active(bad)
        assert net.active_arch == small
        assert [(b.conv.depth_conv.conv.active_kernel_size, b.conv.active_middle) for b in net.blocks[1:]] == kernels


def test_an_unknown_activation_or_kernel_is_refused():
    assert isinstance(build_act("relu"), torch.nn.ReLU) and isinstance(build_act("hswish"), torch.nn.Hardswish)
    with pytest.raises(ValueError, match="unknown activation 'gelu'"):
        build_act("gelu")
    with pytest.raises(ValueError, match="kernel 9 not in"):
        DynamicSeparableConv2d(8, (3, 5, 7), stride=1).active_filter(8, 9)


def test_initial_weights_follow_ofa(space):
    """Convs He-normal (fan out) without bias, BN gammas one except the last of each residual block
    (zero: each residual block starts as the identity), classifier N(0, 0.01) with a zero bias."""
    torch.manual_seed(0)
    net = MBV3Supernet(space.config)
    expand = net.blocks[1].conv.inverted_bottleneck.conv.conv.weight  # 1x1, fan out = its output channels
    assert abs(expand.std().item() - (2 / expand.shape[0]) ** 0.5) < 0.1 * (2 / expand.shape[0]) ** 0.5
    se = next(b.conv.depth_conv.se.fc for b in net.blocks[1:] if b.conv.use_se)
    assert se.reduce.bias.abs().sum() == 0 and se.expand.bias.abs().sum() == 0
    assert abs(net.classifier.linear.weight.std().item() - 0.01) < 0.002
    assert net.classifier.linear.bias.abs().sum() == 0
    for block in net.blocks[1:]:
        gamma = block.conv.point_linear.bn.bn.weight
        assert torch.equal(gamma, torch.zeros_like(gamma) if block.has_shortcut else torch.ones_like(gamma))
    assert any(not b.has_shortcut for b in net.blocks[1:]) and any(b.has_shortcut for b in net.blocks[1:])
    assert torch.equal(net.first_conv.bn.weight, torch.ones_like(net.first_conv.bn.weight))


def test_block_sort_channels_returns_the_order_it_applied(perturbed):
    block = perturbed(11).blocks[-1].conv
    pl, ib = block.point_linear.conv.conv.weight, block.inverted_bottleneck.conv.conv.weight
    pl_before, ib_before = pl.clone(), ib.clone()
    order = block.sort_channels()
    assert sorted(order.tolist()) == list(range(pl.shape[1])) and order.tolist() != sorted(order.tolist())
    assert torch.equal(pl, pl_before[:, order]) and torch.equal(ib, ib_before[order])


def test_random_architectures_draw_every_choice(space):
    net, c = MBV3Supernet(space.config), space.config
    archs = [net.random_arch(np.random.default_rng(s)) for s in range(40)]
    assert {k for a in archs for k in a.ks} == set(c.ks_choices)
    assert {e for a in archs for e in a.e} == set(c.e_choices)
    assert {d for a in archs for d in a.d} == set(c.d_choices) and {a.r for a in archs} == set(c.resolutions)


def test_dynamic_bn_updates_its_statistics_only_in_train_mode():
    from edgenas.supernet.dynamic import DynamicBatchNorm2d

    bn = DynamicBatchNorm2d(8)
    x = torch.randn(6, 4, 5, 5) * 2 + 3
    bn.eval()
    bn(x)
    assert int(bn.bn.num_batches_tracked) == 0 and torch.equal(bn.bn.running_mean, torch.zeros(8))
    bn.train()
    bn(x)  # momentum 0.1 on the first 4 channels, the others untouched
    assert int(bn.bn.num_batches_tracked) == 1 and torch.equal(bn.bn.running_mean[4:], torch.zeros(4))
    assert torch.allclose(bn.bn.running_mean[:4], 0.1 * x.mean((0, 2, 3)), atol=1e-6)
    bn.bn.reset_running_stats()
    bn.bn.momentum = None  # cumulative average, as in BN recalibration
    bn(x)
    bn(x[:, :4] * 0 + 1)
    assert torch.allclose(bn.bn.running_mean[:4], (x.mean((0, 2, 3)) + 1) / 2, atol=1e-5)


def test_dynamic_bn_without_running_statistics_normalises_by_the_batch_and_leaves_them_alone():
    """With ``track_running_stats`` off (as ``nn.BatchNorm2d`` reads it), train and eval mode both normalise by
    the batch, and neither moves the stored statistics nor counts the batch."""
    from edgenas.supernet.dynamic import DynamicBatchNorm2d

    bn = DynamicBatchNorm2d(8)
    bn.bn.track_running_stats = False
    x = torch.randn(6, 4, 5, 5) * 2 + 3
    for train in (True, False):
        bn.train(train)
        y = bn(x)
        assert torch.allclose(y.mean((0, 2, 3)), torch.zeros(4), atol=1e-5)
        assert torch.equal(bn.bn.running_mean, torch.zeros(8)) and torch.equal(bn.bn.running_var, torch.ones(8))
        assert int(bn.bn.num_batches_tracked) == 0

"""The supernet's fixed layers: the resize every evaluator and the training loop use, initial weights."""

from __future__ import annotations

import dataclasses

import torch

from edgenas.supernet import MBV3Supernet
from edgenas.supernet.model import resize


def test_resize_is_bilinear_with_half_pixel_centres_and_a_no_op_at_its_size():
    x = torch.arange(4.0).reshape(1, 1, 2, 2)
    assert resize(x, 2) is x
    y = resize(x, 4)
    assert y.shape == (1, 1, 4, 4)
    # output pixel 1 samples input position 0.25 (with aligned corners it would be 1/3)
    assert torch.allclose(y[0, 0, 0], torch.tensor([0.0, 0.25, 0.75, 1.0]))
    assert resize(torch.randn(2, 3, 16, 20), 16).shape == (2, 3, 16, 16)  # not square: resized


def test_initial_weights_scale_with_fan_out_and_zero_every_residual_branch(space):
    torch.manual_seed(0)
    net = MBV3Supernet(space.config)
    for w in (net.blocks[1].conv.point_linear.conv.conv.weight,  # fan out 16 (He default: fan in 96)
              net.blocks[1].conv.depth_conv.conv.conv.weight):  # fan out 96 * 7 * 7 (He default: 49)
        fan_out = w.shape[0] * w.shape[2] * w.shape[3]
        assert abs(w.std().item() - (2 / fan_out) ** 0.5) < 0.1 * (2 / fan_out) ** 0.5
    assert abs(net.classifier.linear.weight.mean().item()) < 0.002
    # a first stage of stride 1 and the stem's width: its first block is residual, and starts as the identity
    c = dataclasses.replace(space.config, stage_strides=(1,) + space.config.stage_strides[1:],
                            stage_widths=(space.config.first_block_width,) + space.config.stage_widths[1:])
    block = MBV3Supernet(c).blocks[1]
    assert block.has_shortcut and torch.equal(block.conv.point_linear.bn.bn.weight,
                                              torch.zeros_like(block.conv.point_linear.bn.bn.weight))


def test_only_the_squeeze_excite_convs_and_the_classifier_have_a_bias_as_in_ofa(space):
    """OFA's state dict has no conv biases elsewhere: one more bias would make its weights "missing" a key."""
    net = MBV3Supernet(space.config)
    bns = {n for n, m in net.named_modules() if isinstance(m, torch.nn.BatchNorm2d)}
    biases = {n for n, _ in net.named_parameters() if n.endswith(".bias") and n.removesuffix(".bias") not in bns}
    se = {f"blocks.{i}.conv.depth_conv.se.fc.{fc}.bias" for i, b in enumerate(net.blocks)
          if i and b.conv.use_se for fc in ("reduce", "expand")}
    assert se and biases == se | {"classifier.linear.bias"}

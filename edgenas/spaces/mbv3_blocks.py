"""MobileNetV3 blocks built from their block keys alone (``mbv3_keys``: Once-for-All's LUT key format).

A key fully determines a block's structure *and* its initial weights (a generator seeded from the
key's hash), so two blocks with the same key export to the same ONNX graph, byte for byte, and the
keys of Once-for-All's published latency tables load directly. Blocks are returned in eval mode.
"""

from __future__ import annotations

import hashlib
import math

import torch
from torch import nn

from edgenas.spaces.mbv3_keys import BlockSpec

__all__ = ["BlockSpec", "Classifier", "ConvBNAct", "MBConv", "SqueezeExcite", "build_block", "init_weights",
           "key_seed"]


# ----------------------------------------------------------------------------- modules
def _act(hs: bool) -> nn.Module:
    return nn.Hardswish() if hs else nn.ReLU()


class ConvBNAct(nn.Sequential):
    """conv (+ BN) (+ activation); children are named ``conv``, ``bn``, ``act``."""

    def __init__(self, cin: int, cout: int, k: int = 1, stride: int = 1, groups: int = 1,
                 bn: bool = True, act: nn.Module | None = None) -> None:
        super().__init__()
        self.add_module("conv", nn.Conv2d(cin, cout, k, stride, k // 2, groups=groups, bias=not bn))
        if bn:
            self.add_module("bn", nn.BatchNorm2d(cout))
        if act is not None:
            self.add_module("act", act)


class SqueezeExcite(nn.Module):
    """avgpool -> 1x1 conv (bias) -> ReLU -> 1x1 conv (bias) -> h-sigmoid -> scale."""

    def __init__(self, channels: int, reduced: int) -> None:
        super().__init__()
        self.reduce = nn.Conv2d(channels, reduced, 1, bias=True)
        self.relu = nn.ReLU()
        self.expand = nn.Conv2d(reduced, channels, 1, bias=True)
        self.gate = nn.Hardsigmoid()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = x.mean((2, 3), keepdim=True)
        return x * self.gate(self.expand(self.relu(self.reduce(y))))


class MBConv(nn.Module):
    """Inverted bottleneck: [expand 1x1] -> depthwise kxk -> [SE] -> project 1x1 (+ residual)."""

    def __init__(self, spec: BlockSpec) -> None:
        super().__init__()
        mid = spec.expand
        self.expand = None if mid == spec.in_ch else ConvBNAct(spec.in_ch, mid, 1, act=_act(spec.hs))
        self.depthwise = ConvBNAct(mid, mid, spec.kernel, spec.stride, groups=mid, act=_act(spec.hs))
        self.se = SqueezeExcite(mid, spec.se_channels) if spec.se else None
        self.project = ConvBNAct(mid, spec.out_ch, 1)
        self.residual = spec.idskip

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = x if self.expand is None else self.expand(x)
        y = self.depthwise(y)
        if self.se is not None:
            y = self.se(y)
        y = self.project(y)
        return x + y if self.residual else y


class Classifier(nn.Module):
    """flatten -> linear."""

    def __init__(self, cin: int, classes: int) -> None:
        super().__init__()
        self.linear = nn.Linear(cin, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.linear(torch.flatten(x, 1))


def _module(spec: BlockSpec) -> nn.Module:
    if spec.kind == "Conv":
        return ConvBNAct(spec.in_ch, spec.out_ch, 3, spec.stride, act=nn.Hardswish())
    if spec.kind == "expanded_conv":
        return MBConv(spec)
    if spec.kind == "Conv_1":
        return ConvBNAct(spec.in_ch, spec.out_ch, 1, act=nn.Hardswish())
    if spec.kind == "AvgPool2D":
        return nn.AdaptiveAvgPool2d(1)
    if spec.kind == "Conv_2":
        return ConvBNAct(spec.in_ch, spec.out_ch, 1, bn=False, act=nn.Hardswish())
    return Classifier(spec.in_ch, spec.out_ch)


def key_seed(key: str) -> int:
    """A 63-bit seed from the key's SHA-256 (stable across processes, unlike ``hash``)."""
    return int.from_bytes(hashlib.sha256(key.encode()).digest()[:8], "little") >> 1


@torch.no_grad()
def init_weights(module: nn.Module, seed: int) -> nn.Module:
    """Deterministic init: convs kaiming-normal (fan-out), linear N(0, 0.01), biases 0, BN identity."""
    g = torch.Generator().manual_seed(seed)
    for m in module.modules():
        if isinstance(m, nn.Conv2d):
            fan_out = m.out_channels * m.kernel_size[0] * m.kernel_size[1] // m.groups
            m.weight.copy_(torch.randn(m.weight.shape, generator=g) * math.sqrt(2.0 / fan_out))
            if m.bias is not None:
                m.bias.zero_()
        elif isinstance(m, nn.Linear):
            m.weight.copy_(torch.randn(m.weight.shape, generator=g) * 0.01)
            m.bias.zero_()
        elif isinstance(m, nn.BatchNorm2d):
            m.reset_parameters()  # weight 1, bias 0, running mean 0, var 1, num_batches 0
    return module


def build_block(spec_or_key: BlockSpec | str) -> nn.Module:
    """The block of this key (or spec), weights initialised from the key, in eval mode."""
    spec = spec_or_key if isinstance(spec_or_key, BlockSpec) else BlockSpec.parse(spec_or_key)
    return init_weights(_module(spec), key_seed(spec.key)).eval()

"""``MBV3Supernet``: one set of weights for every network of an elastic MobileNetV3 family.

Layout as in OFA's ``OFAMobileNetV3`` (and the ``mbv3`` space's ``build_model``): ``first_conv``
(3x3, BN, h-swish) -> ``blocks.0`` (fixed MBConv: expand 1, kernel 3, ReLU) -> ``blocks.1..`` (elastic
MBConv, ``max_depth`` per stage) -> ``final_expand_layer`` (1x1, BN, h-swish) -> global average pool ->
``feature_mix_layer`` (1x1, no BN, h-swish) -> ``classifier.linear``.

``set_active(arch)`` picks kernel and expand ratio per block, depth per stage (the first ``d`` blocks
of each stage run) and the resolution ``r``; ``forward`` runs the active network on inputs of any size
(``resize`` brings a batch to ``r``; the training loop and the evaluators call it).
"""

from __future__ import annotations

from collections import OrderedDict

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from edgenas.spaces.mbv3_config import MBV3Arch, MBV3Config
from edgenas.supernet.dynamic import DynamicMBConv, ResidualBlock, build_act


def conv_bn_act(cin: int, cout: int, k: int, stride: int, act: str | None, groups: int = 1,
                bn: bool = True) -> nn.Sequential:
    layers: list[tuple[str, nn.Module]] = [
        ("conv", nn.Conv2d(cin, cout, k, stride, k // 2, groups=groups, bias=False))]
    if bn:
        layers.append(("bn", nn.BatchNorm2d(cout)))
    if act is not None:
        layers.append(("act", build_act(act)))
    return nn.Sequential(OrderedDict(layers))


class FirstMBConv(nn.Module):
    """The fixed first block: depthwise 3x3 (BN, act) -> point-linear 1x1 (BN); OFA's ``MBConvLayer``."""

    def __init__(self, cin: int, cout: int, act: str) -> None:
        super().__init__()
        self.depth_conv = conv_bn_act(cin, cin, 3, 1, act, groups=cin)
        self.point_linear = conv_bn_act(cin, cout, 1, 1, None)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.point_linear(self.depth_conv(x))


def resize(x: torch.Tensor, r: int) -> torch.Tensor:
    """Bilinear resize of an NCHW batch to ``r x r`` (no-op when it already is)."""
    if x.shape[-2:] == (r, r):
        return x
    return F.interpolate(x, size=(r, r), mode="bilinear", align_corners=False)


class MBV3Supernet(nn.Module):
    def __init__(self, config: MBV3Config) -> None:
        super().__init__()
        c = config
        self.config = c
        self.first_conv = conv_bn_act(c.in_channels, c.stem_width, 3, c.stem_stride, "hswish")
        blocks: list[nn.Module] = [ResidualBlock(FirstMBConv(c.stem_width, c.first_block_width, "relu"),
                                                 shortcut=c.stem_width == c.first_block_width)]
        cin = c.first_block_width
        for s, width in enumerate(c.stage_widths):
            for j in range(c.max_depth):
                stride = c.stage_strides[s] if j == 0 else 1
                conv = DynamicMBConv(cin, width, c.ks_choices, c.e_choices, stride,
                                     c.stage_act[s], c.stage_se[s])
                blocks.append(ResidualBlock(conv, shortcut=stride == 1 and cin == width))
                cin = width
        self.blocks = nn.ModuleList(blocks)
        self.final_expand_layer = conv_bn_act(cin, c.final_expand_width, 1, 1, "hswish")
        self.feature_mix_layer = conv_bn_act(c.final_expand_width, c.feature_mix_width, 1, 1,
                                             "hswish", bn=False)
        self.classifier = nn.Sequential(OrderedDict(
            [("linear", nn.Linear(c.feature_mix_width, c.num_classes))]))
        self._init_weights()
        self.active_arch = self.largest_arch()
        self.set_active(self.active_arch)

    # ------------------------------------------------------------------ archs
    def largest_arch(self) -> MBV3Arch:
        c = self.config
        return MBV3Arch(ks=(max(c.ks_choices),) * c.n_slots, e=(max(c.e_choices),) * c.n_slots,
                        d=(max(c.d_choices),) * c.n_stages, r=max(c.resolutions))

    def smallest_arch(self) -> MBV3Arch:
        c = self.config
        return MBV3Arch(ks=(min(c.ks_choices),) * c.n_slots, e=(min(c.e_choices),) * c.n_slots,
                        d=(min(c.d_choices),) * c.n_stages, r=min(c.resolutions))

    def random_arch(self, rng: np.random.Generator) -> MBV3Arch:
        c = self.config
        pick = lambda choices, n: tuple(choices[i] for i in rng.integers(0, len(choices), n))  # noqa: E731
        return MBV3Arch(ks=pick(c.ks_choices, c.n_slots), e=pick(c.e_choices, c.n_slots),
                        d=pick(c.d_choices, c.n_stages), r=int(pick(c.resolutions, 1)[0]))

    def stage_blocks(self, stage: int) -> list[ResidualBlock]:
        start = 1 + stage * self.config.max_depth
        return list(self.blocks[start:start + self.config.max_depth])

    def set_active(self, arch: MBV3Arch) -> None:
        c = self.config
        if len(arch.ks) != c.n_slots or len(arch.e) != c.n_slots or len(arch.d) != c.n_stages:
            raise ValueError(f"architecture does not fit {c.name}: need {c.n_slots} ks/e and "
                             f"{c.n_stages} depths")
        # before any block changes: an unknown kernel would fail only in forward, and an expand ratio
        # past the largest would silently run the largest width
        for name, values, choices in (("kernel sizes", arch.ks, c.ks_choices),
                                      ("expand ratios", arch.e, c.e_choices), ("depths", arch.d, c.d_choices)):
            if not all(v in choices for v in values):
                raise ValueError(f"{name} {values} not in {choices}")
        for i, block in enumerate(self.blocks[1:]):
            block.conv.set_active(arch.ks[i], arch.e[i])
        self.active_arch = arch

    def active_blocks(self) -> list[nn.Module]:
        """Blocks that run for the active architecture, in order (first block included)."""
        out = [self.blocks[0]]
        for s, d in enumerate(self.active_arch.d):
            out.extend(self.stage_blocks(s)[:d])
        return out

    # --------------------------------------------------------------- forward
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.first_conv(x)
        for block in self.active_blocks():
            x = block(x)
        x = self.final_expand_layer(x)
        x = x.mean((2, 3), keepdim=True)
        x = self.feature_mix_layer(x)
        return self.classifier(torch.flatten(x, 1))

    @torch.no_grad()
    def sort_channels(self) -> None:
        """Importance-sort the middle channels of every elastic block (see ``DynamicMBConv``).

        Changes parameters in place: build the optimizer afterwards (momentum buffers would not follow).
        """
        for block in self.blocks[1:]:
            block.conv.sort_channels()

    @torch.no_grad()
    def _init_weights(self) -> None:
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out")
                if m.bias is not None:
                    m.bias.zero_()
            elif isinstance(m, nn.BatchNorm2d):
                m.reset_parameters()
            elif isinstance(m, nn.Linear):
                nn.init.normal_(m.weight, 0.0, 0.01)
                m.bias.zero_()
        for block in self.blocks[1:]:  # zero-init the last BN gamma of residual blocks: stable start
            if block.has_shortcut:
                block.conv.point_linear.bn.bn.weight.zero_()

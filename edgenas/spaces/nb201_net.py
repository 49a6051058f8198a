"""The NAS-Bench-201 CIFAR network as a plain PyTorch module.

Layout (as in the NAS-Bench-201 paper, "tiny network"):

* stem: conv 3x3 (3 -> C, no bias) + BN;
* three stages of ``N`` cells with ``C``, ``2C`` and ``4C`` channels; between stages a residual
  reduction block: ReLU-Conv3x3(stride 2)-BN -> ReLU-Conv3x3-BN, plus a shortcut
  AvgPool(2, stride 2) -> Conv1x1 (no bias);
* ``lastact``: BN + ReLU; global average pool; linear classifier.

A cell is a DAG of 4 nodes; node ``i`` is the sum over ``j < i`` of ``op_{i<-j}(node_j)``. The six
edge ops are given in NAS-Bench-201 string order: 1<-0, 2<-0, 2<-1, 3<-0, 3<-1, 3<-2. Ops:
``none`` (a zero tensor), ``skip_connect`` (identity), ``nor_conv_1x1`` / ``nor_conv_3x3``
(ReLU-Conv-BN), ``avg_pool_3x3`` (stride 1, padding 1, ``count_include_pad=False``).

With ``C=16, N=5, num_classes=10`` the all-``none`` network has 73,306 parameters and the
all-``nor_conv_3x3`` network 1,531,546 (NAS-Bench-201 reports 0.073 and 1.531 M).

ReLUs are never in-place, so hooks on their inputs (NASWOT) see the untouched pre-activation.
Initialisation is PyTorch's default, hence deterministic after ``torch.manual_seed``.
"""

from __future__ import annotations

from typing import Sequence

import torch
from torch import nn

from edgenas.errors import InputError
from edgenas.spaces.nb201_string import OPS, parse_arch_string

NB201_OPS: tuple[str, ...] = OPS  # the space's op names, one list
#: (to_node, from_node) of the six edges, in NAS-Bench-201 string order
NB201_EDGES: tuple[tuple[int, int], ...] = ((1, 0), (2, 0), (2, 1), (3, 0), (3, 1), (3, 2))


class ReLUConvBN(nn.Sequential):
    def __init__(self, c_in: int, c_out: int, kernel: int, stride: int = 1) -> None:
        super().__init__(
            nn.ReLU(inplace=False),
            nn.Conv2d(c_in, c_out, kernel, stride=stride, padding=kernel // 2, bias=False),
            nn.BatchNorm2d(c_out),
        )


class Zero(nn.Module):
    """The ``none`` op: a zero tensor of the input's shape."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.mul(0.0)


def make_op(name: str, channels: int) -> nn.Module:
    if name == "none":
        return Zero()
    if name == "skip_connect":
        return nn.Identity()
    if name == "nor_conv_1x1":
        return ReLUConvBN(channels, channels, 1)
    if name == "nor_conv_3x3":
        return ReLUConvBN(channels, channels, 3)
    if name == "avg_pool_3x3":
        return nn.AvgPool2d(3, stride=1, padding=1, count_include_pad=False)
    raise InputError(f"unknown NAS-Bench-201 op '{name}'", hint=f"ops: {', '.join(NB201_OPS)}")


class NB201Cell(nn.Module):
    def __init__(self, ops: Sequence[str], channels: int) -> None:
        super().__init__()
        self.edges = nn.ModuleList(make_op(op, channels) for op in ops)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        nodes = [x]
        for to_node in (1, 2, 3):
            total = None
            for k, (dst, src) in enumerate(NB201_EDGES):
                if dst == to_node:
                    y = self.edges[k](nodes[src])
                    total = y if total is None else total + y
            nodes.append(total)
        return nodes[3]


class ResidualReduction(nn.Module):
    """NAS-Bench-201's reduction block between stages (a ResNet basic block, stride 2)."""

    def __init__(self, c_in: int, c_out: int) -> None:
        super().__init__()
        self.conv_a = ReLUConvBN(c_in, c_out, 3, stride=2)
        self.conv_b = ReLUConvBN(c_out, c_out, 3)
        self.shortcut = nn.Sequential(
            nn.AvgPool2d(2, stride=2), nn.Conv2d(c_in, c_out, 1, bias=False)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.shortcut(x) + self.conv_b(self.conv_a(x))


class NB201Network(nn.Module):
    def __init__(self, ops: Sequence[str], C: int, N: int, num_classes: int) -> None:
        super().__init__()
        self.ops = tuple(ops)
        self.stem = nn.Sequential(nn.Conv2d(3, C, 3, padding=1, bias=False), nn.BatchNorm2d(C))
        layers: list[nn.Module] = []
        c_prev = C
        for stage, width in enumerate((C, 2 * C, 4 * C)):
            if stage > 0:
                layers.append(ResidualReduction(c_prev, width))
            layers.extend(NB201Cell(self.ops, width) for _ in range(N))
            c_prev = width
        self.cells = nn.Sequential(*layers)
        self.lastact = nn.Sequential(nn.BatchNorm2d(c_prev), nn.ReLU(inplace=False))
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Linear(c_prev, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.lastact(self.cells(self.stem(x)))
        return self.classifier(torch.flatten(self.pool(x), 1))


def parse_nb201_string(arch: str) -> tuple[str, ...]:
    """``|op~0|+|op~0|op~1|+|op~0|op~1|op~2|`` -> the six ops in edge order, as the nb201 space parses it
    (this parser took " |...| ", "||none~0||", "~01" and other strings no table holds)."""
    return parse_arch_string(arch)


def build_nb201_network(ops: Sequence[str], C: int = 16, N: int = 5,
                        num_classes: int = 10) -> nn.Module:
    """The NAS-Bench-201 CIFAR network for the six edge ops (NAS-Bench-201 string order)."""
    if isinstance(ops, str):
        ops = parse_nb201_string(ops)
    ops = tuple(ops)
    if len(ops) != len(NB201_EDGES):
        raise InputError(f"a NAS-Bench-201 cell has 6 edge ops, got {len(ops)}",
                         hint="order: 1<-0, 2<-0, 2<-1, 3<-0, 3<-1, 3<-2")
    for op in ops:
        if op not in NB201_OPS:
            raise InputError(f"unknown NAS-Bench-201 op '{op}'", hint=f"ops: {', '.join(NB201_OPS)}")
    for name, value in (("C", C), ("N", N), ("num_classes", num_classes)):
        if not isinstance(value, int) or value < 1:
            raise InputError(f"{name} must be a positive integer, got {value!r}")
    return NB201Network(ops, C, N, num_classes)

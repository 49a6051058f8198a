"""Elastic layers of the weight-sharing MobileNetV3 supernet (Once-for-All style).

Each layer stores its weights at the largest size and computes with a slice of them:

* ``DynamicPointConv2d``: a 1x1 convolution; input channels follow the input tensor, output channels
  are ``active_out_channel`` (elastic width).
* ``DynamicSeparableConv2d``: a depthwise convolution stored at the largest kernel; a smaller kernel
  takes the centre of the next larger one and passes it through a learned ``k*k -> k'*k'`` matrix
  (``7to5_matrix``, ``5to3_matrix``: identity at initialisation), as in OFA.
* ``DynamicBatchNorm2d`` and ``DynamicSE`` follow the channel count of their input.
* ``DynamicMBConv``: an inverted bottleneck whose middle width is ``make_divisible(round(in * e))``.

Module and parameter names mirror OFA's ``OFAMobileNetV3`` (``conv.conv.weight``, ``bn.bn.weight``,
``se.fc.reduce``...) so an OFA state dict maps onto this supernet by name (see ``ofa.py``).
"""

from __future__ import annotations

from collections import OrderedDict

import torch
import torch.nn.functional as F
from torch import nn

from edgenas.spaces.mbv3_config import make_divisible

SE_REDUCTION = 4


def build_act(name: str) -> nn.Module:
    if name == "relu":
        return nn.ReLU()
    if name == "hswish":
        return nn.Hardswish()
    raise ValueError(f"unknown activation {name!r}")


def se_mid_channels(channels: int) -> int:
    """Squeeze-excite hidden width, as in OFA: ``make_divisible(channels // 4, 8)``."""
    return make_divisible(channels // SE_REDUCTION, 8)


def middle_channels(in_channels: int, expand_ratio: float) -> int:
    """Inverted-bottleneck width of a block with ``in_channels`` inputs and this expand ratio."""
    return make_divisible(round(in_channels * expand_ratio), 8)


class DynamicPointConv2d(nn.Module):
    def __init__(self, max_in: int, max_out: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(max_in, max_out, 1, bias=False)
        self.active_out_channel = max_out

    def active_weight(self, in_channels: int) -> torch.Tensor:
        return self.conv.weight[: self.active_out_channel, :in_channels]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.conv2d(x, self.active_weight(x.size(1)))


class DynamicSeparableConv2d(nn.Module):
    def __init__(self, max_channels: int, kernel_sizes: tuple[int, ...], stride: int) -> None:
        super().__init__()
        self.kernel_sizes = tuple(sorted(set(kernel_sizes)))
        self.max_kernel = self.kernel_sizes[-1]
        self.stride = stride
        self.conv = nn.Conv2d(max_channels, max_channels, self.max_kernel, stride,
                              padding=self.max_kernel // 2, groups=max_channels, bias=False)
        for big, small in zip(self.kernel_sizes[:0:-1], self.kernel_sizes[-2::-1]):
            self.register_parameter(f"{big}to{small}_matrix", nn.Parameter(torch.eye(small * small)))
        self.active_kernel_size = self.max_kernel

    def active_filter(self, channels: int, kernel: int) -> torch.Tensor:
        """The ``(channels, 1, kernel, kernel)`` filter: centre crops chained through the matrices."""
        if kernel not in self.kernel_sizes:
            raise ValueError(f"kernel {kernel} not in {self.kernel_sizes}")
        filt = self.conv.weight[:channels]
        src = self.max_kernel
        for small in reversed(self.kernel_sizes):
            if small >= src or src <= kernel:
                continue
            start = (src - small) // 2
            centre = filt[:, :, start:start + small, start:start + small].reshape(-1, small * small)
            matrix = getattr(self, f"{src}to{small}_matrix")
            filt = F.linear(centre, matrix).reshape(channels, 1, small, small)
            src = small
        return filt

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        k, c = self.active_kernel_size, x.size(1)
        return F.conv2d(x, self.active_filter(c, k), None, self.stride, k // 2, 1, c)


class DynamicBatchNorm2d(nn.Module):
    """Batch norm over the first ``C`` channels of its statistics, ``C`` taken from the input."""

    def __init__(self, max_channels: int) -> None:
        super().__init__()
        self.bn = nn.BatchNorm2d(max_channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        bn, c = self.bn, x.size(1)
        factor = 0.0
        if self.training and bn.track_running_stats:
            bn.num_batches_tracked.add_(1)
            factor = 1.0 / float(bn.num_batches_tracked) if bn.momentum is None else bn.momentum
        use_batch = self.training or not bn.track_running_stats
        return F.batch_norm(x, bn.running_mean[:c], bn.running_var[:c], bn.weight[:c], bn.bias[:c],
                            use_batch, factor, bn.eps)


class DynamicSE(nn.Module):
    def __init__(self, max_channels: int) -> None:
        super().__init__()
        mid = se_mid_channels(max_channels)
        self.fc = nn.Sequential(OrderedDict([
            ("reduce", nn.Conv2d(max_channels, mid, 1, bias=True)),
            ("relu", nn.ReLU()),
            ("expand", nn.Conv2d(mid, max_channels, 1, bias=True)),
            ("h_sigmoid", nn.Hardsigmoid()),
        ]))

    def active_params(self, c: int) -> tuple[torch.Tensor, ...]:
        m = se_mid_channels(c)
        red, exp = self.fc.reduce, self.fc.expand
        return red.weight[:m, :c], red.bias[:m], exp.weight[:c, :m], exp.bias[:c]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        rw, rb, ew, eb = self.active_params(x.size(1))
        y = x.mean((2, 3), keepdim=True)
        y = F.hardsigmoid(F.conv2d(F.relu(F.conv2d(y, rw, rb)), ew, eb))
        return x * y


class DynamicMBConv(nn.Module):
    """Inverted bottleneck with elastic kernel and expand ratio (OFA's ``DynamicMBConvLayer``)."""

    def __init__(self, in_channels: int, out_channels: int, kernel_sizes: tuple[int, ...],
                 expand_ratios: tuple[float, ...], stride: int, act: str, use_se: bool) -> None:
        super().__init__()
        self.in_channels, self.out_channels, self.stride = in_channels, out_channels, stride
        self.act_name, self.use_se = act, use_se
        self.expand_ratios = tuple(sorted(expand_ratios))
        max_mid = middle_channels(in_channels, self.expand_ratios[-1])
        self.inverted_bottleneck = nn.Sequential(OrderedDict([
            ("conv", DynamicPointConv2d(in_channels, max_mid)),
            ("bn", DynamicBatchNorm2d(max_mid)),
            ("act", build_act(act)),
        ]))
        dw: list[tuple[str, nn.Module]] = [
            ("conv", DynamicSeparableConv2d(max_mid, kernel_sizes, stride)),
            ("bn", DynamicBatchNorm2d(max_mid)),
            ("act", build_act(act)),
        ]
        if use_se:
            dw.append(("se", DynamicSE(max_mid)))
        self.depth_conv = nn.Sequential(OrderedDict(dw))
        self.point_linear = nn.Sequential(OrderedDict([
            ("conv", DynamicPointConv2d(max_mid, out_channels)),
            ("bn", DynamicBatchNorm2d(out_channels)),
        ]))

    def set_active(self, kernel: int, expand_ratio: float) -> None:
        self.depth_conv.conv.active_kernel_size = kernel
        self.inverted_bottleneck.conv.active_out_channel = middle_channels(self.in_channels, expand_ratio)

    @property
    def active_middle(self) -> int:
        return self.inverted_bottleneck.conv.active_out_channel

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.point_linear(self.depth_conv(self.inverted_bottleneck(x)))

    @torch.no_grad()
    def sort_channels(self) -> torch.Tensor:
        """Reorder middle channels by importance (L1 norm of the point-linear input channels).

        The permutation leaves the largest network's function unchanged and makes every narrower
        slice keep the most important channels. Returns the order applied (new -> old index).
        """
        order = self.point_linear.conv.conv.weight.abs().sum((0, 2, 3)).argsort(descending=True)
        if self.use_se:  # first sort the SE hidden units, by the L1 norm of their expand weights
            fc = self.depth_conv.se.fc
            se_order = fc.expand.weight.abs().sum((0, 2, 3)).argsort(descending=True)
            fc.expand.weight.copy_(fc.expand.weight[:, se_order])
            fc.reduce.weight.copy_(fc.reduce.weight[se_order])
            fc.reduce.bias.copy_(fc.reduce.bias[se_order])
            fc.reduce.weight.copy_(fc.reduce.weight[:, order])
            fc.expand.weight.copy_(fc.expand.weight[order])
            fc.expand.bias.copy_(fc.expand.bias[order])
        pl = self.point_linear.conv.conv
        pl.weight.copy_(pl.weight[:, order])
        for bn in (self.depth_conv.bn.bn, self.inverted_bottleneck.bn.bn):
            for t in (bn.weight, bn.bias, bn.running_mean, bn.running_var):
                t.copy_(t[order])
        dw = self.depth_conv.conv.conv
        dw.weight.copy_(dw.weight[order])
        ib = self.inverted_bottleneck.conv.conv
        ib.weight.copy_(ib.weight[order])
        return order


class ResidualBlock(nn.Module):
    """``conv(x) (+ x)``: OFA's ``ResidualBlock`` with an identity shortcut or none."""

    def __init__(self, conv: nn.Module, shortcut: bool) -> None:
        super().__init__()
        self.conv = conv
        self.has_shortcut = shortcut

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.conv(x)
        return y + x if self.has_shortcut else y

"""Extract a standalone sub-network from the supernet.

``extract_subnet(supernet, arch)`` builds the ``mbv3`` space's own network for ``arch`` (its
``build_model``: an ``nn.Sequential`` of blocks made from block keys, see ``mbv3_blocks``) and copies
the supernet's weights into it: channels sliced, the elastic kernel's transform matrices applied, BN
statistics sliced. In eval mode its outputs equal the supernet path's (tested to < 1e-5), and it
exports to ONNX like any network of the space. Nothing is lost: the one structural difference is that
the feature-mix conv of the block structure has a bias where OFA's has none; it is set to zero.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from edgenas.spaces.mbv3_config import MBV3Arch
from edgenas.supernet.dynamic import DynamicMBConv
from edgenas.supernet.model import MBV3Supernet


class ExtractionError(RuntimeError):
    """The space's block structure does not line up with the supernet (a programming error)."""


def _copy(dst: torch.Tensor, src: torch.Tensor, where: str) -> None:
    if dst.shape != src.shape:
        raise ExtractionError(f"{where}: shape {tuple(src.shape)} from the supernet does not fit "
                              f"{tuple(dst.shape)} in the block")
    dst.copy_(src.detach())


def _copy_bn(dst: nn.BatchNorm2d, src: nn.BatchNorm2d, c: int, where: str) -> None:
    for name in ("weight", "bias", "running_mean", "running_var"):
        _copy(getattr(dst, name), getattr(src, name)[:c], f"{where}.{name}")
    dst.num_batches_tracked.copy_(src.num_batches_tracked)
    dst.eps, dst.momentum = src.eps, src.momentum


def _copy_conv_bn(dst: nn.Module, src: nn.Module, where: str) -> None:
    """``conv/bn`` sequences with static (non-elastic) layers on both sides."""
    _copy(dst.conv.weight, src.conv.weight, f"{where}.conv.weight")
    if dst.conv.bias is not None:
        bias = src.conv.bias if src.conv.bias is not None else torch.zeros_like(dst.conv.bias)
        _copy(dst.conv.bias, bias, f"{where}.conv.bias")
    if hasattr(src, "bn"):
        _copy_bn(dst.bn, src.bn, src.bn.num_features, f"{where}.bn")


def _copy_mbconv(dst: nn.Module, src: DynamicMBConv, where: str) -> None:
    mid, cin = src.active_middle, src.in_channels
    if dst.expand is None:
        raise ExtractionError(f"{where}: block has no expansion conv but the supernet's does")
    ib = src.inverted_bottleneck
    _copy(dst.expand.conv.weight, ib.conv.active_weight(cin), f"{where}.expand.conv.weight")
    _copy_bn(dst.expand.bn, ib.bn.bn, mid, f"{where}.expand.bn")
    dw = src.depth_conv
    _copy(dst.depthwise.conv.weight, dw.conv.active_filter(mid, dw.conv.active_kernel_size),
          f"{where}.depthwise.conv.weight")
    _copy_bn(dst.depthwise.bn, dw.bn.bn, mid, f"{where}.depthwise.bn")
    if (dst.se is None) != (not src.use_se):
        raise ExtractionError(f"{where}: squeeze-excite present on one side only")
    if src.use_se:
        rw, rb, ew, eb = dw.se.active_params(mid)
        for name, t in (("reduce.weight", rw), ("reduce.bias", rb), ("expand.weight", ew),
                        ("expand.bias", eb)):
            _copy(dst.se.get_parameter(name), t, f"{where}.se.{name}")
    _copy(dst.project.conv.weight, src.point_linear.conv.active_weight(mid),
          f"{where}.project.conv.weight")
    _copy_bn(dst.project.bn, src.point_linear.bn.bn, src.out_channels, f"{where}.project.bn")


@torch.no_grad()
def copy_weights(model: nn.Sequential, supernet: MBV3Supernet) -> nn.Sequential:
    """Copy the supernet's active weights into ``model`` (the space's block sequence)."""
    blocks = supernet.active_blocks()
    expected = 1 + len(blocks) + 4  # stem, MBConvs, final expand, pool, feature mix, logits
    if len(model) != expected:
        raise ExtractionError(f"model has {len(model)} blocks, the supernet path {expected}")
    _copy_conv_bn(model[0], supernet.first_conv, "first_conv")
    for i, (dst, block) in enumerate(zip(model[1:], blocks)):
        where = f"blocks[{i}]"
        if bool(dst.residual) != block.has_shortcut:
            raise ExtractionError(f"{where}: residual shortcut present on one side only")
        if isinstance(block.conv, DynamicMBConv):
            _copy_mbconv(dst, block.conv, where)
        else:  # the fixed first block: no expansion
            if dst.expand is not None:
                raise ExtractionError(f"{where}: the first block must have no expansion conv")
            _copy_conv_bn(dst.depthwise, block.conv.depth_conv, f"{where}.depthwise")
            _copy_conv_bn(dst.project, block.conv.point_linear, f"{where}.project")
    n = 1 + len(blocks)
    _copy_conv_bn(model[n], supernet.final_expand_layer, "final_expand_layer")
    _copy_conv_bn(model[n + 2], supernet.feature_mix_layer, "feature_mix_layer")
    _copy(model[n + 3].linear.weight, supernet.classifier.linear.weight, "classifier.weight")
    _copy(model[n + 3].linear.bias, supernet.classifier.linear.bias, "classifier.bias")
    return model


def space_for(supernet: MBV3Supernet) -> Any:
    """The registered ``mbv3`` space of the supernet's preset."""
    from edgenas.spaces import get_space

    return get_space(supernet.config.name)


def extract_subnet(supernet: MBV3Supernet, arch: MBV3Arch, space: Any = None) -> nn.Sequential:
    """A standalone copy of ``arch`` with the supernet's weights, in eval mode.

    The supernet's active architecture is restored afterwards. A supernet of another config than the
    space's (a checkpoint of an older preset, an edited one) is an ``InputError``.
    """
    from edgenas.supernet.evaluate import check_space_matches

    space = space if space is not None else space_for(supernet)
    check_space_matches(supernet.config, space, "the supernet")
    model = space.build_model(arch)
    previous = supernet.active_arch
    supernet.set_active(arch)
    try:
        copy_weights(model, supernet)
    finally:
        supernet.set_active(previous)
    return model.eval()

"""Batch-norm recalibration of a sub-network before it is evaluated.

During sandwich training every sub-network updates the same (sliced) running statistics, so they fit
no sub-network in particular. Before evaluation the statistics are reset and re-estimated for the
network at hand: a cumulative average (``momentum=None``) over a few training batches, forward passes
in train mode without gradients. Works on the supernet (for its active architecture; the sliced
``DynamicBatchNorm2d`` layers honour ``momentum=None``) and on any extracted network alike.
"""

from __future__ import annotations

from typing import Iterable

import torch
from torch import nn

from edgenas.supernet.model import resize

_BN = nn.modules.batchnorm._BatchNorm


def batchnorms(model: nn.Module) -> list[nn.modules.batchnorm._BatchNorm]:
    return [m for m in model.modules() if isinstance(m, _BN)]


def bn_state(model: nn.Module) -> dict[str, torch.Tensor]:
    """A copy of every BN running statistic (to restore the supernet after evaluating sub-networks)."""
    return {name: buf.clone() for name, buf in model.named_buffers()
            if name.rsplit(".", 1)[-1] in ("running_mean", "running_var", "num_batches_tracked")}


@torch.no_grad()
def load_bn_state(model: nn.Module, state: dict[str, torch.Tensor]) -> None:
    buffers = dict(model.named_buffers())
    for name, value in state.items():
        buffers[name].copy_(value)


@torch.no_grad()
def recalibrate_bn(model: nn.Module, batches: Iterable[torch.Tensor], *,
                   resolution: int | None = None) -> int:
    """Reset and re-estimate BN running statistics from ``batches`` (inputs only).

    Inputs are resized to ``resolution`` when given. The model is left in eval mode. Returns the
    number of batches used; with none, the statistics are left untouched, and a batch the model
    cannot run leaves them as they were before the call (its error is raised).
    """
    batches = list(batches)
    if not batches:
        model.eval()
        return 0
    bns = batchnorms(model)
    momenta, saved = [bn.momentum for bn in bns], bn_state(model)
    for bn in bns:
        bn.reset_running_stats()
        bn.momentum = None  # cumulative average over the batches
    model.train()
    try:
        for x in batches:
            model(resize(x, resolution) if resolution is not None else x)
    except BaseException:
        load_bn_state(model, saved)
        raise
    finally:
        for bn, m in zip(bns, momenta):
            bn.momentum = m
        model.eval()
    return len(batches)

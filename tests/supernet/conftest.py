"""Fixtures for the supernet tests: one short real training run on digits, shared by the module tests."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from edgenas.spaces import get_space
from edgenas.supernet import MBV3Supernet, TrainConfig, train_supernet

torch.set_num_threads(1)


@pytest.fixture(scope="session")
def space():
    return get_space("mbv3-small")


@pytest.fixture(scope="session")
def trained(tmp_path_factory) -> tuple[Path, list[dict]]:
    """20 sandwich steps (batch 12, largest + smallest) on digits; returns the checkpoint and metrics."""
    out = tmp_path_factory.mktemp("supernet")
    metrics: list[dict] = []
    cfg = TrainConfig(space="mbv3-small", data="digits", steps=20, batch_size=12, lr=0.1, n_random=0,
                      checkpoint_every=10, out=str(out), seed=0)
    path = train_supernet(cfg, progress=lambda step, total, m: metrics.append(dict(m, step=step)))
    return path, metrics


@pytest.fixture(scope="session")
def perturbed(space):
    """``perturbed(seed)``: see ``perturbed_supernet``."""
    return lambda seed=0: perturbed_supernet(space, seed)


def perturbed_supernet(space, seed: int = 0) -> MBV3Supernet:
    """A supernet whose BN statistics, gammas, kernel transforms and head are random, in eval mode.

    (At initialisation residual gammas are zero and transforms are identities: parity checks on such
    a network would not see a wrong copy of those parameters.) The running statistics are those of a
    random batch through the largest network, then perturbed: with statistics unrelated to the data
    each stage shrank what depends on the input some 20-fold, and every output was the same to 1e-6
    whatever the input, so a parity check saw no wrong copy of the stem or the first stages.
    """
    g = torch.Generator().manual_seed(seed)
    net = MBV3Supernet(space.config)
    bns = [m for m in net.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    with torch.no_grad():
        for name, p in net.named_parameters():
            if name.endswith("_matrix") or name.startswith("classifier") or ".se." in name:
                p.add_(torch.randn(p.shape, generator=g) * (0.02 if name == "classifier.linear.weight" else 0.2))
        for m in bns:
            m.weight.copy_(torch.rand(m.weight.shape, generator=g) + 0.5)
            m.bias.copy_(torch.randn(m.bias.shape, generator=g) * 0.1)
            m.reset_running_stats()
            m.momentum = None
        for block in net.blocks[1:]:  # small residual branches: deep paths stay of order 1
            if block.has_shortcut:
                block.conv.point_linear.bn.bn.weight.mul_(0.3)
        r = max(space.config.resolutions)
        net.train()
        net(torch.randn(8, 3, r, r, generator=g))
        for m in bns:
            m.momentum = 0.1
            m.running_mean.add_(torch.randn(m.running_mean.shape, generator=g) * 0.1 * m.running_var.sqrt())
            m.running_var.mul_(torch.rand(m.running_var.shape, generator=g) + 0.5)
    return net.eval()

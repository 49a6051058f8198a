"""Accuracy of sub-networks inherited from a trained supernet (BN recalibrated, batched, cached).

For each architecture: activate it in the supernet, recalibrate batch norm on ``calib_batches``
fixed batches of the training split (the same batches for every architecture), then measure top-1
accuracy on the held-out split the training never saw. Data is loaded once at the space's largest
resolution and resized per architecture, exactly as during training. The supernet's BN statistics
are restored afterwards, and results are cached by the space's ``arch_id``.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch

from edgenas.errors import InputError
from edgenas.spaces.mbv3_config import MBV3Arch
from edgenas.supernet.bn import bn_state, load_bn_state, recalibrate_bn
from edgenas.supernet.checkpoint import load_checkpoint
from edgenas.supernet.model import MBV3Supernet, resize
from edgenas.supernet.train import load_train_data


class SubnetScorer:
    """A loaded supernet plus its data; ``score(archs)`` gives accuracy (%) per architecture."""

    def __init__(self, supernet: MBV3Supernet, space: Any, data: str = "digits", *,
                 val_fraction: float = 0.2, calib_batches: int = 4, calib_batch_size: int = 64,
                 batch_size: int = 256, seed: int = 0) -> None:
        if calib_batches < 0 or calib_batch_size < 1 or batch_size < 1:
            raise ValueError("need calib_batches >= 0 and positive batch sizes")
        self.supernet, self.space = supernet.eval(), space
        self.batch_size = batch_size
        train, self.val = load_train_data(data, max(supernet.config.resolutions), val_fraction)
        order = torch.from_numpy(np.random.default_rng(seed).permutation(len(train)))
        self.calib = [train.x[order[i * calib_batch_size:(i + 1) * calib_batch_size]]
                      for i in range(calib_batches) if i * calib_batch_size < len(train)]
        self.cache: dict[str, float] = {}

    @torch.no_grad()
    def _accuracy(self, arch: MBV3Arch) -> float:
        net = self.supernet
        net.set_active(arch)
        recalibrate_bn(net, self.calib, resolution=arch.r)
        correct = 0
        for i in range(0, len(self.val), self.batch_size):
            x = resize(self.val.x[i:i + self.batch_size], arch.r)
            correct += int((net(x).argmax(1) == self.val.y[i:i + self.batch_size]).sum())
        return 100.0 * correct / len(self.val)

    def score(self, archs: Sequence[MBV3Arch]) -> np.ndarray:
        ids = [self.space.arch_id(a) for a in archs]
        todo = {i: a for i, a in zip(ids, archs) if i not in self.cache}
        if todo:
            saved, previous = bn_state(self.supernet), self.supernet.active_arch
            try:
                for i, arch in todo.items():
                    self.space.to_genes(arch)  # an architecture of the space, else InputError (a width past
                    acc = self._accuracy(self.space.canonical(arch))  # the largest was clipped to it)
                    self.cache[i] = acc if np.isfinite(acc) else float("-inf")
            finally:
                load_bn_state(self.supernet, saved)
                self.supernet.set_active(previous)
        return np.array([self.cache[i] for i in ids], dtype=float)


def check_space_matches(config: Any, space: Any, what: str) -> None:
    """Refuse (one ``InputError``) a supernet whose config is not ``space``'s: another space, or the same
    name with other choices (a preset changed since it was trained; the message named the space twice)."""
    name, today = getattr(space, "name", space), getattr(space, "config", None)
    if config.name != name:
        raise InputError(f"{what} is for space '{config.name}', not '{name}'",
                         hint="evaluate architectures of the space the supernet was trained for")
    if today != config:
        diff = [f"{f.name}: supernet {getattr(config, f.name)!r}, space {getattr(today, f.name, None)!r}"
                for f in dataclasses.fields(config) if getattr(config, f.name) != getattr(today, f.name, None)]
        raise InputError(f"{what} was trained for another '{name}' than this edgenas's ({'; '.join(diff[:3])})",
                         hint="train the supernet again for today's space")


def evaluate_subnets(checkpoint: str | Path | MBV3Supernet, archs: Sequence[MBV3Arch],
                     data: str | None = None, *, space: Any = None, calib_batches: int = 4,
                     calib_batch_size: int = 64, batch_size: int = 256, seed: int = 0) -> np.ndarray:
    """Top-1 accuracy (%) of each architecture with weights inherited from the supernet.

    ``checkpoint`` is a checkpoint directory (or its ``supernet.json``) or a supernet in memory;
    ``data`` defaults to the dataset the checkpoint was trained on (else ``"digits"``).
    """
    val_fraction = 0.2
    if isinstance(checkpoint, MBV3Supernet):
        net = checkpoint
    else:
        state = load_checkpoint(checkpoint)
        net = state.supernet
        tc = state.meta.get("train_config") or {}
        data = data or tc.get("data")
        val_fraction = tc.get("val_fraction", val_fraction)
    if space is None:
        from edgenas.spaces import get_space

        space = get_space(net.config.name)
    check_space_matches(net.config, space, "the supernet")
    scorer = SubnetScorer(net, space, data or "digits", val_fraction=val_fraction,
                          calib_batches=calib_batches, calib_batch_size=calib_batch_size,
                          batch_size=batch_size, seed=seed)
    return scorer.score(archs)

"""Short training: train each candidate from scratch for a few epochs and report held-out accuracy (%).

The ``train`` evaluator (an ``EVALUATORS`` entry) is the expensive, readable rung of a multi-fidelity
ladder: ``train:epochs=2`` on scikit-learn's digits (default) or the user's ``data`` (``.npz`` / image
folder, the supernet's loaders). Each architecture is trained with its own seeded generator (batch
order; the weights start as the space builds them: mbv3 blocks from their block keys whatever the seed,
nb201 cells from the seed), SGD with momentum and a cosine learning rate, and scored on a fixed held-out split
(split seed 0, never trained on), so a score depends only on (arch, seed, options): the same on any
executor and in any batch. A network that fails to train scores ``-inf``.
"""

from __future__ import annotations

import logging
import math
from typing import Any, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from edgenas.errors import EdgenasError, InputError
from edgenas.evaluate.base import EVALUATORS, Evaluator
from edgenas.datasets import ImageData, load_dataset
from edgenas.limits import MAX_LEARNING_RATE

log = logging.getLogger(__name__)


class ShortTrainEvaluator(Evaluator):
    """Validation accuracy (%) after ``epochs`` epochs of training from scratch."""

    name = "train"

    def __init__(self, space: Any, *, seed: int = 0, data: str = "digits", epochs: float = 2.0,
                 batch_size: int = 32, lr: float = 0.1, val_fraction: float = 0.2,
                 limit: int | None = None) -> None:
        super().__init__(space)
        for key, value, ok in (("epochs", epochs, isinstance(epochs, (int, float)) and 0 < epochs <= 1000),
                               ("batch_size", batch_size, isinstance(batch_size, int) and batch_size >= 2),
                               ("lr", lr, isinstance(lr, (int, float)) and 0 < lr <= MAX_LEARNING_RATE),
                               ("val_fraction", val_fraction, isinstance(val_fraction, float)
                                and 0 < val_fraction < 1),
                               ("limit", limit, limit is None or (isinstance(limit, int) and limit >= 10))):
            if isinstance(value, bool) or not ok:
                raise InputError(f"evaluator 'train': bad option {key}={value!r}",
                                 hint=f"epochs in (0, 1000], batch_size >= 2, lr in (0, {MAX_LEARNING_RATE:g}], "
                                      "0 < val_fraction < 1, limit >= 10")
        self.seed, self.data, self.epochs = int(seed), str(data), float(epochs)
        self.batch_size, self.lr, self.val_fraction, self.limit = batch_size, float(lr), val_fraction, limit
        self.metric = f"{self.data} validation accuracy after {self.epochs:g} epochs (%)"
        self._splits: dict[tuple[int, int], tuple[ImageData, ImageData]] = {}
        self._dataset(space.input_shape(space.sample(np.random.default_rng(0))))  # bad --data fails now

    def describe(self) -> dict[str, Any]:
        return {"name": self.name, "metric": self.metric, "seed": self.seed, "data": self.data,
                "epochs": self.epochs, "batch_size": self.batch_size, "lr": self.lr,
                "val_fraction": self.val_fraction, "limit": self.limit}

    def _dataset(self, shape: Sequence[int]) -> tuple[ImageData, ImageData]:
        c, h = int(shape[1]), int(shape[2])
        if (c, h) not in self._splits:
            data = load_dataset(self.data, h)
            if self.limit is not None:  # every class in proportion, not the first classes listed
                data = data.subset(self.limit, seed=0)
            if data.num_classes > self.space.num_classes:
                raise InputError(f"dataset {self.data!r} has {data.num_classes} classes; space "
                                 f"'{self.space.name}' has a {self.space.num_classes}-class head")
            x = data.x[:, :c] if data.x.shape[1] >= c else data.x[:, :1].repeat(1, c, 1, 1)
            data = ImageData(x, data.y, data.num_classes, data.name)
            self._splits[(c, h)] = data.split(self.val_fraction, seed=0)
        return self._splits[(c, h)]

    def train_one(self, arch: Any) -> float:
        train, val = self._dataset(self.space.input_shape(arch))
        torch.manual_seed(self.seed)
        gen = torch.Generator().manual_seed(self.seed)
        model = self.space.build_model(arch).train()
        steps_per_epoch = max(1, math.ceil(len(train) / self.batch_size))
        total = max(1, int(round(self.epochs * steps_per_epoch)))
        opt = torch.optim.SGD(model.parameters(), lr=self.lr, momentum=0.9, weight_decay=5e-4, nesterov=True)
        sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, total)
        step = 0
        while step < total:
            perm = torch.randperm(len(train), generator=gen)
            for i in range(0, len(train), self.batch_size):
                if step >= total:
                    break
                idx = perm[i:i + self.batch_size]
                loss = F.cross_entropy(model(train.x[idx]), train.y[idx])
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                sched.step()
                step += 1
        model.eval()
        with torch.no_grad():
            correct = sum(int((model(val.x[i:i + 256]).argmax(1) == val.y[i:i + 256]).sum())
                          for i in range(0, len(val), 256))
        return 100.0 * correct / len(val)

    def evaluate(self, archs: Sequence[Any]) -> np.ndarray:
        out = []
        for a in archs:
            try:
                out.append(self.train_one(a))
            except (KeyboardInterrupt, EdgenasError):
                raise
            except Exception as exc:  # a broken network must not crash a search
                log.warning("training failed on %s: %s", self.space.arch_id(a), exc)
                out.append(-math.inf)
        return np.array(out, dtype=float)


@EVALUATORS.register("train", help="short training from scratch: validation accuracy % "
                                   "(epochs=, data=digits|.npz|folder, batch_size=, lr=, limit=, val_fraction=)")
def make_short_train(space: Any, *, seed: int = 0, **options: Any) -> ShortTrainEvaluator:
    allowed = {"data", "epochs", "batch_size", "lr", "val_fraction", "limit"}
    unknown = sorted(set(options) - allowed)
    if unknown:
        raise InputError(f"evaluator 'train': unknown option(s) {', '.join(unknown)}",
                         hint=f"options: {', '.join(sorted(allowed))}")
    for key in ("epochs", "lr", "val_fraction"):  # --eval-opt lr=0.05 arrives as text (it was refused)
        if isinstance(options.get(key), str):
            try:
                options[key] = float(options[key])
            except ValueError:
                pass  # refused by the range check, which names it
    return ShortTrainEvaluator(space, seed=seed, **options)

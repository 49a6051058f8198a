"""Sandwich-rule supernet training with in-place distillation (BigNAS / OFA style).

Each step trains, on the same batch, the largest network (cross-entropy on the labels, at the
largest resolution), the smallest one (smallest resolution) and ``n_random`` random ones (random
resolutions); all but the largest learn from the largest network's soft outputs (KL divergence).
Gradients accumulate and one SGD step (momentum, cosine learning rate) follows.

All randomness (batches, sampled sub-networks) comes from one numpy generator seeded by
``TrainConfig.seed``; checkpoints hold its state, the momentum buffers and the step, so
``resume=True`` continues to exactly the weights an uninterrupted run reaches.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
import torch.nn.functional as F

from edgenas.errors import EdgenasError, InputError
from edgenas.spaces.mbv3_config import PRESETS, MBV3Arch, MBV3Config
from edgenas.supernet import checkpoint as ckpt
from edgenas.supernet.model import MBV3Supernet, resize

#: ``progress(step, total_steps, metrics)`` after every step (metrics: lr, loss_largest, loss_kd...).
ProgressFn = Callable[[int, int, dict[str, float]], None]


#: bounds that no real training run reaches; beyond them a run never ends or overflows float32
MAX_STEPS, MAX_RANDOM, MAX_LR = 10 ** 9, 64, 10.0


@dataclass(frozen=True)
class TrainConfig:
    space: str = "mbv3-small"
    data: str = "digits"
    steps: int | None = None  #: total optimizer steps; or give ``epochs`` instead
    epochs: float | None = None
    batch_size: int = 64
    lr: float = 0.05
    momentum: float = 0.9
    weight_decay: float = 3e-5
    n_random: int = 2
    seed: int = 0
    checkpoint_every: int = 100
    out: str = "runs/supernet"
    val_fraction: float = 0.2  #: held out (split seed 0) for evaluation; training never sees it

    def __post_init__(self) -> None:
        space_config(self.space)  # raises InputError for unknown or non-mbv3 spaces
        from edgenas.limits import check_seed

        check_seed(self.seed)
        if (self.steps is None) == (self.epochs is None):
            raise InputError("give exactly one of steps and epochs")
        if (self.steps is not None and not 1 <= self.steps <= MAX_STEPS) or \
                (self.epochs is not None and not 0 < self.epochs <= 1e6):
            raise InputError(f"steps must be in [1, {MAX_STEPS:,}] and epochs in (0, 1e6], got steps {self.steps}, "
                             f"epochs {self.epochs}")
        for name in ("batch_size", "checkpoint_every"):
            if getattr(self, name) < 1:
                raise InputError(f"{name} must be at least 1, got {getattr(self, name)}")
        if not 0 <= self.n_random <= MAX_RANDOM or not 0 < self.lr <= MAX_LR or not 0.0 < self.val_fraction < 1.0:
            raise InputError(f"need n_random in [0, {MAX_RANDOM}], lr in (0, {MAX_LR:g}] and 0 < val_fraction < 1",
                             hint=f"got n_random {self.n_random}, lr {self.lr}, val_fraction {self.val_fraction}")

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: Any) -> "TrainConfig":
        if not isinstance(data, dict):
            raise InputError("training config must be a JSON object")
        names = {f.name for f in dataclasses.fields(cls)}
        if set(data) - names:
            raise InputError(f"unknown training options {sorted(set(data) - names)}")
        return cls(**data)

    def total_steps(self, n_train: int) -> int:
        if self.steps is not None:
            return self.steps
        return max(1, math.ceil(self.epochs * n_train / self.batch_size))


def space_config(name: str) -> MBV3Config:
    """The ``MBV3Config`` of a registered ``mbv3`` space (aliases allowed)."""
    from edgenas.spaces import get_space

    config = getattr(get_space(name), "config", None)
    if not isinstance(config, MBV3Config):
        raise InputError(f"space '{name}' has no weight-sharing supernet",
                         hint=f"use one of the mbv3 spaces: {', '.join(PRESETS)}")
    return config


def load_train_data(data: str, resolution: int, val_fraction: float) -> tuple[Any, Any]:
    """The (train, val) split every supernet tool uses: data at the space's largest resolution."""
    from edgenas.datasets import load_dataset

    return load_dataset(data, resolution).split(val_fraction, seed=0)


def cosine_lr(base: float, step: int, total: int) -> float:
    return 0.5 * base * (1.0 + math.cos(math.pi * step / total))


def _kd_loss(student: torch.Tensor, teacher_prob: torch.Tensor) -> torch.Tensor:
    return F.kl_div(F.log_softmax(student, dim=1), teacher_prob, reduction="batchmean")


def sandwich_step(net: MBV3Supernet, x: torch.Tensor, y: torch.Tensor, archs: list[MBV3Arch]
                  ) -> dict[str, float]:
    """Forward/backward of the largest network then the others (gradients accumulate)."""
    largest, others = archs[0], archs[1:]
    net.set_active(largest)
    logits = net(resize(x, largest.r))
    loss = F.cross_entropy(logits, y)
    loss.backward()
    soft = F.softmax(logits.detach(), dim=1)
    metrics = {"loss_largest": loss.item()}
    kd_total = 0.0
    for i, arch in enumerate(others):
        net.set_active(arch)
        out = net(resize(x, arch.r))
        kd = _kd_loss(out, soft)
        kd.backward()
        kd_total += kd.item()
        if i == 0:
            metrics["loss_smallest"] = float(F.cross_entropy(out.detach(), y))
    metrics["loss_kd"] = kd_total / max(1, len(others))
    net.set_active(largest)
    return metrics


def _optimizer(net: MBV3Supernet, cfg: TrainConfig) -> torch.optim.SGD:
    decay, no_decay = [], []
    for name, p in net.named_parameters():  # no weight decay on BN, biases and kernel transforms
        (no_decay if p.ndim <= 1 or name.endswith("_matrix") else decay).append(p)
    return torch.optim.SGD([{"params": decay, "weight_decay": cfg.weight_decay},
                            {"params": no_decay, "weight_decay": 0.0}],
                           lr=cfg.lr, momentum=cfg.momentum, nesterov=True)


def _momentum_tensors(net: MBV3Supernet, opt: torch.optim.Optimizer) -> dict[str, torch.Tensor]:
    out = {}
    for name, p in net.named_parameters():
        buf = opt.state.get(p, {}).get("momentum_buffer")
        if buf is not None:
            out[f"momentum/{name}"] = buf
    return out


def _restore_momentum(net: MBV3Supernet, opt: torch.optim.Optimizer,
                      tensors: dict[str, torch.Tensor]) -> None:
    for name, p in net.named_parameters():
        buf = tensors.get(f"momentum/{name}")
        if buf is not None:
            opt.state[p]["momentum_buffer"] = buf.clone()


def train_supernet(cfg: TrainConfig, *, resume: bool = False, progress: ProgressFn | None = None) -> Path:
    """Train (or resume training) a supernet; returns the checkpoint's ``supernet.json`` path.

    Starting afresh where a checkpoint already exists is refused (``InputError``): pass
    ``resume=True`` or choose another ``cfg.out``.
    """
    out = Path(cfg.out)
    config = space_config(cfg.space)
    train, _ = load_train_data(cfg.data, max(config.resolutions), cfg.val_fraction)
    if train.num_classes > config.num_classes:
        raise InputError(f"dataset '{cfg.data}' has {train.num_classes} classes, the {cfg.space} head "
                         f"{config.num_classes}")
    total = cfg.total_steps(len(train))
    rng = np.random.default_rng(cfg.seed)
    history: list[dict[str, float]] = []
    step = 0
    from edgenas.outdirs import DISK_ERRNOS, check_out_dir, disk_error

    check_out_dir(out)  # before its files are looked for: a name too long is said of --out, not as an input's
    if (out / ckpt.META).exists() and not resume:
        raise InputError(f"a supernet checkpoint already exists in {out}",
                         hint="--resume continues its training; or choose another --out folder")
    if not resume and out.is_dir() and any(out.iterdir()):  # a search run, an export, anyone's files
        raise InputError(f"--out {out} is not empty and holds no supernet checkpoint",
                         hint="choose a new or empty folder")
    if resume and not (out / ckpt.META).exists():
        raise InputError(f"nothing to resume in {out} (no {ckpt.META})",
                         hint="check --out, or drop --resume to start a new training")
    if resume:
        state = ckpt.load_checkpoint(out)
        saved = state.meta.get("train_config")
        free = ("out", "checkpoint_every")  # settings that do not change the weights
        strip = lambda d: {k: v for k, v in d.items() if k not in free} if isinstance(d, dict) else d  # noqa: E731
        if strip(saved) != strip(cfg.to_dict()):
            raise InputError(f"{out} was trained with different settings; resume needs the same ones",
                             hint=f"saved: {saved}")
        if state.supernet.config != config:  # the file's own config, not what --space names
            raise InputError(f"{out} holds a supernet of another config than the {cfg.space} space's",
                             hint="resume with the edgenas and space it was trained with, or train again")
        net = state.supernet
        opt = _optimizer(net, cfg)
        _restore_momentum(net, opt, state.optimizer_tensors)
        try:
            rng.bit_generator.state = state.meta["rng"]
        except (KeyError, TypeError, ValueError) as exc:
            raise InputError(f"{out / ckpt.META}: 'rng' is not a numpy generator state ({exc})",
                             hint="the checkpoint's supernet.json was edited or damaged") from None
        if ckpt.TORCH_RNG in state.optimizer_tensors:
            torch.set_rng_state(state.optimizer_tensors[ckpt.TORCH_RNG])
        step, history = int(state.meta["step"]), list(state.meta.get("history", []))
    else:
        with torch.random.fork_rng():
            torch.manual_seed(cfg.seed)
            net = MBV3Supernet(config)
        opt = _optimizer(net, cfg)

    try:  # now, not at the first checkpoint (100 steps in by default)
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise disk_error(exc, f"--out folder {out}") from None

    def diverged(why: str) -> EdgenasError:
        kept = (f"the checkpoint of step {ckpt.load_checkpoint(out).meta['step']} in {out} is unchanged"
                if (out / ckpt.META).exists() else "no checkpoint was saved")
        return EdgenasError(f"supernet training diverged at step {step} ({why}); {kept}",
                            hint=f"train again with a lower --lr (this run's is {cfg.lr:g})")

    def save() -> Path:
        if not all(bool(t.isfinite().all()) for t in net.state_dict().values() if t.is_floating_point()):
            raise diverged("weights that are NaN or infinite")  # a checkpoint no load would take
        meta = {"train_config": cfg.to_dict(), "step": step, "total_steps": total,
                "rng": rng.bit_generator.state, "history": history, "num_classes": train.num_classes}
        try:
            return ckpt.save_checkpoint(out, net, meta, _momentum_tensors(net, opt))
        except OSError as exc:
            if exc.errno not in DISK_ERRNOS:
                raise
            raise disk_error(exc, f"the supernet checkpoint in {out}", then="continue with --resume") from None

    net.train()
    path = out / ckpt.META
    while step < total:
        for group in opt.param_groups:
            group["lr"] = cosine_lr(cfg.lr, step, total)
        idx = torch.from_numpy(np.sort(rng.permutation(len(train))[: cfg.batch_size]))
        archs = [net.largest_arch(), net.smallest_arch()]
        archs += [net.random_arch(rng) for _ in range(cfg.n_random)]
        opt.zero_grad(set_to_none=True)
        metrics = sandwich_step(net, train.x[idx], train.y[idx], archs)
        step += 1
        if not all(math.isfinite(v) for v in metrics.values()):  # before the step: the weights stay finite
            raise diverged("a loss that is NaN or infinite")
        opt.step()
        metrics["lr"] = opt.param_groups[0]["lr"]
        history.append({k: round(v, 6) for k, v in metrics.items()})
        if step % cfg.checkpoint_every == 0 or step == total:
            path = save()
        if progress is not None:
            progress(step, total, metrics)
    if not (out / ckpt.META).exists():
        path = save()
    net.eval()
    return path

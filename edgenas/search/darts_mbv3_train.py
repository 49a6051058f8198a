"""DARTS on the mbv3 spaces (ProxylessNAS / FBNet relaxation, path sampling); checkpoints, exact resume.

Each step alternates, as first-order DARTS on nb201 (``darts_train``): an SGD step on the supernet's
weights for ONE sub-network sampled from the current probabilities (training half), then an Adam step
on the architecture weights with ONE hard Gumbel-softmax path (the other half), minimising

    cross-entropy + sum_devices lambda_d * E[latency_d] / budget_d      (budget: Lagrange multiplier)
    cross-entropy + latency_weight * sum_devices E[latency_d]           (no budget: fixed penalty)

The multiplier follows nb201's rule (``darts_train.multiplier_step``, shared): after every step
``lambda_d += lambda_lr * clip(L_d / budget_d - 1, -1, 1)``, floored at 0, with ``L_d`` the latency of
the network derived at that moment (argmax of every decision); E[latency] only carries the gradient.
Warm-ups as nb201 (``darts_train.warmup_epochs``): the first ``arch_warmup`` fraction of the epochs
trains the weights only (uniformly sampled paths), the latency term (penalty or multiplier) starts
after ``latency_warmup``. ``lambda_rule="max"`` with both warm-ups 0 is the first rule (schema 3):
``L_d`` = max(E[latency_d], derived), unclipped steps, which collapsed every stage to its minimum
depth (bench/RESULTS.md). The Gumbel temperature anneals geometrically from ``tau_start`` to ``tau_end``.

At the end the derived network (argmax of every decision) is checked against every budget with the
LUT predictor and, if it misses one, repaired greedily (``darts_mbv3_latency.repair_to_budget``).

Checkpoints at every epoch end (tensors in ``checkpoint.safetensors``, the rest in
``checkpoint.json``); batch order and every sample come from generators seeded per epoch, so
``resume`` continues to exactly what an uninterrupted run reaches.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, ClassVar, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from edgenas.errors import InputError
from edgenas.io import atomic_write_json, read_json
from edgenas.limits import is_schema
from edgenas.search.darts_mbv3 import MBV3Relaxation, sampled_forward
from edgenas.search.darts_mbv3_latency import ExpectedLatencyMBV3, repair_to_budget
from edgenas.search.darts_train import (RunConfig, _batches, all_finite, check_history_archs, check_start,
                                         diverged_error, latency_terms, load_checkpoint, multiplier_step,
                                         save_checkpoint, warmup_epochs)

MB_DARTS_SCHEMA = 4  # 3: the first multiplier rule, no warm-ups
LAMBDA_RULES = ("derived", "max")


@dataclass(frozen=True)
class MbDartsConfig(RunConfig):
    space: str = "mbv3-small"
    data: str = "digits"
    epochs: int = 10
    batch_size: int = 32
    lr: float = 0.05
    arch_lr: float = 0.01
    latency_weight: float = 0.0
    lambda_lr: float = 0.05
    arch_warmup: float = 0.2                          # fraction of the epochs with the alphas frozen
    latency_warmup: float = 0.4                       # fraction of the epochs without a latency term
    lambda_rule: str = "derived"                      # derived: nb201's; max: the first (collapsing) rule
    tau_start: float = 5.0
    tau_end: float = 0.5
    seed: int = 0
    devices: tuple[tuple[str, float | None], ...] = ()
    HEADER: ClassVar[dict[str, Any]] = {"schema": MB_DARTS_SCHEMA, "kind": "darts",
                                        "relaxation": "mbv3-path-sampling"}

    def __post_init__(self) -> None:
        from edgenas.supernet.train import space_config

        space_config(self.space)  # an mbv3 space, else InputError
        self._check_seed()
        self._check_ints(("epochs", "batch_size"))
        self._check_rates()
        if not (self.lambda_lr >= 0 and self.latency_weight >= 0 and 0 < self.tau_end <= self.tau_start):
            raise InputError("darts: need lambda_lr, latency_weight >= 0; 0 < tau_end <= tau_start")
        if not (0 <= self.arch_warmup < 1 and 0 <= self.latency_warmup < 1):
            raise InputError("darts: need 0 <= arch_warmup, latency_warmup < 1")
        if self.lambda_rule not in LAMBDA_RULES:
            raise InputError(f"darts: lambda_rule must be one of {', '.join(LAMBDA_RULES)}, got {self.lambda_rule!r}")
        self._normalise_devices()  # and budgets of ms > 0: 0 stopped the run mid-epoch, NaN was never met nor missed

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> "MbDartsConfig":
        _check_schema(d)
        return cls._from_fields(d)

    def tau(self, epoch: int) -> float:
        return self.tau_start * (self.tau_end / self.tau_start) ** (epoch / max(self.epochs - 1, 1))


def _check_schema(d: dict[str, Any]) -> None:
    if not is_schema(d.get("schema"), MB_DARTS_SCHEMA):
        raise InputError(f"an mbv3 DARTS run of schema {d.get('schema')!r}; this edgenas resumes schema "
                         f"{MB_DARTS_SCHEMA}",
                         hint="the multiplier rule and warm-ups changed: start a new run")


def _logp(relax: MBV3Relaxation) -> dict[str, np.ndarray]:
    with torch.no_grad():
        return {k: torch.log_softmax(a, -1).numpy().astype(np.float64)
                for k, a in (("ke", relax.alpha_ke), ("d", relax.alpha_d), ("r", relax.alpha_r))}


def run_mbv3_darts(config: MbDartsConfig, latency: Sequence[tuple[str, Any]], out_dir: str | Path, *,
                   resume: bool = False, progress: Callable[[int, int], None] | None = None) -> dict[str, Any]:
    """Train, derive (and repair), write ``best.json`` (a normal architecture record) and ``history.json``."""
    from edgenas.datasets import load_dataset
    from edgenas.spaces import get_space
    from edgenas.supernet.model import MBV3Supernet

    space = get_space(config.space)
    c = space.config
    names = [n for n, _ in latency]
    if names != [n for n, _ in config.devices]:
        raise InputError(f"darts: latency models {names} do not match the config's devices")
    terms = [ExpectedLatencyMBV3(n, m, space) for n, m in latency]
    budgets = [b for _, b in config.devices]
    out = Path(out_dir)
    cfg_path, ck_json, ck_tensors = out / "config.json", out / "checkpoint.json", out / "checkpoint.safetensors"
    if resume:
        if not cfg_path.exists():
            raise InputError(f"{out} holds no DARTS run to resume")
        _check_schema(read_json(cfg_path, "run config"))
        if read_json(cfg_path, "run config") != config.to_json():
            raise InputError(f"cannot resume {out}: the config differs", hint="resume with the original settings")
    elif cfg_path.exists():
        from edgenas.search.run_files import resume_or_new

        raise InputError(f"{out} already holds a search run", hint=resume_or_new(out))
    data = load_dataset(config.data, max(c.resolutions))
    if data.num_classes > c.num_classes:
        raise InputError(f"dataset {config.data!r} has {data.num_classes} classes; the {c.name} head has "
                         f"{c.num_classes}")
    if not resume:  # a resumed run's config.json holds this config: a refused resume leaves it as it was
        out.mkdir(parents=True, exist_ok=True)
        atomic_write_json(cfg_path, config.to_json())
    train, val = data.split(0.5, seed=config.seed)
    with torch.random.fork_rng():
        torch.manual_seed(config.seed)
        net = MBV3Supernet(c)
    relax = MBV3Relaxation(c)
    arch_params = list(relax.parameters())
    w_opt = torch.optim.SGD(net.parameters(), lr=config.lr, momentum=0.9, nesterov=True, weight_decay=3e-5)
    a_opt = torch.optim.Adam(arch_params, lr=config.arch_lr, betas=(0.5, 0.999))
    frozen, warmup = warmup_epochs(config.epochs, config.arch_warmup, config.latency_warmup)
    lam = [0.0] * len(terms)
    history: list[dict[str, Any]] = []
    start = 0
    if resume and ck_json.exists():
        start, lam, history = load_checkpoint(ck_json, ck_tensors, {"net": net, "alpha": relax},
                                              {"w_opt": w_opt, "a_opt": a_opt}, len(terms),
                                              ("epoch", "arch", "derived_ms"))
        check_start(start, config, ck_json)
        check_history_archs(history, ck_json, space.from_dict)
        if progress is not None:  # the epochs a resume starts from, once its checkpoint is checked (a search
            progress(start, config.epochs)  # then says its notes; a bar shows them at once)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        for epoch in range(start, config.epochs):
            t0 = time.perf_counter()
            gen = torch.Generator().manual_seed(config.seed * 100003 + epoch)
            tau = config.tau(epoch)
            for g in w_opt.param_groups:
                g["lr"] = 0.5 * config.lr * (1 + math.cos(math.pi * epoch / config.epochs))
            tb = _batches(len(train), config.batch_size, config.seed, epoch)
            vb = _batches(len(val), config.batch_size, config.seed + 7919, epoch)
            net.train()
            ce_sum, steps = 0.0, 0
            for ti, vi in zip(tb, vb):
                loss = F.cross_entropy(sampled_forward(net, relax, train.x[ti], relax.sample(gen)), train.y[ti])
                if not math.isfinite(float(loss.detach())):  # before the step: the weights stay finite
                    raise diverged_error(config, out, epoch, "a training loss")
                w_opt.zero_grad(set_to_none=True)
                loss.backward()
                torch.nn.utils.clip_grad_norm_(net.parameters(), 5.0)
                w_opt.step()
                ce_sum += float(loss.detach())
                steps += 1
                if epoch < frozen:
                    continue
                a_loss = F.cross_entropy(sampled_forward(net, relax, val.x[vi], relax.gumbel_sample(gen, tau)),
                                         val.y[vi])
                probs = relax.probs()
                exp_ms = [t(*probs) for t in terms]
                if epoch >= warmup:
                    a_loss = latency_terms(a_loss, exp_ms, budgets, lam, config.latency_weight)
                if not math.isfinite(float(a_loss.detach())):
                    raise diverged_error(config, out, epoch, "an architecture loss")
                a_opt.zero_grad(set_to_none=True)
                a_loss.backward()
                a_opt.step()
                if epoch >= warmup and any(b is not None for b in budgets):
                    am = relax.argmax()
                    now = relax.to_arch(am.ke, am.d, am.r)
                    for i, (t, e, b) in enumerate(zip(terms, exp_ms, budgets)):
                        if b is None:
                            continue
                        if config.lambda_rule == "derived":  # over budget = the derived network is over
                            lam[i] = multiplier_step(lam[i], t.of_arch(now), b, config.lambda_lr)
                        else:  # the first rule: the relaxed network OR its derived one, unclipped
                            worst = max(float(e.detach()), t.of_arch(now))
                            lam[i] = max(0.0, lam[i] + config.lambda_lr * (worst / b - 1.0))
            if not all_finite([*net.state_dict().values(), *relax.state_dict().values()]):
                raise diverged_error(config, out, epoch, "weights")  # the last step's, which no loss has seen
            am = relax.argmax()
            arch = space.canonical(relax.to_arch(am.ke, am.d, am.r))
            with torch.no_grad():
                probs = relax.probs()
                exp_now = {t.name: float(t(*probs)) for t in terms}
            history.append({"epoch": epoch + 1, "train_loss": ce_sum / max(steps, 1), "tau": tau,
                            "arch": space.to_dict(arch), "expected_ms": exp_now,
                            "derived_ms": {t.name: t.of_arch(arch) for t in terms},
                            "lambda": list(lam), "epoch_s": round(time.perf_counter() - t0, 3)})
            save_checkpoint(ck_json, ck_tensors, {"schema": MB_DARTS_SCHEMA, "epoch": epoch + 1, "lambda": lam,
                                                  "history": history},
                            {"net": net, "alpha": relax}, {"w_opt": w_opt, "a_opt": a_opt})
            if progress is not None:
                progress(epoch + 1, config.epochs)
    finally:
        torch.set_num_threads(threads)
    return _finish(space, terms, budgets, history, relax, out)


def _finish(space, terms, budgets, history, relax: MBV3Relaxation, out: Path) -> dict[str, Any]:
    argmax = space.from_dict(history[-1]["arch"])  # a checkpoint's on a resume (a file): its latency predicted anew
    arch, steps, how = repair_to_budget(space, argmax, _logp(relax), [t.model for t in terms], budgets)
    lat = {t.name: t.of_arch(arch) for t in terms}
    within = all(b is None or lat[t.name] <= b for t, b in zip(terms, budgets))
    with torch.no_grad():
        pk, pd, pr = (p.tolist() for p in relax.probs())
    repaired = arch != argmax  # one more evaluation, numbered after the epochs'
    record = {"arch": space.to_dict(arch), "objectives": {}, "latency_ms": lat,
              "budgets_ms": {t.name: b for t, b in zip(terms, budgets)}, "within_budget": within,
              "argmax_arch": space.to_dict(argmax), "argmax_ms": {t.name: t.of_arch(argmax) for t in terms},
              "derivation": how, "repair_steps": steps, "epoch": history[-1]["epoch"],
              "number": len(history) if repaired else len(history) - 1,
              "probs": {"ke": pk, "d": pd, "r": pr}, "strategy": "darts",
              "relaxation": "mbv3-path-sampling", "evaluations": len(history) + repaired, "stopped": "budget"}
    atomic_write_json(out / "best.json", record)
    atomic_write_json(out / "history.json", {"schema": MB_DARTS_SCHEMA, "history": history})
    return record

"""First-order DARTS on ``nb201`` with the devices' latency in the loss; checkpoints and exact resume.

Each step alternates (first-order DARTS, Liu et al. 2019): an SGD step on the network weights with a
batch of the training half, then an Adam step on the architecture weights ``alpha`` with a batch of
the other half, minimising

    cross-entropy + sum_devices lambda_d * E[latency_d] / budget_d      (budget: Lagrange multiplier)
    cross-entropy + latency_weight * sum_devices E[latency_d] / ms      (no budget: fixed penalty)

E[latency] is taken under ``derivable_probs`` (the softmax without ``none``), the distribution the
derivation picks from. With a budget, ``lambda_d`` rises by ``lambda_lr * clip(L_d / budget_d - 1,
-1, 1)`` after every step (dual ascent with clipped steps, floored at 0), where ``L_d`` is the
latency of the cell derived at that moment (argmax per edge without ``none``): the budget is on the
derived cell, E[latency] only carries the gradient. (The first version used max(E, L_d): a relaxed
mixture near uniform is far slower than its argmax cell, so the multiplier kept rising after the
cell fitted and drove every edge to the cheapest ops.)

Warm-ups (PC-DARTS, P-DARTS, ProxylessNAS): for the first ``arch_warmup`` fraction of the epochs only
the network weights train (the architecture weights stay at their initial values), so parameter-free
ops (pooling, skip) do not win the edges only because they help before the convolutions have
learned anything; the latency term (penalty or multiplier) starts after ``latency_warmup``.

The derived cell at each epoch end is ``BudgetDerivation``'s: the most probable ``none``-free cell
that meets every budget by the predictor (the argmax cell when it fits: ``derivation`` "argmax",
otherwise "budget"). These four changes are the remedy for the collapse seen in the first version
(every budgeted run derived the all-``none`` cell: within budget, 10% accuracy; bench/RESULTS.md).

Final selection (``selection``): "pt" (default) re-scores the ops after training with DARTS-PT
(``darts_pt``: the drop of held-out accuracy when an op is masked out of the trained supernet, on
``pt_samples`` images of the alpha half) and ``BudgetDerivation.pick``s the best-scoring cell within
budget; "alpha" keeps the epoch-end cell (log-probabilities). With ``latency_weight`` > 0, the PT cell is
also held, on each device without a budget, to the alpha-selected cell's latency (``darts_pt.pt_pick``:
the scores measure accuracy only, and the weight did not reach the delivered cell). ``best.json`` records
both (``arch`` and ``alpha_arch``, and ``pt_budgets_ms``, the limits the PT pick was held to); the
per-epoch cells in the history are always alpha-selected. That rule is part of the finish, not of the
training: a run checkpointed before it (schema 3 too) resumes and finishes by it.

Skip-connection collapse (DARTS's known failure) is measured: the history holds the derived cell's
number of ``skip_connect`` edges per epoch. ``skip_dropout`` applies P-DARTS's remedy (Chen et al.,
2019: operation-level dropout on skip connections).

Checkpoints at every epoch end: weights, alphas and optimiser state in ``checkpoint.safetensors``,
the rest in ``checkpoint.json``; batch order is seeded per epoch, so ``resume`` continues to exactly
what an uninterrupted run reaches.
"""

from __future__ import annotations

import dataclasses
import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, ClassVar, Iterable, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from edgenas.errors import EdgenasError, InputError
from edgenas.io import atomic_write_json, read_json
from edgenas.limits import MAX_LEARNING_RATE, is_finite, is_schema, is_whole
from edgenas.search.darts_nb201 import (NONE_FITS, BudgetDerivation, DartsNB201, ExpectedLatency, derivable_probs,
                                        derive)
from edgenas.search.darts_pt import SELECTIONS, latency_limits, perturbation_scores, pt_pick, pt_subset

DARTS_SCHEMA = 3


class RunConfig:
    """What the nb201 and mbv3 DARTS configs share: integer fields >= 1, the (device, budget) pairs, and
    the JSON record with its header (``HEADER``: schema, kind, ...) in front of the fields."""

    HEADER: ClassVar[dict[str, Any]] = {}

    def _check_ints(self, keys: Sequence[str]) -> None:
        for k in keys:
            v, high = getattr(self, k), _INT_MAX.get(k, 1_000_000)
            if isinstance(v, bool) or not isinstance(v, int) or not 1 <= v <= high:
                raise InputError(f"darts: {k} must be an integer from 1 to {high:,}, got {v!r}")

    def _check_rates(self) -> None:
        """lr and arch_lr in (0, MAX_LEARNING_RATE]: 1e39 was torch's "value cannot be converted to type float
        without overflow" at the first step; lambda_lr and latency_weight finite."""
        lr, arch_lr = getattr(self, "lr"), getattr(self, "arch_lr")
        if not (0 < lr <= MAX_LEARNING_RATE and 0 < arch_lr <= MAX_LEARNING_RATE):
            raise InputError(f"darts: need lr, arch_lr > 0 and at most {MAX_LEARNING_RATE:g}, "
                             f"got lr={lr!r}, arch_lr={arch_lr!r}")
        for k in ("lambda_lr", "latency_weight"):  # inf diverged at once, and config.json then held Infinity
            if not math.isfinite(getattr(self, k)):
                raise InputError(f"darts: {k} must be a finite number, got {getattr(self, k)!r}")

    def _check_seed(self) -> None:
        """Epoch seeds are ``seed * 100003 + epoch`` and must stay within torch's 64 bits."""
        seed = getattr(self, "seed")
        if not (is_whole(seed) and seed <= MAX_SEED):
            raise InputError(f"darts: seed must be an integer from 0 to {MAX_SEED:,}, got {seed!r}")

    def _normalise_devices(self) -> None:
        """Budgets are ms > 0 (or None): a budget of 0 divided the multiplier's step by zero mid-run."""
        object.__setattr__(self, "devices", tuple((str(n), None if b is None else float(b))
                                                  for n, b in self.devices))  # type: ignore[attr-defined]
        for n, b in self.devices:  # type: ignore[attr-defined]
            if b is not None and not (math.isfinite(b) and b > 0):
                raise InputError(f"darts: device '{n}': a latency budget must be a number of ms > 0, got {b!r}")

    def to_json(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)  # type: ignore[call-overload]
        d["devices"] = [list(x) for x in d["devices"]]
        return {**self.HEADER, **d}

    @classmethod
    def _from_fields(cls, d: dict[str, Any]) -> Any:
        """The config from a record whose schema the caller has checked; every field is checked for its
        type here (a run folder is a file a user can edit) and for its range by the constructor."""
        d = {k: v for k, v in d.items() if k not in cls.HEADER}
        fields = {f.name: str(f.type).replace(" ", "") for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
        unknown = sorted(set(d) - set(fields))
        if unknown:
            raise InputError(f"config.json: unknown field(s) {', '.join(unknown)}", hint=_DAMAGED)
        for name, v in d.items():
            if name != "devices" and not _of_type(fields[name], v):
                raise InputError(f"config.json: malformed '{name}' ({str(v)[:40]!r})", hint=_DAMAGED)
        devices = d.get("devices", [])
        if not (isinstance(devices, list) and all(
                isinstance(x, list) and len(x) == 2 and isinstance(x[0], str) and (x[1] is None or is_finite(x[1]))
                for x in devices)):
            raise InputError("config.json: malformed 'devices'", hint=_DAMAGED)
        d["devices"] = tuple(tuple(x) for x in devices)
        return cls(**d)


_DAMAGED = "the run folder is damaged; start a new search with the options you want"
MAX_SEED = 2 ** 32 - 1
#: the largest value of each integer setting (others: 10^6); wider networks than this do not fit in memory
_INT_MAX = {"C": 1024, "N": 32, "batch_size": 65_536, "epochs": 100_000}


def _of_type(annotation: str, v: Any) -> bool:
    """Whether ``v`` is of a config field's annotated type (``int``, ``float``, ``str``, ``bool``, each
    optionally ``| None``); other annotations are left to the constructor."""
    optional = annotation.endswith("|None")
    base = annotation[:-5] if optional else annotation
    if v is None:
        return optional
    check = {"int": is_whole, "float": is_finite, "str": lambda x: isinstance(x, str),
             "bool": lambda x: isinstance(x, bool)}.get(base)
    return check is None or check(v)


@dataclass(frozen=True)
class DartsConfig(RunConfig):
    space: str = "nb201"
    data: str = "digits"
    epochs: int = 10
    batch_size: int = 64
    C: int = 8
    N: int = 1
    lr: float = 0.025
    arch_lr: float = 3e-3
    latency_weight: float = 0.0                       # penalty per ms when no budget is given
    lambda_lr: float = 0.05
    arch_warmup: float = 0.2                          # fraction of the epochs with the alphas frozen
    latency_warmup: float = 0.4                       # fraction of the epochs without a latency term
    skip_dropout: float = 0.0
    selection: str = "pt"                             # final op choice: DARTS-PT perturbation or alpha
    pt_samples: int = 256                             # held-out images DARTS-PT scores on
    seed: int = 0
    devices: tuple[tuple[str, float | None], ...] = ()
    HEADER: ClassVar[dict[str, Any]] = {"schema": DARTS_SCHEMA, "kind": "darts"}

    def __post_init__(self) -> None:
        if self.space != "nb201":
            raise InputError(f"--strategy darts supports the nb201 space, not '{self.space}'",
                             hint="an mbv3 space's DARTS is edgenas.search.darts_mbv3_launch (what "
                                  "edgenas search --strategy darts runs for it)")
        if self.selection not in SELECTIONS:
            raise InputError(f"darts: selection must be one of {', '.join(SELECTIONS)}, got {self.selection!r}")
        self._check_ints(("epochs", "batch_size", "C", "N", "pt_samples"))
        self._check_seed()
        self._check_rates()
        if not (self.lambda_lr >= 0 and self.latency_weight >= 0
                and 0 <= self.skip_dropout < 1 and 0 <= self.arch_warmup < 1 and 0 <= self.latency_warmup < 1):
            raise InputError("darts: need lambda_lr, latency_weight >= 0; "
                             "0 <= skip_dropout, arch_warmup, latency_warmup < 1")
        self._normalise_devices()

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> "DartsConfig":
        if not is_schema(d.get("schema"), DARTS_SCHEMA):
            raise InputError(f"a DARTS run of schema {d.get('schema')!r}; this edgenas resumes schema {DARTS_SCHEMA}",
                             hint="the derivation (now DARTS-PT selection) changed: start a new run")
        return cls._from_fields(d)


def multiplier_step(lam: float, derived_ms: float, budget: float, lambda_lr: float) -> float:
    """The budget's dual ascent, shared by nb201 and the mbv3 relaxation: the multiplier rises by
    ``lambda_lr * clip(derived_ms / budget - 1, -1, 1)`` (the DERIVED network's latency), floored at 0."""
    return max(0.0, lam + lambda_lr * min(1.0, max(-1.0, derived_ms / budget - 1.0)))


def latency_terms(loss: Any, expected_ms: Sequence[Any], budgets: Sequence[float | None], lam: Sequence[float],
                  latency_weight: float) -> Any:
    """The architecture loss plus its latency part, shared by nb201 and the mbv3 relaxation: per device,
    ``lam_i * E[ms]_i / budget_i`` with a budget, else ``latency_weight * E[ms]_i`` (when > 0)."""
    for i, (e, b) in enumerate(zip(expected_ms, budgets)):
        if b is not None:
            loss = loss + lam[i] * e / b
        elif latency_weight > 0:
            loss = loss + latency_weight * e
    return loss


def warmup_epochs(epochs: int, arch_warmup: float, latency_warmup: float) -> tuple[int, int]:
    """(epochs with the architecture frozen, epochs without a latency term), from the two fractions."""
    return int(arch_warmup * epochs), int(latency_warmup * epochs)


def _batches(n: int, bs: int, seed: int, epoch: int) -> list[torch.Tensor]:
    g = torch.Generator().manual_seed(int(seed) * 100003 + epoch)
    perm = torch.randperm(n, generator=g)
    return [perm[i:i + bs] for i in range(0, n - bs + 1, bs)] or [perm]


def _opt_state(opt: torch.optim.Optimizer, prefix: str) -> dict[str, torch.Tensor]:
    out = {}
    for i, st in opt.state_dict()["state"].items():
        for k, v in st.items():
            out[f"{prefix}.{i}.{k}"] = v if torch.is_tensor(v) else torch.tensor(v)
    return out


def _load_opt_state(opt: torch.optim.Optimizer, prefix: str, tensors: dict[str, torch.Tensor]) -> None:
    """Each state tensor must be a float of its parameter's shape (``step``: a scalar), else ``ValueError``: torch
    takes any tensor here and fails only at the next step, mid-epoch."""
    sd = opt.state_dict()
    params = [p for g in opt.param_groups for p in g["params"]]
    state: dict[int, dict[str, Any]] = {}
    for key, v in tensors.items():
        if key.startswith(prefix + "."):
            _, i, k = key.split(".", 2)
            p = params[int(i)] if 0 <= int(i) < len(params) else None
            if p is None or not v.is_floating_point() or v.shape != (() if k == "step" else p.shape):
                raise ValueError(key)
            state.setdefault(int(i), {})[k] = v
    sd["state"] = state
    opt.load_state_dict(sd)


def save_checkpoint(ck_json: Path, ck_tensors: Path, meta: dict[str, Any], modules: dict[str, torch.nn.Module],
                    opts: dict[str, torch.optim.Optimizer]) -> None:
    """One epoch's checkpoint: every module's state under ``PREFIX.`` and every optimiser's, written to a
    temporary file then renamed; the JSON (epoch, multipliers, history) last, so it never names
    tensors that are not there."""
    from safetensors.torch import save_file

    tensors = {f"{p}.{k}": v.detach().clone() for p, m in modules.items() for k, v in m.state_dict().items()}
    for p, opt in opts.items():
        tensors.update(_opt_state(opt, p))
    tmp = ck_tensors.with_suffix(".tmp")
    save_file({k: v.contiguous() for k, v in tensors.items()}, str(tmp))
    tmp.replace(ck_tensors)
    atomic_write_json(ck_json, meta)


def _ms(v: Any) -> bool:
    """Latencies by device name (ms >= 0)."""
    return isinstance(v, dict) and all(isinstance(k, str) and is_finite(x) and x >= 0 for k, x in v.items())


#: what each epoch of a checkpoint's history must hold, and what each field must be (nb201's records; the
#: mbv3 relaxation's hold ``epoch``, ``arch`` and ``derived_ms`` of these)
HISTORY_FIELDS: dict[str, Callable[[Any], bool]] = {
    "epoch": is_whole, "arch": lambda v: isinstance(v, (str, dict)), "derived_ms": _ms,
    "derivation": lambda v: v in ("argmax", "budget", NONE_FITS), "argmax_arch": lambda v: isinstance(v, str),
    "argmax_ms": _ms}


def check_start(start: int, config: RunConfig, ck_json: Path) -> None:
    """A checkpoint's epoch is one of the run's (one past its last was taken: more evaluations than epochs)."""
    if start > config.epochs:  # type: ignore[attr-defined]
        raise InputError(f"{ck_json}: a checkpoint of epoch {start} in a run of "
                         f"{config.epochs} epochs", hint=_DAMAGED)  # type: ignore[attr-defined]


def check_history_archs(history: Sequence[dict[str, Any]], ck_json: Path, parse: Callable[[Any], Any],
                        fields: Sequence[str] = ("arch",)) -> None:
    """Every epoch's networks in a checkpoint (each history record's ``fields``, read by the space's ``parse``) are
    the space's, checked before anything is trained or written and naming the file: a run resumed part way trained
    on and wrote a forged one into history.json (best.json derives from the last)."""
    for h in history:
        for f in fields:
            try:
                parse(h[f])
            except InputError as exc:
                raise InputError(f"{ck_json}: malformed checkpoint (epoch {h['epoch']}'s {f}: {exc.message})",
                                 hint=_DAMAGED) from None


def _cell(space: Any, text: Any) -> Any:
    """An nb201 cell string of the checkpoint's history, read by the space."""
    if not isinstance(text, str):
        raise InputError("not a cell string")
    return space.from_string(text)


def diverged_error(config: RunConfig, out: Path, epoch: int, what: str) -> EdgenasError:
    """A NaN or infinite loss or weight in ``epoch`` (0-based; a learning rate too high): one error, the last
    checkpoint as it was (a run went on and wrote a cell of NaN alphas)."""
    kept = f"the checkpoint of epoch {epoch} in {out} is unchanged" if epoch else "no checkpoint was saved"
    rates = f"{config.lr:g}, {config.arch_lr:g}, {config.lambda_lr:g}"  # type: ignore[attr-defined]
    return EdgenasError(f"DARTS training diverged in epoch {epoch + 1} ({what} NaN or infinite); {kept}",
                        hint=f"start a new search with a lower lr, arch_lr or lambda_lr (--strategy-opt; this "
                             f"run's: {rates})")


def all_finite(tensors: Iterable[torch.Tensor]) -> bool:
    """Whether every floating-point tensor of ``tensors`` holds finite values only."""
    return all(bool(t.isfinite().all()) for t in tensors if t.is_floating_point())


def load_checkpoint(ck_json: Path, ck_tensors: Path, modules: dict[str, torch.nn.Module],
                    opts: dict[str, torch.optim.Optimizer], n_multipliers: int,
                    history_fields: Sequence[str] = tuple(HISTORY_FIELDS)) -> tuple[int, list[float], list[Any]]:
    """Restore what ``save_checkpoint`` wrote into ``modules`` and ``opts``; returns the epoch to start
    from, the budget multipliers (``n_multipliers`` of them) and the history (one record per finished
    epoch, each with ``history_fields``), checked: one ``InputError`` for a damaged checkpoint, JSON or
    tensors."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    meta = read_json(ck_json, "checkpoint")
    meta = meta if isinstance(meta, dict) else {}
    epoch, lam, history = meta.get("epoch"), meta.get("lambda"), meta.get("history")
    if not (is_whole(epoch) and epoch >= 1 and isinstance(lam, list) and len(lam) == n_multipliers
            and all(is_finite(x) and x >= 0 for x in lam) and isinstance(history, list) and len(history) == epoch
            and all(isinstance(h, dict) and all(f in h and HISTORY_FIELDS[f](h[f]) for f in history_fields)
                    and h.get("epoch") == i + 1 for i, h in enumerate(history))):  # numbered 1..n: best.json reads it
        raise InputError(f"{ck_json}: malformed checkpoint (epoch, lambda or history)", hint=_DAMAGED)
    try:
        tensors = load_file(str(ck_tensors))
        if not all_finite(tensors.values()):
            raise ValueError("NaN or infinite values")
        for p, m in modules.items():
            m.load_state_dict({k[len(p) + 1:]: v for k, v in tensors.items() if k.startswith(p + ".")})
        for p, opt in opts.items():
            _load_opt_state(opt, p, tensors)
    except (OSError, SafetensorError, RuntimeError, ValueError, KeyError) as exc:
        raise InputError(f"{ck_tensors}: cannot restore the checkpoint ({type(exc).__name__})",
                         hint=_DAMAGED) from None
    return epoch, [float(x) for x in lam], history


def run_darts(config: DartsConfig, latency: Sequence[tuple[str, Any]], out_dir: str | Path, *,
              resume: bool = False, progress: Callable[[int, int], None] | None = None) -> dict[str, Any]:
    """Train, derive, write ``best.json`` (a normal architecture record) and ``history.json``."""
    from edgenas.datasets import load_dataset
    from edgenas.spaces import get_space

    space = get_space("nb201")
    names = [n for n, _ in latency]
    if names != [n for n, _ in config.devices]:
        raise InputError(f"darts: latency models {names} do not match the config's devices")
    terms = [ExpectedLatency(n, m) for n, m in latency]
    budgets = [b for _, b in config.devices]
    derivation = BudgetDerivation(latency, budgets)
    frozen, warmup = warmup_epochs(config.epochs, config.arch_warmup, config.latency_warmup)
    out = Path(out_dir)
    cfg_path, ck_json, ck_tensors = out / "config.json", out / "checkpoint.json", out / "checkpoint.safetensors"
    if resume:
        if not cfg_path.exists():
            raise InputError(f"{out} holds no DARTS run to resume")
        if read_json(cfg_path, "run config") != config.to_json():
            raise InputError(f"cannot resume {out}: the config differs", hint="resume with the original settings")
    elif cfg_path.exists():
        from edgenas.search.run_files import resume_or_new

        raise InputError(f"{out} already holds a search run", hint=resume_or_new(out))
    data = load_dataset(config.data, 32)
    if data.num_classes > 10:
        raise InputError(f"dataset {config.data!r} has {data.num_classes} classes; the nb201 network has 10")
    if not resume:  # a resumed run's config.json holds this config: a refused resume leaves it as it was
        out.mkdir(parents=True, exist_ok=True)
        atomic_write_json(cfg_path, config.to_json())
    train, val = data.split(0.5, seed=config.seed)
    torch.manual_seed(config.seed)
    net = DartsNB201(config.C, config.N, 10, config.skip_dropout)
    w_opt = torch.optim.SGD(net.weights(), lr=config.lr, momentum=0.9, weight_decay=3e-4)
    a_opt = torch.optim.Adam([net.alpha], lr=config.arch_lr, betas=(0.5, 0.999), weight_decay=1e-3)
    lam = [0.0] * len(terms)
    history: list[dict[str, Any]] = []
    start = 0
    if resume and ck_json.exists():
        start, lam, history = load_checkpoint(ck_json, ck_tensors, {"net": net}, {"w_opt": w_opt, "a_opt": a_opt},
                                              len(terms))
        check_start(start, config, ck_json)
        check_history_archs(history, ck_json, lambda v: _cell(space, v), ("arch", "argmax_arch"))
        if progress is not None:  # the epochs a resume starts from, once its checkpoint is checked (a search
            progress(start, config.epochs)  # then says its notes; a bar shows them at once)

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        for epoch in range(start, config.epochs):
            t0 = time.perf_counter()
            torch.manual_seed(config.seed * 100003 + epoch)  # dropout masks
            lr = 0.5 * config.lr * (1 + math.cos(math.pi * epoch / config.epochs))
            for g in w_opt.param_groups:
                g["lr"] = lr
            tb, vb = _batches(len(train), config.batch_size, config.seed, epoch), \
                _batches(len(val), config.batch_size, config.seed + 7919, epoch)
            net.train()
            ce_sum, steps = 0.0, 0
            for ti, vi in zip(tb, vb):
                loss = F.cross_entropy(net(train.x[ti]), train.y[ti])
                if not math.isfinite(float(loss.detach())):  # before the step: the weights stay finite
                    raise diverged_error(config, out, epoch, "a training loss")
                w_opt.zero_grad(set_to_none=True)
                loss.backward()
                torch.nn.utils.clip_grad_norm_(net.weights(), 5.0)
                w_opt.step()
                ce_sum += float(loss.detach())
                steps += 1
                if epoch < frozen:
                    continue
                a_loss = F.cross_entropy(net(val.x[vi]), val.y[vi])
                p = derivable_probs(net.alpha)
                exp_ms = [t(p) for t in terms]
                if epoch >= warmup:
                    a_loss = latency_terms(a_loss, exp_ms, budgets, lam, config.latency_weight)
                if not math.isfinite(float(a_loss.detach())):
                    raise diverged_error(config, out, epoch, "an architecture loss")
                a_opt.zero_grad(set_to_none=True)
                a_loss.backward()
                a_opt.step()
                p = derivable_probs(net.alpha)
                for i, (t, e, b) in enumerate(zip(terms, exp_ms, budgets)):
                    if b is not None and epoch >= warmup:  # over = the derived (argmax) cell is over
                        lam[i] = multiplier_step(lam[i], t.of_argmax(p), b, config.lambda_lr)
            if not all_finite(net.state_dict().values()):
                raise diverged_error(config, out, epoch, "weights")  # the last step's, which no loss has seen
            top = derive(net.alpha)
            fit = derivation(net.alpha)
            arch = fit or top
            history.append({"epoch": epoch + 1, "train_loss": ce_sum / max(steps, 1),
                            "arch": space.to_dict(arch)["arch"], "argmax_arch": space.to_dict(top)["arch"],
                            "derivation": NONE_FITS if fit is None else "argmax" if arch == top else "budget",
                            "skip_edges": sum(op == "skip_connect" for op in arch.ops),
                            "none_edges": sum(op == "none" for op in arch.ops),
                            "expected_ms": {t.name: float(t(derivable_probs(net.alpha)).detach()) for t in terms},
                            "argmax_ms": {t.name: t.of_arch(top) for t in terms},
                            "derived_ms": {t.name: t.of_arch(arch) for t in terms},
                            "lambda": list(lam), "epoch_s": round(time.perf_counter() - t0, 3)})
            save_checkpoint(ck_json, ck_tensors, {"schema": DARTS_SCHEMA, "epoch": epoch + 1, "lambda": lam,
                                                  "history": history},
                            {"net": net}, {"w_opt": w_opt, "a_opt": a_opt})
            if progress is not None:
                progress(epoch + 1, config.epochs)
        pt = None
        if config.selection == "pt":  # DARTS-PT on the trained supernet, held-out half, fixed subset
            t0 = time.perf_counter()
            idx = pt_subset(len(val), config.pt_samples, config.seed)
            pt = (perturbation_scores(net, val.x[idx], val.y[idx]), time.perf_counter() - t0)
    finally:
        torch.set_num_threads(threads)
    return _finish(config, space, terms, budgets, history, net, out, derivation, pt)


def _finish(config, space, terms, budgets, history, net, out: Path, derivation: BudgetDerivation,
            pt: tuple[np.ndarray, float] | None) -> dict[str, Any]:
    chosen = history[-1]  # a checkpoint's on a resume (a file): its cells parsed, their latencies predicted anew
    alpha_arch = space.from_string(chosen["arch"])  # the alpha selection (log-probabilities)
    argmax = space.from_string(chosen["argmax_arch"])
    arch, derived_by, limits = alpha_arch, chosen["derivation"], None
    if pt is not None:  # with a latency weight, no slower than the alpha cell on the unbudgeted devices
        limits = latency_limits(terms, budgets, config.latency_weight, alpha_arch)
        arch, derived_by = pt_pick(pt[0], derivation, alpha_arch, limits, [(t.name, t.model) for t in terms])
        limits = None if derived_by == NONE_FITS else limits
    ms = {t.name: t.of_arch(arch) for t in terms}
    with torch.no_grad():
        probs = net.probs().tolist()
    record = {"arch": space.to_dict(arch), "objectives": {}, "latency_ms": ms,
              "budgets_ms": {t.name: b for t, b in zip(terms, budgets)},
              "pt_budgets_ms": None if limits is None else {t.name: b for t, b in zip(terms, limits)},
              "within_budget": all(b is None or ms[t.name] <= b for t, b in zip(terms, budgets)),
              "epoch": chosen["epoch"], "selection": config.selection, "derivation": derived_by,
              "number": len(history) if pt is not None else len(history) - 1,  # PT's pick: one more evaluation
              "alpha_arch": space.to_dict(alpha_arch)["arch"],
              "alpha_ms": {t.name: t.of_arch(alpha_arch) for t in terms},
              "argmax_arch": space.to_dict(argmax)["arch"],
              "argmax_ms": {t.name: t.of_arch(argmax) for t in terms}, "skip_edges": arch.ops.count("skip_connect"),
              "none_edges": arch.ops.count("none"), "pool_edges": arch.ops.count("avg_pool_3x3"),
              "pt_scores": None if pt is None else pt[0].tolist(), "pt_s": None if pt is None else round(pt[1], 3),
              "alpha_softmax": probs, "strategy": "darts", "evaluations": len(history) + (pt is not None),
              "stopped": "budget"}
    atomic_write_json(out / "best.json", record)
    atomic_write_json(out / "history.json", {"schema": DARTS_SCHEMA, "history": history})
    return record

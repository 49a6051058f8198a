"""SVD-based ``compression``, one-step ``trainability`` and their combination ``ct_prior``.

compression
    For every Conv2d output ``(N, C, H, W)`` of one forward pass (train mode), the feature matrix
    ``M`` has one row per (image, position) and one column per channel; at most ``max_rows`` rows
    are kept (a fixed-seed random subset) and columns are centred. With singular values ``s`` and
    ``p = s / sum(s)``, the layer's spectral entropy ``H = -sum p log p`` is the log of its
    effective rank (Roy & Vetterli 2007). Score = sum of ``H`` over conv layers: how many
    independent feature directions the network keeps, layer after layer (a network that collapses
    its features onto few directions compresses more and scores lower).

trainability
    One plain SGD step (``lr``, at most ``MAX_LR``) on the whole batch's cross-entropy, then the batch is cut into
    ``groups`` equal micro-batches (the remainder of a batch not a multiple of ``groups`` left out) and
    the gradient ``g_k`` of the conv/linear weights is taken on
    each. With ``m = mean_k g_k``, score = ``log(||m||^2 / mean_k ||g_k - m||^2)``: the gradient
    signal-to-noise ratio across the mini-batch (higher: examples agree on where to go).

ct_prior
    ``0.4 * r(compression) + 0.6 * r(trainability)`` where ``r`` is ``rank_normalise`` over the
    architectures of one ``evaluate`` call: average ranks (ties share), ``(rank - 1) / (n - 1)`` in
    [0, 1], 0.5 for a single architecture; an architecture whose compression or trainability is
    not finite gets ``-inf`` and is left out of the ranking. The score is therefore relative to the
    batch it was computed in (see ``CTPriorEvaluator``).
"""

from __future__ import annotations

import numpy as np
import torch
from scipy.stats import rankdata
from torch import nn

from edgenas.errors import InputError
from edgenas.evaluate.proxies.base import (
    NEG_INF, PROXIES, Batch, Proxy, backward_once, finite_or_neg_inf, loss_and_output, positive_float,
    positive_int, weight_layers,
)

CT_WEIGHTS = {"compression": 0.4, "trainability": 0.6}
MAX_LR = 1000.0  #: trainability's one SGD step: far past any useful rate, well inside float16's range


@PROXIES.register("compression", help="sum over conv layers of log effective rank of features")
class Compression(Proxy):
    OPTIONS = {"max_rows": 512}

    def check_options(self) -> None:
        positive_int(self.options, "max_rows", self.name, minimum=2)

    def score(self, model: nn.Module, batch: Batch) -> float:
        max_rows = self.options["max_rows"]
        gen = torch.Generator().manual_seed(0)
        total = 0.0

        def hook(_m: nn.Module, _inp: tuple[torch.Tensor, ...], out: torch.Tensor) -> None:
            nonlocal total
            feats = out.detach().permute(0, 2, 3, 1).reshape(-1, out.shape[1]).double()
            if feats.shape[0] > max_rows:
                feats = feats[torch.randperm(feats.shape[0], generator=gen)[:max_rows]]
            feats = feats - feats.mean(dim=0, keepdim=True)
            s = torch.linalg.svdvals(feats)
            if float(s.sum()) > 0:
                p = s / s.sum()
                p = p[p > 0]
                total += float(-(p * p.log()).sum())

        handles = [m.register_forward_hook(hook) for m in model.modules() if isinstance(m, nn.Conv2d)]
        try:
            model.train()
            with torch.no_grad():
                out = model(batch[0])
        finally:
            for h in handles:
                h.remove()
        if not torch.isfinite(out).all():
            return NEG_INF
        return finite_or_neg_inf(total)


def _flat_grad(model: nn.Module) -> torch.Tensor:
    parts = [m.weight.grad.reshape(-1) for m in weight_layers(model) if m.weight.grad is not None]
    return torch.cat(parts).double().cpu() if parts else torch.zeros(1, dtype=torch.float64)


@PROXIES.register("trainability", help="gradient signal-to-noise ratio after one SGD step")
class Trainability(Proxy):
    OPTIONS = {"groups": 4, "lr": 0.01}

    def check_options(self) -> None:
        positive_int(self.options, "groups", self.name, minimum=2)
        positive_float(self.options, "lr", self.name)
        if self.options["lr"] > MAX_LR:  # past float32's range the step itself raised, for every network
            raise InputError(f"proxy '{self.name}': option lr must be at most {MAX_LR:g}, got {self.options['lr']!r}")

    def score(self, model: nn.Module, batch: Batch) -> float:
        x, y = batch
        groups = min(self.options["groups"], x.shape[0])
        if groups < 2:
            return NEG_INF
        if not backward_once(model, batch):
            return NEG_INF
        with torch.no_grad():
            for p in model.parameters():
                if p.grad is not None:
                    p.add_(p.grad, alpha=-self.options["lr"])
        grads = []
        n = x.shape[0] // groups * groups  # exactly `groups` equal micro-batches (torch.chunk made 3 of 6 for 4,
        for xs, ys in zip(x[:n].chunk(groups), y[:n].chunk(groups)):  # and 3, 3, 3, 1 of 10)
            model.zero_grad(set_to_none=True)
            loss, _ = loss_and_output(model, (xs, ys))
            if not torch.isfinite(loss):
                return NEG_INF
            loss.backward()
            grads.append(_flat_grad(model))
        g = torch.stack(grads)
        mean = g.mean(dim=0)
        noise = float(((g - mean) ** 2).sum(dim=1).mean())
        signal = float((mean ** 2).sum())
        if noise <= 0 or signal <= 0:
            return NEG_INF
        return finite_or_neg_inf(np.log(signal / noise))


def rank_normalise(values: np.ndarray) -> np.ndarray:
    """Finite entries -> average rank mapped to [0, 1] (0.5 if only one); others -> -inf."""
    values = np.asarray(values, dtype=float)
    out = np.full(values.shape, NEG_INF)
    ok = np.isfinite(values)
    n = int(ok.sum())
    if n == 1:
        out[ok] = 0.5
    elif n > 1:
        out[ok] = (rankdata(values[ok], method="average") - 1.0) / (n - 1)
    return out


def ct_prior_combine(compression: np.ndarray, trainability: np.ndarray) -> np.ndarray:
    """``0.4 * r(compression) + 0.6 * r(trainability)``; -inf where either input is not finite."""
    c, t = np.asarray(compression, dtype=float), np.asarray(trainability, dtype=float)
    ok = np.isfinite(c) & np.isfinite(t)
    out = np.full(c.shape, NEG_INF)
    if ok.any():
        out[ok] = (CT_WEIGHTS["compression"] * rank_normalise(c[ok])
                   + CT_WEIGHTS["trainability"] * rank_normalise(t[ok]))
    return out

"""The classic zero-cost proxies: naswot, synflow, snip, grad_norm, jacob_cov, params, flops.

References: Mellor et al. 2021 (NASWOT, and jacob_cov from its first version), Tanaka et al. 2020
(synflow), Lee et al. 2019 (snip), Abdelfattah et al. 2021 (grad_norm and the proxy comparison).
Data-dependent proxies run the model in train mode (batch-statistics BN), as those papers do.
"""

from __future__ import annotations

import copy

import numpy as np
import torch
from torch import nn

from edgenas.evaluate.proxies.base import (
    ACTIVATIONS, NEG_INF, PROXIES, Batch, Proxy, backward_once, finite_or_neg_inf, weight_layers,
)


@PROXIES.register("naswot", help="log|det K| of the activation-code Hamming kernel (Mellor 2021)")
class NASWOT(Proxy):
    """NASWOT: ``K[i, j]`` = number of activation units on which inputs i and j agree.

    Each unit's binary code is whether its pre-activation is positive, read from the *input* of
    every activation module (``ACTIVATIONS``). For ReLU this is exactly Mellor et al.'s code; for
    h-swish / SiLU / GELU networks we use the same sign of the pre-activation, which marks the
    region where the activation is close to linear (h-swish is 0 below -3 and x above 3, so the sign
    splits its two regimes at its zero). Score: ``log|det K|`` (``slogdet``, float64).
    """


    def score(self, model: nn.Module, batch: Batch) -> float:
        x = batch[0]
        n = x.shape[0]
        kernel = torch.zeros(n, n, dtype=torch.float64, device=x.device)

        def hook(_module: nn.Module, inputs: tuple[torch.Tensor, ...], _out: torch.Tensor) -> None:
            code = (inputs[0].detach() > 0).reshape(n, -1).to(torch.float64)
            kernel.add_(code @ code.T + (1 - code) @ (1 - code).T)

        handles = [m.register_forward_hook(hook) for m in model.modules() if isinstance(m, ACTIVATIONS)]
        try:
            model.train()
            with torch.no_grad():
                out = model(x)
        finally:
            for h in handles:
                h.remove()
        if not handles or not torch.isfinite(out).all():
            return NEG_INF
        sign, logdet = torch.linalg.slogdet(kernel)
        return finite_or_neg_inf(logdet) if sign != 0 else NEG_INF


def _strip_batchnorm(model: nn.Module) -> None:
    for name, child in model.named_children():
        if isinstance(child, nn.modules.batchnorm._BatchNorm):
            setattr(model, name, nn.Identity())
        else:
            _strip_batchnorm(child)


def _abs_weight_times_grad(model: nn.Module) -> float:
    """Sum over conv/linear weights of ``|w * dL/dw|`` (after a backward pass): synflow's and snip's score."""
    with torch.no_grad():
        return sum(float((m.weight * m.weight.grad).abs().sum())
                   for m in weight_layers(model) if m.weight.grad is not None)


@PROXIES.register("synflow", help="data-free synaptic flow, sum |w * dR/dw| (Tanaka 2020)")
class SynFlow(Proxy):
    """SynFlow on a float64 copy with ``|w|`` weights, BatchNorm removed and an all-ones input.

    ``R = sum(model(1))``; score = sum over conv/linear weights of ``|w * dR/dw|``. Float64 keeps
    the product of layer norms of a 20-60 layer network far from overflow; an overflow still gives
    ``-inf`` rather than a crash. The model passed in is not modified.
    """

    needs_data = False

    def score(self, model: nn.Module, batch: Batch) -> float:
        net = copy.deepcopy(model).double().eval()
        _strip_batchnorm(net)
        with torch.no_grad():
            for p in net.parameters():
                p.abs_()
        net.zero_grad(set_to_none=True)
        ones = torch.ones((1, *batch[0].shape[1:]), dtype=torch.float64, device=batch[0].device)
        out = net(ones)
        if not torch.isfinite(out).all():
            return NEG_INF
        out.sum().backward()
        return finite_or_neg_inf(_abs_weight_times_grad(net))


@PROXIES.register("snip", help="connection sensitivity, sum |w * dL/dw| (Lee 2019)")
class SNIP(Proxy):

    def score(self, model: nn.Module, batch: Batch) -> float:
        if not backward_once(model, batch):
            return NEG_INF
        return finite_or_neg_inf(_abs_weight_times_grad(model))


@PROXIES.register("grad_norm", help="sum of per-layer L2 norms of dL/dw (Abdelfattah 2021)")
class GradNorm(Proxy):

    def score(self, model: nn.Module, batch: Batch) -> float:
        if not backward_once(model, batch):
            return NEG_INF
        total = sum(float(m.weight.grad.norm()) for m in weight_layers(model) if m.weight.grad is not None)
        return finite_or_neg_inf(total)


@PROXIES.register("jacob_cov", help="input-Jacobian correlation score (Mellor 2020, v1)")
class JacobCov(Proxy):
    """``J`` = d sum(outputs) / d input per example; ``C`` = corrcoef of the rows of ``J``;
    score = ``-sum(log(v + k) + 1 / (v + k))`` over eigenvalues ``v`` of ``C``, ``k = 1e-5``."""


    def score(self, model: nn.Module, batch: Batch) -> float:
        model.train()
        model.zero_grad(set_to_none=True)
        x = batch[0].clone().requires_grad_(True)
        out = model(x)
        if not torch.isfinite(out).all():
            return NEG_INF
        out.backward(torch.ones_like(out))
        jac = x.grad.reshape(x.shape[0], -1).double().cpu().numpy()
        if not np.isfinite(jac).all() or np.any(jac.std(axis=1) == 0):
            return NEG_INF
        eig = np.clip(np.linalg.eigvalsh(np.corrcoef(jac)), 0.0, None)  # clip round-off negatives
        k = 1e-5
        return finite_or_neg_inf(-np.sum(np.log(eig + k) + 1.0 / (eig + k)))


@PROXIES.register("params", help="number of trainable parameters")
class Params(Proxy):
    needs_data = False

    def score(self, model: nn.Module, batch: Batch) -> float:
        return float(sum(p.numel() for p in model.parameters() if p.requires_grad))


def _device_of(model: nn.Module) -> torch.device:
    """Where the model's parameters are (the CPU for a model without any)."""
    return next((p.device for p in model.parameters()), torch.device("cpu"))


def count_macs(model: nn.Module, input_shape: tuple[int, ...]) -> int:
    """Multiply-accumulates of one forward pass at ``input_shape`` (batch 1), Conv2d and Linear only."""
    total = 0

    def conv_hook(m: nn.Conv2d, _inp: tuple[torch.Tensor, ...], out: torch.Tensor) -> None:
        nonlocal total
        kh, kw = m.kernel_size
        total += out[0].numel() * (m.in_channels // m.groups) * kh * kw

    def linear_hook(m: nn.Linear, inp: tuple[torch.Tensor, ...], out: torch.Tensor) -> None:
        nonlocal total
        total += out[0].numel() * m.in_features

    handles = []
    for m in model.modules():
        if isinstance(m, nn.Conv2d):
            handles.append(m.register_forward_hook(conv_hook))
        elif isinstance(m, nn.Linear):
            handles.append(m.register_forward_hook(linear_hook))
    was_training = model.training
    try:
        model.eval()
        with torch.no_grad():
            model(torch.zeros((1, *input_shape[1:]), device=_device_of(model)))
    finally:
        for h in handles:
            h.remove()
        model.train(was_training)
    return total


@PROXIES.register("flops", help="multiply-accumulates per image (Conv2d + Linear, forward hooks)")
class Flops(Proxy):
    needs_data = False

    def score(self, model: nn.Module, batch: Batch) -> float:
        return float(count_macs(model, tuple(batch[0].shape)))

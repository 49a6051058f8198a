"""The zero-cost proxy interface, its registry and helpers shared by the proxies.

A proxy scores one freshly initialised network from one mini-batch, without training:
``Proxy.score(model, batch) -> float`` (higher should mean "more accurate after training").
``batch`` is ``(x, y)``: float images NCHW and int64 labels; data-free proxies (synflow, params,
flops) use only ``x``'s shape. A proxy may modify the model it is given (weights, gradients, BN
statistics); callers build a fresh model per score. A broken network scores ``-inf``: proxies return
``-inf`` when the forward output is not finite, and ``finite_or_neg_inf`` maps NaN/inf scores to it.

Proxies with options declare them in ``OPTIONS`` (name -> default) and the constructor rejects
anything else with an ``InputError``.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from typing import Any, ClassVar, Iterator

import torch
from torch import nn

from edgenas.errors import InputError
from edgenas.registry import Registry

Batch = tuple[torch.Tensor, torch.Tensor]
NEG_INF = float("-inf")

#: activation modules whose *input sign* gives NASWOT's binary code (see ``naswot``)
ACTIVATIONS: tuple[type[nn.Module], ...] = (
    nn.ReLU, nn.ReLU6, nn.LeakyReLU, nn.Hardswish, nn.SiLU, nn.GELU, nn.ELU,
)
#: layers whose weights the saliency proxies (synflow, snip, grad_norm, trainability) sum over
WEIGHT_LAYERS: tuple[type[nn.Module], ...] = (nn.Conv2d, nn.Linear)


class Proxy(ABC):
    """Base class: subclasses set ``name``, ``needs_data`` and implement ``score``."""

    name: ClassVar[str] = ""
    #: does the score depend on the images/labels (else only on the input shape)?
    needs_data: ClassVar[bool] = True
    OPTIONS: ClassVar[dict[str, Any]] = {}

    def __init__(self, **options: Any) -> None:
        unknown = sorted(set(options) - set(self.OPTIONS))
        if unknown:
            known = ", ".join(sorted(self.OPTIONS)) or "none"
            raise InputError(f"proxy '{self.name}': unknown option(s) {', '.join(unknown)}",
                             hint=f"options: {known}")
        self.options = {**self.OPTIONS, **options}
        self.check_options()

    def check_options(self) -> None:
        """Validate ``self.options``; raise ``InputError``."""

    @abstractmethod
    def score(self, model: nn.Module, batch: Batch) -> float:
        """The score of ``model`` on ``batch`` (``-inf`` for a broken network)."""


PROXIES: Registry[type[Proxy]] = Registry("zero-cost proxy")


def make_proxy(name: str, **options: Any) -> Proxy:
    return PROXIES.get(name)(**options)


def finite_or_neg_inf(value: float | torch.Tensor) -> float:
    value = float(value)
    return value if math.isfinite(value) else NEG_INF


def weight_layers(model: nn.Module) -> Iterator[nn.Module]:
    for module in model.modules():
        if isinstance(module, WEIGHT_LAYERS):
            yield module


def positive_int(options: dict[str, Any], key: str, proxy: str, minimum: int = 1) -> None:
    value = options[key]
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise InputError(f"proxy '{proxy}': option {key} must be an integer >= {minimum}, got {value!r}")


def positive_float(options: dict[str, Any], key: str, proxy: str) -> None:
    """A positive, finite number; text (``--eval-opt lr=0.05`` arrives as text) is converted in ``options``."""
    value = options[key]
    if isinstance(value, str):
        try:
            value = options[key] = float(value)
        except ValueError:
            pass  # refused below, with the text
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 < value < math.inf:
        raise InputError(f"proxy '{proxy}': option {key} must be a positive finite number, got {value!r}")


def loss_and_output(model: nn.Module, batch: Batch) -> tuple[torch.Tensor, torch.Tensor]:
    """Cross-entropy of ``model`` on ``batch`` (train mode, labels folded into the class count)."""
    x, y = batch
    out = model(x)
    y = y.to(out.device) % out.shape[1]
    return nn.functional.cross_entropy(out, y), out


def backward_once(model: nn.Module, batch: Batch) -> bool:
    """One forward/backward of the cross-entropy in train mode, gradients zeroed first; False (and no
    backward) when the output or the loss is not finite."""
    model.train()
    model.zero_grad(set_to_none=True)
    loss, out = loss_and_output(model, batch)
    if not (torch.isfinite(out).all() and torch.isfinite(loss)):
        return False
    loss.backward()
    return True

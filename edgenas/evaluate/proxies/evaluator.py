"""Zero-cost proxies as ``Evaluator``s, registered in ``EVALUATORS`` under the proxy names.

Factory: ``factory(space, *, seed=0, data="digits", batch_size=64, device="cpu", **proxy options)``
(proxy options are validated by the proxy: ``compression`` takes ``max_rows``, ``trainability``
``groups`` and ``lr``, ``ct_prior`` all three). For every architecture the evaluator seeds torch
with ``seed``, builds ``space.build_model(arch)``, takes a batch of ``batch_size`` images at
``space.input_shape(arch)`` (``data``: ``"digits"``, a ``.npz`` file or an image folder; the batch
is picked with ``seed``) and scores it. The same arch and seed give the same score. A network
whose score is NaN/inf, or whose scoring raises, scores ``-inf``; the evaluator never raises for
that (only bad options or data, as ``InputError``, at construction).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from edgenas.errors import EdgenasError, InputError
from edgenas.evaluate.base import EVALUATORS, Evaluator
from edgenas.datasets import ImageData, check_dataset, load_dataset, load_digits_images
from edgenas.evaluate.proxies.base import NEG_INF, PROXIES, Batch, Proxy, finite_or_neg_inf, make_proxy
from edgenas.evaluate.proxies.ct import Compression, Trainability, ct_prior_combine
from edgenas.limits import check_seed

log = logging.getLogger(__name__)


class ProxyEvaluator(Evaluator):
    """Scores each architecture with one or more proxies (one score each, ``evaluate`` the first)."""

    def __init__(self, space: Any, proxy: Proxy, *, seed: int = 0, data: str | Path = "digits",
                 batch_size: int = 64, device: str = "cpu") -> None:
        super().__init__(space)
        check_seed(seed, "seed")  # a negative one failed at the first batch (numpy), one >= 2**64 in torch
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 2:
            raise InputError(f"batch_size must be an integer >= 2, got {batch_size!r}")
        data = str(data)
        if data != "digits" and not Path(data).exists():
            raise InputError(f"dataset {data!r} does not exist",
                             hint="use 'digits', a .npz file with x and y, or an image folder")
        check_dataset(data)  # now, not at the first evaluation: a bad dataset leaves no run folder behind
        try:
            self.device = torch.device(device)
        except (RuntimeError, TypeError):
            raise InputError(f"unknown torch device {device!r}") from None
        if self.device.type not in ("cpu", "cuda", "mps", "xpu"):  # e.g. 'meta': tensors without values
            raise InputError(f"torch device {device!r} cannot run a network", hint="use device=cpu or cuda")
        try:  # else every network would fail to move there and score -inf: a run of nothing but failures
            torch.zeros(1).to(self.device)
        except (RuntimeError, AssertionError, AttributeError) as exc:
            raise InputError(f"torch device {device!r} is not available on this machine "
                             f"({type(exc).__name__}: {str(exc)[:120]})", hint="use device=cpu") from None
        self.proxy = proxy
        self.name = proxy.name
        self.metric = f"{proxy.name} zero-cost proxy score"
        self.seed, self.data, self.batch_size = seed, data, batch_size
        self._datasets: dict[int, ImageData] = {}
        self._batches: dict[tuple[int, ...], Batch] = {}

    def describe(self) -> dict[str, Any]:
        return {"name": self.name, "metric": self.metric, "seed": self.seed, "data": self.data,
                "batch_size": self.batch_size, "device": str(self.device), **self.proxy.options}

    # ------------------------------------------------------------------ data
    def batch_for(self, shape: Sequence[int], needs_data: bool = True) -> Batch:
        """The (cached) batch for an input shape ``(1, C, H, W)``; zeros for data-free proxies."""
        c, h, w = (int(v) for v in shape[1:])
        if not needs_data:
            return torch.zeros(1, c, h, w), torch.zeros(1, dtype=torch.int64)
        key = (c, h, w)
        if key not in self._batches:
            if self.data == "digits":
                x, y = load_digits_images(h, n=self.batch_size, seed=self.seed, channels=c)
            else:
                if h not in self._datasets:
                    self._datasets[h] = load_dataset(self.data, h)
                x, y = self._datasets[h].batch(self.batch_size, seed=self.seed)
                x = x[:, :c] if x.shape[1] >= c else x[:, :1].repeat(1, c, 1, 1)
            if x.shape[-1] != w:
                x = F.interpolate(x, size=(h, w), mode="bilinear", align_corners=False)
            self._batches[key] = (x, y)
        return self._batches[key]

    # --------------------------------------------------------------- scoring
    def score_arch(self, arch: Any, proxy: Proxy) -> float:
        """One proxy score for one architecture; ``-inf`` on NaN/inf or any failure in scoring."""
        batch = self.batch_for(self.space.input_shape(arch), proxy.needs_data)
        torch.manual_seed(self.seed)
        model = self.space.build_model(arch)
        try:
            model = model.to(self.device)
            batch = (batch[0].to(self.device), batch[1].to(self.device))
            torch.manual_seed(self.seed)
            return finite_or_neg_inf(proxy.score(model, batch))
        except (KeyboardInterrupt, EdgenasError):
            raise
        except Exception as exc:  # a broken network must not crash a search
            log.warning("proxy %s failed on %s: %s", proxy.name, self.space.arch_id(arch), exc)
            return NEG_INF

    def evaluate(self, archs: Sequence[Any]) -> np.ndarray:
        return np.array([self.score_arch(a, self.proxy) for a in archs], dtype=float)


class CTPriorEvaluator(ProxyEvaluator):
    """``ct_prior`` = 0.4 x rank(compression) + 0.6 x rank(trainability) within each ``evaluate`` call.

    Ranks are relative to the architectures of the call (see ``ct.py``), so a score is comparable
    only with scores from the same call; wrapped in ``CachedEvaluator``, later calls rank only the
    uncached architectures among themselves. Score whole populations in one call.
    """

    batch_relative = True  # executors send a whole batch as one task

    def __init__(self, space: Any, *, max_rows: int = 512, groups: int = 4, lr: float = 0.01,
                 **kwargs: Any) -> None:
        self.compression = Compression(max_rows=max_rows)
        self.trainability = Trainability(groups=groups, lr=lr)
        super().__init__(space, self.compression, **kwargs)
        self.name = "ct_prior"
        self.metric = "0.4*rank(compression) + 0.6*rank(trainability) within the evaluated batch"

    def describe(self) -> dict[str, Any]:
        return {**super().describe(), **self.trainability.options}

    def evaluate(self, archs: Sequence[Any]) -> np.ndarray:
        comp = [self.score_arch(a, self.compression) for a in archs]
        train = [self.score_arch(a, self.trainability) for a in archs]
        return ct_prior_combine(np.array(comp), np.array(train))


def _factory_for(proxy_name: str):
    def factory(space: Any, *, seed: int = 0, data: str | Path = "digits", batch_size: int = 64,
                device: str = "cpu", **options: Any) -> Evaluator:
        own = PROXIES.get(proxy_name).OPTIONS
        unknown = sorted(set(options) - set(own))
        if unknown:  # the proxy's own error listed only its options ("none"), not data, batch_size, device
            raise InputError(f"evaluator '{proxy_name}': unknown option(s) {', '.join(unknown)}",
                             hint=f"its options: {', '.join(sorted({'data', 'batch_size', 'device', *own}))}")
        proxy = make_proxy(proxy_name, **options)  # the proxy validates its options' values
        return ProxyEvaluator(space, proxy, seed=seed, data=data, batch_size=batch_size, device=device)

    factory.__name__ = f"make_{proxy_name}_evaluator"
    factory.__doc__ = f"zero-cost proxy: {PROXIES.describe()[proxy_name]}"
    return factory


def make_ct_prior_evaluator(space: Any, *, seed: int = 0, data: str | Path = "digits",
                            batch_size: int = 64, device: str = "cpu", **options: Any) -> Evaluator:
    """zero-cost proxy: 0.4 x rank(compression) + 0.6 x rank(trainability) within a batch"""
    allowed = {**Compression.OPTIONS, **Trainability.OPTIONS}
    unknown = sorted(set(options) - set(allowed))
    if unknown:
        raise InputError(f"evaluator 'ct_prior': unknown option(s) {', '.join(unknown)}",
                         hint=f"its options: {', '.join(sorted({'data', 'batch_size', 'device', *allowed}))}")
    return CTPriorEvaluator(space, seed=seed, data=data, batch_size=batch_size, device=device,
                            **{**allowed, **options})


def register_all() -> None:
    for name in PROXIES.names():
        if name not in EVALUATORS:
            EVALUATORS.register(name, _factory_for(name))
    if "ct_prior" not in EVALUATORS:
        EVALUATORS.register("ct_prior", make_ct_prior_evaluator)

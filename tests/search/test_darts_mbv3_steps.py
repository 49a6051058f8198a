"""The mbv3 relaxation's weight step (``run_mbv3_darts``): each step's gradients are its own loss's (zeroed
between steps: the architecture step back-propagates into the weights too) and their norm is clipped to 5
before the SGD step. Observed through torch's own calls, the project's code unchanged (mutation audit)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from edgenas.search.darts_mbv3_train import MbDartsConfig, run_mbv3_darts


@pytest.fixture
def data(tmp_path):
    from edgenas.datasets import load_digits_images

    x, y = load_digits_images(16, n=32, seed=0)
    np.savez(tmp_path / "tiny.npz", x=x.numpy(), y=y.numpy())
    return str(tmp_path / "tiny.npz")


def test_each_weight_step_starts_from_zeroed_gradients_and_is_clipped(data, tmp_path, monkeypatch):
    weights: list[torch.Tensor] = []
    alphas: list[torch.Tensor] = []
    events: list[tuple[str, float]] = []
    clipped: list[tuple[float, bool]] = []
    sgd_init, adam_init, clip, backward, sgd_step = (torch.optim.SGD.__init__, torch.optim.Adam.__init__,
                                                     torch.nn.utils.clip_grad_norm_, torch.Tensor.backward,
                                                     torch.optim.SGD.step)

    def norm() -> float:
        return float(torch.linalg.vector_norm(torch.stack([p.grad.norm() for p in weights if p.grad is not None])))

    def init(self, params, *a, **kw):  # the supernet's weights: the SGD optimiser's parameters
        params = list(params)
        weights.extend(params)
        sgd_init(self, params, *a, **kw)

    def init_adam(self, params, *a, **kw):  # the architecture weights
        params = list(params)
        alphas.extend(params)
        adam_init(self, params, *a, **kw)

    def spy_backward(self, *a, **kw):  # which gradients are already held when a backward starts
        events.append(("backward", float(any(p.grad is not None for p in weights))
                       + 2 * float(any(p.grad is not None for p in alphas))))
        return backward(self, *a, **kw)

    def spy_clip(params, max_norm, *a, **kw):
        params = list(params)
        total = clip(params, max_norm, *a, **kw)
        clipped.append((max_norm, len(params) == len(weights) and all(p is q for p, q in zip(params, weights))))
        events.append(("clip", float(total)))
        return total

    def spy_step(self, *a, **kw):
        events.append(("step", norm()))
        return sgd_step(self, *a, **kw)

    monkeypatch.setattr(torch.optim.SGD, "__init__", init)
    monkeypatch.setattr(torch.optim.Adam, "__init__", init_adam)
    monkeypatch.setattr(torch.nn.utils, "clip_grad_norm_", spy_clip)
    monkeypatch.setattr(torch.Tensor, "backward", spy_backward)
    monkeypatch.setattr(torch.optim.SGD, "step", spy_step)
    # lr 20 (the default is 0.05): the weights grow until a step's gradient norm is far above 5, finite still
    cfg = MbDartsConfig(space="mbv3-tiny", data=data, epochs=1, batch_size=4, seed=0, arch_warmup=0.0, lr=20.0)
    run_mbv3_darts(cfg, [], tmp_path / "run")
    kinds = [k for k, _ in events]
    steps = kinds.count("step")
    assert steps == 4 and kinds == ["backward", "clip", "step", "backward"] * steps  # weight then architecture
    for i in range(steps):
        started, pre, post = (events[4 * i + j][1] for j in range(3))
        assert int(started) & 1 == 0, f"weight step {i + 1} began with the last steps' gradients"
        assert post == pytest.approx(min(pre, 5.0), rel=1e-4)  # the step takes the clipped gradient
        assert events[4 * i + 3][1] == 1.0, f"architecture step {i + 1} began with earlier alpha gradients"
    assert clipped == [(5.0, True)] * steps  # all the supernet's weights, to a norm of 5
    assert max(v for k, v in events if k == "clip") > 5.0  # lr 20: later steps' gradients exceed the clip

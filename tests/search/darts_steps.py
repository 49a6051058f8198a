"""A watch on torch's own calls during a DARTS run (the project's code unchanged), for the nb201 and mbv3
trainers' step tests: which gradients each backward starts with, each clip and each SGD step's gradient."""

from __future__ import annotations

from dataclasses import dataclass, field

import pytest
import torch


@dataclass
class Steps:
    weights: list = field(default_factory=list)  # the SGD optimiser's parameters: the supernet's weights
    alphas: list = field(default_factory=list)   # the Adam optimiser's: the architecture weights
    events: list = field(default_factory=list)   # ("backward", 1 if weight grads held + 2 if alpha grads), ...
    clipped: list = field(default_factory=list)  # (max_norm, whether all the weights and only they were clipped)
    losses: list = field(default_factory=list)   # each backward's loss


def watch_steps(monkeypatch) -> Steps:
    s = Steps()
    sgd_init, adam_init, clip, backward, sgd_step = (torch.optim.SGD.__init__, torch.optim.Adam.__init__,
                                                     torch.nn.utils.clip_grad_norm_, torch.Tensor.backward,
                                                     torch.optim.SGD.step)

    def init(self, params, *a, **kw):
        params = list(params)
        s.weights.extend(params)
        sgd_init(self, params, *a, **kw)

    def init_adam(self, params, *a, **kw):
        params = list(params)
        s.alphas.extend(params)
        adam_init(self, params, *a, **kw)

    def spy_backward(self, *a, **kw):  # which gradients are already held when a backward starts
        s.events.append(("backward", float(any(p.grad is not None for p in s.weights))
                         + 2 * float(any(p.grad is not None for p in s.alphas))))
        s.losses.append(float(self.detach()))
        return backward(self, *a, **kw)

    def spy_clip(params, max_norm, *a, **kw):
        params = list(params)
        total = clip(params, max_norm, *a, **kw)
        s.clipped.append((max_norm, len(params) == len(s.weights) and all(p is q for p, q in zip(params, s.weights))))
        s.events.append(("clip", float(total)))
        return total

    def spy_step(self, *a, **kw):
        grads = [p.grad.norm() for p in s.weights if p.grad is not None]
        s.events.append(("step", float(torch.linalg.vector_norm(torch.stack(grads)))))
        return sgd_step(self, *a, **kw)

    monkeypatch.setattr(torch.optim.SGD, "__init__", init)
    monkeypatch.setattr(torch.optim.Adam, "__init__", init_adam)
    monkeypatch.setattr(torch.nn.utils, "clip_grad_norm_", spy_clip)
    monkeypatch.setattr(torch.Tensor, "backward", spy_backward)
    monkeypatch.setattr(torch.optim.SGD, "step", spy_step)
    return s


def check_steps(s: Steps, n: int) -> None:
    """``n`` weight steps, each followed by an architecture step: each weight step starts without the last
    steps' weight gradients and takes its gradient clipped to a norm of 5 (all the supernet's weights); each
    architecture step starts with the weight step's gradients only (the alphas' were zeroed since)."""
    assert [k for k, _ in s.events] == ["backward", "clip", "step", "backward"] * n
    for i in range(n):
        started, pre, post = (s.events[4 * i + j][1] for j in range(3))
        assert int(started) & 1 == 0, f"weight step {i + 1} began with the last steps' gradients"
        assert post == pytest.approx(min(pre, 5.0), rel=1e-4)  # the step takes the clipped gradient
        assert s.events[4 * i + 3][1] == 1.0, f"architecture step {i + 1} began with earlier alpha gradients"
    assert s.clipped == [(5.0, True)] * n


def watch_optimiser_settings(monkeypatch) -> dict[str, list[dict]]:
    """Each SGD and Adam step's settings (its first parameter group less the parameters), recorded through
    torch's own steps: ``{"sgd": [...], "adam": [...]}``."""
    seen: dict[str, list[dict]] = {"sgd": [], "adam": []}
    steps = {"sgd": torch.optim.SGD.step, "adam": torch.optim.Adam.step}

    def spy(kind):
        def step(self, *a, **kw):
            seen[kind].append({k: v for k, v in self.param_groups[0].items() if k != "params"})
            return steps[kind](self, *a, **kw)
        return step

    monkeypatch.setattr(torch.optim.SGD, "step", spy("sgd"))
    monkeypatch.setattr(torch.optim.Adam, "step", spy("adam"))
    return seen

"""The mbv3 relaxation's weight step (``run_mbv3_darts``): each step's gradients are its own loss's (zeroed
between steps: the architecture step back-propagates into the weights too) and their norm is clipped to 5
before the SGD step. Observed through torch's own calls, the project's code unchanged (mutation audit)."""

from __future__ import annotations

import numpy as np
import pytest

from edgenas.search.darts_mbv3_train import MbDartsConfig, run_mbv3_darts


@pytest.fixture
def data(tmp_path):
    from edgenas.datasets import load_digits_images

    x, y = load_digits_images(16, n=32, seed=0)
    np.savez(tmp_path / "tiny.npz", x=x.numpy(), y=y.numpy())
    return str(tmp_path / "tiny.npz")


def test_each_weight_step_starts_from_zeroed_gradients_and_is_clipped(data, tmp_path, monkeypatch):
    from tests.search.darts_steps import check_steps, watch_steps

    steps = watch_steps(monkeypatch)
    # lr 20 (the default is 0.05): the weights grow until a step's gradient norm is far above 5, finite still
    cfg = MbDartsConfig(space="mbv3-tiny", data=data, epochs=1, batch_size=4, seed=0, arch_warmup=0.0, lr=20.0)
    run_mbv3_darts(cfg, [], tmp_path / "run")
    check_steps(steps, 4)  # 4 weight steps, each then an architecture step
    assert max(v for k, v in steps.events if k == "clip") > 5.0  # lr 20: later steps' gradients exceed the clip


def test_an_epochs_train_loss_is_the_mean_of_its_weight_steps_losses_and_its_time_is_in_ms(data, tmp_path,
                                                                                           monkeypatch):
    import json

    from tests.search.darts_steps import watch_steps

    for bs, n in ((4, 4), (16, 1)):  # four steps, and one
        steps = watch_steps(monkeypatch)
        cfg = MbDartsConfig(space="mbv3-tiny", data=data, epochs=1, batch_size=bs, seed=0, arch_warmup=0.0)
        run_mbv3_darts(cfg, [], tmp_path / f"run{bs}")
        (h,) = json.loads((tmp_path / f"run{bs}" / "history.json").read_text())["history"]
        weight_losses = steps.losses[0::2]  # each weight step's backward, then the architecture step's
        assert len(weight_losses) == n and h["train_loss"] == pytest.approx(float(np.mean(weight_losses)), rel=1e-6)
        assert 0 < h["epoch_s"] < 600 and round(h["epoch_s"], 3) == h["epoch_s"]
        monkeypatch.undo()


def test_an_epoch_with_the_alphas_frozen_takes_a_weight_step_on_every_batch(data, tmp_path, monkeypatch):
    from tests.search.darts_steps import watch_steps

    steps = watch_steps(monkeypatch)
    cfg = MbDartsConfig(space="mbv3-tiny", data=data, epochs=2, batch_size=4, seed=0, arch_warmup=0.5)
    run_mbv3_darts(cfg, [], tmp_path / "run")  # epoch 1 frozen (weights only), epoch 2 both steps
    frozen, both = ["backward", "clip", "step"], ["backward", "clip", "step", "backward"]
    assert [k for k, _ in steps.events] == frozen * 4 + both * 4


def test_the_weight_steps_learning_rate_follows_a_cosine_over_the_epochs(data, tmp_path, monkeypatch):
    import math

    import torch

    lrs, step = [], torch.optim.SGD.step

    def spy(self, *a, **kw):
        lrs.append(self.param_groups[0]["lr"])
        return step(self, *a, **kw)

    monkeypatch.setattr(torch.optim.SGD, "step", spy)
    cfg = MbDartsConfig(space="mbv3-tiny", data=data, epochs=4, batch_size=16, seed=0, lr=0.2)
    run_mbv3_darts(cfg, [], tmp_path / "run")  # one step an epoch
    assert lrs == pytest.approx([0.1 * (1 + math.cos(math.pi * e / 4)) for e in range(4)], rel=1e-12)


def test_the_optimisers_take_the_mbv3_settings(data, tmp_path, monkeypatch):
    """SGD with nesterov momentum 0.9 and weight decay 3e-5 on the weights (the supernet trainer's), Adam with
    betas (0.5, 0.999) and no weight decay on the alphas, at the config's rates (recorded at each step through
    torch's own; each setting was changeable with every test passing)."""
    from tests.search.darts_steps import watch_optimiser_settings

    seen = watch_optimiser_settings(monkeypatch)
    cfg = MbDartsConfig(space="mbv3-tiny", data=data, epochs=1, batch_size=8, seed=0, arch_warmup=0.0, lr=0.04,
                        arch_lr=0.002)
    run_mbv3_darts(cfg, [], tmp_path / "run")
    assert len(seen["sgd"]) == len(seen["adam"]) == 2
    for g in seen["sgd"]:
        assert (g["lr"], g["momentum"], g["nesterov"], g["weight_decay"]) == (pytest.approx(0.04), 0.9, True, 3e-5)
    for g in seen["adam"]:
        assert (g["lr"], g["betas"], g["weight_decay"]) == (0.002, (0.5, 0.999), 0.0)

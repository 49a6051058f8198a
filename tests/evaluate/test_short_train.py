"""The short-training evaluator: learns digits, and a score depends only on (arch, seed, options)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from edgenas.errors import InputError
from edgenas.evaluate import make_evaluator
from edgenas.spaces import get_space


@pytest.mark.slow
def test_short_training_learns_and_is_batch_independent():
    space = get_space("mbv3-tiny")
    a, b = (space.sample(np.random.default_rng(i)) for i in range(2))
    ev = make_evaluator("train", space, seed=0, epochs=4, limit=500)
    both = ev.evaluate([a, b])
    assert np.all(both > 20.0)  # chance on 10 digits is 10%
    again = make_evaluator("train", space, seed=0, epochs=4, limit=500)
    assert again.evaluate([b]).tolist() == [both[1]]  # alone, in a new evaluator: the same score


def test_bad_options_are_clear_errors(tmp_path):
    space = get_space("mbv3-tiny")
    with pytest.raises(InputError, match="unknown option"):
        make_evaluator("train", space, epoch=2)
    with pytest.raises(InputError, match="bad option epochs"):
        make_evaluator("train", space, epochs=0)
    with pytest.raises(InputError, match="does not exist"):
        make_evaluator("train", space, data=str(tmp_path / "missing.npz"))


def test_limit_keeps_every_class_of_a_class_sorted_dataset(tmp_path):
    """An image folder lists one class after another (a .npz may be sorted too): limit=30 took the first
    30 images, one class, and the validation accuracy of any network was 100% on noise."""
    from edgenas.spaces import get_space

    rng = np.random.default_rng(0)
    x = rng.random((90, 16, 16, 3), dtype=np.float32)
    y = np.repeat(np.arange(3), 30)  # 30 of class 0, then 30 of class 1, then 30 of class 2
    np.savez(tmp_path / "sorted.npz", x=x, y=y)
    space = get_space("mbv3-tiny")
    ev = make_evaluator("train", space, data=str(tmp_path / "sorted.npz"), limit=30, epochs=1).inner
    train, val = ev._dataset(space.input_shape(space.sample(rng)))
    assert len(train) + len(val) == 30
    assert np.bincount(train.y.numpy(), minlength=3).tolist() != [len(train), 0, 0]
    assert sorted(np.bincount(np.concatenate([train.y.numpy(), val.y.numpy()]))) == [10, 10, 10]


def test_decimal_options_reach_the_evaluator_from_the_command_line(cli, tmp_path, monkeypatch):
    """``--eval-opt lr=0.05`` (and epochs=0.5, val_fraction=0.3) arrived as the text '0.05' and was refused
    with the range it was within: only whole numbers were converted."""
    monkeypatch.setenv("EDGENAS_PROJECT", str(tmp_path))
    monkeypatch.setenv("EDGENAS_NO_PROGRESS", "1")
    res = cli("search", "--space", "mbv3-tiny", "--evaluator", "train", "--strategy", "random", "--budget", "1",
              "--seed", "2", "--eval-opt", "lr=0.05", "--eval-opt", "epochs=0.5", "--eval-opt", "val_fraction=0.3",
              "--eval-opt", "limit=200", "--out", str(tmp_path / "r"), "--json")
    assert res.code == 0, res.err
    ev = make_evaluator("train", get_space("mbv3-tiny"), lr="0.05", epochs="0.5", val_fraction="0.3").inner
    assert (ev.lr, ev.epochs, ev.val_fraction) == (0.05, 0.5, 0.3)
    # other options stay text: a column named like a number reaches the evaluator as it was typed
    valid = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "nb201" / "nb201_valid.csv"
    hw = valid.with_name("nb201_hw.csv")
    odd = tmp_path / "odd.csv"
    lines = valid.read_text().splitlines()
    col = lines[0].split(",").index("cifar10_valid")
    odd.write_text("\n".join([lines[0] + ",1e3,12"] + [f"{x},{x.split(',')[col]},{x.split(',')[col]}"
                                                          for x in lines[1:]]) + "\n")
    for opt in ("column=1e3", "report=1e3", "report=12"):
        res = cli("search", "--space", "nb201", "--evaluator", "nb201-fidelity", "--eval-opt", f"table={odd}",
                  "--eval-opt", f"hw={hw}", "--eval-opt", "column=cifar10_valid" if opt.startswith("report") else opt,
                  *(["--eval-opt", opt] if opt.startswith("report") else []), "--strategy", "random", "--budget", "3",
                  "--out", str(tmp_path / opt.replace("=", "-")), "--json")
        assert res.code == 0, (opt, res.err)



@pytest.mark.parametrize("opts", [dict(epochs=1000), dict(epochs=0.01), dict(batch_size=2), dict(lr=1e-6),
                                  dict(lr=1e30), dict(val_fraction=0.01), dict(val_fraction=0.99), dict(limit=10)])
def test_options_at_the_edges_of_their_ranges_are_accepted(opts):
    ev = make_evaluator("train", get_space("mbv3-tiny"), **opts).inner
    assert all(ev.describe()[k] == v for k, v in opts.items()), ev.describe()


@pytest.mark.parametrize("key, value", [("epochs", 1000.5), ("epochs", -1), ("epochs", True), ("batch_size", 1),
                                        ("batch_size", 4.0), ("batch_size", True), ("lr", 0), ("lr", -0.1),
                                        ("lr", 1e39), ("lr", float("inf")),  # 1e39: every network failed
                                        ("val_fraction", 0.0), ("val_fraction", 1.0), ("val_fraction", 1),
                                        ("limit", 9), ("limit", 10.0), ("limit", True)])
def test_options_outside_their_ranges_are_refused(key, value):
    with pytest.raises(InputError, match=f"bad option {key}="):
        make_evaluator("train", get_space("mbv3-tiny"), **{key: value})


def test_a_dataset_with_more_classes_than_the_head_is_refused_and_its_channels_are_kept(tmp_path):
    rng = np.random.default_rng(0)
    np.savez(tmp_path / "eleven.npz", x=rng.random((33, 16, 16, 3), dtype=np.float32), y=np.arange(33) % 11)
    space = get_space("mbv3-tiny")  # a 10-class head
    with pytest.raises(InputError, match="has 11 classes"):
        make_evaluator("train", space, data=str(tmp_path / "eleven.npz"))
    np.savez(tmp_path / "rgb.npz", x=rng.random((30, 16, 16, 3), dtype=np.float32), y=np.arange(30) % 3)
    ev = make_evaluator("train", space, data=str(tmp_path / "rgb.npz")).inner
    train, _ = ev._dataset(space.input_shape(space.sample(rng)))
    assert train.x.shape[1] == 3 and not bool((train.x[:, 0] == train.x[:, 1]).all())  # not channel 0 three times


def test_the_defaults_are_the_documented_ones():
    """``train`` alone is ``train:epochs=2`` on digits, batch 32, lr 0.1, a fifth held out, seed 0."""
    ev = make_evaluator("train", get_space("mbv3-tiny")).inner
    assert {k: v for k, v in ev.describe().items() if k != "metric"} == {
        "name": "train", "seed": 0, "data": "digits", "epochs": 2.0, "batch_size": 32, "lr": 0.1,
        "val_fraction": 0.2, "limit": None}
    from edgenas.evaluate.short_train import ShortTrainEvaluator, make_short_train

    for direct in (ShortTrainEvaluator(get_space("mbv3-tiny")), make_short_train(get_space("mbv3-tiny"))):
        assert direct.describe() == ev.describe()  # the class and its factory, called without the registry


class _Watched:
    """A space as it is, except that every network it builds records its forward passes (training flag,
    gradients on, batch size) and keeps its initial weights: what a short training did, seen from the network."""

    def __init__(self, space):
        self._space, self.models, self.initial, self.calls = space, [], [], []

    def __getattr__(self, name):
        return getattr(self._space, name)

    def build_model(self, arch):
        import copy

        import torch

        model = self._space.build_model(arch)
        self.models.append(model)
        self.initial.append(copy.deepcopy(model.state_dict()))
        model.register_forward_pre_hook(
            lambda m, args: self.calls.append((m.training, torch.is_grad_enabled(), len(args[0]))))
        return model


@pytest.fixture(scope="module")
def nb201(tmp_path_factory):
    """The nb201 space, one of its cells, and 100 random 32x32 images of 2 classes (nb201's input; digits took
    seconds to load at that size)."""
    rng = np.random.default_rng(0)
    data = tmp_path_factory.mktemp("nb201") / "noise.npz"
    np.savez(data, x=rng.random((100, 32, 32, 3), dtype=np.float32), y=np.arange(100) % 2)  # some guessed right
    space = get_space("nb201")
    return space, space.sample(rng), str(data)


@pytest.mark.slow
def test_nb201_training_takes_the_steps_asked_for_then_scores_every_held_out_image_in_eval_mode(nb201):
    """round(epochs x batches per epoch) optimiser steps (at least one), a short last batch, every step moving
    the weights; then one pass over the held-out images in eval mode (BatchNorm's running statistics) without
    gradients."""
    import torch

    space, arch, data = nb201
    rights = []
    for opts, batches in ((dict(limit=30, batch_size=10, epochs=1.4), [10, 10, 4, 10]),  # 24 to train on: 3 a epoch
                          (dict(limit=10, epochs=1), [8]),  # 8 to train on, fewer than a batch: one step an epoch
                          (dict(limit=30, batch_size=10, epochs=0.01), [10])):  # less than a step is one step
        watched = _Watched(space)
        ev = make_evaluator("train", watched, data=data, **opts).inner
        _, val = ev._dataset(space.input_shape(arch))
        score = ev.train_one(arch)
        assert watched.calls == [(True, True, b) for b in batches] + [(False, False, len(val))], opts
        trained, initial = watched.models[-1].state_dict(), watched.initial[-1]
        assert all(not torch.equal(trained[k], initial[k]) for k in trained if k.endswith(".weight")), opts
        with torch.no_grad():  # the score: the trained network's accuracy (%) on the held-out images
            right = int((watched.models[-1].eval()(val.x).argmax(1) == val.y).sum())
        assert score == 100.0 * right / len(val), opts
        rights.append(right)
    assert any(rights), rights  # a score of 0 would hide how it is computed


def test_nb201_training_is_seeded_whatever_the_global_random_state(nb201):
    """nb201's cells draw their initial weights from torch's global generator: the seed fixes them (and the batch
    order), so the same seed trains the same network after any other use of torch's generator."""
    import torch

    space, arch, data = nb201
    finals = []
    for seed, global_seed in ((0, 1), (0, 2), (1, 1)):
        torch.manual_seed(global_seed)
        watched = _Watched(space)
        make_evaluator("train", watched, data=data, seed=seed, limit=10, epochs=2).inner.train_one(arch)
        finals.append(watched.models[-1].state_dict())
    same, other = (all(torch.equal(finals[0][k], f[k]) for k in f) for f in finals[1:])
    assert same and not other


def test_the_images_kept_and_held_out_are_the_same_whatever_the_evaluators_seed(tmp_path):
    """``limit`` keeps subset seed 0's images and holds out split seed 0's fifth of them, with any evaluator
    seed: scores are comparable across seeds and with other tools that hold out the same images."""
    import torch

    from edgenas.datasets import load_dataset

    rng = np.random.default_rng(0)
    np.savez(tmp_path / "rgb.npz", x=rng.random((30, 16, 16, 3), dtype=np.float32), y=np.arange(30) % 3)
    space = get_space("mbv3-tiny")
    shape = space.input_shape(space.sample(rng))
    ev = make_evaluator("train", space, seed=5, data=str(tmp_path / "rgb.npz"), limit=20).inner
    train, val = ev._dataset(shape)
    want_train, want_val = load_dataset(str(tmp_path / "rgb.npz"), shape[2]).subset(20, seed=0).split(0.2, seed=0)
    assert torch.equal(val.x, want_val.x) and torch.equal(val.y, want_val.y) and len(val) == 4
    assert torch.equal(train.x, want_train.x) and torch.equal(train.y, want_train.y)


@pytest.mark.slow
def test_a_network_that_fails_to_train_scores_minus_inf_and_an_input_error_is_raised(tmp_path, caplog):
    """A broken network must not crash a search (it scores -inf and the next one is trained); a user's error (the
    data file gone before a network of another resolution needs it) is raised, not scored."""
    import torch

    from edgenas.errors import InputError

    space = get_space("mbv3-small")
    rng = np.random.default_rng(0)
    data = tmp_path / "noise.npz"
    np.savez(data, x=rng.random((20, 32, 32, 3), dtype=np.float32), y=np.arange(20) % 10)
    archs = [space.sample(np.random.default_rng(i)) for i in range(30)]
    first = space.input_shape(space.sample(np.random.default_rng(0)))  # the resolution the evaluator loads first
    same = [a for a in archs if space.input_shape(a) == first][:2]
    other = next(a for a in archs if space.input_shape(a) != first)

    class OneBroken:
        def __getattr__(self, name):
            return getattr(space, name)

        def build_model(self, arch):
            model = space.build_model(arch)
            return torch.nn.Sequential(model, torch.nn.Linear(3, 3)) if arch == same[0] else model  # 10 logits in

    ev = make_evaluator("train", OneBroken(), data=str(data), limit=10, epochs=0.01).inner
    with caplog.at_level("WARNING", logger="edgenas.evaluate.short_train"):
        scores = ev.evaluate(same)
    assert scores.shape == (2,) and scores[0] == -np.inf and 0.0 <= scores[1] <= 100.0, scores
    assert [r.getMessage().split(": ")[0] for r in caplog.records] == [f"training failed on {space.arch_id(same[0])}"]
    data.unlink()
    with pytest.raises(InputError, match="does not exist"):
        ev.evaluate([same[1], other])


def test_nb201_training_is_sgd_with_nesterov_momentum_weight_decay_and_a_cosine_rate(nb201):
    """The recipe, step by step from the same initial weights and batch order: SGD (momentum 0.9, Nesterov,
    weight decay 5e-4) at ``lr`` annealed to 0 over the steps (cosine), on seeded permutations of the images."""
    import torch
    import torch.nn.functional as F

    space, arch, data = nb201
    watched = _Watched(space)
    ev = make_evaluator("train", watched, data=data, seed=3, limit=10, epochs=3, lr=0.05).inner
    train, _ = ev._dataset(space.input_shape(arch))
    ev.train_one(arch)
    model = space.build_model(arch).train()
    model.load_state_dict(watched.initial[0])
    opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9, weight_decay=5e-4, nesterov=True)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, 3)
    gen = torch.Generator().manual_seed(3)
    for _ in range(3):  # 8 images to train on, one batch an epoch
        perm = torch.randperm(len(train), generator=gen)
        loss = F.cross_entropy(model(train.x[perm]), train.y[perm])
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step()
    trained = watched.models[0].state_dict()
    assert all(torch.equal(trained[k], v) for k, v in model.state_dict().items())

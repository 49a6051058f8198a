"""DARTS on nb201 without a LUT (no devices): checkpoints a user or a damaged disk may hand back, a diverging
run, and the latency term's sign and weight (mutation audit)."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import torch

from edgenas.errors import EdgenasError, InputError
from edgenas.search.darts_nb201 import DartsNB201
from edgenas.search.darts_train import (DartsConfig, latency_terms, load_checkpoint, multiplier_step,
                                        run_darts, save_checkpoint)


def _trained(tmp_path):
    """A tiny supernet after one weight step and one architecture step, its checkpoint saved."""
    torch.manual_seed(0)
    net = DartsNB201(C=2, N=1)
    w_opt = torch.optim.SGD(net.weights(), lr=0.1, momentum=0.9)
    a_opt = torch.optim.Adam([net.alpha], lr=0.1)
    x, y = torch.randn(4, 3, 8, 8), torch.tensor([0, 1, 2, 3])
    for opt in (w_opt, a_opt):
        opt.zero_grad()
        torch.nn.functional.cross_entropy(net(x), y).backward()
        opt.step()
    meta = {"epoch": 1, "lambda": [0.5], "history": [{"epoch": 1}]}
    save_checkpoint(tmp_path / "ck.json", tmp_path / "ck.safetensors", meta, {"net": net},
                    {"w_opt": w_opt, "a_opt": a_opt})
    return net, w_opt, a_opt


def _load(tmp_path):
    net = DartsNB201(C=2, N=1)
    w_opt = torch.optim.SGD(net.weights(), lr=0.1, momentum=0.9)
    a_opt = torch.optim.Adam([net.alpha], lr=0.1)
    got = load_checkpoint(tmp_path / "ck.json", tmp_path / "ck.safetensors", {"net": net},
                          {"w_opt": w_opt, "a_opt": a_opt}, 1, history_fields=("epoch",))
    return got, net, w_opt, a_opt


def test_a_checkpoint_restores_weights_alphas_and_both_optimisers(tmp_path):
    net, w_opt, a_opt = _trained(tmp_path)
    (epoch, lam, history), net2, w2, a2 = _load(tmp_path)
    assert (epoch, lam, history) == (1, [0.5], [{"epoch": 1}])
    assert all(torch.equal(v, net2.state_dict()[k]) for k, v in net.state_dict().items())
    for old, new in ((w_opt, w2), (a_opt, a2)):
        s_old, s_new = old.state_dict()["state"], new.state_dict()["state"]
        assert s_old.keys() == s_new.keys() and len(s_old) > 0
        assert all(torch.equal(s_old[i][k], s_new[i][k]) for i in s_old for k in s_old[i])


@pytest.mark.parametrize("key, value", [
    ("w_opt.0.momentum_buffer", torch.zeros(3)),           # not its parameter's shape: failed mid-epoch
    ("a_opt.0.exp_avg", torch.zeros(6, 4)),
    ("a_opt.0.step", torch.zeros(2)),                      # a step is one number
    ("w_opt.0.momentum_buffer", None),                     # an integer buffer: "can't be cast" at the step
    ("w_opt.999.momentum_buffer", torch.zeros(1)),         # no such parameter
    ("net.alpha", torch.full((6, 5), float("nan"))),       # NaN alphas: a garbage cell, silently
    ("net.classifier.weight", None),                       # an infinite weight
])
def test_a_damaged_checkpoint_is_one_input_error_and_left_as_it_was(tmp_path, key, value):
    from safetensors.torch import load_file, save_file

    _trained(tmp_path)
    tensors = load_file(str(tmp_path / "ck.safetensors"))
    if value is None and key.startswith("w_opt"):
        value = tensors[key].to(torch.int64)
    elif value is None:
        value = tensors[key].clone()
        value[0, 0] = float("inf")
    save_file({**tensors, key: value}, str(tmp_path / "ck.safetensors"))
    before = {f.name: f.read_bytes() for f in tmp_path.iterdir()}
    with pytest.raises(InputError, match="cannot restore the checkpoint"):
        _load(tmp_path)
    assert {f.name: f.read_bytes() for f in tmp_path.iterdir()} == before


@pytest.mark.parametrize("lam", [[-1.0], [float("nan")], [], [0.5, 0.5], ["1"]])
def test_a_checkpoint_with_bad_multipliers_is_refused(tmp_path, lam):
    _trained(tmp_path)
    meta = json.loads((tmp_path / "ck.json").read_text())
    (tmp_path / "ck.json").write_text(json.dumps(dict(meta, **{"lambda": lam})))
    with pytest.raises(InputError, match="malformed checkpoint"):  # multipliers are >= 0 (dual ascent, floored)
        _load(tmp_path)


@pytest.mark.parametrize("field", ["derived_ms", "argmax_ms"])
@pytest.mark.parametrize("ms", [{"local": "1.5"}, {"local": -1.0}, {"local": None}, {"1": 1.0, "local": [1.0]}, [1.0]])
def test_a_history_record_of_latencies_that_are_not_ms_by_device_is_refused(tmp_path, field, ms):
    """(They were copied into best.json and the run's records on resume.)"""
    net, w_opt, a_opt = _trained(tmp_path)
    meta = json.loads((tmp_path / "ck.json").read_text())
    good = {"epoch": 1, "arch": "cell", "derived_ms": {"local": 1.5}, "derivation": "budget", "argmax_arch": "cell",
            "argmax_ms": {"local": 0.0}}
    args = (tmp_path / "ck.json", tmp_path / "ck.safetensors", {"net": net}, {"w_opt": w_opt, "a_opt": a_opt}, 1)
    (tmp_path / "ck.json").write_text(json.dumps(dict(meta, history=[good])))
    assert load_checkpoint(*args)[2] == [good]  # every field checked (the default), a good record read
    (tmp_path / "ck.json").write_text(json.dumps(dict(meta, history=[{**good, field: ms}])))
    with pytest.raises(InputError, match="malformed checkpoint"):
        load_checkpoint(*args)


def test_the_latency_term_adds_lambda_over_budget_or_the_fixed_weight():
    ce = torch.tensor(1.0)
    e = [torch.tensor(4.0), torch.tensor(6.0)]
    # a budget: lambda * E / budget; no budget: the fixed weight per ms, nothing when it is 0
    assert float(latency_terms(ce, e, [2.0, None], [0.5, 9.0], 0.25)) == pytest.approx(1 + 0.5 * 4 / 2 + 0.25 * 6)
    assert float(latency_terms(ce, e, [None, None], [9.0, 9.0], 0.0)) == 1.0
    assert float(latency_terms(ce, e, [8.0, 3.0], [0.0, 1.0], 5.0)) == pytest.approx(1 + 6 / 3)
    a = torch.zeros(2, requires_grad=True)
    latency_terms(ce, [a.sum() * 3, a.sum()], [None, None], [0.0, 0.0], 0.5).backward()
    assert torch.all(a.grad == 2.0)  # the gradient pushes the expected latency down, with its weight
    assert multiplier_step(1.0, 1.5, 1.0, 0.1) == pytest.approx(1.05)   # over by 50%: up
    assert multiplier_step(1.0, 1.0, 1.0, 0.1) == 1.0                    # on budget: unchanged
    assert multiplier_step(0.5, 0.25, 1.0, 0.1) == pytest.approx(0.425)  # under by 75%: down
    assert multiplier_step(0.0, 9.0, 1.0, 0.1) == pytest.approx(0.1)     # a clipped step
    assert multiplier_step(0.01, 0.0, 1.0, 0.1) == 0.0                   # floored at 0
    assert multiplier_step(0.2, 3.0, 2.0, 0.1) == pytest.approx(0.25)    # relative to the budget: 3 ms of 2


@pytest.fixture
def tiny_data(tmp_path):
    from edgenas.datasets import load_digits_images

    x, y = load_digits_images(32, n=32, seed=0)
    np.savez(tmp_path / "tiny.npz", x=x.numpy(), y=y.numpy())
    return str(tmp_path / "tiny.npz")


def _config(data, **kw):
    return DartsConfig(data=data, epochs=1, batch_size=8, C=2, seed=0, selection="alpha", arch_warmup=0.0, **kw)


def test_a_diverging_run_is_one_error_not_a_cell_of_nan_alphas(tiny_data, tmp_path):
    cfg = _config(tiny_data, lr=1e30)  # a user's lr (unbounded): NaN within the first epoch
    with pytest.raises(EdgenasError, match="diverged in epoch 1 .*no checkpoint was saved"):
        run_darts(cfg, [], tmp_path / "run")
    assert not (tmp_path / "run" / "checkpoint.json").exists() and not (tmp_path / "run" / "best.json").exists()


def test_resume_refuses_a_checkpoint_past_the_last_epoch(tiny_data, tmp_path):
    cfg = _config(tiny_data)
    run_darts(cfg, [], tmp_path / "run")
    edited = tmp_path / "edited"
    shutil.copytree(tmp_path / "run", edited)
    meta = json.loads((edited / "checkpoint.json").read_text())
    meta["history"].append(dict(meta["history"][-1], epoch=2))  # a well-formed record of an epoch never run
    (edited / "checkpoint.json").write_text(json.dumps(dict(meta, epoch=2)))
    before, seen = {f.name: f.read_bytes() for f in edited.iterdir()}, []
    with pytest.raises(InputError, match="checkpoint of epoch 2 in a run of 1 epochs"):
        run_darts(cfg, [], edited, resume=True, progress=lambda *a: seen.append(a))  # 2 evaluations of 1 epoch
    assert {f.name: f.read_bytes() for f in edited.iterdir()} == before and not seen   # refused before any report
    res = run_darts(cfg, [], tmp_path / "run", resume=True, progress=lambda *a: seen.append(a))
    assert res["evaluations"] == 1 and seen == [(1, 1)]   # the run as saved resumes, its epochs reported at once


@pytest.mark.parametrize("budget", [0.0, -1.0, float("nan"), float("inf")])
def test_a_budget_that_is_not_a_positive_number_of_ms_is_refused(budget):
    with pytest.raises(InputError, match="a latency budget must be a number of ms > 0"):
        DartsConfig(devices=(("local", budget),))  # 0: ZeroDivisionError in the multiplier's step, mid-run
    if budget == 0.0:  # a run folder's config.json is a file a user can edit
        with pytest.raises(InputError, match="latency budget"):
            DartsConfig.from_json({**DartsConfig().to_json(), "devices": [["local", 0]]})
    assert DartsConfig(devices=(("local", 2), ("other", None))).devices == (("local", 2.0), ("other", None))



def test_the_alphas_stay_frozen_in_the_warm_up_epochs_while_the_weights_train(tiny_data, tmp_path):
    from safetensors.torch import load_file

    cfg = DartsConfig(data=tiny_data, epochs=2, batch_size=8, C=2, seed=0, selection="alpha", arch_warmup=0.5)
    seen = []

    def progress(done, total):  # each epoch's checkpoint, as it is when the epoch is reported
        t = load_file(str(tmp_path / "run" / "checkpoint.safetensors"))
        seen.append((done, total, t["net.alpha"], t["net.stem.0.weight"], any(k.startswith("a_opt.") for k in t)))

    run_darts(cfg, [], tmp_path / "run", progress=progress)
    torch.manual_seed(0)
    init = DartsNB201(2, 1, 10, 0.0)  # run_darts's own initialisation for this seed
    assert [(s[0], s[1]) for s in seen] == [(1, 2), (2, 2)]
    assert torch.equal(seen[0][2], init.alpha.detach()) and not seen[0][4]  # epoch 1 of 2: the warm-up
    assert not torch.equal(seen[0][3], init.stem[0].weight.detach())        # ... while the weights trained
    assert not torch.equal(seen[1][2], init.alpha.detach()) and seen[1][4]   # then an Adam step on the alphas


def test_expected_latency_needs_a_lut_of_the_nb201_space():
    from types import SimpleNamespace

    from edgenas.search.darts_nb201 import ExpectedLatency
    from edgenas.spaces import get_space

    for model in (object(), SimpleNamespace(key_cost={"k": 1.0}, space=None),
                  SimpleNamespace(key_cost={"k": 1.0}, space=get_space("mbv3-small")),  # another space's LUT
                  SimpleNamespace(key_cost={}, space=get_space("nb201"))):
        with pytest.raises(InputError, match="per-block LUT for the nb201 space"):
            ExpectedLatency("x", model)

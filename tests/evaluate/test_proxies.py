"""Zero-cost proxies and their evaluators, on small real NAS-Bench-201 cell networks."""

from __future__ import annotations

import math
from typing import Any, Mapping, Sequence

import numpy as np
import pytest
import torch
from torch import nn

from edgenas.errors import InputError
from edgenas.evaluate.base import EVALUATORS, make_evaluator
from edgenas.datasets import load_digits_images
from edgenas.evaluate.proxies import (
    PROXIES, count_macs, ct_prior_combine, make_proxy, rank_normalise,
)
from edgenas.spaces.base import SearchSpace
from edgenas.spaces.nb201_net import NB201_OPS, build_nb201_network

torch.set_num_threads(1)

ALL = ["compression", "flops", "grad_norm", "jacob_cov", "naswot", "params", "snip", "synflow",
       "trainability"]
CONV = ["nor_conv_3x3", "skip_connect", "nor_conv_1x1", "avg_pool_3x3", "nor_conv_3x3", "skip_connect"]


def small_net(ops: Sequence[str] = CONV, seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return build_nb201_network(ops, C=8, N=1)


@pytest.fixture(scope="module")
def batch():
    return load_digits_images(resolution=16, n=16, seed=0)


class NaNNet(nn.Module):
    """A real network whose output turns NaN halfway through."""

    def __init__(self) -> None:
        super().__init__()
        self.body = small_net()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x) * float("nan")


class TinyNB201Space(SearchSpace):
    """A real (small) space over NAS-Bench-201 cells; gene 6 picks a broken network for tests."""

    name = "tiny-nb201"

    def from_dict(self, data: Mapping[str, Any]) -> tuple:
        return tuple(data["genes"])

    def to_dict(self, arch: tuple) -> dict[str, Any]:
        return {"space": self.name, "schema": 1, "genes": list(arch)}

    def gene_sizes(self) -> tuple[int, ...]:
        return (5,) * 6 + (3,)

    def to_genes(self, arch: tuple) -> np.ndarray:
        return np.asarray(arch, dtype=np.int64)

    def from_genes(self, genes) -> tuple:
        return tuple(int(g) for g in genes)

    def block_keys(self, arch):
        return []

    def key_vocab(self):
        return []

    def input_shape(self, arch) -> tuple[int, ...]:
        return (1, 3, 16, 16)

    def build_model(self, arch: tuple) -> nn.Module:
        if arch[6] == 1:
            return NaNNet()
        if arch[6] == 2:
            return nn.Sequential(nn.Conv2d(3, 4, 3), nn.Linear(5, 5))  # shapes do not chain: raises
        return build_nb201_network([NB201_OPS[g] for g in arch[:6]], C=8, N=1)

    def build_block(self, key):
        raise NotImplementedError

    def block_input_shape(self, key):
        raise NotImplementedError


GOOD = (3, 1, 2, 4, 3, 1, 0)
OTHER = (2, 2, 4, 1, 3, 3, 0)
NAN_ARCH = (3, 3, 3, 3, 3, 3, 1)
RAISING = (3, 3, 3, 3, 3, 3, 2)


def test_every_proxy_registered_as_evaluator():
    assert sorted(PROXIES.names()) == ALL
    for name in ALL + ["ct_prior"]:
        assert name in EVALUATORS


@pytest.mark.parametrize("name", ALL)
def test_same_score_twice_and_finite(name, batch):
    a = make_proxy(name).score(small_net(), batch)
    b = make_proxy(name).score(small_net(), batch)
    assert math.isfinite(a) and a == b


@pytest.mark.parametrize("name", [n for n in ALL if n not in ("params", "flops")])
def test_nan_network_scores_neg_inf(name, batch):
    assert make_proxy(name).score(NaNNet(), batch) == -math.inf


def test_params_and_flops_match_nb201_figures():
    # NAS-Bench-201 reports 7.78 and 220.11 MFLOPs (multiply-adds) for the extreme CIFAR-10 cells
    big, empty = build_nb201_network(["nor_conv_3x3"] * 6), build_nb201_network(["none"] * 6)
    assert count_macs(big, (1, 3, 32, 32)) == 220_119_680
    assert count_macs(empty, (1, 3, 32, 32)) == 7_783_040
    x = torch.zeros(1, 3, 32, 32), torch.zeros(1, dtype=torch.int64)
    assert make_proxy("params").score(big, x) == 1_531_546


def test_cost_objectives_are_the_nb201_figures_and_build_once(monkeypatch):
    """``--minimise params`` / ``flops``: the same NAS-Bench-201 figures, one network built per architecture."""
    from edgenas.evaluate.cost import cost_functions
    from edgenas.spaces import get_space

    space = get_space("nb201")
    built = []
    build = space.build_model
    monkeypatch.setattr(space, "build_model", lambda arch: built.append(arch) or build(arch))
    fns = cost_functions(space)
    big = space.from_string("|nor_conv_3x3~0|+|nor_conv_3x3~0|nor_conv_3x3~1|+|nor_conv_3x3~0|nor_conv_3x3~1|"
                            "nor_conv_3x3~2|")
    assert fns["params"](big) == 1_531_546 and fns["flops"](big) == 220_119_680
    assert fns["params"](big) == 1_531_546 and len(built) == 1


def test_naswot_duplicate_inputs_make_singular_kernel(batch):
    x, y = batch
    dup = (torch.cat([x[:8], x[:1]]), torch.cat([y[:8], y[:1]]))
    assert make_proxy("naswot").score(small_net(), dup) == -math.inf
    assert math.isfinite(make_proxy("naswot").score(small_net(), (x[:9], y[:9])))


def test_synflow_is_data_free_and_grows_with_conv_size(batch):
    x, y = batch
    s1 = make_proxy("synflow").score(small_net(), (x, y))
    s2 = make_proxy("synflow").score(small_net(), (torch.randn_like(x), y))
    assert s1 == s2 > 0
    net1 = small_net(["nor_conv_1x1"] * 6)
    net3 = small_net(["nor_conv_3x3"] * 6)
    assert make_proxy("synflow").score(net3, batch) > make_proxy("synflow").score(net1, batch)
    model = small_net()
    before = [p.clone() for p in model.parameters()]
    make_proxy("synflow").score(model, batch)
    assert all(torch.equal(p, q) for p, q in zip(before, model.parameters()))  # model untouched


def test_gradient_proxies_zero_for_parameter_free_cells(batch):
    empty = ["none"] * 6
    assert make_proxy("snip").score(small_net(empty), batch) == 0.0
    assert make_proxy("grad_norm").score(small_net(empty), batch) == 0.0
    assert make_proxy("snip").score(small_net(), batch) > 0


def test_trainability_cuts_exactly_groups_equal_micro_batches(batch, monkeypatch):
    """torch.chunk cut 6 images into 3 groups for groups=4 (the score of groups=3) and 10 into 3, 3, 3, 1."""
    from edgenas.evaluate.proxies import ct

    x, y = batch
    sizes: list[int] = []
    real = ct.loss_and_output
    monkeypatch.setattr(ct, "loss_and_output", lambda m, b: (sizes.append(len(b[0])), real(m, b))[1])

    def micro_batches(n: int, groups: int) -> tuple[float, list[int]]:
        torch.manual_seed(0)
        sizes.clear()
        value = make_proxy("trainability", groups=groups).score(small_net(), (x[:n], y[:n]))
        return value, list(sizes)  # the SGD step on the whole batch goes through base.backward_once

    four, three = micro_batches(6, 4), micro_batches(6, 3)
    assert four[1] == [1, 1, 1, 1] and three[1] == [2, 2, 2] and four[0] != three[0]
    assert micro_batches(10, 4)[1] == [2, 2, 2, 2]


def test_options_are_validated():
    with pytest.raises(InputError, match="unknown option"):
        make_proxy("naswot", groups=3)
    with pytest.raises(InputError):
        make_proxy("trainability", groups=1)
    with pytest.raises(InputError):
        make_proxy("compression", max_rows="many")
    space = TinyNB201Space()
    with pytest.raises(InputError):
        make_evaluator("synflow", space, batch_size=1)
    with pytest.raises(InputError):
        make_evaluator("snip", space, data="/no/such/file.npz")
    with pytest.raises(InputError):
        make_evaluator("ct_prior", space, colour="red")


def test_rank_normalise_and_ct_prior_combine():
    r = rank_normalise(np.array([3.0, 1.0, np.nan, 2.0, 2.0]))
    assert r[1] == 0.0 and r[0] == 1.0 and r[3] == r[4] == 0.5 and r[2] == -math.inf
    assert rank_normalise(np.array([7.0]))[0] == 0.5
    c = np.array([1.0, 2.0, 3.0, 0.0])
    t = np.array([3.0, 2.0, 1.0, -np.inf])
    out = ct_prior_combine(c, t)
    assert out[3] == -math.inf
    assert np.allclose(out[:3], [0.6, 0.5, 0.4])  # 0.4*(0, .5, 1) + 0.6*(1, .5, 0)


@pytest.mark.parametrize("name", ["naswot", "synflow", "jacob_cov"])
def test_evaluator_deterministic_and_never_raises(name):
    space = TinyNB201Space()
    ev = EVALUATORS.get(name)(space, seed=0, batch_size=16)
    first = ev.evaluate([GOOD, NAN_ARCH, RAISING, OTHER])
    second = EVALUATORS.get(name)(space, seed=0, batch_size=16).evaluate([GOOD, OTHER])
    assert np.isfinite(first[[0, 3]]).all()
    assert first[1] == -math.inf and first[2] == -math.inf
    assert np.array_equal(first[[0, 3]], second)
    assert ev.describe()["name"] == name and ev.describe()["batch_size"] == 16


def test_ct_prior_evaluator_ranks_within_batch():
    space = TinyNB201Space()
    ev = make_evaluator("ct_prior", space, seed=0, batch_size=16, groups=2)
    scores = ev.evaluate([GOOD, OTHER, NAN_ARCH, (0,) * 6 + (0,)])
    assert scores[2] == -math.inf and scores[3] == -math.inf  # NaN net; all-`none` has no gradient
    assert np.all((scores[:2] >= 0) & (scores[:2] <= 1))
    assert sorted(scores[:2].round(6).tolist()) in ([0.0, 1.0], [0.4, 0.6])


def test_gradient_proxies_use_train_mode_and_fresh_gradients(batch):
    """A model handed over in eval mode, or with gradients left from a first score, scores as a fresh one."""
    for name in ("snip", "grad_norm"):
        fresh = make_proxy(name).score(small_net(), batch)
        model = small_net().eval()
        assert make_proxy(name).score(model, batch) == fresh  # batch statistics, not the untrained running ones
        assert make_proxy(name).score(model, batch) == fresh  # the first score's gradients are not added to


def test_a_finite_output_with_an_infinite_loss_scores_neg_inf():
    """Logits of +-3e38 are finite float32, their cross-entropy for the low class is inf: no backward."""
    model = nn.Sequential(nn.Flatten(), nn.Linear(1, 2, bias=False))
    with torch.no_grad():
        model[1].weight.copy_(torch.tensor([[3e38], [-3e38]]))
    x, y = torch.ones(4, 1, 1, 1), torch.ones(4, dtype=torch.int64)
    assert torch.isfinite(model(x)).all()
    for name in ("snip", "grad_norm", "trainability"):
        assert make_proxy(name).score(model, (x, y)) == -math.inf
    assert model[1].weight.grad is None


def test_option_errors_list_the_known_options():
    with pytest.raises(InputError) as err:
        make_proxy("naswot", groups=3)
    assert err.value.hint == "options: none"
    with pytest.raises(InputError) as err:
        make_proxy("trainability", max_rows=3)
    assert err.value.hint == "options: groups, lr" and "max_rows" in err.value.message


def test_positive_int_and_float_options():
    from edgenas.evaluate.proxies.base import positive_float, positive_int

    positive_int({"k": 1}, "k", "p")  # the default minimum is 1
    with pytest.raises(InputError, match="integer >= 1"):
        positive_int({"k": 0}, "k", "p")
    for bad in (0, 0.0, -0.5, True, "fast", None, math.inf, math.nan, "inf", "nan", "1e400"):
        with pytest.raises(InputError, match="option lr must be a positive finite number"):
            make_proxy("trainability", lr=bad)
    assert make_proxy("trainability", lr=2).options["lr"] == 2
    options = {"lr": "0.05"}
    positive_float(options, "lr", "p")
    assert options == {"lr": 0.05}


def test_decimal_lr_from_the_command_line_is_taken():
    """``--eval-opt lr=0.05`` arrives as the text '0.05' (decimals stay text): it was refused as not a number."""
    from edgenas.cli.cmd_search import _options

    space = TinyNB201Space()
    opts = _options(["lr=0.05", "groups=2", "batch_size=8"])
    assert opts["lr"] == "0.05"
    for name in ("trainability", "ct_prior"):
        ev = make_evaluator(name, space, **opts)
        assert ev.describe()["lr"] == 0.05 and ev.describe()["groups"] == 2
    with pytest.raises(InputError, match="positive finite number, got 'fast'"):
        make_evaluator("ct_prior", space, lr="fast")


@pytest.mark.parametrize("seed", [-1, 2 ** 64, 1.0, True])
def test_a_seed_numpy_or_torch_refuses_is_refused_at_construction(seed):
    """seed=-1 failed at the first evaluation in numpy (ValueError), 2**64 in torch.manual_seed (RuntimeError)."""
    for name in ("naswot", "ct_prior"):
        with pytest.raises(InputError, match="seed must be an integer from 0"):
            make_evaluator(name, TinyNB201Space(), seed=seed, batch_size=8)

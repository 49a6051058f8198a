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


def _weights(layer: nn.Module, *rows: list[float]) -> nn.Module:
    with torch.no_grad():
        layer.weight.copy_(torch.tensor(rows, dtype=layer.weight.dtype).reshape(layer.weight.shape))
    return layer


def test_data_proxies_score_in_train_mode_whatever_mode_they_are_given(batch):
    """A model handed over in eval mode scores as a fresh (train-mode) one: batch-statistics BatchNorm."""
    for name in ("naswot", "jacob_cov", "compression", "trainability"):
        fresh = make_proxy(name).score(small_net(), batch)
        assert make_proxy(name).score(small_net().eval(), batch) == fresh, name


def test_naswot_kernel_counts_agreeing_units():
    """Codes (1, 0, 1) and (1, 1, 0) agree on 1 of 3 units: K = [[3, 1], [1, 3]], log det = log 8."""
    x = torch.tensor([[1.0, -1.0, 2.0], [0.5, 3.0, -2.0]]).reshape(2, 3, 1, 1)
    y = torch.zeros(2, dtype=torch.int64)
    assert make_proxy("naswot").score(nn.Sequential(nn.ReLU(), nn.Flatten()), (x, y)) == pytest.approx(math.log(8))
    assert make_proxy("naswot").score(nn.Sequential(nn.Flatten()), (x, y)) == -math.inf  # no activation: no code


def test_synflow_is_the_hand_computed_flow_without_batchnorm_and_stale_gradients():
    """w = (1, -2), v = -3 taken as |w|, |v|: R = 9, dR/dw = 3, dR/dv = 3: 1*3 + 2*3 + 3*3 = 18."""
    def net(bn: bool) -> nn.Module:
        layers = [nn.Flatten(), _weights(nn.Linear(2, 1, bias=False), [1.0, -2.0])]
        layers += [nn.BatchNorm1d(1)] if bn else []
        return nn.Sequential(nn.Sequential(*layers), _weights(nn.Linear(1, 1, bias=False), [-3.0]))

    x = (torch.zeros(1, 2, 1, 1), torch.zeros(1, dtype=torch.int64))
    assert make_proxy("synflow").score(net(False), x) == 18.0
    assert make_proxy("synflow").score(net(True), x) == 18.0  # BatchNorm (nested) removed, not run in eval mode
    model = net(False)
    make_proxy("snip").score(model, (torch.randn(4, 2, 1, 1), torch.zeros(4, dtype=torch.int64)))
    assert model[1].weight.grad is not None
    assert make_proxy("synflow").score(model, x) == 18.0  # the copy's gradients are zeroed first


def test_synflow_runs_in_float64():
    """40 layers of weight 10: R = 1e40 overflows float32 but not float64."""
    layers = [nn.Flatten()] + [_weights(nn.Linear(1, 1, bias=False), [10.0]) for _ in range(40)]
    score = make_proxy("synflow").score(nn.Sequential(*layers), (torch.zeros(1, 1, 1, 1), torch.zeros(1)))
    assert score == pytest.approx(40 * 1e40)


def test_jacob_cov_of_identical_jacobians():
    """Both rows of J are w = (1, 2, 3): C = [[1, 1], [1, 1]], eigenvalues 0 and 2."""
    model = nn.Sequential(nn.Flatten(), _weights(nn.Linear(3, 1, bias=False), [1.0, 2.0, 3.0]))
    x, y = torch.randn(2, 3, 1, 1), torch.zeros(2, dtype=torch.int64)
    k = 1e-5
    expected = -(math.log(k) + 1 / k + math.log(2 + k) + 1 / (2 + k))
    assert make_proxy("jacob_cov").score(model, (x, y)) == pytest.approx(expected, rel=1e-9)


def test_params_counts_only_trainable_parameters():
    model = nn.Sequential(nn.Linear(3, 2), nn.Linear(2, 5))
    model[0].requires_grad_(False)
    assert make_proxy("params").score(model, (torch.zeros(1, 3), torch.zeros(1))) == 15.0


def test_count_macs_keeps_the_models_mode():
    model = small_net()
    count_macs(model, (1, 3, 16, 16))
    assert model.training
    model.eval()
    count_macs(model, (1, 3, 16, 16))
    assert not model.training
    conv = nn.Conv2d(4, 8, 3, padding=1, groups=2)
    assert count_macs(conv, (1, 4, 5, 5)) == 8 * 25 * 2 * 9
    assert count_macs(nn.Flatten(), (1, 3, 2, 2)) == 0


def test_compression_is_the_log_effective_rank_of_centred_features():
    """Channels x, y orthogonal with equal norms and a constant one (centred to 0): H = log 2;
    two of the four rows (max_rows=2) are rank 1 once centred: H = 0."""
    conv = nn.Conv2d(2, 3, 1)
    with torch.no_grad():
        conv.weight.zero_()
        conv.weight[0, 0] = conv.weight[1, 1] = 1.0
        conv.bias.copy_(torch.tensor([0.0, 0.0, 5.0]))
    x = torch.tensor([[1.0, -1.0], [1.0, -1.0], [1.0, 1.0], [-1.0, -1.0]]).reshape(1, 2, 2, 2)
    batch = (x, torch.zeros(1, dtype=torch.int64))
    assert make_proxy("compression").score(conv, batch) == pytest.approx(math.log(2))
    assert make_proxy("compression", max_rows=4).score(conv, batch) == pytest.approx(math.log(2))
    assert make_proxy("compression", max_rows=2).score(conv, batch) == pytest.approx(0.0, abs=1e-9)


def test_trainability_takes_the_sgd_step_and_refuses_zero_noise(batch):
    scores = [make_proxy("trainability", lr=lr).score(small_net(), batch) for lr in (0.01, 1.0)]
    assert all(math.isfinite(s) for s in scores) and scores[0] != scores[1]
    assert make_proxy("trainability").score(small_net(["none"] * 6), batch) == -math.inf  # no gradient at all
    x, y = batch
    assert make_proxy("trainability").score(small_net(), (x[:1], y[:1])) == -math.inf  # one image: one group


def test_a_bad_dataset_file_is_refused_when_the_proxy_is_made(tmp_path):
    """Before the first evaluation: a bad dataset leaves no run folder behind."""
    bad = tmp_path / "images.npz"
    bad.write_bytes(b"not a zip file")
    with pytest.raises(InputError, match="images.npz"):
        make_evaluator("naswot", TinyNB201Space(), data=str(bad), batch_size=8)


def test_ct_prior_through_an_executor_ranks_the_whole_batch_in_one_task():
    """Scored one architecture per task, every finite ct_prior score would be 0.5 (a batch of one)."""
    from edgenas.evaluate.executor import EvalSpec, ExecutorEvaluator, make_executor

    space = TinyNB201Space()
    local = EVALUATORS.get("ct_prior")(space, seed=0, batch_size=8, groups=2)
    spec = EvalSpec.make("ct_prior", "tiny-nb201-proxy-test", options={"batch_size": 8, "groups": 2})
    scores = ExecutorEvaluator(spec, make_executor("inprocess"), local).evaluate([GOOD, OTHER])
    assert np.array_equal(scores, local.evaluate([GOOD, OTHER])) and scores[0] != scores[1]


def test_proxy_factories_defaults_and_description():
    for name in ("naswot", "ct_prior"):
        d = EVALUATORS.get(name)(TinyNB201Space()).describe()
        assert (d["name"], d["seed"], d["data"], d["batch_size"], d["device"]) == (name, 0, "digits", 64, "cpu")
    d = EVALUATORS.get("ct_prior")(TinyNB201Space()).describe()
    assert (d["max_rows"], d["groups"], d["lr"]) == (512, 4, 0.01) and "rank(trainability)" in d["metric"]
    from edgenas.evaluate.proxies import CTPriorEvaluator, ProxyEvaluator

    assert ProxyEvaluator(TinyNB201Space(), make_proxy("naswot")).describe()["batch_size"] == 64
    d = CTPriorEvaluator(TinyNB201Space()).describe()
    assert (d["name"], d["seed"], d["max_rows"], d["groups"], d["lr"]) == ("ct_prior", 0, 512, 4, 0.01)
    for name, hint in (("naswot", "its options: batch_size, data, device"),
                       ("trainability", "its options: batch_size, data, device, groups, lr"),
                       ("ct_prior", "its options: batch_size, data, device, groups, lr, max_rows")):
        with pytest.raises(InputError, match=f"evaluator '{name}': unknown option.s. colour") as err:
            make_evaluator(name, TinyNB201Space(), colour="red")
        assert err.value.hint == hint
    with pytest.raises(InputError, match="dataset '/no/such/folder' does not exist") as err:
        make_evaluator("snip", TinyNB201Space(), data="/no/such/folder")
    assert "an image folder" in err.value.hint


def test_devices_that_cannot_run_a_network_are_refused():
    cases = [("banana", "unknown torch device"), ("meta", "cannot run a network")]
    if not torch.cuda.is_available():
        cases.append(("cuda", "not available on this machine"))
    for device, message in cases:
        with pytest.raises(InputError, match=message):
            make_evaluator("naswot", TinyNB201Space(), device=device, batch_size=8)


def test_batches_take_the_space_input_shape_and_channels(tmp_path):
    """A dataset's (RGB) images are cut to the space's channels or, for more, channel 0 repeated; resized to
    a non-square input; data-free proxies get one image of zeros."""
    path = tmp_path / "rgb.npz"
    np.savez(path, x=np.random.default_rng(0).random((6, 3, 8, 8)).astype(np.float32), y=np.arange(6) % 3)
    ev = EVALUATORS.get("naswot")(TinyNB201Space(), data=str(path), batch_size=4)
    x3, y = ev.batch_for((1, 3, 8, 8))
    assert x3.shape == (4, 3, 8, 8) and y.shape == (4,) and not torch.equal(x3[:, 1], x3[:, 0])
    assert ev.batch_for((1, 3, 8, 8))[0] is x3  # cached
    assert torch.equal(ev.batch_for((1, 1, 8, 8))[0], x3[:, :1])
    x4 = ev.batch_for((1, 4, 8, 8))[0]
    assert x4.shape == (4, 4, 8, 8) and all(torch.equal(x4[:, i], x3[:, 0]) for i in range(4))
    wide = torch.nn.functional.interpolate(x3[:, :1], size=(8, 12), mode="bilinear", align_corners=False)
    assert torch.equal(ev.batch_for((1, 1, 8, 12))[0], wide)
    zeros = ev.batch_for((1, 2, 5, 7), needs_data=False)
    assert zeros[0].shape == (1, 2, 5, 7) and not zeros[0].any() and zeros[1].shape == (1,)
    digits = EVALUATORS.get("naswot")(TinyNB201Space(), batch_size=2).batch_for((1, 3, 8, 12))[0]
    assert digits.shape == (2, 3, 8, 12)  # batch_size 2 is the smallest


def test_an_edgenas_error_while_scoring_is_raised_not_scored():
    """A user's error (here a proxy's own InputError) is not a broken network: it stops the evaluation."""
    from edgenas.evaluate.proxies import Proxy, ProxyEvaluator

    class Refusing(Proxy):
        name = "refusing"

        def score(self, model, batch):
            raise InputError("refused")

    with pytest.raises(InputError, match="refused"):
        ProxyEvaluator(TinyNB201Space(), Refusing(), batch_size=4).evaluate([GOOD])


def test_a_network_that_fails_is_logged_with_its_proxy_and_architecture(caplog):
    space = TinyNB201Space()
    with caplog.at_level("WARNING", logger="edgenas.evaluate.proxies.evaluator"):
        assert EVALUATORS.get("naswot")(space, batch_size=4).evaluate([RAISING])[0] == -math.inf
    assert f"proxy naswot failed on {space.arch_id(RAISING)}" in caplog.text


def test_count_macs_feeds_its_zeros_where_the_model_is():
    """On the meta device (shapes only) as on a GPU: an input made on the CPU would not meet the weights."""
    model = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.Flatten(), nn.Linear(4 * 5 * 5, 2)).to("meta")
    assert count_macs(model, (1, 3, 5, 5)) == 4 * 25 * 3 * 9 + 2 * 100


def test_data_free_proxies_never_read_the_dataset(tmp_path):
    """synflow, params and flops score a batch of zeros: a dataset gone after construction does not matter to
    them, where naswot needs its images."""
    path = tmp_path / "images.npz"
    np.savez(path, x=np.random.default_rng(0).random((6, 3, 8, 8)).astype(np.float32), y=np.arange(6) % 3)
    evaluators = {name: EVALUATORS.get(name)(TinyNB201Space(), data=str(path), batch_size=4)
                  for name in ("synflow", "params", "flops", "naswot")}
    path.unlink()
    for name in ("synflow", "params", "flops"):
        assert math.isfinite(evaluators[name].evaluate([GOOD])[0]), name
    with pytest.raises(InputError):
        evaluators["naswot"].evaluate([GOOD])


def test_compression_of_a_layer_with_constant_features_adds_nothing():
    """All-zero weights: every feature column is constant, centred to 0, no singular value: H = 0, not NaN.
    One live channel: one direction, H = log 1 = 0 (the other channels' zero singular values are left out)."""
    conv = nn.Conv2d(2, 3, 1)
    with torch.no_grad():
        conv.weight.zero_()
        conv.bias.zero_()
    batch = (torch.randn(2, 2, 3, 3), torch.zeros(2, dtype=torch.int64))
    assert make_proxy("compression").score(conv, batch) == 0.0
    with torch.no_grad():
        conv.weight[0, 0] = 1.0
    assert make_proxy("compression").score(conv, batch) == 0.0


def test_trainability_of_micro_batches_that_agree_exactly_is_neg_inf():
    """Four copies of one image and label, two groups: the same gradient twice, noise 0, no ratio."""
    model = nn.Sequential(nn.Flatten(), _weights(nn.Linear(3, 2, bias=False), [1.0, 0.0, -1.0], [0.5, 2.0, 0.0]))
    x = torch.tensor([1.0, 2.0, 3.0]).reshape(1, 3, 1, 1).repeat(4, 1, 1, 1)
    batch = (x, torch.zeros(4, dtype=torch.int64))
    assert make_proxy("trainability", groups=2).score(model, batch) == -math.inf
    assert math.isfinite(make_proxy("trainability", groups=2).score(model, (x * torch.arange(1.0, 5.0).reshape(
        4, 1, 1, 1), batch[1])))


def test_count_macs_runs_in_eval_mode_and_leaves_batchnorm_statistics_alone():
    model = small_net()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    count_macs(model, (1, 3, 16, 16))
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    assert count_macs(nn.Sequential(nn.Flatten(), nn.Linear(4, 3), nn.BatchNorm1d(3)), (1, 4, 1, 1)) == 12


def test_jacob_cov_of_a_constant_jacobian_row_is_neg_inf_without_numpy_warnings():
    """J = (1, 1, 1) for every input: no correlation is defined (std 0), scored -inf before numpy divides by 0."""
    import warnings

    model = nn.Sequential(nn.Flatten(), _weights(nn.Linear(3, 1, bias=False), [1.0, 1.0, 1.0]))
    x, y = torch.randn(2, 3, 1, 1), torch.zeros(2, dtype=torch.int64)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert make_proxy("jacob_cov").score(model, (x, y)) == -math.inf


@pytest.mark.parametrize("name", ["naswot", "compression", "flops"])
def test_proxies_take_their_hooks_off_the_model(name, batch):
    """A hook left on would count into a finished score at every later forward pass, and a model carrying a
    local function cannot be pickled (as one sent to a worker is)."""
    import pickle

    model = small_net()
    assert math.isfinite(make_proxy(name).score(model, batch))
    assert not any(m._forward_hooks for m in model.modules())
    pickle.dumps(model)


def test_trainability_is_the_hand_computed_gradient_signal_to_noise_ratio():
    """W = 0, x1 = (1, 0) of class 0, x2 = (0, 1) of class 1; after the step W x1 = lr (1/4, -1/4) and
    W x2 = -W x1, so with a = sigmoid(-lr / 2) the micro-batch gradients are g1 = [[-a, 0], [a, 0]] and
    g2 = [[0, a], [0, -a]]: ||g1 + g2||^2 = ||g1 - g2||^2 = 4 a^2, score log 1 = 0 (each g_k taken afresh,
    not added to the gradients before it)."""
    model = nn.Sequential(nn.Flatten(), _weights(nn.Linear(2, 2, bias=False), [0.0, 0.0], [0.0, 0.0]))
    batch = (torch.eye(2).reshape(2, 2, 1, 1), torch.tensor([0, 1]))
    assert make_proxy("trainability", groups=2, lr=0.5).score(model, batch) == pytest.approx(0.0, abs=1e-12)


def test_snip_and_grad_norm_are_hand_computed():
    """x = (1, 0) of class 0, W1 = I, W2 = [[1, 0], [0, 0]]: logits (1, 0), dL/dlogits = (-b, b) with b = 1 / (1 + e);
    dW2 = [[-b, 0], [b, 0]], dW1 = [[-b, 0], [0, 0]]. snip = |1 * -b| + |1 * -b| = 2b; grad_norm = b sqrt 2 + b."""
    def model() -> nn.Module:
        return nn.Sequential(nn.Flatten(), _weights(nn.Linear(2, 2, bias=False), [1.0, 0.0], [0.0, 1.0]),
                             _weights(nn.Linear(2, 2, bias=False), [1.0, 0.0], [0.0, 0.0]))

    batch = (torch.tensor([1.0, 0.0]).reshape(1, 2, 1, 1), torch.tensor([0]))
    b = 1 / (1 + math.e)
    assert make_proxy("snip").score(model(), batch) == pytest.approx(2 * b, rel=1e-6)
    assert make_proxy("grad_norm").score(model(), batch) == pytest.approx(b * (1 + math.sqrt(2)), rel=1e-6)


def test_naswot_counts_a_zero_pre_activation_as_inactive():
    """ReLU(0) = 0: codes (0, 1) and (0, 1) agree on both units, K = [[2, 2], [2, 2]] is singular; counting 0 as
    active would make the codes (1, 1) and (0, 1), K = [[2, 1], [1, 2]], log det = log 3."""
    x = torch.tensor([[0.0, 1.0], [-1.0, 1.0]]).reshape(2, 2, 1, 1)
    y = torch.zeros(2, dtype=torch.int64)
    assert make_proxy("naswot").score(nn.Sequential(nn.ReLU(), nn.Flatten()), (x, y)) == -math.inf
    x = torch.tensor([[0.5, -1.0], [-1.0, 0.5]]).reshape(2, 2, 1, 1)  # codes (1, 0), (0, 1): K = 2 I, log 4
    assert make_proxy("naswot").score(nn.Sequential(nn.ReLU(), nn.Flatten()), (x, y)) == pytest.approx(math.log(4))


def test_trainability_without_signal_or_after_a_step_that_overflows_is_neg_inf():
    """x2 = -x1 of one class (W = 0): the two gradients are opposite, their mean is 0 (no step, no signal): -inf
    without numpy's divide-by-zero warning. Inputs of 1e36 step the weights to 2.5e38 (lr 1000): the
    micro-batch logits overflow, the loss is not finite, -inf."""
    import warnings

    def model() -> nn.Module:
        return nn.Sequential(nn.Flatten(), _weights(nn.Linear(2, 2, bias=False), [0.0, 0.0], [0.0, 0.0]))

    batch = (torch.tensor([[1.0, 0.0], [-1.0, 0.0]]).reshape(2, 2, 1, 1), torch.tensor([0, 0]))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert make_proxy("trainability", groups=2).score(model(), batch) == -math.inf
    batch = (torch.eye(2).reshape(2, 2, 1, 1), torch.tensor([0, 1]))
    assert math.isfinite(make_proxy("trainability", groups=2).score(model(), batch))
    assert make_proxy("trainability", groups=2, lr=1000).score(model(), (batch[0] * 1e36, batch[1])) == -math.inf


def test_a_learning_rate_past_the_largest_is_refused():
    """lr=1e39 passed as a positive finite number, then the step raised RuntimeError (alpha past float32) on
    every network: a run of -inf scores."""
    assert make_proxy("trainability", lr=1000).options["lr"] == 1000
    for name in ("trainability", "ct_prior"):
        with pytest.raises(InputError, match="option lr must be at most 1000, got 1e.39"):
            make_evaluator(name, TinyNB201Space(), lr="1e39", batch_size=8)


def test_compression_does_not_depend_on_the_scale_of_the_features():
    """The effective rank of small features (singular values 0.2 and 0.2) is that of large ones: log 2."""
    conv = nn.Conv2d(2, 2, 1, bias=False)
    with torch.no_grad():
        conv.weight.copy_(torch.eye(2).reshape(2, 2, 1, 1))
    x = torch.tensor([[1.0, -1.0], [1.0, -1.0], [1.0, 1.0], [-1.0, -1.0]]).reshape(1, 2, 2, 2)
    for scale in (0.1, 10.0):
        batch = (x * scale, torch.zeros(1, dtype=torch.int64))
        assert make_proxy("compression").score(conv, batch) == pytest.approx(math.log(2))


def test_compression_keeps_max_rows_rows_however_few_channels():
    """4 rows of 3 channels, max_rows=3: a subset of 3 rows (every one of which has an effective rank other than
    the whole matrix's log 2), though the layer has only 3 channels."""
    conv = nn.Conv2d(2, 3, 1)
    with torch.no_grad():
        conv.weight.zero_()
        conv.weight[0, 0] = conv.weight[1, 1] = 1.0
        conv.bias.zero_()
    x = torch.tensor([[1.0, -1.0], [1.0, -1.0], [1.0, 1.0], [-1.0, -1.0]]).reshape(1, 2, 2, 2)
    batch = (x, torch.zeros(1, dtype=torch.int64))
    assert make_proxy("compression", max_rows=4).score(conv, batch) == pytest.approx(math.log(2))
    assert make_proxy("compression", max_rows=3).score(conv, batch) != pytest.approx(math.log(2))

"""DARTS on the mbv3 spaces (path sampling) with a real ``local`` LUT of this machine (``mbv3-tiny``):
the expected latency, the budget repair, a budgeted run whose best.json export takes, exact resume,
bad input."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from tests.protocols import FAST

SPACE = "mbv3-tiny"


@pytest.fixture(scope="module")
def tiny_project(tmp_path_factory):
    from edgenas.datasets import load_digits_images
    from edgenas.fleet.profiler import profile_device
    from edgenas.project import Project

    root = tmp_path_factory.mktemp("darts-mbv3")
    res = profile_device(Project(root), "local", SPACE, protocol=FAST)
    assert res.n_entries > 0
    x, y = load_digits_images(16, n=96, seed=0)
    np.savez(root / "small.npz", x=x.numpy(), y=y.numpy())
    return root


def _predictor(root):
    from edgenas.latency.predictor import LatencyPredictor
    from edgenas.latency.store import LutStore
    from edgenas.spaces import get_space

    return LatencyPredictor(LutStore(root / "luts").latest("local", SPACE), get_space(SPACE))


def _one_hot(space, arch):
    c, n_e = space.config, len(space.config.e_choices)
    ke = [c.ks_choices.index(k) * n_e + c.e_choices.index(e) for k, e in zip(arch.ks, arch.e)]
    oh = torch.nn.functional.one_hot
    return (oh(torch.tensor(ke), len(c.ks_choices) * n_e).double(),
            oh(torch.tensor([c.d_choices.index(d) for d in arch.d]), len(c.d_choices)).double(),
            oh(torch.tensor(c.resolutions.index(arch.r)), len(c.resolutions)).double())


def _assert_lut_sum_at_one_hot(term, pred, space, rng, n):
    """At a one-hot relaxation the expected latency is the LUT prediction of that architecture."""
    for _ in range(n):
        arch = space.sample(rng)
        assert float(term(*_one_hot(space, arch))) == pytest.approx(float(pred.predict_many([arch])[0]), rel=1e-9)


def test_expected_latency_is_the_lut_sum_at_one_hot_and_differentiable(tiny_project):
    from edgenas.search.darts_mbv3 import MBV3Relaxation
    from edgenas.search.darts_mbv3_latency import ExpectedLatencyMBV3

    pred = _predictor(tiny_project)
    space = pred.space
    term = ExpectedLatencyMBV3("local", pred, space)
    rng = np.random.default_rng(0)
    _assert_lut_sum_at_one_hot(term, pred, space, rng, 8)
    relax = MBV3Relaxation(space.config)
    term(*relax.probs()).backward()
    # a deeper first stage costs what its extra blocks cost: the gradient says so. (Their net cost is
    # the measured time less the runtime's overhead, floored at 0: on a loaded machine the overhead of
    # a short profile can exceed a small block's time, and then a deeper stage costs the same.)
    p_ke, p_d, p_r = (p.detach() for p in relax.probs())

    def first_stage_at(i):
        q = p_d.clone()
        q[0] = 0.0
        q[0, i] = 1.0
        return float(term(p_ke, q, p_r))

    extra = first_stage_at(-1) - first_stage_at(0)
    g = relax.alpha_d.grad[0]
    assert extra >= 0.0
    assert (g[-1] > g[0]) if extra > 1e-12 else torch.isclose(g[-1], g[0])
    assert relax.alpha_ke.grad.abs().sum() > 0


def test_repair_brings_the_largest_network_under_budget(tiny_project):
    from edgenas.search.darts_mbv3 import MBV3Relaxation
    from edgenas.search.darts_mbv3_latency import repair_to_budget
    from edgenas.search.darts_mbv3_train import _logp

    pred = _predictor(tiny_project)
    space = pred.space
    c = space.config
    largest = space.from_dict({"ks": [max(c.ks_choices)] * c.n_slots, "e": [max(c.e_choices)] * c.n_slots,
                               "d": [max(c.d_choices)] * c.n_stages, "r": max(c.resolutions)})
    lo, hi = pred.min_latency()[0], float(pred.predict_many([largest])[0])
    budget = lo + 0.5 * (hi - lo)
    arch, steps, how = repair_to_budget(space, largest, _logp(MBV3Relaxation(c)), [pred], [budget])
    assert how == "greedy repair" and steps > 0
    assert float(pred.predict_many([arch])[0]) <= budget
    assert space.from_dict(space.to_dict(arch)) == arch  # a valid network of the space
    same, steps, how = repair_to_budget(space, largest, _logp(MBV3Relaxation(c)), [pred], [hi + 1])
    assert (how, steps) == ("argmax", 0) and same == space.canonical(largest)


def _run(cli, root, out, *extra):
    return cli("search", "--space", SPACE, "--strategy", "darts", "--device", "local",
               "--data", str(root / "small.npz"), "--seed", "3", "--out", str(out), "--json", *extra)


def test_budgeted_run_meets_the_budget_and_exports(cli, tiny_project, tmp_path, monkeypatch):
    from edgenas.spaces import load_arch

    monkeypatch.setenv("EDGENAS_PROJECT", str(tiny_project))
    monkeypatch.setenv("EDGENAS_NO_PROGRESS", "1")
    pred = _predictor(tiny_project)
    rng = np.random.default_rng(0)
    budget = float(np.quantile(pred.predict_many([pred.space.sample(rng) for _ in range(300)]), 0.3))
    r = _run(cli, tiny_project, tmp_path / "run", "--epochs", "1", "--max-latency-ms", f"{budget:.6f}")
    assert r.code == 0, r.err
    rec = r.json()
    space, arch = load_arch(tmp_path / "run" / "best.json")
    assert space.name == SPACE
    assert float(pred.predict_many([arch])[0]) <= budget + 1e-6 and rec["within_budget"]
    assert rec["latency_ms"]["local"] == pytest.approx(float(pred.predict_many([arch])[0]))
    hist = json.loads((tmp_path / "run" / "history.json").read_text())["history"]
    assert len(hist) == 1 and hist[0]["lambda"][0] >= 0
    r = cli("export", str(tmp_path / "run" / "best.json"), "--out", str(tmp_path / "exp"), "--json")
    assert r.code == 0, r.err
    assert (tmp_path / "exp" / "model.onnx").is_file()


def test_resume_is_exact(cli, tiny_project, tmp_path, monkeypatch, interrupt_darts_after):
    monkeypatch.setenv("EDGENAS_PROJECT", str(tiny_project))
    monkeypatch.setenv("EDGENAS_NO_PROGRESS", "1")
    extra = ("--epochs", "2", "--max-latency-ms", "1000")
    r = _run(cli, tiny_project, tmp_path / "full", *extra)
    assert r.code == 0, r.err
    full = r.json()
    disarm = interrupt_darts_after(1)  # kill the run right after epoch 1's checkpoint
    r = _run(cli, tiny_project, tmp_path / "part", *extra)
    assert r.code == 130 and not (tmp_path / "part" / "best.json").exists()
    disarm()
    r = cli("search", "--resume", str(tmp_path / "part"), "--json")
    assert r.code == 0, r.err
    again = r.json()
    assert again["arch"] == full["arch"] and again["probs"] == full["probs"]
    strip = lambda p: [{k: v for k, v in h.items() if k != "epoch_s"}
                       for h in json.loads((p / "history.json").read_text())["history"]]
    assert strip(tmp_path / "part") == strip(tmp_path / "full")


def test_bad_input_is_one_red_line_and_creates_nothing(cli, tiny_project, tmp_path, monkeypatch):
    monkeypatch.setenv("EDGENAS_PROJECT", str(tiny_project))
    out = tmp_path / "run"
    r = _run(cli, tiny_project, out, "--epochs", "1", "--max-latency-ms", "1e-6")
    assert r.code == 4 and "fastest is" in r.err and "Traceback" not in r.err
    r = cli("search", "--space", "mbv3-small", "--strategy", "darts", "--device", "local", "--out", str(out))
    assert r.code != 0 and "no LUT for the mbv3-small space" in r.err and "Traceback" not in r.err
    assert len(r.err.strip().splitlines()) <= 2  # the message and its hint
    r = _run(cli, tiny_project, out, "--skip-dropout", "0.2")
    assert r.code == 2 and "applies to the nb201 cell" in r.err
    assert not out.exists()


def test_two_devices_give_two_terms_and_both_budgets_hold(tiny_project, tmp_path):
    from edgenas.search.darts_mbv3_train import MbDartsConfig, run_mbv3_darts

    pred = _predictor(tiny_project)
    lo = pred.min_latency()[0]
    rng = np.random.default_rng(1)
    med = float(np.median(pred.predict_many([pred.space.sample(rng) for _ in range(300)])))
    budgets = (("local", med), ("local-b", lo + 0.25 * (med - lo)))  # the same LUT under a second name
    cfg = MbDartsConfig(space=SPACE, data=str(tiny_project / "small.npz"), epochs=1, seed=0, devices=budgets)
    rec = run_mbv3_darts(cfg, [("local", pred), ("local-b", pred)], tmp_path / "run")
    hist = json.loads((tmp_path / "run" / "history.json").read_text())["history"]
    assert len(hist[0]["lambda"]) == 2 and hist[0]["lambda"][1] >= hist[0]["lambda"][0]
    assert rec["within_budget"] and all(rec["latency_ms"][n] <= b for n, b in budgets)


def test_a_repaired_network_is_the_runs_last_evaluation_and_its_best(tiny_project, tmp_path):
    """The budget repair's network is none of the epochs' argmax networks: the run's records pointed the
    chosen network at the last epoch's (``runs show``, ``runs stale`` read that one's latency)."""
    from edgenas.search.darts_mbv3_train import MbDartsConfig, run_mbv3_darts
    from edgenas.search.record import darts_best_number, darts_log

    pred = _predictor(tiny_project)
    lo = pred.min_latency()[0]
    rng = np.random.default_rng(1)
    med = float(np.median(pred.predict_many([pred.space.sample(rng) for _ in range(300)])))
    cfg = MbDartsConfig(space=SPACE, data=str(tiny_project / "small.npz"), epochs=2, seed=0, lambda_lr=0.0,
                        devices=(("local", lo + 0.05 * (med - lo)),))
    rec = run_mbv3_darts(cfg, [("local", pred)], tmp_path / "run")
    assert rec["derivation"] != "argmax" and rec["repair_steps"] > 0 and rec["within_budget"]
    log = darts_log(tmp_path / "run", cfg.to_json(), rec)
    assert [e["number"] for e in log] == [0, 1, 2] and darts_best_number(rec) == 2 == rec["number"]
    assert log[-1]["arch"] == rec["arch"] and log[-1]["latency_ms"] == rec["latency_ms"] and log[-1]["feasible"]
    assert log[1]["arch"] == rec["argmax_arch"] and not log[1]["feasible"]


def test_ofa_w12_relaxation_on_the_published_note10_table():
    from pathlib import Path

    from edgenas.latency.ofa_import import import_ofa_lut
    from edgenas.latency.predictor import LatencyPredictor
    from edgenas.search.darts_mbv3 import MBV3Relaxation, sampled_forward
    from edgenas.search.darts_mbv3_latency import ExpectedLatencyMBV3
    from edgenas.spaces import get_space
    from edgenas.supernet.model import MBV3Supernet

    folder = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "ofa_note10_lut"
    if not folder.is_dir():
        pytest.skip(f"needs the reference data {folder}")
    space = get_space("ofa-mbv3-w12")
    pred = LatencyPredictor(import_ofa_lut(folder), space)
    term = ExpectedLatencyMBV3("note10", pred, space)
    rng = np.random.default_rng(0)
    _assert_lut_sum_at_one_hot(term, pred, space, rng, 3)
    relax = MBV3Relaxation(space.config)
    assert pred.min_latency()[0] < float(term(*relax.probs()).detach()) < float(pred.predict_many([space.sample(rng)])[0]) * 3
    path = relax.gumbel_sample(torch.Generator().manual_seed(0), 1.0)
    sampled_forward(MBV3Supernet(space.config), relax, torch.randn(1, 3, 160, 160), path).sum().backward()
    assert relax.alpha_r.grad is not None and relax.alpha_ke.grad.abs().sum() > 0


def test_multiplier_follows_the_derived_network_with_clipped_steps_and_warmups(cli, tiny_project, tmp_path,
                                                                            monkeypatch):
    from edgenas.search.darts_mbv3 import MBV3Relaxation
    from edgenas.search.darts_mbv3_latency import ExpectedLatencyMBV3
    from edgenas.search.darts_mbv3_train import MbDartsConfig, run_mbv3_darts
    from edgenas.search.darts_train import multiplier_step, warmup_epochs

    # the rule shared with nb201: the derived latency's relative excess, clipped to [-1, 1], floored at 0
    assert multiplier_step(0.0, 3.0, 1.0, 0.05) == pytest.approx(0.05)      # +200% excess: one clipped step
    assert multiplier_step(0.1, 0.5, 1.0, 0.05) == pytest.approx(0.075)     # 50% under: lowered
    assert multiplier_step(0.01, 0.0, 1.0, 0.05) == 0.0                     # floored
    assert warmup_epochs(5, 0.2, 0.4) == (1, 2)
    pred = _predictor(tiny_project)
    lo = pred.min_latency()[0]
    cfg = MbDartsConfig(space=SPACE, data=str(tiny_project / "small.npz"), epochs=5, seed=0,
                        devices=(("local", lo * 1.0001),))  # only the fastest networks meet it
    run_mbv3_darts(cfg, [("local", pred)], tmp_path / "run")
    hist = json.loads((tmp_path / "run" / "history.json").read_text())["history"]
    with torch.no_grad():
        uniform = float(ExpectedLatencyMBV3("local", pred, pred.space)(*MBV3Relaxation(pred.space.config).probs()))
    assert hist[0]["expected_ms"]["local"] == pytest.approx(uniform)  # epoch 1: weights only, alphas untouched
    assert hist[0]["lambda"] == [0.0] and hist[1]["lambda"] == [0.0]  # epochs 1-2: no latency term
    for h in hist[2:]:  # after the warm-up the multiplier moves at most lambda_lr per step
        assert 0.0 <= h["lambda"][0] <= cfg.lambda_lr * 3 * (h["epoch"] - 2)  # <= 3 steps per epoch (48 images)
    # a run of the first rule's schema is refused on resume with one line, nothing more written
    monkeypatch.setenv("EDGENAS_PROJECT", str(tiny_project))
    monkeypatch.setenv("EDGENAS_NO_PROGRESS", "1")
    old = tmp_path / "old"
    assert _run(cli, tiny_project, old, "--epochs", "1").code == 0
    saved = json.loads((old / "config.json").read_text())
    assert saved["schema"] == 4 and saved["lambda_rule"] == "derived"
    (old / "config.json").write_text(json.dumps({**saved, "schema": 3}))
    (old / "best.json").unlink()
    before = sorted(p.name for p in old.iterdir())
    r = cli("search", "--resume", str(old), "--json")
    assert r.code == 2 and "schema 3" in r.err and "Traceback" not in r.err
    assert sorted(p.name for p in old.iterdir()) == before and not (old / "best.json").exists()


def test_import_keeps_the_devices_of_a_run_whose_budget_todays_table_cannot_meet(cli, tiny_project, tmp_path,
                                                                               monkeypatch):
    """The retry without budgets re-read them from the run's config.json (a driver's resume does), failed
    again, and the run was recorded with unknown devices and the request's objective (cifar10_test)."""
    import dataclasses
    import shutil

    from edgenas.latency.store import LutStore
    from edgenas.project import Project
    from edgenas.search.launch import import_run
    from edgenas.store import open_db

    proj = tmp_path / "proj"
    shutil.copytree(tiny_project, proj)
    monkeypatch.setenv("EDGENAS_PROJECT", str(proj))
    monkeypatch.setenv("EDGENAS_NO_PROGRESS", "1")
    budget = float(f"{_predictor(proj).min_latency()[0] * 1.05:.6f}")
    r = _run(cli, proj, tmp_path / "run", "--epochs", "1", "--max-latency-ms", str(budget))
    assert r.code == 0, r.err
    started = json.loads((tmp_path / "run" / "tables.json").read_text())["tables"]["local"]
    store = LutStore(proj / "luts")
    lut = store.latest("local", SPACE)
    store.save(dataclasses.replace(lut, reference=dict(lut.reference, ms=lut.reference["ms"] * 3)))  # 3x slower
    assert _predictor(proj).min_latency()[0] > budget
    rec = import_run(open_db(f"sqlite:///{tmp_path / 'imported.db'}"), Project(proj), tmp_path / "run")
    assert rec.objective == "accuracy"
    assert [(d.device, d.kind, d.lut_hash, d.budget_ms) for d in rec.devices] == [("local", "lut", started, budget)]


def _peaked(relax, ke, d, r, gap=100.0):
    """Architecture weights whose every decision puts (almost) all its probability on one choice."""
    with torch.no_grad():
        for alpha, idx in ((relax.alpha_ke, ke), (relax.alpha_d, d), (relax.alpha_r[None], (r,))):
            alpha.zero_()
            for row, i in enumerate(idx):
                alpha[row, i] = gap


def test_every_sample_and_the_argmax_decode_to_the_choices_the_weights_favour():
    from edgenas.search.darts_mbv3 import MBV3Relaxation
    from edgenas.spaces import get_space

    c = get_space(SPACE).config
    relax = MBV3Relaxation(c)
    n_e, n_k = len(c.e_choices), len(c.ks_choices)
    ke = tuple(min(i + 1, n_k * n_e - 1) for i in range(c.n_slots))  # two slots share a choice, one choice is unused
    d = (len(c.d_choices) - 1,) * c.n_stages
    r = len(c.resolutions) - 1
    _peaked(relax, ke, d, r)
    gen = torch.Generator().manual_seed(0)
    for path in (relax.argmax(), relax.sample(gen), relax.gumbel_sample(gen, 0.5), relax.gumbel_sample(gen, 5.0)):
        assert (path.ke, path.d, path.r) == (ke, d, r)
    arch = relax.to_arch(ke, d, r)
    assert arch.ks == tuple(c.ks_choices[i // n_e] for i in ke) and arch.e == tuple(c.e_choices[i % n_e] for i in ke)
    assert arch.d == tuple(c.d_choices[i] for i in d) and arch.r == c.resolutions[r]
    assert len(set(arch.ks)) > 1 and len(set(arch.e)) > 1  # both halves of the joint index are read
    p_ke, p_d, p_r = (p.detach() for p in relax.probs())
    assert torch.allclose(p_ke.sum(-1), torch.ones(c.n_slots)) and float(p_ke[0, ke[0]]) > 0.99
    assert all(float(p_d[s, d[s]]) > 0.99 for s in range(c.n_stages))  # each decision's own distribution
    assert float(p_r[r]) > 0.99 and float(p_r.sum()) == pytest.approx(1.0)
    uniform = MBV3Relaxation(c)  # from zeros: every choice equally likely, drawn in proportion
    draws = [uniform.sample(gen).r for _ in range(200)]
    assert set(draws) == set(range(len(c.resolutions)))


def test_a_sampled_path_runs_the_supernets_own_network_and_its_gates_reach_only_the_decisions_it_took():
    """The sampled forward is ``MBV3Supernet.forward`` of the sampled network (the gates are 1 in value);
    the architecture step's gradient reaches the logits of every decision the path took, and only those."""
    from edgenas.search.darts_mbv3 import MBV3Relaxation, sampled_forward
    from edgenas.spaces import get_space
    from edgenas.supernet.model import MBV3Supernet, resize

    c = get_space(SPACE).config
    with torch.random.fork_rng():
        torch.manual_seed(0)
        net = MBV3Supernet(c).eval()
        x = torch.randn(2, c.in_channels, max(c.resolutions), max(c.resolutions))
    relax = MBV3Relaxation(c)
    gen = torch.Generator().manual_seed(1)
    small = (0,) * c.n_stages  # the shallowest stages: slots past depth 1 are skipped
    paths = [relax.sample(gen) for _ in range(3)] + [relax.gumbel_sample(gen, 1.0) for _ in range(3)]
    for path in paths:
        arch = relax.to_arch(path.ke, path.d, path.r)
        y = sampled_forward(net, relax, x, path)
        net.set_active(arch)
        assert torch.allclose(y, net(resize(x, arch.r)), atol=1e-5)
    _peaked(relax, [0] * c.n_slots, small, 0, gap=30.0)  # the sampled depths are the smallest ...
    path = relax.gumbel_sample(torch.Generator().manual_seed(2), 20.0)  # ... and the soft sample is not one-hot
    assert path.d == small
    sampled_forward(net, relax, x, path).square().sum().backward()
    ran = [j < c.d_choices[0] for j in range(c.max_depth)] * c.n_stages
    rows = relax.alpha_ke.grad.abs().sum(-1)
    assert all((float(g) > 0) == took for g, took in zip(rows, ran)), rows
    assert (relax.alpha_d.grad.abs().sum(-1) > 0).all() and relax.alpha_r.grad is not None


@pytest.mark.parametrize("bad, fragment", [
    ({"lr": 0.0}, "lr, arch_lr > 0"), ({"arch_lr": 0.0}, "lr, arch_lr > 0"), ({"lambda_lr": -0.01}, ">= 0"),
    ({"lr": 1e39}, "at most 1e+30"), ({"arch_lr": float("nan")}, "arch_lr=nan"),
    ({"lambda_lr": float("inf")}, "lambda_lr must be a finite number"),
    ({"latency_weight": float("inf")}, "latency_weight must be a finite number"),
    ({"latency_weight": -0.01}, ">= 0"), ({"tau_end": 0.0}, "0 < tau_end"),
    ({"tau_start": 1.0, "tau_end": 1.5}, "tau_end <= tau_start"), ({"arch_warmup": 1.0}, "< 1"),
    ({"latency_warmup": -0.1}, "0 <= arch_warmup"), ({"lambda_rule": "min"}, "'min'"),
    ({"epochs": 0}, "epochs must be"), ({"batch_size": 0}, "batch_size must be"), ({"seed": -1}, "seed must be"),
    ({"space": "nb201"}, "nb201"), ({"devices": (("a", 0.0),)}, "device 'a': a latency budget must be"),
    ({"devices": (("a", 1.0), ("b", -2.0))}, "device 'b'"), ({"devices": (("a", float("nan")),)}, "nan"),
    ({"devices": (("a", float("inf")),)}, "inf"),
])
def test_the_config_refuses_each_setting_out_of_range(bad, fragment):
    from edgenas.errors import InputError
    from edgenas.search.darts_mbv3_train import MbDartsConfig

    with pytest.raises(InputError) as exc:
        MbDartsConfig(**{"space": SPACE, **bad})
    assert fragment in str(exc.value)


def test_the_config_takes_its_edge_values_anneals_tau_and_reads_back_its_own_record():
    from edgenas.errors import InputError
    from edgenas.search.darts_mbv3_train import MbDartsConfig

    edge = MbDartsConfig(space=SPACE, lambda_lr=0.0, latency_weight=0.0, arch_warmup=0.0, latency_warmup=0.0,
                         tau_start=2.0, tau_end=2.0, lambda_rule="max", epochs=1, devices=(("a", 3), ("b", None)))
    assert edge.devices == (("a", 3.0), ("b", None)) and edge.tau(0) == 2.0
    cfg = MbDartsConfig(space=SPACE, epochs=5, tau_start=4.0, tau_end=0.25)
    assert [cfg.tau(e) for e in range(5)] == pytest.approx([4.0, 2.0, 1.0, 0.5, 0.25])
    two = MbDartsConfig(space=SPACE, epochs=2, tau_start=4.0, tau_end=0.25)  # the last epoch's is tau_end
    assert [two.tau(e) for e in range(2)] == pytest.approx([4.0, 0.25])
    assert MbDartsConfig(space=SPACE, epochs=1).tau(0) == 5.0
    assert MbDartsConfig.from_json(edge.to_json()) == edge and edge.to_json()["schema"] == 4
    with pytest.raises(InputError, match="schema 3"):
        MbDartsConfig.from_json({**edge.to_json(), "schema": 3})
    with pytest.raises(InputError, match="schema 4.0"):  # 4.0 == 4 in Python
        MbDartsConfig.from_json({**edge.to_json(), "schema": 4.0})


def test_budgets_pair_with_devices_none_one_for_all_or_one_each():
    from edgenas.errors import InputError
    from edgenas.search.darts_launch import device_budgets

    assert device_budgets([], []) == () and device_budgets(["a", "b"], []) == (("a", None), ("b", None))
    assert device_budgets(["a", "b"], [3.0]) == (("a", 3.0), ("b", 3.0))
    assert device_budgets(["a", "b"], [3.0, 4.0]) == (("a", 3.0), ("b", 4.0))
    with pytest.raises(InputError, match="2 latency budgets for 3 devices"):
        device_budgets(["a", "b", "c"], [3.0, 4.0])
    with pytest.raises(InputError, match="needs a device"):
        device_budgets([], [3.0])


def test_a_device_listed_twice_is_refused_before_the_run_folder(cli, tiny_project, tmp_path, monkeypatch):
    """``--device local --device local``: the run trained two latency terms under one name, and its
    best.json kept one of the two budgets."""
    monkeypatch.setenv("EDGENAS_PROJECT", str(tiny_project))
    monkeypatch.setenv("EDGENAS_NO_PROGRESS", "1")
    for space in (SPACE, "nb201"):
        r = cli("search", "--space", space, "--strategy", "darts", "--device", "local", "--device", "local",
                "--max-latency-ms", "1000", "--max-latency-ms", "2000", "--epochs", "1",
                "--data", str(tiny_project / "small.npz"), "--out", str(tmp_path / "run"))
        assert r.code == 2 and "device listed twice: local, local" in r.err and "Traceback" not in r.err, r.err
    assert not (tmp_path / "run").exists()


def test_the_mbv3_config_takes_given_options_only_and_refuses_the_nb201_ones_before_anything_is_written(tmp_path):
    from edgenas.errors import InputError
    from edgenas.project import Project
    from edgenas.search.darts_launch import mbv3_darts_config, prepare_darts
    from edgenas.search.drivers import Darts
    from edgenas.search.launch import SearchRequest

    def config(space="mbv3-tiny", **given):
        req = SearchRequest(space=space, strategy="darts", devices=("a", "b"), max_latency_ms=(2.0, 3.0), seed=4,
                            strategy_options=given)
        return req, Darts.validate_options(given)

    cfg = mbv3_darts_config(*config(lr=0.1, lambda_rule="max", epochs=2, latency_weight=0.5, data="x.npz"))
    assert (cfg.space, cfg.seed, cfg.devices, cfg.lr, cfg.lambda_rule) == (SPACE, 4, (("a", 2.0), ("b", 3.0)),
                                                                         0.1, "max")
    assert (cfg.epochs, cfg.latency_weight, cfg.data) == (2, 0.5, "x.npz")
    assert (cfg.arch_lr, cfg.batch_size) == (0.01, 32)  # not given: the relaxation's defaults, not nb201's
    for key, value in (("skip_dropout", 0.2), ("selection", "alpha"), ("pt_samples", 5)):
        with pytest.raises(InputError, match=f"{key} applies to the nb201 cell"):
            mbv3_darts_config(*config(**{key: value}))
    req, opts = config("nb201", lambda_rule="max")
    with pytest.raises(InputError, match="lambda_rule applies to the mbv3 spaces"):
        prepare_darts(Project(tmp_path / "proj"), req, opts, tmp_path / "run")
    assert not any(tmp_path.iterdir())


def test_a_calibrated_table_gives_the_calibrated_prediction_and_a_table_of_another_space_is_refused(tiny_project):
    import dataclasses

    from edgenas.errors import InputError
    from edgenas.latency.lut import Calibration
    from edgenas.latency.predictor import LatencyPredictor
    from edgenas.search.darts_mbv3_latency import ExpectedLatencyMBV3
    from edgenas.spaces import get_space

    pred = _predictor(tiny_project)
    space = pred.space
    cal = LatencyPredictor(dataclasses.replace(pred.lut, calibration=Calibration("loglinear", {"a": 0.4, "b": 1.3}, 3)),
                           space)
    term = ExpectedLatencyMBV3("local", cal, space)
    rng = np.random.default_rng(3)
    _assert_lut_sum_at_one_hot(term, cal, space, rng, 4)
    arch = space.sample(rng)
    assert cal.predict_many([arch])[0] != pytest.approx(pred.predict_many([arch])[0], rel=1e-3)  # it does calibrate
    with pytest.raises(InputError, match="needs a per-block LUT for the mbv3-small space"):
        ExpectedLatencyMBV3("local", pred, get_space("mbv3-small"))


@pytest.mark.parametrize("text", ["[1, 2]", '"mbv3-tiny"', "null", "3"])
def test_resuming_a_run_whose_config_is_no_object_is_one_error_and_changes_nothing(tmp_path, text):
    from edgenas.errors import InputError
    from edgenas.project import Project
    from edgenas.search.darts_launch import prepare_darts
    from edgenas.search.launch import SearchRequest

    run = tmp_path / "run"
    run.mkdir()
    (run / "config.json").write_text(text)
    with pytest.raises(InputError, match="not a DARTS run config"):
        prepare_darts(Project(tmp_path / "proj"), SearchRequest(space=SPACE, strategy="darts"), {}, run, resume=True)
    assert [p.name for p in tmp_path.iterdir()] == ["run"] and (run / "config.json").read_text() == text


def test_a_run_refuses_mismatched_devices_a_taken_folder_a_missing_or_changed_run_and_a_wide_dataset(tmp_path):
    from edgenas.errors import InputError
    from edgenas.search.darts_mbv3_train import MbDartsConfig, run_mbv3_darts

    x = np.zeros((24, 3, 16, 16), dtype=np.float32)
    np.savez(tmp_path / "wide.npz", x=x, y=np.arange(24) % 12)  # 12 classes; the tiny head has 10
    cfg = MbDartsConfig(space=SPACE, data=str(tmp_path / "wide.npz"), epochs=1)
    with pytest.raises(InputError, match=r"latency models \['x'\] do not match"):
        run_mbv3_darts(cfg, [("x", None)], tmp_path / "run")
    with pytest.raises(InputError, match="holds no DARTS run to resume"):
        run_mbv3_darts(cfg, [], tmp_path / "run", resume=True)
    with pytest.raises(InputError, match="has 12 classes; the mbv3-tiny head has 10"):
        run_mbv3_darts(cfg, [], tmp_path / "run")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["wide.npz"]
    run = tmp_path / "run"
    run.mkdir()
    (run / "config.json").write_text(json.dumps(cfg.to_json()))
    with pytest.raises(InputError, match="already holds a search run"):
        run_mbv3_darts(cfg, [], run)
    with pytest.raises(InputError, match="the config differs"):
        run_mbv3_darts(MbDartsConfig(space=SPACE, data=cfg.data, epochs=2), [], run, resume=True)
    (run / "config.json").write_text(json.dumps({**cfg.to_json(), "schema": 3}))
    with pytest.raises(InputError, match="schema 3"):
        run_mbv3_darts(cfg, [], run, resume=True)
    assert [p.name for p in run.iterdir()] == ["config.json"]


def test_one_architecture_step_moves_the_multiplier_by_each_rule_and_a_latency_weight_lowers_the_latency(
        tiny_project, tmp_path):
    """One epoch of one batch: one architecture step from uniform weights. The derived rule steps by the
    derived network's clipped excess; the first ("max") rule by the larger of E[latency] (uniform, before
    the step) and the derived latency, unclipped. Without a budget the multiplier stays 0 and a latency
    weight pulls the expected latency down."""
    from edgenas.search.darts_mbv3 import MBV3Relaxation
    from edgenas.search.darts_mbv3_latency import ExpectedLatencyMBV3
    from edgenas.search.darts_mbv3_train import MbDartsConfig, run_mbv3_darts

    pred = _predictor(tiny_project)
    with torch.no_grad():
        uniform = float(ExpectedLatencyMBV3("local", pred, pred.space)(*MBV3Relaxation(pred.space.config).probs()))
    b = pred.min_latency()[0] * 1.0001

    def epoch(name, devices, **kw):
        cfg = MbDartsConfig(space=SPACE, data=str(tiny_project / "small.npz"), epochs=1, seed=0, devices=devices,
                            **kw)
        run_mbv3_darts(cfg, [("local", pred)], tmp_path / name)
        return json.loads((tmp_path / name / "history.json").read_text())["history"][0]

    h = epoch("derived", (("local", b),), lambda_lr=0.5)
    assert h["lambda"][0] == pytest.approx(0.5 * min(1.0, h["derived_ms"]["local"] / b - 1.0))
    h = epoch("max", (("local", b),), lambda_lr=0.5, lambda_rule="max")
    assert h["lambda"][0] == pytest.approx(0.5 * (max(uniform, h["derived_ms"]["local"]) / b - 1.0))
    plain = epoch("plain", (("local", None),), arch_lr=0.2)
    weighted = epoch("weighted", (("local", None),), arch_lr=0.2, latency_weight=100.0)
    assert plain["lambda"] == weighted["lambda"] == [0.0]
    assert weighted["expected_ms"]["local"] < min(uniform, plain["expected_ms"]["local"])


def test_both_samplers_draw_each_choice_with_its_probability():
    """The weight step's multinomial draw and the architecture step's Gumbel-max draw both follow softmax(alpha)
    (with the Gumbel noise subtracted instead of added, the least likely of 4 choices came half as often)."""
    from edgenas.search.darts_mbv3 import MBV3Relaxation
    from edgenas.spaces import get_space

    relax = MBV3Relaxation(get_space(SPACE).config)
    n = relax.alpha_ke.shape[1]
    p = torch.arange(1, n + 1, dtype=torch.float64) / (n * (n + 1) / 2)
    with torch.no_grad():
        relax.alpha_ke.copy_(p.log().expand_as(relax.alpha_ke))
    gen = torch.Generator().manual_seed(0)
    for draw in (lambda: relax.sample(gen), lambda: relax.gumbel_sample(gen, 1.0)):
        ke = torch.tensor([draw().ke for _ in range(1000)]).flatten()
        assert torch.allclose(torch.bincount(ke, minlength=n).double() / ke.numel(), p, atol=0.02)


def test_a_budget_of_exactly_the_fastest_networks_latency_is_accepted(tiny_project):
    from edgenas.errors import InfeasibleError
    from edgenas.project import Project
    from edgenas.search.darts_mbv3_launch import latency_models
    from edgenas.search.darts_mbv3_train import MbDartsConfig

    lo = _predictor(tiny_project).min_latency()[0]
    got = latency_models(Project(tiny_project), MbDartsConfig(space=SPACE, devices=(("local", lo),)))
    assert [n for n, _ in got] == ["local"] and got[0][1].min_latency()[0] == lo
    with pytest.raises(InfeasibleError, match="fastest is"):
        latency_models(Project(tiny_project), MbDartsConfig(space=SPACE, devices=(("local", lo * 0.999),)))


def test_a_diverging_run_is_one_error_and_a_checkpoint_past_the_last_epoch_is_refused(tiny_project, tmp_path):
    """As on nb201: an lr too high went on and derived a network from NaN weights, and a checkpoint.json edited
    to an epoch past the run's last was taken (more evaluations than epochs)."""
    from edgenas.errors import EdgenasError, InputError
    from edgenas.search.darts_mbv3_train import MbDartsConfig, run_mbv3_darts

    data = str(tiny_project / "small.npz")
    # the alphas frozen in epoch 1: its first weight step's loss is finite, the second's (on the overflowed
    # weights) is not, and the error names that loss (without its check the weights' named the wrong one)
    with pytest.raises(EdgenasError, match=r"diverged in epoch 1 \(a training loss NaN or infinite\); no checkpoint "
                                           r"was saved"):
        run_mbv3_darts(MbDartsConfig(space=SPACE, data=data, epochs=2, batch_size=16, seed=0, lr=1e30,
                                     arch_warmup=0.5), [], tmp_path / "nan")
    assert sorted(p.name for p in (tmp_path / "nan").iterdir()) == ["config.json"]
    cfg = MbDartsConfig(space=SPACE, data=data, epochs=1, seed=0)
    run_mbv3_darts(cfg, [], tmp_path / "run")
    ck = tmp_path / "run" / "checkpoint.json"
    meta = json.loads(ck.read_text())
    ck.write_text(json.dumps(dict(meta, epoch=2, history=meta["history"] + [dict(meta["history"][-1], epoch=2)])))
    before = {p.name: p.read_bytes() for p in (tmp_path / "run").iterdir()}
    with pytest.raises(InputError, match="checkpoint of epoch 2 in a run of 1 epochs"):
        run_mbv3_darts(cfg, [], tmp_path / "run", resume=True)
    assert {p.name: p.read_bytes() for p in (tmp_path / "run").iterdir()} == before


def test_the_weight_step_trains_the_supernet(tiny_project, tmp_path):
    """The stem, the head and the sampled paths leave their initial values after an epoch (the weight step's
    backward and step were each removable with every test passing)."""
    from safetensors.torch import load_file

    from edgenas.search.darts_mbv3_train import MbDartsConfig, run_mbv3_darts
    from edgenas.spaces import get_space
    from edgenas.supernet.model import MBV3Supernet

    cfg = MbDartsConfig(space=SPACE, data=str(tiny_project / "small.npz"), epochs=1, seed=0)
    run_mbv3_darts(cfg, [], tmp_path / "run")
    after = load_file(str(tmp_path / "run" / "checkpoint.safetensors"))
    with torch.random.fork_rng():
        torch.manual_seed(cfg.seed)
        before = MBV3Supernet(get_space(SPACE).config).state_dict()
    weights = [k for k, v in before.items() if v.is_floating_point() and v.dim() >= 2]
    moved = {k for k in weights if not torch.equal(before[k], after[f"net.{k}"])}
    # a path that no sample took (a fourth block at depth 3, a 5x5-to-3x3 transform) keeps its initial weights
    assert {k for k in weights if not k.startswith("blocks.")} <= moved and len(moved) > len(weights) / 2


def test_a_resume_refused_for_its_checkpoint_leaves_the_run_folder_byte_for_byte(tmp_path):
    """As on nb201: a config.json in another layout (compact) is the same config; the refused resume rewrote it."""
    from edgenas.datasets import load_digits_images
    from edgenas.errors import InputError
    from edgenas.search.darts_mbv3_train import MB_DARTS_SCHEMA, MbDartsConfig, run_mbv3_darts

    x, y = load_digits_images(16, n=24, seed=0)
    np.savez(tmp_path / "d.npz", x=x.numpy(), y=y.numpy())
    cfg = MbDartsConfig(space=SPACE, data=str(tmp_path / "d.npz"), epochs=1)
    run = tmp_path / "run"
    run.mkdir()
    (run / "config.json").write_text(json.dumps(cfg.to_json()))
    (run / "checkpoint.json").write_text(json.dumps({"schema": MB_DARTS_SCHEMA, "epoch": 1, "lambda": [-1.0],
                                                     "history": [{"epoch": 1, "arch": {}, "derived_ms": {}}]}))
    before = {p.name: p.read_bytes() for p in run.iterdir()}
    with pytest.raises(InputError, match="malformed checkpoint"):
        run_mbv3_darts(cfg, [], run, resume=True)
    assert {p.name: p.read_bytes() for p in run.iterdir()} == before


def test_a_finite_loss_whose_step_leaves_non_finite_weights_is_one_error_and_the_last_checkpoint_is_kept(tmp_path):
    """lr 1e12 with the alphas frozen (one step an epoch): epoch 2's loss is finite, but its step (weight decay on
    weights of ~1e13) overflows them; no later loss sees them, and the run went on to checkpoint and derive a
    network from NaN weights unless the weights themselves are checked."""
    from safetensors.torch import load_file

    from edgenas.datasets import load_digits_images
    from edgenas.errors import EdgenasError
    from edgenas.search.darts_mbv3_train import MbDartsConfig, run_mbv3_darts

    x, y = load_digits_images(16, n=24, seed=0)
    np.savez(tmp_path / "d.npz", x=x.numpy(), y=y.numpy())
    cfg = MbDartsConfig(space=SPACE, data=str(tmp_path / "d.npz"), epochs=3, batch_size=12, lr=7e11, arch_warmup=0.7)
    with pytest.raises(EdgenasError, match=r"diverged in epoch 2 \(weights NaN or infinite\); the checkpoint of "
                                           r"epoch 1 .* is unchanged"):
        run_mbv3_darts(cfg, [], tmp_path / "run")
    run = tmp_path / "run"
    assert sorted(p.name for p in run.iterdir()) == ["checkpoint.json", "checkpoint.safetensors", "config.json"]
    assert json.loads((run / "checkpoint.json").read_text())["epoch"] == 1
    assert all(bool(t.isfinite().all()) for t in load_file(str(run / "checkpoint.safetensors")).values())
    # lr 1e30 and the alphas trained from the first epoch: the weight step's loss is finite, the architecture
    # step's forward (on the overflowed weights) is not, and the error says which loss it was
    with pytest.raises(EdgenasError, match=r"diverged in epoch 1 \(an architecture loss NaN or infinite\); no chec"):
        run_mbv3_darts(MbDartsConfig(space=SPACE, data=cfg.data, epochs=1, batch_size=12, lr=1e30), [], tmp_path / "a")


def test_a_run_trains_on_one_thread_and_gives_the_callers_threads_back(tmp_path):
    """One intra-op thread while it trains, the caller's count after it, also after an error (the tests run with
    OMP_NUM_THREADS=1: either call was removable with every test passing)."""
    from edgenas.datasets import load_digits_images
    from edgenas.errors import EdgenasError
    from edgenas.search.darts_mbv3_train import MbDartsConfig, run_mbv3_darts

    x, y = load_digits_images(16, n=24, seed=0)
    np.savez(tmp_path / "d.npz", x=x.numpy(), y=y.numpy())
    seen, before = [], torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        cfg = MbDartsConfig(space=SPACE, data=str(tmp_path / "d.npz"), epochs=2, batch_size=12)
        run_mbv3_darts(cfg, [], tmp_path / "run", progress=lambda e, n: seen.append((e, n, torch.get_num_threads())))
        assert seen == [(1, 2, 1), (2, 2, 1)] and torch.get_num_threads() == 2
        with pytest.raises(EdgenasError, match="diverged"):
            run_mbv3_darts(MbDartsConfig(space=SPACE, data=cfg.data, epochs=1, lr=1e30), [], tmp_path / "nan")
        assert torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(before)


def test_the_same_seed_gives_the_same_search_whatever_torchs_global_state(tmp_path):
    """The supernet's initial weights come from the run's seed, not from torch's global generator (the seeding
    was removable: resume restores the weights, and no test ran one config twice)."""
    from edgenas.datasets import load_digits_images
    from edgenas.search.darts_mbv3_train import MbDartsConfig, run_mbv3_darts

    x, y = load_digits_images(16, n=24, seed=0)
    np.savez(tmp_path / "d.npz", x=x.numpy(), y=y.numpy())
    cfg = MbDartsConfig(space=SPACE, data=str(tmp_path / "d.npz"), epochs=1, batch_size=12, arch_warmup=0.0)
    runs = []
    for name, state in (("a", 1), ("b", 2)):
        with torch.random.fork_rng():  # the global state of the other tests is left as it was
            torch.manual_seed(state)
            rec = run_mbv3_darts(cfg, [], tmp_path / name)
        hist = json.loads((tmp_path / name / "history.json").read_text())["history"]
        runs.append((rec["probs"], rec["arch"], [{k: v for k, v in h.items() if k != "epoch_s"} for h in hist]))
    assert runs[0] == runs[1]
    assert (rec["derivation"], rec["number"], rec["evaluations"]) == ("argmax", 0, 1)  # the epoch's own network


def test_a_device_without_a_budget_beside_one_with_a_budget_of_exactly_its_fastest(tmp_path):
    """Only the budgeted device's multiplier moves (listed second: skipping the first must not end the update),
    best.json's within_budget reads the budgeted one only, and a budget of exactly the fastest network's latency
    is met; one below it is not (synthetic tables, no profiling)."""
    from edgenas.datasets import load_digits_images
    from edgenas.latency.predictor import LatencyPredictor
    from edgenas.search.darts_mbv3_train import MbDartsConfig, run_mbv3_darts
    from edgenas.spaces import get_space
    from tests.search.tables import random_lut

    x, y = load_digits_images(16, n=24, seed=0)
    np.savez(tmp_path / "d.npz", x=x.numpy(), y=y.numpy())
    space = get_space(SPACE)
    models = [(n, LatencyPredictor(random_lut(SPACE, seed, device=n, high_ms=3.0), space))
              for n, seed in (("a", 0), ("b", 2))]
    lo = models[1][1].min_latency()[0]
    for name, budget in (("exact", lo), ("below", lo * 0.9)):
        cfg = MbDartsConfig(space=SPACE, data=str(tmp_path / "d.npz"), epochs=1, batch_size=12, lambda_lr=0.5,
                            arch_warmup=0.0, latency_warmup=0.0, devices=(("a", None), ("b", budget)))
        rec = run_mbv3_darts(cfg, models, tmp_path / name)
        (h,) = json.loads((tmp_path / name / "history.json").read_text())["history"]
        assert h["lambda"][0] == 0.0 and h["lambda"][1] == pytest.approx(
            0.5 * min(1.0, h["derived_ms"]["b"] / budget - 1.0)) and h["lambda"][1] > 0
        assert rec["budgets_ms"] == {"a": None, "b": budget} and rec["latency_ms"]["b"] >= lo
        if name == "exact":
            assert rec["within_budget"] and rec["latency_ms"]["b"] == lo and rec["derivation"] != "argmax"
            assert (rec["number"], rec["evaluations"]) == (1, 2)  # the repaired network: one past the epoch's
        else:
            assert not rec["within_budget"] and rec["derivation"] == "none met every budget"


def test_a_checkpoint_whose_history_is_not_numbered_by_epoch_is_refused_and_the_run_folder_kept(tmp_path):
    """A finished run resumed from its last checkpoint derives from that history: an epoch edited to 7 in a run
    of one epoch went into best.json (and the run's evaluation numbers, which darts_log takes from it)."""
    from edgenas.datasets import load_digits_images
    from edgenas.errors import InputError
    from edgenas.search.darts_mbv3_train import MbDartsConfig, run_mbv3_darts

    x, y = load_digits_images(16, n=24, seed=0)
    np.savez(tmp_path / "d.npz", x=x.numpy(), y=y.numpy())
    cfg = MbDartsConfig(space=SPACE, data=str(tmp_path / "d.npz"), epochs=1, batch_size=12)
    run = tmp_path / "run"
    run_mbv3_darts(cfg, [], run)
    (run / "best.json").unlink()
    (run / "history.json").unlink()  # killed after the last checkpoint: resume derives and writes both
    meta = json.loads((run / "checkpoint.json").read_text())
    seen = []
    for epoch in (7, 0, True):
        meta["history"][0]["epoch"] = epoch
        (run / "checkpoint.json").write_text(json.dumps(meta))
        before = {p.name: p.read_bytes() for p in run.iterdir()}
        with pytest.raises(InputError, match="malformed checkpoint"):
            run_mbv3_darts(cfg, [], run, resume=True, progress=lambda *a: seen.append(a))
        assert {p.name: p.read_bytes() for p in run.iterdir()} == before and not seen  # refused before any report
    meta["history"][0]["epoch"] = 1
    (run / "checkpoint.json").write_text(json.dumps(meta))
    assert run_mbv3_darts(cfg, [], run, resume=True, progress=lambda *a: seen.append(a))["epoch"] == 1
    assert seen == [(1, 1)]  # the epochs a resume starts from, reported once its checkpoint is checked


def test_a_resumed_run_predicts_the_argmax_latency_in_best_json(tmp_path):
    """A finished run resumed from its last checkpoint (a file) derives from that history: the argmax network is
    parsed and its latency predicted by the run's model; a forged derived_ms (0.001 ms) went into best.json's
    argmax_ms."""
    from edgenas.datasets import load_digits_images
    from edgenas.latency.predictor import LatencyPredictor
    from edgenas.search.darts_mbv3_train import MbDartsConfig, run_mbv3_darts
    from edgenas.spaces import get_space
    from tests.search.tables import random_lut

    x, y = load_digits_images(16, n=24, seed=0)
    np.savez(tmp_path / "d.npz", x=x.numpy(), y=y.numpy())
    models = [("a", LatencyPredictor(random_lut(SPACE, 0, device="a", high_ms=3.0), get_space(SPACE)))]
    cfg = MbDartsConfig(space=SPACE, data=str(tmp_path / "d.npz"), epochs=1, batch_size=12, devices=(("a", None),))
    run = tmp_path / "run"
    full = run_mbv3_darts(cfg, models, run)
    meta = json.loads((run / "checkpoint.json").read_text())
    meta["history"][0]["derived_ms"] = {"a": 0.001}
    (run / "checkpoint.json").write_text(json.dumps(meta))
    (run / "best.json").unlink()
    rec = run_mbv3_darts(cfg, models, run, resume=True)
    assert rec == full and rec["argmax_ms"]["a"] == pytest.approx(models[0][1].predict(
        get_space(SPACE).from_dict(rec["argmax_arch"])), rel=1e-12) and rec["argmax_ms"]["a"] > 0.01


def test_a_checkpoint_whose_network_is_not_one_of_the_space_is_refused_naming_it_and_the_run_folder_kept(
        tmp_path, interrupt_darts_after):
    """An arch edited in checkpoint.json: a finished run's resume failed in the space's own error, which named no
    file, and a run resumed mid-way trained on and wrote the edited network into history.json."""
    import re

    from edgenas.datasets import load_digits_images
    from edgenas.errors import InputError
    from edgenas.search.darts_mbv3_train import MbDartsConfig, run_mbv3_darts

    x, y = load_digits_images(16, n=24, seed=0)
    np.savez(tmp_path / "d.npz", x=x.numpy(), y=y.numpy())
    cfg = MbDartsConfig(space=SPACE, data=str(tmp_path / "d.npz"), epochs=2, batch_size=12)
    disarm = interrupt_darts_after(1)
    with pytest.raises(KeyboardInterrupt):
        run_mbv3_darts(cfg, [], tmp_path / "part")  # stopped after epoch 1's checkpoint
    disarm()
    full = run_mbv3_darts(cfg, [], tmp_path / "full")
    for run in (tmp_path / "part", tmp_path / "full"):
        ck = run / "checkpoint.json"
        meta = json.loads(ck.read_text())
        good = meta["history"][-1]["arch"]
        for bad in (SPACE, {}, dict(good, d=[9] * len(good["d"])), dict(good, space="mbv3-small")):
            meta["history"][-1]["arch"] = bad
            ck.write_text(json.dumps(meta))
            before = {p.name: p.read_bytes() for p in run.iterdir()}
            what = f"{ck}: malformed checkpoint (epoch {meta['epoch']}'s arch"
            with pytest.raises(InputError, match=re.escape(what)):
                run_mbv3_darts(cfg, [], run, resume=True)
            assert {p.name: p.read_bytes() for p in run.iterdir()} == before
        meta["history"][-1]["arch"] = good
        ck.write_text(json.dumps(meta))
        assert run_mbv3_darts(cfg, [], run, resume=True)["arch"] == full["arch"]


def test_a_new_run_in_a_folder_with_a_stray_checkpoint_but_no_config_starts_from_epoch_1(tmp_path):
    """A folder that exists holding another run's checkpoint files but no config.json is no run to resume: a new run
    trains from its own seed and overwrites them, as in an empty folder or one whose parents do not exist yet."""
    import shutil

    from edgenas.datasets import load_digits_images
    from edgenas.search.darts_mbv3_train import MbDartsConfig, run_mbv3_darts

    x, y = load_digits_images(16, n=24, seed=0)
    np.savez(tmp_path / "d.npz", x=x.numpy(), y=y.numpy())
    cfg = MbDartsConfig(space=SPACE, data=str(tmp_path / "d.npz"), epochs=1, batch_size=12, arch_warmup=0.0)
    hist = lambda p: [{k: v for k, v in h.items() if k != "epoch_s"}
                      for h in json.loads((p / "history.json").read_text())["history"]]
    fresh = tmp_path / "new" / "er" / "fresh"  # its parents created too
    run_mbv3_darts(cfg, [], fresh)
    (tmp_path / "empty").mkdir()
    run_mbv3_darts(cfg, [], tmp_path / "empty")
    run_mbv3_darts(MbDartsConfig(space=SPACE, data=cfg.data, epochs=1, batch_size=12, arch_warmup=0.0, seed=5), [],
                   tmp_path / "other")
    assert hist(tmp_path / "other") != hist(fresh)
    stray = tmp_path / "stray"
    stray.mkdir()
    for name in ("checkpoint.json", "checkpoint.safetensors"):
        shutil.copy(tmp_path / "other" / name, stray / name)
    run_mbv3_darts(cfg, [], stray)
    assert hist(stray) == hist(tmp_path / "empty") == hist(fresh)
    assert json.loads((stray / "config.json").read_text()) == cfg.to_json()

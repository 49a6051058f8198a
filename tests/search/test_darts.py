"""DARTS on nb201 with a real LUT of this machine: exact resume, the Lagrange budget, bad input."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from edgenas.errors import InputError
from edgenas.search.darts_nb201 import BudgetDerivation, DartsNB201, ExpectedLatency, derivable_probs, derive
from tests.protocols import FAST


@pytest.fixture(scope="module")
def nb201_project(tmp_path_factory):
    from edgenas.datasets import load_digits_images
    from edgenas.fleet.profiler import profile_device
    from edgenas.project import Project

    root = tmp_path_factory.mktemp("darts")
    res = profile_device(Project(root), "local", "nb201", protocol=FAST)
    assert res.n_entries == 19
    x, y = load_digits_images(32, n=128, seed=0)
    np.savez(root / "small.npz", x=x.numpy(), y=y.numpy())
    return root


def _predictor(root):
    from edgenas.latency.predictor import LatencyPredictor
    from edgenas.latency.store import LutStore
    from edgenas.spaces import get_space

    space = get_space("nb201")
    return LatencyPredictor(LutStore(root / "luts").latest("local", "nb201"), space)


def test_expected_latency_is_the_lut_sum_at_one_hot_and_differentiable(nb201_project):
    from edgenas.spaces import get_space

    pred = _predictor(nb201_project)
    term = ExpectedLatency("local", pred)
    space = get_space("nb201")
    rng = np.random.default_rng(0)
    for _ in range(5):
        arch = space.sample(rng)
        onehot = torch.nn.functional.one_hot(torch.tensor(space.to_genes(arch)), 5).double()
        assert float(term(onehot)) == pytest.approx(float(pred.predict_many([arch])[0]), rel=1e-9)
    alpha = torch.zeros(6, 5, requires_grad=True)
    term(torch.softmax(alpha, -1)).backward()
    g = alpha.grad[0]
    assert g[3] > g[0]  # a 3x3 conv costs more than none
    assert DartsNB201(C=4, N=1)(torch.zeros(2, 3, 32, 32)).shape == (2, 10)


def test_derivation_excludes_none_and_the_latency_term_cannot_push_towards_it(nb201_project):
    pred = _predictor(nb201_project)
    term = ExpectedLatency("local", pred)
    alpha = torch.zeros(6, 5)
    alpha[:, 0] = 5.0                      # `none` strongest on every edge
    alpha[:, 3] = 1.0                      # then the 3x3 conv
    assert derive(alpha).ops == ("nor_conv_3x3",) * 6
    a = alpha.clone().requires_grad_(True)
    term(derivable_probs(a)).backward()
    assert torch.all(a.grad[:, 0] == 0)    # raising `none` no longer lowers the expected latency
    assert torch.all(a.grad[:, 3] > 0) and torch.all(a.grad[:, 1] < 0)  # conv costs, skip saves
    assert float(derivable_probs(alpha)[:, 0].sum()) == 0.0


def test_budget_derivation_is_the_most_probable_cell_within_budget(nb201_project):
    from edgenas.spaces import get_space

    space = get_space("nb201")
    pred = _predictor(nb201_project)
    rng = torch.Generator().manual_seed(0)
    alpha = torch.randn(6, 5, generator=rng)
    assert BudgetDerivation([("local", pred)], [None])(alpha) == derive(alpha)  # no budget: the argmax
    archs = [a for a in space.all_archs() if "none" not in a.ops]
    ms = pred.predict_many(archs)
    logp = torch.log(derivable_probs(alpha)).numpy()
    score = np.array([sum(logp[e, space.to_genes(a)[e]] for e in range(6)) for a in archs])
    budget = float(np.quantile(ms, 0.2))
    assert pred.predict(derive(alpha)) > budget  # the argmax does not fit: the derivation has work to do
    chosen = BudgetDerivation([("local", pred)], [budget])(alpha)
    best = max((i for i in range(len(archs)) if ms[i] <= budget), key=lambda i: score[i])
    assert chosen.ops == archs[best].ops and "none" not in chosen.ops
    lo, _ = pred.min_latency()
    assert BudgetDerivation([("local", pred)], [lo * 0.5])(alpha) is None  # nothing fits

    class OneMsPerOp:  # this LUT's costs plus 1 ms per op that is not `none`: `none` now clearly cheapest
        def predict_many(self, genes):
            return pred.predict_many(genes) + (np.asarray(genes) != 0).sum(axis=1)

    tight = BudgetDerivation([("slow", OneMsPerOp())], [lo + 3.5])  # at most 3 ops besides `none` fit
    cell = tight(alpha)
    assert tight.includes_none and 3 <= cell.ops.count("none") <= 6


def test_pt_scores_pick_the_op_whose_removal_hurts_most_and_the_budget_still_holds(nb201_project):
    from edgenas.search.darts_nb201 import NONE
    from edgenas.search.darts_pt import perturbation_scores, pt_subset
    from edgenas.spaces.nb201 import OPS

    torch.manual_seed(0)
    net = DartsNB201(C=4, N=1)
    conv3, pool = OPS.index("nor_conv_3x3"), OPS.index("avg_pool_3x3")
    with torch.no_grad():
        net.alpha.zero_()
        net.alpha[:, pool] = 3.0        # alpha ranks avg_pool first on every edge (the collapse)
        for cell in net.cells:          # but edge 0's 3x3 conv carries the signal (x1000 in every cell)
            if hasattr(cell, "edges"):
                cell.edges[0].ops[conv3][1].weight.mul_(1000.0)
    x = torch.randn(48, 3, 32, 32, generator=torch.Generator().manual_seed(1))
    net.eval()
    with torch.no_grad():
        y = net(x).argmax(dim=-1)       # labels = the supernet's own predictions: accuracy 1
    net.train()
    scores = perturbation_scores(net, x, y, batch=16)
    assert scores.shape == (6, 5) and np.all(scores[:, NONE] == 0)  # removing `none` changes nothing
    assert np.unravel_index(np.argmax(scores), scores.shape) == (0, conv3)
    assert scores[0, conv3] > 0.9      # removing it costs (nearly) all the accuracy
    assert net.training                 # the mode is restored
    again = perturbation_scores(net, x, y, batch=16)
    assert np.array_equal(scores, again)  # deterministic
    assert derive(net.alpha).ops[0] == "avg_pool_3x3"  # the alpha selection keeps the pool
    pred = _predictor(nb201_project)
    free = BudgetDerivation([("local", pred)], [None])
    assert free.pick(scores).ops[0] == "nor_conv_3x3"
    from edgenas.spaces import get_space

    space = get_space("nb201")
    archs = [a for a in space.all_archs() if "none" not in a.ops]
    ms = pred.predict_many(archs)
    budget = float(np.quantile(ms, 0.1))
    chosen = BudgetDerivation([("local", pred)], [budget]).pick(scores)
    total = np.array([sum(scores[e, space.to_genes(a)[e]] for e in range(6)) for a in archs])
    best = max((i for i in range(len(archs)) if ms[i] <= budget), key=lambda i: total[i])
    assert pred.predict(chosen) <= budget and chosen.ops == archs[best].ops
    assert torch.equal(pt_subset(100, 30, 5), pt_subset(100, 30, 5)) and len(pt_subset(100, 30, 5)) == 30
    assert not torch.equal(pt_subset(100, 30, 5), pt_subset(100, 30, 6))
    assert torch.equal(pt_subset(10, 30, 5), torch.arange(10))


def _run(cli, root, out, *extra):
    return cli("search", "--space", "nb201", "--strategy", "darts", "--device", "local",
               "--data", str(root / "small.npz"), "--seed", "3", "--out", str(out), "--json", *extra)


@pytest.mark.slow
def test_darts_resume_is_exact(cli, nb201_project, tmp_path, monkeypatch, interrupt_darts_after):
    monkeypatch.setenv("EDGENAS_PROJECT", str(nb201_project))
    monkeypatch.setenv("EDGENAS_NO_PROGRESS", "1")
    monkeypatch.setenv("EDGENAS_DB", f"sqlite:///{tmp_path / 'edgenas.db'}")
    r = _run(cli, nb201_project, tmp_path / "full", "--epochs", "3")
    assert r.code == 0, r.err
    full = r.json()
    disarm = interrupt_darts_after(2)  # kill the run right after epoch 2's checkpoint
    r = _run(cli, nb201_project, tmp_path / "part", "--epochs", "3")
    assert r.code == 130 and "edgenas search --resume" in r.err
    runs = lambda: {Path(x["out_dir"]).name: x for x in json.loads(cli("runs", "list", "--json").out)}  # noqa: E731
    assert runs()["part"]["status"] == "stopped" and runs()["part"]["evaluations"] == 2  # two epochs' cells
    disarm()
    r = cli("search", "--resume", str(tmp_path / "part"), "--json")
    assert r.code == 0, r.err
    again = r.json()
    indexed = runs()
    assert set(indexed) == {"full", "part"}  # the resumed run replaced its stopped copy
    assert again["run_id"] == indexed["part"]["id"] and full["run_id"] == indexed["full"]["id"]  # runs show ID
    for name in ("full", "part"):
        assert indexed[name]["strategy"] == "darts" and indexed[name]["status"] == "complete"
        assert indexed[name]["evaluations"] == 4 and indexed[name]["best_number"] == 3  # 3 epochs + PT's pick
    shown = json.loads(cli("runs", "show", indexed["part"]["id"], "--json").out)
    assert shown["best_arch"]["arch"] == again["arch"]["arch"]
    assert again["number"] == 3 and again["evaluations"] == 4
    assert again["arch"] == full["arch"] and again["alpha_softmax"] == full["alpha_softmax"]
    assert full["selection"] == "pt" and again["pt_scores"] == full["pt_scores"]  # DARTS-PT by default
    strip = lambda p: [{k: v for k, v in h.items() if k != "epoch_s"}
                       for h in json.loads((p / "history.json").read_text())["history"]]
    assert strip(tmp_path / "part") == strip(tmp_path / "full")
    from edgenas.spaces import load_arch

    assert load_arch(tmp_path / "full" / "best.json")[0].name == "nb201"  # export/deploy take it
    import shutil

    damaged = tmp_path / "damaged"  # a DARTS run's request.json is checked on import like any run's
    shutil.copytree(tmp_path / "full", damaged)
    req = json.loads((damaged / "request.json").read_text())
    (damaged / "request.json").write_text(json.dumps(dict(req, evaluator_options="x")))
    r = cli("runs", "import", str(damaged))
    assert r.code == 2 and "malformed 'evaluator_options'" in r.err and len(r.err.strip().splitlines()) == 1
    # resuming a run whose config or checkpoint was edited: one error, the files as they were
    for name, field, value, text in (("checkpoint.json", "lambda", "x", "malformed checkpoint"),
                                     ("checkpoint.json", "epoch", None, "malformed checkpoint"),
                                     ("checkpoint.json", "history", [], "malformed checkpoint"),
                                     ("config.json", "seed", 10**30, "seed must be an integer from 0"),
                                     ("config.json", "data", None, "malformed 'data'"),
                                     ("config.json", "C", 10**9, "C must be an integer from 1 to 1,024"),
                                     ("config.json", "bogus", 1, "unknown field(s) bogus")):
        edited = tmp_path / "edited"
        shutil.rmtree(edited, ignore_errors=True)
        shutil.copytree(tmp_path / "part", edited)
        rec = json.loads((edited / name).read_text())
        (edited / name).write_text(json.dumps(dict(rec, **{field: value})))
        before = {f.name: f.read_bytes() for f in edited.iterdir()}
        r = cli("search", "--resume", str(edited), "--json")
        assert r.code == 2 and text in r.err and len(r.err.strip().splitlines()) == 1, (name, field, r.err)
        assert {f.name: f.read_bytes() for f in edited.iterdir()} == before


@pytest.mark.slow
def test_lagrange_budget_drives_the_derived_cell_under_budget(nb201_project, tmp_path):
    from edgenas.search.darts_train import DartsConfig, run_darts

    pred = _predictor(nb201_project)
    lo, _ = pred.min_latency()
    free = DartsConfig(data=str(nb201_project / "small.npz"), epochs=6, arch_lr=0.05, seed=1,
                       devices=(("local", None),))
    unconstrained = run_darts(free, [("local", pred)], tmp_path / "free")["latency_ms"]["local"]
    budget = lo + 0.5 * (unconstrained - lo)  # half way from the fastest cell to the unconstrained result
    assert budget < unconstrained
    cfg = DartsConfig(data=str(nb201_project / "small.npz"), epochs=6, arch_lr=0.05, lambda_lr=20.0,
                      seed=1, devices=(("local", budget),))
    rec = run_darts(cfg, [("local", pred)], tmp_path / "run")
    hist = json.loads((tmp_path / "run" / "history.json").read_text())["history"]
    assert hist[0]["lambda"][0] == hist[1]["lambda"][0] == 0  # warm-up epochs: no latency term yet
    assert any(h["lambda"][0] > 0 for h in hist[2:])  # then the multiplier rose while the cell was over budget
    assert rec["within_budget"] and rec["latency_ms"]["local"] <= budget
    assert rec["none_edges"] == 0 and rec["selection"] == "pt" and rec["derivation"] in ("pt", "pt-budget")
    assert rec["alpha_ms"]["local"] <= budget and all(h["derivation"] in ("argmax", "budget") for h in hist)
    assert all("none" not in h["arch"] for h in hist)


def test_no_cell_within_the_budget_is_labelled_as_such_not_as_the_perturbation_pick(nb201_project, tmp_path):
    """Budgets no cell meets together (here one below the fastest cell, which launch refuses for one
    device but not for devices that disagree): the alpha argmax is kept and said to be that; the record
    claimed "pt-budget", the best cell by perturbation within the budget."""
    from edgenas.search.darts_train import NONE_FITS, DartsConfig, run_darts

    pred = _predictor(nb201_project)
    budget = pred.min_latency()[0] * 0.5
    cfg = DartsConfig(data=str(nb201_project / "small.npz"), epochs=1, seed=1, pt_samples=16,
                      devices=(("local", budget),))
    rec = run_darts(cfg, [("local", pred)], tmp_path / "run")
    hist = json.loads((tmp_path / "run" / "history.json").read_text())["history"]
    assert rec["selection"] == "pt" and not rec["within_budget"] and rec["latency_ms"]["local"] > budget
    assert rec["derivation"] == NONE_FITS and [h["derivation"] for h in hist] == [NONE_FITS]
    assert rec["arch"]["arch"] == hist[-1]["argmax_arch"]


def test_darts_bad_input_is_one_red_line(cli, tmp_path, monkeypatch):
    monkeypatch.setenv("EDGENAS_PROJECT", str(tmp_path / "proj"))
    r = cli("search", "--space", "mbv3-small", "--strategy", "darts", "--skip-dropout", "0.2", "--out", str(tmp_path / "run"))
    assert r.code == 2 and "applies to the nb201 cell" in r.err and "Traceback" not in r.err  # mbv3: see test_darts_mbv3
    r = cli("search", "--space", "nb201", "--strategy", "darts", "--epochs", "0", "--out", str(tmp_path / "run"))
    assert r.code == 2 and "epochs=0 must be >= 1" in r.err
    assert not (tmp_path / "run").exists()
    with pytest.raises(InputError, match="per-block LUT"):
        ExpectedLatency("x", object())
    from edgenas.search.darts_train import DartsConfig

    for old in (1, 2, 3.0):  # schema 2: no `selection` (alpha-magnitude derivation); 3.0: not the int 3
        with pytest.raises(InputError, match=f"schema {old}"):
            DartsConfig.from_json({**DartsConfig().to_json(), "schema": old})
    with pytest.raises(InputError, match="selection must be one of alpha, pt"):
        DartsConfig(selection="magnitude")
    r = cli("search", "--space", "nb201", "--strategy", "darts", "--strategy-opt", "selection=size",
            "--out", str(tmp_path / "run"))
    assert r.code == 2 and "selection" in r.err and "Traceback" not in r.err and not (tmp_path / "run").exists()


@pytest.mark.parametrize("derivation, says, not_says", [
    ("pt", "chosen by perturbation", "missed the budget"),  # it said "missed the budget" with no budget at all
    ("pt-budget", "the first choice missed the budget", "most probable cell"),
    ("pt-latency", "no slower than the alpha-selected one", "missed the budget"),
    ("budget", "the most probable cell, |skip_connect~0|, missed the budget", "perturbation"),
    ("argmax", "derived", "missed"),
    ("none met every budget", "the most probable cell", "within it"),
])
def test_the_darts_summary_says_how_the_cell_was_chosen(monkeypatch, derivation, says, not_says):
    import io

    from rich.console import Console

    from edgenas.cli import cmd_search

    buf = io.StringIO()
    monkeypatch.setattr(cmd_search, "out", Console(file=buf, width=300, color_system=None))
    rec = {"arch": {"arch": "|none~0|"}, "skip_edges": 0, "latency_ms": {}, "budgets_ms": {},
           "derivation": derivation, "argmax_arch": "|skip_connect~0|", "within_budget": True, "out_dir": "r"}
    cmd_search._print_darts(rec, json_out=False)
    text = buf.getvalue()
    assert says in text and not_says not in text, text


def test_the_multiplier_sees_the_latency_of_the_argmax_cell(nb201_project):
    pred = _predictor(nb201_project)
    term = ExpectedLatency("local", pred)
    for seed in range(3):
        alpha = torch.randn(6, 5, generator=torch.Generator().manual_seed(seed))
        top = derive(alpha)
        assert term.of_argmax(derivable_probs(alpha)) == pytest.approx(pred.predict(top), rel=1e-9)
        assert term.of_arch(top) == pytest.approx(pred.predict(top), rel=1e-12)


def test_when_only_cells_with_none_fit_the_choice_is_the_most_probable_of_them(nb201_project):
    from edgenas.spaces import get_space

    pred = _predictor(nb201_project)

    class OneMsPerOp:  # this LUT's costs plus 1 ms per op that is not `none`: only cells with `none` fit
        def predict_many(self, genes):
            return pred.predict_many(genes) + (np.asarray(genes) != 0).sum(axis=1)

    budget = pred.min_latency()[0] + 3.5
    tight = BudgetDerivation([("slow", OneMsPerOp())], [budget])
    assert tight.includes_none
    space = get_space("nb201")
    genes = np.array([space.to_genes(a) for a in space.all_archs()])
    fitting = genes[OneMsPerOp().predict_many(genes) <= budget]
    firsts = []
    for seed in range(3):
        alpha = torch.randn(6, 5, generator=torch.Generator().manual_seed(seed))
        logp = torch.log_softmax(alpha.double(), dim=-1).numpy()  # `none` is a choice here, with its probability
        best = fitting[np.argmax(logp[np.arange(6), fitting].sum(axis=1))]
        assert np.array_equal(np.asarray(space.to_genes(tight(alpha))), best)
        firsts.append(np.array_equal(best, fitting[0]))
    assert not all(firsts)  # the most probable, not merely the first cell that fits


def test_expected_latency_applies_the_luts_calibration_as_a_ratio(nb201_project):
    from types import SimpleNamespace

    pred = _predictor(nb201_project)
    plain = ExpectedLatency("local", SimpleNamespace(key_cost=pred.key_cost, space=pred.space,
                                                     overhead_ms=pred.overhead_ms))
    calibrated = ExpectedLatency("local", SimpleNamespace(key_cost=pred.key_cost, space=pred.space,
                                                          overhead_ms=pred.overhead_ms,
                                                          _calibrate=lambda raw: 2.0 * raw + 1.0))
    probs = torch.softmax(torch.randn(6, 5, generator=torch.Generator().manual_seed(0)), dim=-1)
    raw = float(plain(probs))
    assert float(calibrated(probs)) == pytest.approx(2.0 * raw + 1.0, rel=1e-9)

"""``run_darts``'s epoch loop and ``_finish`` on a synthetic nb201 table (no profiling) and a 2-channel supernet:
resume after a kill, the multiplier's sign, clipping, floor and warm-up, budgets None vs set, the cosine
schedule, best.json naming the network the history chose, and a resume refusing a changed run (mutation audit)."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch

from edgenas.errors import InputError
from edgenas.latency.predictor import LatencyPredictor
from edgenas.search.darts_train import NONE_FITS, DartsConfig, run_darts
from edgenas.spaces import get_space
from tests.search.tables import random_lut


@pytest.fixture(scope="module")
def pred() -> LatencyPredictor:
    return LatencyPredictor(random_lut("nb201", 4), get_space("nb201"))


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> str:
    from edgenas.datasets import load_digits_images

    x, y = load_digits_images(32, n=32, seed=0)
    path = tmp_path_factory.mktemp("loop") / "tiny.npz"
    np.savez(path, x=x.numpy(), y=y.numpy())
    return str(path)


def _cfg(data, budget, **kw):
    """3 epochs of 2 steps (16 images a half, batches of 8); the latency term starts with epoch 2."""
    base = dict(data=data, epochs=3, batch_size=8, C=2, seed=2, selection="alpha", arch_warmup=0.0,
                latency_warmup=0.34, lambda_lr=0.5, devices=(("t", budget),))
    return DartsConfig(**{**base, **kw})


def _history(folder):
    return json.loads((folder / "history.json").read_text())


def _files(folder):
    return {f.name: f.read_bytes() for f in folder.iterdir()}


def test_a_run_killed_after_an_epoch_resumes_to_what_an_uninterrupted_run_reaches(pred, data, tmp_path,
                                                                                interrupt_darts_after):
    from safetensors.torch import load_file

    cfg = _cfg(data, pred.min_latency()[0] * 1.2, skip_dropout=0.3, selection="pt", pt_samples=8)
    full = run_darts(cfg, [("t", pred)], tmp_path / "full")
    disarm = interrupt_darts_after(1)
    with pytest.raises(KeyboardInterrupt):
        run_darts(cfg, [("t", pred)], tmp_path / "part")
    disarm()
    assert len(json.loads((tmp_path / "part" / "checkpoint.json").read_text())["history"]) == 1
    assert not (tmp_path / "part" / "best.json").exists()
    again = run_darts(cfg, [("t", pred)], tmp_path / "part", resume=True)
    strip = lambda h: [{k: v for k, v in e.items() if k != "epoch_s"} for e in h["history"]]  # noqa: E731
    assert strip(_history(tmp_path / "part")) == strip(_history(tmp_path / "full"))
    assert [e["epoch"] for e in _history(tmp_path / "part")["history"]] == [1, 2, 3]
    assert {k: v for k, v in again.items() if k != "pt_s"} == {k: v for k, v in full.items() if k != "pt_s"}
    a, b = (load_file(str(tmp_path / f / "checkpoint.safetensors")) for f in ("full", "part"))
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    # a run killed before its first checkpoint (config.json only) resumes from epoch 1
    (tmp_path / "early").mkdir()
    (tmp_path / "early" / "config.json").write_text((tmp_path / "full" / "config.json").read_text())
    run_darts(cfg, [("t", pred)], tmp_path / "early", resume=True)
    assert strip(_history(tmp_path / "early")) == strip(_history(tmp_path / "full"))


def test_the_multiplier_rises_by_clipped_steps_over_budget_and_stays_at_zero_under_it(pred, data, tmp_path):
    lo = pred.min_latency()[0]
    run_darts(_cfg(data, lo * 0.5), [("t", pred)], tmp_path / "over")  # every cell is over: +lambda_lr a step
    hist = _history(tmp_path / "over")["history"]
    assert [h["lambda"] for h in hist] == [[0.0], [1.0], [2.0]]  # warm-up epoch, then 2 steps of +0.5 each
    assert all(h["derivation"] == NONE_FITS for h in hist)
    run_darts(_cfg(data, 1e6), [("t", pred)], tmp_path / "under")  # every cell is far under: floored at 0
    assert [h["lambda"] for h in _history(tmp_path / "under")["history"]] == [[0.0]] * 3
    # no budget: no multiplier at all (a fixed penalty instead), every cell within "budget"
    rec = run_darts(_cfg(data, None, latency_weight=0.5), [("t", pred)], tmp_path / "none")
    assert [h["lambda"] for h in _history(tmp_path / "none")["history"]] == [[0.0]] * 3
    assert rec["budgets_ms"] == {"t": None} and rec["within_budget"]


def test_best_json_names_the_network_the_history_chose(pred, data, tmp_path):
    lo = pred.min_latency()[0]
    for selection, budget in (("alpha", lo * 1.2), ("pt", lo * 0.5)):
        out = tmp_path / f"{selection}-{budget:.3f}"
        rec = run_darts(_cfg(data, budget, selection=selection, pt_samples=8), [("t", pred)], out)
        hist = _history(out)["history"]
        last = hist[-1]
        assert json.loads((out / "best.json").read_text()) == rec
        assert _history(out)["schema"] == 3 and hist == json.loads((out / "checkpoint.json").read_text())["history"]
        assert rec["epoch"] == 3 and rec["alpha_arch"] == last["arch"] and rec["argmax_arch"] == last["argmax_arch"]
        assert rec["alpha_ms"] == last["derived_ms"] and rec["argmax_ms"] == last["argmax_ms"]
        arch = get_space("nb201").from_string(rec["arch"]["arch"])
        assert rec["latency_ms"] == {"t": pytest.approx(float(pred.predict(arch)))}
        assert rec["within_budget"] == (rec["latency_ms"]["t"] <= budget) and rec["budgets_ms"] == {"t": budget}
        assert rec["skip_edges"] == arch.ops.count("skip_connect") and rec["none_edges"] == arch.ops.count("none")
        if selection == "alpha":  # the last epoch's cell, the last of 3 evaluations
            assert rec["arch"]["arch"] == last["arch"] and rec["derivation"] == last["derivation"]
            assert (rec["number"], rec["evaluations"], rec["pt_scores"]) == (2, 3, None)
        else:  # DARTS-PT's pick: a fourth evaluation
            assert (rec["number"], rec["evaluations"]) == (3, 4) and len(rec["pt_scores"]) == 6
        if budget < lo:  # nothing fits: the alpha argmax, said to be that
            assert rec["derivation"] == NONE_FITS and rec["arch"]["arch"] == last["argmax_arch"]
            assert not rec["within_budget"]
        else:
            assert rec["within_budget"] and rec["derivation"] in (("argmax", "budget") if selection == "alpha"
                                                                   else ("pt", "pt-budget"))
        for h in hist:
            cell = get_space("nb201").from_string(h["arch"])
            top = get_space("nb201").from_string(h["argmax_arch"])
            assert h["skip_edges"] == cell.ops.count("skip_connect") and h["none_edges"] == cell.ops.count("none")
            assert h["derived_ms"] == {"t": pytest.approx(float(pred.predict(cell)))}
            assert h["argmax_ms"] == {"t": pytest.approx(float(pred.predict(top)))}
            assert 1.0 < h["train_loss"] < 3.5 and math.isfinite(h["expected_ms"]["t"])
            assert h["derivation"] == (NONE_FITS if budget < lo else "argmax" if cell == top else "budget")


def test_a_resumed_run_predicts_best_jsons_latencies_and_checks_its_cells(pred, data, tmp_path):
    """The last history record of a checkpoint (a file) is not copied into best.json: its cells are parsed and
    their latencies predicted by the run's model (a forged 0.001 ms did reach alpha_ms / argmax_ms)."""
    cfg = _cfg(data, pred.min_latency()[0] * 1.2)
    full = run_darts(cfg, [("t", pred)], tmp_path / "full")
    ck = tmp_path / "full" / "checkpoint.json"
    meta = json.loads(ck.read_text())

    def resume_with(**last):
        ck.write_text(json.dumps(dict(meta, history=[*meta["history"][:-1], {**meta["history"][-1], **last}])))
        for name in ("best.json", "history.json"):
            (tmp_path / "full" / name).unlink(missing_ok=True)
        return run_darts(cfg, [("t", pred)], tmp_path / "full", resume=True)

    rec = resume_with(derived_ms={"t": 0.001}, argmax_ms={"t": 1e6})
    assert rec == full and rec["alpha_ms"] != {"t": 0.001} and rec["argmax_ms"] != {"t": 1e6}
    assert json.loads((tmp_path / "full" / "best.json").read_text()) == full
    for field, value in (("argmax_arch", "<b>x</b>"), ("arch", "|conv~0|"), ("derivation", "[red]pt")):
        with pytest.raises(InputError):
            resume_with(**{field: value})
        assert not (tmp_path / "full" / "best.json").exists()


@pytest.mark.parametrize("field,value", [("arch", "|conv~0|"), ("argmax_arch", "|none~0|+|none~0|none~1|"),
                                         ("arch", "")])
def test_a_run_resumed_part_way_refuses_a_forged_cell_before_it_trains(pred, data, tmp_path, interrupt_darts_after,
                                                                       field, value):
    """A checkpoint's cells are checked on resume, naming the file: a run stopped after epoch 1 of 3 trained on
    and wrote the forged cell into history.json. The run folder is left byte for byte."""
    cfg = _cfg(data, pred.min_latency()[0] * 1.2)
    disarm = interrupt_darts_after(1)
    with pytest.raises(KeyboardInterrupt):
        run_darts(cfg, [("t", pred)], tmp_path / "part")
    disarm()
    ck = tmp_path / "part" / "checkpoint.json"
    meta = json.loads(ck.read_text())
    ck.write_text(json.dumps(dict(meta, history=[{**meta["history"][0], field: value}])))
    before = _files(tmp_path / "part")
    with pytest.raises(InputError, match=f"checkpoint.json: malformed checkpoint \\(epoch 1's {field}"):
        run_darts(cfg, [("t", pred)], tmp_path / "part", resume=True)
    assert _files(tmp_path / "part") == before


def test_the_weights_follow_a_cosine_schedule_over_the_epochs(pred, data, tmp_path, monkeypatch):
    seen = []
    real = torch.optim.SGD.step

    def step(self, *a, **kw):  # records the learning rate each weight step is taken with
        seen.append(self.param_groups[0]["lr"])
        return real(self, *a, **kw)

    monkeypatch.setattr(torch.optim.SGD, "step", step)
    run_darts(_cfg(data, None, lr=0.1, arch_warmup=0.34), [("t", pred)], tmp_path / "run")  # epoch 1: weights only
    want = [0.05 * (1 + math.cos(math.pi * e / 3)) for e in range(3) for _ in range(2)]  # both steps of every epoch
    assert seen == pytest.approx(want)


def test_a_resume_refuses_a_changed_config_a_missing_run_and_a_new_run_refuses_a_taken_folder(pred, data, tmp_path):
    cfg = _cfg(data, pred.min_latency()[0] * 1.2, epochs=1)
    run_darts(cfg, [("t", pred)], tmp_path / "run")
    before = _files(tmp_path / "run")
    for changed in (_cfg(data, pred.min_latency()[0] * 1.3, epochs=1), _cfg(data, None, epochs=1),
                    _cfg(data, pred.min_latency()[0] * 1.2, epochs=2)):
        with pytest.raises(InputError, match="cannot resume .*: the config differs"):
            run_darts(changed, [("t", pred)], tmp_path / "run", resume=True)
    with pytest.raises(InputError, match="already holds a search run"):
        run_darts(cfg, [("t", pred)], tmp_path / "run")
    with pytest.raises(InputError, match="do not match the config's devices"):
        run_darts(cfg, [("u", pred)], tmp_path / "run", resume=True)
    assert _files(tmp_path / "run") == before
    with pytest.raises(InputError, match="holds no DARTS run to resume"):
        run_darts(cfg, [("t", pred)], tmp_path / "none", resume=True)
    assert not (tmp_path / "none").exists()


def test_each_weight_step_starts_from_zeroed_gradients_and_is_clipped(data, tmp_path, monkeypatch):
    """The architecture step back-propagates into the weights too: without the weight optimiser's zero_grad the
    next weight step took those gradients as well (observed through torch's own calls, the project's unchanged)."""
    from tests.search.darts_steps import check_steps, watch_steps

    steps = watch_steps(monkeypatch)
    run_darts(_cfg(data, None, epochs=1, devices=()), [], tmp_path / "run")
    check_steps(steps, 2)  # 2 steps: weights, then the architecture
    # the epoch's train_loss is the mean of its weight steps' losses
    assert _history(tmp_path / "run")["history"][0]["train_loss"] == pytest.approx(
        (steps.losses[0] + steps.losses[2]) / 2)


def test_the_latency_term_enters_the_architecture_loss_only_after_its_warm_up(pred, data, tmp_path):
    """Epoch 1 of 2 is the latency warm-up: a run with a heavy latency penalty matches a run without one there,
    then its cell's expected latency is lower."""
    hist = {}
    for w in (0.0, 5.0):
        run_darts(_cfg(data, None, epochs=2, latency_warmup=0.5, arch_lr=0.5, latency_weight=w), [("t", pred)],
                  tmp_path / f"w{w}")
        hist[w] = _history(tmp_path / f"w{w}")["history"]
    strip = lambda h: {k: v for k, v in h.items() if k != "epoch_s"}  # noqa: E731
    assert strip(hist[0.0][0]) == strip(hist[5.0][0])
    assert hist[5.0][1]["expected_ms"]["t"] < hist[0.0][1]["expected_ms"]["t"]


def test_a_non_finite_training_loss_is_named_as_such_in_the_epoch_it_happens(data, tmp_path):
    """lr 1e30: the second weight step's loss is NaN (the architecture frozen: no architecture loss to see it)."""
    from edgenas.errors import EdgenasError

    cfg = _cfg(data, None, epochs=2, arch_warmup=0.5, lr=1e30, devices=())
    with pytest.raises(EdgenasError, match=r"diverged in epoch 1 \(a training loss NaN or infinite\)"):
        run_darts(cfg, [], tmp_path / "run")


@pytest.mark.parametrize("key", ["lr", "arch_lr"])
def test_a_learning_rate_past_the_bound_is_refused_before_the_run_not_an_overflow_at_its_first_step(data, tmp_path,
                                                                                                  key):
    """1e39 was torch's RuntimeError "value cannot be converted to type float without overflow" at the first
    step; the bound itself is a rate the run takes (and diverges with, by name)."""
    from edgenas.errors import EdgenasError

    with pytest.raises(InputError, match=rf"at most 1e\+30, got .*{key}=1e\+39"):
        _cfg(data, None, devices=(), **{key: 1e39})
    cfg = _cfg(data, None, epochs=1, arch_warmup=0.0, devices=(), **{key: 1e30})
    with pytest.raises(EdgenasError, match=r"training diverged in epoch 1 \("):
        run_darts(cfg, [], tmp_path / "run")


@pytest.mark.parametrize("key", ["lambda_lr", "latency_weight"])
def test_an_infinite_multiplier_rate_or_latency_weight_is_refused(data, key):
    """inf diverged at once, and the run's config.json held Infinity, which its resume refused as damaged."""
    with pytest.raises(InputError, match=f"{key} must be a finite number, got inf"):
        _cfg(data, None, devices=(), **{key: float("inf")})


def test_an_epoch_of_one_step_records_that_steps_loss_and_the_run_folder_may_be_nested(data, tmp_path, monkeypatch):
    """16 images a half in one batch of 16: train_loss is the one weight step's loss (not halved); the run folder's
    missing parents are made."""
    from tests.search.darts_steps import watch_steps

    steps = watch_steps(monkeypatch)
    run_darts(_cfg(data, None, epochs=1, batch_size=16, devices=()), [], tmp_path / "a" / "b")
    assert len(steps.losses) == 2  # the weight step's loss, then the architecture step's
    assert _history(tmp_path / "a" / "b")["history"][0]["train_loss"] == pytest.approx(steps.losses[0])


def test_a_dataset_of_more_than_ten_classes_is_refused_before_the_run_folder_exists(tmp_path):
    from edgenas.datasets import load_digits_images

    x, y = load_digits_images(32, n=32, seed=0)
    y = y.numpy().copy()
    y[0] = 10  # 11 classes
    np.savez(tmp_path / "eleven.npz", x=x.numpy(), y=y)
    with pytest.raises(InputError, match="has 11 classes; the nb201 network has 10"):
        run_darts(_cfg(str(tmp_path / "eleven.npz"), None, devices=()), [], tmp_path / "run")
    assert not (tmp_path / "run").exists()


def test_the_optimisers_take_dartss_settings(data, tmp_path, monkeypatch):
    """SGD with momentum 0.9 and weight decay 3e-4 on the weights, Adam with betas (0.5, 0.999) and weight decay
    1e-3 on the alphas (Liu et al., 2019), at the config's rates (recorded at each step through torch's own)."""
    from tests.search.darts_steps import watch_optimiser_settings

    seen = watch_optimiser_settings(monkeypatch)
    run_darts(_cfg(data, None, epochs=1, lr=0.04, arch_lr=0.002, devices=()), [], tmp_path / "run")
    assert len(seen["sgd"]) == len(seen["adam"]) == 2
    for g in seen["sgd"]:
        assert (g["lr"], g["momentum"], g["weight_decay"], g["nesterov"]) == (pytest.approx(0.04), 0.9, 3e-4, False)
    for g in seen["adam"]:
        assert (g["lr"], g["betas"], g["weight_decay"]) == (0.002, (0.5, 0.999), 1e-3)


def test_the_pt_pick_is_labelled_pt_only_when_no_budget_changed_it_and_a_cell_at_the_budget_is_within_it(pred, data,
                                                                                                       tmp_path):
    """lambda_lr 0: a budget changes nothing in the training, so the DARTS-PT scores are the same with and without
    one; a budget of exactly the free pick's latency keeps it ("pt", within budget); a lower one moves the pick
    ("pt-budget", within budget)."""
    lo = pred.min_latency()[0]
    runs = {}
    for name, budget in (("free", 1e6), ("at", None), ("under", None)):
        if name == "at":
            budget = runs["free"]["latency_ms"]["t"]
        elif name == "under":
            budget = (lo + runs["free"]["latency_ms"]["t"]) / 2
        runs[name] = run_darts(_cfg(data, budget, lambda_lr=0.0, selection="pt", pt_samples=8), [("t", pred)],
                               tmp_path / name)
        assert runs[name]["pt_s"] == round(runs[name]["pt_s"], 3)
        assert 0 <= runs[name]["pt_s"] < 600  # seconds, to the ms
        assert all(0 <= h["epoch_s"] == round(h["epoch_s"], 3) < 600 for h in _history(tmp_path / name)["history"])
    free, at, under = runs["free"], runs["at"], runs["under"]
    assert free["latency_ms"]["t"] > lo * 1.01, "the free pick is the fastest cell: pick another seed"
    assert at["pt_scores"] == free["pt_scores"] == under["pt_scores"]
    assert (free["derivation"], at["derivation"], under["derivation"]) == ("pt", "pt", "pt-budget")
    assert at["arch"] == free["arch"] != under["arch"]
    assert at["within_budget"] and under["within_budget"] and at["latency_ms"] == at["budgets_ms"]
    assert under["latency_ms"]["t"] <= under["budgets_ms"]["t"]


def test_a_latency_weight_holds_the_pt_pick_to_the_alpha_cells_latency_a_weight_of_0_does_not(pred, data, tmp_path,
                                                                                              monkeypatch,
                                                                                              interrupt_darts_after):
    """PT scores made up to rise with each op's cost, so PT's own choice is the slowest cell (what a weight of 30
    delivered, 6x slower than the alpha cell: audit finding 1). With a latency weight and no budget the delivered
    cell is no slower than the alpha-selected one ("pt-latency", its latency recorded as the limit), also when a
    run killed after epoch 1 resumes; with a weight of 0 it is PT's own choice, as before."""
    from edgenas.search import darts_train
    from edgenas.search.darts_nb201 import NONE, BudgetDerivation, ExpectedLatency

    scores = np.tile(ExpectedLatency("t", pred).per_op.numpy(), (6, 1))
    scores[:, NONE] = 0.0
    monkeypatch.setattr(darts_train, "perturbation_scores", lambda net, x, y: scores.copy())
    slowest = get_space("nb201").to_dict(BudgetDerivation([("t", pred)], [None]).pick(scores))
    cfg = {w: _cfg(data, None, latency_weight=w, selection="pt", pt_samples=8) for w in (0.0, 5.0)}
    w0, w5 = (run_darts(cfg[w], [("t", pred)], tmp_path / f"w{w}") for w in (0.0, 5.0))
    assert (w0["arch"], w0["derivation"], w0["pt_budgets_ms"]) == (slowest, "pt", None)
    assert w5["pt_budgets_ms"] == w5["alpha_ms"] and w5["latency_ms"]["t"] <= w5["alpha_ms"]["t"]
    assert w5["derivation"] == "pt-latency" and w5["latency_ms"]["t"] < w0["latency_ms"]["t"]
    disarm = interrupt_darts_after(1)
    with pytest.raises(KeyboardInterrupt):
        run_darts(cfg[5.0], [("t", pred)], tmp_path / "part")
    disarm()
    again = run_darts(cfg[5.0], [("t", pred)], tmp_path / "part", resume=True)
    assert {k: v for k, v in again.items() if k != "pt_s"} == {k: v for k, v in w5.items() if k != "pt_s"}


def test_a_non_finite_architecture_loss_is_named_as_such_and_keeps_the_last_checkpoint(pred, data, tmp_path):
    """lambda_lr 1e308 over budget: the multiplier reaches 1e308 after epoch 2's first step and the next
    architecture loss is infinite, while the training loss is finite."""
    from edgenas.errors import EdgenasError

    cfg = _cfg(data, pred.min_latency()[0] * 0.5, lambda_lr=1e308)
    with pytest.raises(EdgenasError, match=r"diverged in epoch 2 \(an architecture loss NaN or infinite\); "
                                           r"the checkpoint of epoch 1 in .* is unchanged"):
        run_darts(cfg, [("t", pred)], tmp_path / "run")
    assert json.loads((tmp_path / "run" / "checkpoint.json").read_text())["epoch"] == 1
    assert not (tmp_path / "run" / "best.json").exists()


def test_the_callers_thread_count_is_restored_after_a_run_and_after_a_diverged_one(data, tmp_path):
    """The epochs run on one thread; the caller's count comes back, also when the run stops with an error. (The
    first run's folder exists, empty: a new run may start there.)"""
    threads = torch.get_num_threads()
    torch.set_num_threads(2)
    (tmp_path / "run").mkdir()
    try:
        run_darts(_cfg(data, None, epochs=1, batch_size=16, devices=()), [], tmp_path / "run")
        assert torch.get_num_threads() == 2
        from edgenas.errors import EdgenasError

        with pytest.raises(EdgenasError, match="diverged"):
            run_darts(_cfg(data, None, epochs=1, lr=1e30, devices=()), [], tmp_path / "nan")
        assert torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(threads)


@pytest.mark.parametrize("damage", ["checkpoint.json", "checkpoint.safetensors"])
def test_a_refused_resume_leaves_the_run_folder_byte_for_byte(data, tmp_path, damage):
    """A config.json in another layout than edgenas writes (compact: an editor, a script) is the same config and
    resumes; a resume refused for its checkpoint rewrote it all the same."""
    cfg = _cfg(data, None, epochs=1, devices=())
    run = tmp_path / "run"
    run.mkdir()
    (run / "config.json").write_text(json.dumps(cfg.to_json()))
    history = [{"epoch": 1, "arch": "cell", "derived_ms": {}, "derivation": "argmax", "argmax_arch": "cell",
                "argmax_ms": {}}]
    meta = {"schema": 3, "epoch": 1, "lambda": [], "history": history}
    if damage == "checkpoint.json":
        meta["lambda"] = [-1.0]
    (run / "checkpoint.json").write_text(json.dumps(meta))
    if damage != "checkpoint.json":
        (run / "checkpoint.safetensors").write_bytes(b"not safetensors")
    before = _files(run)
    with pytest.raises(InputError, match="malformed checkpoint|cannot restore the checkpoint"):
        run_darts(cfg, [], run, resume=True)
    assert _files(run) == before

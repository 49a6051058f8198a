"""How ``edgenas search --strategy darts`` is prepared (``darts_launch``), on synthetic tables saved in a project's
LUT store (no profiling): the budgets each device gets, the fastest-cell check, resume reading the run's own
config, and what the run callable returns (mutation audit)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from edgenas.errors import InfeasibleError, InputError
from edgenas.latency.store import LutStore
from edgenas.project import Project
from edgenas.search.darts_launch import device_budgets, mbv3_darts_config, prepare_darts
from edgenas.search.launch import SearchRequest
from edgenas.spaces import get_space
from tests.search.tables import random_lut


@pytest.fixture(scope="module")
def project(tmp_path_factory):
    from edgenas.datasets import load_digits_images

    root = tmp_path_factory.mktemp("darts-launch")
    for device, seed in (("a", 1), ("b", 2)):
        for name in ("nb201", "mbv3-tiny"):
            LutStore(Project(root).luts_dir).save(random_lut(name, seed, device=device))
    x, y = load_digits_images(32, n=32, seed=0)
    np.savez(root / "tiny.npz", x=x.numpy(), y=y.numpy())
    return Project(root)


def _min(project, device, space="nb201"):
    from edgenas.latency.predictor import LatencyPredictor

    return LatencyPredictor(LutStore(project.luts_dir).latest(device, space), get_space(space)).min_latency()[0]


def _options(project, **kw):
    return {"data": str(project.root / "tiny.npz"), "epochs": 1, "batch_size": 8, "C": 2, "selection": "alpha",
            **kw}


def test_each_device_gets_its_budget_and_its_own_table_and_the_run_returns_its_folder(project, tmp_path):
    lo_a, lo_b = _min(project, "a"), _min(project, "b")
    req = SearchRequest(space="nb201", strategy="darts", devices=("a", "b"), max_latency_ms=(lo_a, lo_b * 2),
                        seed=5, strategy_options={"lambda_rule": "derived"})
    run = prepare_darts(project, req, _options(project, lambda_rule="derived"), tmp_path / "run")
    assert run.config.devices == (("a", lo_a), ("b", lo_b * 2)) and run.config.seed == 5  # a budget AT the fastest
    assert (run.config.epochs, run.config.C, run.config.selection) == (1, 2, "alpha")
    assert [(t.name, t.budget_ms) for t in run.problem.devices] == [("a", lo_a), ("b", lo_b * 2)]
    assert [t.model.min_latency()[0] for t in run.problem.devices] == [lo_a, lo_b]  # each device's own table
    assert run.problem.accuracy_name == "accuracy" and not (tmp_path / "run").exists()
    rec = run.run(tmp_path / "run", False, None)
    assert rec["out_dir"] == str(tmp_path / "run") and rec["budgets_ms"] == {"a": lo_a, "b": lo_b * 2}
    assert json.loads((tmp_path / "run" / "config.json").read_text())["devices"] == [["a", lo_a], ["b", lo_b * 2]]
    # resume: the run's own config.json, whatever the request says now
    again = prepare_darts(project, None, {}, tmp_path / "run", resume=True)
    assert again.config == run.config


def test_a_budget_below_the_fastest_cell_is_refused_before_the_run_folder(project, tmp_path):
    for space, lo in (("nb201", _min(project, "b")), ("mbv3-tiny", _min(project, "b", "mbv3-tiny"))):
        req = SearchRequest(space=space, strategy="darts", devices=("a", "b"), max_latency_ms=(1e6, lo * 0.99))
        opts = _options(project) if space == "nb201" else {"data": str(project.root / "tiny.npz"), "epochs": 1,
                                                           "latency_weight": 0.0}
        with pytest.raises(InfeasibleError, match="device 'b': no .* meets .* the fastest is") as err:
            prepare_darts(project, req, opts, tmp_path / "run")
        assert err.value.min_latency_ms == pytest.approx(lo)
    req = SearchRequest(space="nb201", strategy="darts", devices=("a",), max_latency_ms=())
    assert prepare_darts(project, req, _options(project), tmp_path / "run").config.devices == (("a", None),)
    with pytest.raises(InputError):  # a bad --data: refused here, not after the folder is made
        prepare_darts(project, req, _options(project, data=str(tmp_path / "missing.npz")), tmp_path / "run")
    assert not (tmp_path / "run").exists()


def test_a_resumed_mbv3_run_is_prepared_as_mbv3_from_its_config(project, tmp_path):
    req = SearchRequest(space="mbv3-tiny", strategy="darts", devices=("a",), seed=3, strategy_options={"lr": 0.2})
    run = prepare_darts(project, req, {"data": str(project.root / "tiny.npz"), "epochs": 1, "latency_weight": 0.0,
                                       "lr": 0.2}, tmp_path / "run")
    assert (run.config.space, run.config.lr, run.config.seed, run.config.devices) == ("mbv3-tiny", 0.2, 3,
                                                                                     (("a", None),))
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "config.json").write_text(json.dumps(run.config.to_json()))
    again = prepare_darts(project, None, {}, tmp_path / "run", resume=True)
    assert again.config == run.config and [t.name for t in again.problem.devices] == ["a"]
    rec = again.run(tmp_path / "run", True, None)  # resumed: no checkpoint yet, so from epoch 1
    assert rec["out_dir"] == str(tmp_path / "run") and (tmp_path / "run" / "best.json").exists()
    with pytest.raises(InputError):  # a bad --data: refused here, not after the folder is made
        prepare_darts(project, req, {"data": str(tmp_path / "missing.npz"), "epochs": 1, "latency_weight": 0.0,
                                     "lr": 0.2}, tmp_path / "other")
    assert not (tmp_path / "other").exists()


def test_budgets_pair_with_devices_and_the_mbv3_config_takes_falsy_nb201_options():
    assert device_budgets(["a"], [2.0]) == (("a", 2.0),) and device_budgets(["a"], []) == (("a", None),)
    with pytest.raises(InputError, match="3 latency budgets for 2 devices"):
        device_budgets(["a", "b"], [1.0, 2.0, 3.0])
    with pytest.raises(InputError, match="device listed twice"):
        device_budgets(["a", "a"], [])
    req = SearchRequest(space="mbv3-tiny", strategy="darts", devices=("a",), strategy_options={"skip_dropout": 0.0})
    cfg = mbv3_darts_config(req, {"data": "x.npz", "epochs": 2, "latency_weight": 0.0, "lr": 9.0})
    assert (cfg.lr, cfg.epochs) == (0.05, 2)  # lr not given: the relaxation's own default, not the options'

"""sh, hyperband and darts are registered strategies (Drivers): listed with their options, dispatched
through the registry by launch_search, and indexed in a real SQLite experiment database."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from edgenas.errors import InputError
from edgenas.search import make_strategy, strategy_names
from edgenas.search.base import STRATEGIES, driver_names



def test_drivers_are_listed_with_their_options_and_have_no_ask_tell(cli, tmp_path, monkeypatch):
    monkeypatch.setenv("EDGENAS_PROJECT", str(tmp_path))
    r = cli("list", "--json")
    assert r.code == 0
    reg = r.json()
    assert {"sh", "hyperband", "darts", "evolution"} <= set(reg["strategies"])
    assert reg["strategy_options"]["sh"] == {"ladder": [], "eta": 3, "sampling": "without-replacement"}
    assert reg["strategy_options"]["random"] == {"sampling": "without-replacement"}
    assert reg["strategy_options"]["darts"]["latency_warmup"] == 0.4
    assert reg["strategy_options"]["evolution"]["population"] == 20
    text = cli("list").out
    assert "hyperband" in text and "options: ladder=[], eta=3, sampling=without-replacement" in text
    # the mbv3 relaxation has its own defaults (list showed nb201's only) and takes no nb201-only option
    assert reg["strategy_options_per_space"]["darts"]["lr"] == {"mbv3": 0.05}
    assert "lr=0.025 (mbv3: 0.05)" in text and "selection=pt (not for mbv3)" in text
    assert driver_names() == ["darts", "hyperband", "sh"]
    assert not set(driver_names()) & set(strategy_names())
    assert STRATEGIES.get("sh").name == "sh"
    with pytest.raises(InputError, match="runs its own search loop"):
        make_strategy("hyperband", None, np.random.default_rng(0))


def test_driver_options_are_checked_before_anything_is_written(cli, valid, tmp_path, monkeypatch):
    monkeypatch.setenv("EDGENAS_PROJECT", str(tmp_path / "proj"))
    out = tmp_path / "run"
    rung = f"nb201-fidelity:table={valid},column=cifar10_valid_12ep"
    cases = [
        (["--space", "nb201", "--strategy", "darts", "--strategy-opt", "bogus=1"], "unknown option(s) bogus"),
        (["--space", "nb201", "--strategy", "darts", "--strategy-opt", "lambda_lr=-1"], "lambda_lr=-1.0 must be >= 0"),
        (["--space", "nb201", "--strategy", "sh"], "needs a --ladder"),
        (["--space", "nb201", "--strategy", "sh", "--ladder", rung, "--eta", "1"], "eta=1 must be from 2 to 1000"),
        (["--space", "nb201", "--strategy", "hyperband", "--ladder", rung, "--warm-start", "auto"],
         "--warm-start is not supported"),
        (["--space", "nb201", "--strategy", "darts", "--warm-start", "auto"], "--warm-start is not supported"),
        (["--space", "nb201", "--strategy", "sh", "--ladder", rung, "--strategy-opt", "eta=2"],
         "give the rungs as --ladder and --eta, not as strategy options"),
        (["--space", "nb201", "--strategy", "darts", "--ladder", rung], "--ladder needs --strategy sh or hyperband"),
        (["--space", "nb201", "--strategy", "evolution", "--ladder", rung], "--ladder needs --strategy sh"),
        (["--space", "nb201", "--strategy", "random", "--strategy-opt", "population=3"],
         "unknown option(s) population"),
        (["--space", "nb201", "--strategy", "random", "--strategy-opt", "sampling=twice"],
         "sampling='twice' must be without-replacement or novel-first"),
        (["--space", "nb201", "--strategy", "sh", "--ladder", rung, "--strategy-opt", "sampling=twice"],
         "sampling='twice' must be without-replacement or novel-first"),
    ]
    for args, message in cases:
        r = cli("search", *args, "--out", str(out))
        assert r.code == 2 and message in r.err and "Traceback" not in r.err, (args, r.err)
        assert not out.exists()



@pytest.mark.parametrize("strategy, key, good, bad", [
    ("sh", "eta", (2, 1000), (1, 1001)),
    ("hyperband", "ladder", (("a",), ("a", "b")), ((), ("a", 3))),
    ("darts", "epochs", (1,), (0,)),
    ("darts", "latency_weight", (0.0,), (-0.01,)),
    ("darts", "skip_dropout", (0.0, 0.99), (-0.01, 1.0)),
    ("darts", "pt_samples", (1,), (0,)),
    ("darts", "lambda_lr", (0.0,), (-0.01,)),
    ("darts", "arch_warmup", (0.0, 0.99), (-0.01, 1.0)),
    ("darts", "latency_warmup", (0.0, 0.99), (-0.01, 1.0)),
    ("darts", "arch_lr", (1e-9, 1e30), (0.0, 1.0000000000000002e30)),
    ("darts", "lr", (1e-9, 1e30), (0.0, 1e39)),   # 1e39 overflowed torch's first step
    ("darts", "batch_size", (1,), (0,)),
    ("darts", "selection", ("alpha", "pt"), ("argmax",)),
    ("darts", "lambda_rule", ("derived", "max"), ("min",)),
])
def test_driver_options_at_their_bounds(strategy, key, good, bad):
    cls = STRATEGIES.get(strategy)
    base = {"ladder": ("compression",)} if strategy in ("sh", "hyperband") else {}
    for v in good:
        assert cls.validate_options({**base, key: v})[key] == v
    for v in bad:
        with pytest.raises(InputError, match=f"option {key}="):
            cls.validate_options({**base, key: v})

def test_multifidelity_run_is_indexed_interrupted_resumed_and_warm_starts(cli, valid, tmp_path, monkeypatch):
    from edgenas.search import multifidelity

    db = tmp_path / "edgenas.db"
    monkeypatch.setenv("EDGENAS_PROJECT", str(tmp_path / "proj"))
    monkeypatch.setenv("EDGENAS_DB", f"sqlite:///{db}")
    monkeypatch.setenv("EDGENAS_NO_PROGRESS", "1")
    hw = str(Path(valid).with_name("nb201_hw.csv"))
    base = ["search", "--space", "nb201", "--table", hw, "--latency-column", "raspi4_ms",
            "--max-latency-ms", "20", "--seed", "1"]
    run = ["--strategy", "hyperband", "--budget", "9",
           "--ladder", f"nb201-fidelity:table={valid},column=cifar10_valid_12ep",
           "--ladder", f"nb201-fidelity:table={valid},column=cifar10_valid,cost=16.67"]
    real = multifidelity.atomic_write_json

    def interrupt_after_a_rung(path, obj):
        real(path, obj)
        if path.name == "checkpoint.json" and obj["status"] == "running" and obj["n_evaluations"] >= 9:
            raise KeyboardInterrupt

    monkeypatch.setattr(multifidelity, "atomic_write_json", interrupt_after_a_rung)
    r = cli(*base, *run, "--out", str(tmp_path / "mf"))
    assert r.code == 130 and "edgenas search --resume" in r.err
    rows = json.loads(cli("runs", "list", "--json").out)
    assert [(x["strategy"], x["status"]) for x in rows] == [("hyperband", "stopped")]
    assert 9 <= rows[0]["evaluations"] < 18
    monkeypatch.setattr(multifidelity, "atomic_write_json", real)
    r = cli("search", "--resume", str(tmp_path / "mf"), "--json")
    assert r.code == 0, r.err
    s = r.json()
    rows = json.loads(cli("runs", "list", "--json").out)
    assert len(rows) == 1 and rows[0]["id"] and rows[0]["status"] == "complete"
    assert s["run_id"] == rows[0]["id"]  # what `edgenas runs show` takes (search --json did not say it)
    assert rows[0]["evaluations"] == 18 and rows[0]["objective"] == "cifar10_valid"
    best = json.loads((tmp_path / "mf" / "best.json").read_text())
    assert rows[0]["best_value"] == pytest.approx(best["objectives"]["cifar10_valid"])
    assert s["objective_value"] == pytest.approx(best["objectives"]["cifar10_valid"])
    from edgenas.report.source import load_run_dir

    assert load_run_dir(tmp_path / "mf").summary()["strategy"] == "hyperband"  # the report names it too
    # a later ask/tell search on the same task warm-starts from the multi-fidelity run
    r = cli(*base, "--table", valid, "--objective", "cifar10_valid", "--strategy", "evolution", "--budget", "10",
            "--warm-start", "auto", "--out", str(tmp_path / "evo"), "--json")
    assert r.code == 0, r.err
    warm = json.loads((tmp_path / "evo" / "warm_start.json").read_text())
    assert warm["transferred"] and {t["from_run"] for t in warm["transferred"]} == {rows[0]["id"]}


def test_a_multi_fidelity_run_keeps_its_task_and_objective_when_imported_again(cli, valid, tmp_path, monkeypatch):
    """Its task was recorded as scikit-learn's digits (no --table: the evaluators' default data), and
    `runs import` rebuilt its problem as a plain search's, so its objective became 'compression' (best: -)."""
    monkeypatch.setenv("EDGENAS_PROJECT", str(tmp_path / "proj"))
    ladder = ["--ladder", f"nb201-fidelity:table={valid},column=cifar10_valid_12ep",
              "--ladder", f"nb201-fidelity:table={valid},column=cifar10_valid,cost=2"]
    r = cli("search", "--space", "nb201", "--strategy", "sh", "--budget", "9", *ladder, "--out", str(tmp_path / "sh"))
    assert r.code == 0, r.err
    (run,) = json.loads(cli("runs", "list", "--json").out)
    before = json.loads(cli("runs", "show", run["id"], "--json").out)
    assert before["task"]["dataset"] == "cifar10" and before["objective"] == "cifar10_valid"
    assert before["evaluations"] == run["evaluations"] == 12 and "n_evaluations" not in before  # 9 + 3 on rung 2
    assert cli("runs", "import", str(tmp_path / "sh")).code == 0
    after = json.loads(cli("runs", "show", run["id"], "--json").out)
    assert (after["objective"], after["best_value"], after["task"]) == ("cifar10_valid", before["best_value"],
                                                                        before["task"])


@pytest.mark.parametrize("strategy", ["sh", "darts"])
def test_a_time_budget_is_refused_by_the_strategies_that_run_their_own_loop(cli, tmp_path, monkeypatch, strategy):
    """sh, hyperband and darts accepted --time-budget, recorded it and ran to the end ("stopped: budget")."""
    monkeypatch.setenv("EDGENAS_PROJECT", str(tmp_path))
    valid = Path(__file__).resolve().parents[2].parent / "shared/data/nb201/nb201_valid.csv"
    extra = (["--ladder", f"nb201-fidelity:table={valid},column=cifar10_valid_12ep",
              "--ladder", f"nb201-fidelity:table={valid},column=cifar10_valid"] if strategy == "sh" else
             ["--epochs", "1"])
    res = cli("search", "--space", "nb201", "--strategy", strategy, *extra, "--time-budget", "2",
              "--out", str(tmp_path / "run"))
    assert res.code == 2 and "--time-budget stops the ask/tell strategies" in res.err
    assert len(res.err.strip().splitlines()) == 1 and not (tmp_path / "run").exists()


def test_darts_refuses_an_explicit_budget_and_says_epochs_size_its_run(cli, tmp_path, monkeypatch):
    """DARTS reads no --budget: `--strategy darts --budget 7` ran one epoch and recorded budget 7, and the
    --time-budget hint said to size the run with --budget. The default budget (no flag) still passes."""
    monkeypatch.setenv("EDGENAS_PROJECT", str(tmp_path))
    args = ("search", "--space", "nb201", "--strategy", "darts", "--epochs", "1", "--out", str(tmp_path / "run"))
    res = cli(*args, "--budget", "7")
    assert res.code == 2 and "--strategy darts does not read --budget" in res.err and "--epochs" in res.err
    res = cli(*args, "--time-budget", "2")
    assert res.code == 2 and "size the run with --epochs" in res.err and "--budget" not in res.err
    res = cli(*args, "--max-latency-quantile", "0.5")  # past the flag checks, refused by the driver before it runs
    assert res.code == 2 and "takes --max-latency-ms budgets" in res.err
    assert not (tmp_path / "run").exists()


def test_the_listed_mbv3_darts_defaults_are_the_ones_it_runs_with(cli, tmp_path, monkeypatch):
    from edgenas.search.darts_mbv3_train import MbDartsConfig

    opts = STRATEGIES.get("darts").options
    for key, opt in opts.items():
        if "mbv3" in opt.per_space and opt.per_space["mbv3"] is not None:
            assert getattr(MbDartsConfig(), key) == opt.per_space["mbv3"], key
        elif "mbv3" not in opt.per_space and hasattr(MbDartsConfig(), key):
            assert getattr(MbDartsConfig(), key) == opt.default, key
    monkeypatch.setenv("EDGENAS_PROJECT", str(tmp_path / "proj"))
    for given in ("selection=alpha", "pt_samples=8"):  # accepted and ignored before
        r = cli("search", "--space", "mbv3-tiny", "--strategy", "darts", "--strategy-opt", given,
                "--out", str(tmp_path / "run"))
        assert r.code == 2 and "applies to the nb201 cell" in r.err and not (tmp_path / "run").exists(), r.err



def test_the_listed_nb201_darts_and_ladder_defaults_are_the_ones_a_run_uses():
    """What `edgenas list` shows is what runs: DartsConfig's defaults for the nb201 cell, and the eta a request
    has when none is given (each option's default was free to drift from them)."""
    from edgenas.search.darts_train import DartsConfig
    from edgenas.search.launch import SearchRequest

    checked = []
    for key, opt in STRATEGIES.get("darts").options.items():
        if opt.per_space.get("nb201", opt.default) is not None and hasattr(DartsConfig(), key):
            assert getattr(DartsConfig(), key) == opt.default, key
            checked.append(key)
    assert len(checked) == 12  # all but lambda_rule (mbv3 only)
    for name in ("sh", "hyperband"):
        assert STRATEGIES.get(name).options["eta"].default == SearchRequest(space="nb201").eta == 3

def test_a_rerun_of_a_driver_run_repeats_it_without_a_warm_start(cli, valid, tmp_path, monkeypatch):
    """runs stale suggests ``search --rerun`` for every stale run; for sh it failed with "--warm-start is not
    supported": a driver's re-run is the same search on today's tables, recorded as a re-run."""
    monkeypatch.setenv("EDGENAS_PROJECT", str(tmp_path / "proj"))
    monkeypatch.setenv("EDGENAS_DB", f"sqlite:///{tmp_path / 'edgenas.db'}")
    monkeypatch.setenv("EDGENAS_NO_PROGRESS", "1")
    hw = str(Path(valid).with_name("nb201_hw.csv"))
    r = cli("search", "--space", "nb201", "--table", hw, "--latency-column", "raspi4_ms", "--max-latency-ms", "20",
            "--strategy", "sh", "--budget", "9", "--ladder", f"nb201-fidelity:table={valid},column=cifar10_valid_12ep",
            "--ladder", f"nb201-fidelity:table={valid},column=cifar10_valid,cost=16.67", "--out",
            str(tmp_path / "sh"), "--json")
    assert r.code == 0, r.err
    [first] = json.loads(cli("runs", "list", "--json").out)
    r = cli("search", "--rerun", first["id"], "--json")
    assert r.code == 0, r.err
    assert r.json()["out_dir"] == str(tmp_path / "sh") + "-rerun-1"
    req = json.loads((tmp_path / "sh-rerun-1" / "request.json").read_text())
    assert req["strategy"] == "sh" and not req["warm_start"]
    from edgenas.store import open_db
    from edgenas.store.runs import list_runs

    [rerun] = [x for x in list_runs(open_db(f"sqlite:///{tmp_path / 'edgenas.db'}")) if x.id != first["id"]]
    assert rerun.rerun_of == first["id"] and rerun.strategy == "sh" and rerun.status == "complete"
    warm = json.loads((tmp_path / "sh-rerun-1" / "warm_start.json").read_text())
    assert warm["rerun_of"] == first["id"] and warm["transferred"] == [] and "no warm start" in warm["note"]

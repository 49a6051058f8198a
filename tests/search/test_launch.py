"""``launch_search``'s refusals that no CLI path reaches, and its helpers on their own (mutation audit):
what a resume reads back as the budgets of a quantile run, which evaluator options are made absolute."""

import json
import math
from pathlib import Path

import pytest

from edgenas.errors import InputError
from edgenas.project import Project
from edgenas.search.launch import SearchRequest, _absolute_paths, _population, _with_recorded_budgets, launch_search

HW = Path(__file__).resolve().parents[2].parent / "shared/data/nb201/nb201_hw.csv"


def request(**kw):
    return SearchRequest(**{"space": "nb201", "table": str(HW), "latency_column": "raspi4_ms", "strategy": "random",
                            "budget": 4, **kw})


def test_a_launch_without_a_request_or_a_run_to_resume_is_refused_and_writes_nothing(tmp_path):
    out = tmp_path / "run"
    with pytest.raises(InputError, match="nothing to search"):
        launch_search(Project(tmp_path), None, out)
    out.mkdir()
    with pytest.raises(InputError, match="holds no search to resume") as exc:
        launch_search(Project(tmp_path), None, out, resume=True)
    assert "--out" in exc.value.hint
    with pytest.raises(InputError, match="more time is for a resumed run"):
        launch_search(Project(tmp_path), request(), tmp_path / "new", more_wall_s=5.0)
    with pytest.raises(InputError, match="--time-budget must be a number of seconds > 0"):
        launch_search(Project(tmp_path), request(), tmp_path / "new", more_wall_s=math.inf)
    with pytest.raises(InputError, match="a warm start needs the experiment database"):
        launch_search(Project(tmp_path), request(warm_start=("auto",)), tmp_path / "new", record=False)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run"] and not any(out.iterdir())


def test_a_resumed_quantile_run_keeps_the_budgets_it_started_with(tmp_path):
    q = request(max_latency_quantile=0.3)
    assert _with_recorded_budgets(q, tmp_path) is q                           # no config.json: the quantile
    cfg = tmp_path / "config.json"
    cfg.write_text(json.dumps({"space": "nb201", "devices": [["a", 5.0], ["b", 7.5]]}))
    got = _with_recorded_budgets(q, tmp_path)
    assert (got.max_latency_ms, got.max_latency_quantile) == ((5.0, 7.5), None)
    ms = request(max_latency_ms=(9.0,))
    assert _with_recorded_budgets(ms, tmp_path) is ms                         # budgets in ms: as given
    for devices in ("{", "null", "[]", '[["a", null]]', '[["a", 0]]', '[["a", -1.0]]', '[["a", 5.0], ["b", 0]]',
                    '[["a", 5.0, 1]]', '"ab"', '[["a", "0.0001"]]', '[["a", true]]'):
        cfg.write_text('{"space": "nb201", "devices": ' + devices + "}")
        assert _with_recorded_budgets(q, tmp_path) is q, devices             # no readable record: the quantile
    cfg.write_text("[1, 2]")
    assert _with_recorded_budgets(q, tmp_path) is q


def test_only_relative_paths_that_exist_in_path_options_are_made_absolute(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "t.csv").write_text("x\n")
    (tmp_path / "imgs").mkdir()
    got = _absolute_paths({"table": "t.csv", "data": ["imgs", "missing", 3], "hw": "/elsewhere/hw.csv",
                           "checkpoint": "", "column": "t.csv", "batch_size": 8})
    assert got == {"table": str(tmp_path / "t.csv"), "data": [str(tmp_path / "imgs"), "missing", 3],
                   "hw": "/elsewhere/hw.csv", "checkpoint": "", "column": "t.csv", "batch_size": 8}


def test_a_warm_starts_population_is_the_requests_the_strategys_default_or_20():
    from edgenas.search import SearchConfig

    def config(strategy):
        return SearchConfig(space="nb201", strategy=strategy, budget_evals=10)

    assert _population(request(population=7), config("evolution")) == 7
    assert _population(request(), config("evolution")) == 20                 # its default
    assert _population(request(), config("random")) == 20                    # no population of its own
    # the strategy's own option sizes it (the share was of the default 20); one it does not take does not
    assert _population(request(strategy_options={"population": 4}), config("evolution")) == 4
    assert _population(request(strategy_options={"population": 4}), config("random")) == 20


def test_a_damaged_budget_in_a_quantile_runs_config_is_reported_as_damage_on_resume(tmp_path, cli, monkeypatch):
    """A budget of "0.0001" (text) in config.json was read back as 0.0001 ms, and the resume refused as no
    architecture meeting it (exit 4), not as the damaged run folder it is."""
    monkeypatch.setenv("EDGENAS_PROJECT", str(tmp_path))
    run = tmp_path / "run"
    first = cli("search", "--space", "nb201", "--table", str(HW), "--latency-column", "raspi4_ms",
                "--max-latency-quantile", "0.3", "--strategy", "random", "--budget", "4", "--out", str(run))
    assert first.code == 0, first.err
    cfg = json.loads((run / "config.json").read_text())
    cfg["devices"][0][1] = "0.0001"
    (run / "config.json").write_text(json.dumps(cfg))
    res = cli("search", "--resume", str(run))
    assert res.code == 2 and "malformed 'devices'" in res.err and "0.0001 ms" not in res.err, res.err


def test_a_ladder_needs_a_multi_fidelity_strategy_and_its_rungs_name_the_evaluators(tmp_path):
    from edgenas.search.launch import build_problem
    from edgenas.search.mf_launch import build_problems

    valid = HW.with_name("nb201_valid.csv")
    ladder = (f"nb201-fidelity:table={valid},column=cifar10_valid_12ep",
              f"nb201-fidelity:table={valid},column=cifar10_valid,cost=2")
    with pytest.raises(InputError, match="--ladder needs --strategy sh or hyperband, not 'random'"):
        build_problems(Project(tmp_path), SearchRequest(space="nb201", ladder=ladder, strategy="random"), build_problem)
    with pytest.raises(InputError, match="give the evaluators as --ladder rungs, not --evaluator"):
        build_problems(Project(tmp_path), SearchRequest(space="nb201", ladder=ladder, strategy="sh",
                                                        evaluator="params"), build_problem)
    problems, config = build_problems(Project(tmp_path), SearchRequest(space="nb201", ladder=ladder, strategy="sh",
                                                                      budget=9, seed=3), build_problem)
    assert [p.accuracy_name for p in problems] == ["cifar10_valid_12ep", "cifar10_valid"]
    assert (config.mode, config.candidates, config.eta, config.seed, config.devices) == ("sh", 9, 3, 3, ())
    # every rung is built as a problem of the same request; the first says its notes, once for the ladder
    notes: list[str] = []
    build_problems(Project(tmp_path), SearchRequest(space="nb201", ladder=("params", "flops", "params:cost=2"),
                                                    strategy="sh", budget=20000), build_problem, note=notes.append)
    assert notes == ["warning: --budget 20000 is more than space 'nb201' has architectures (15625 at most): "
                     "capped at 15625"]

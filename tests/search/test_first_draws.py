"""The first population of evolution, nsga2, hgm, woa and ri-iwoa (and the uniform samples that stand in for a
child that found nothing new) drawn without replacement in a new run (``sampling=without-replacement``): under a
tight latency budget they repeated a cell while cells within the budget were left. A run recorded before the
option (no ``sampling`` in its request) drew ``novel-first`` and resumes exactly so."""

import json
import shutil

import pytest

from edgenas.project import Project
from edgenas.search.base import recorded_options
from edgenas.search.launch import launch_search
from tests.search.test_random_draws import HW, VALID, as_recorded_before, cells, feasible_cells, request

#: each strategy, the size of its first population (defaults), and the cells of it novel-first drew at seed 0
#: under the Raspberry Pi 4 budget at the 0.3% quantile (48 of 15,625 cells meet it)
FIRST = {"evolution": (20, 17), "nsga2": (20, 17), "hgm": (10, 8), "woa": (20, 16), "ri-iwoa": (20, 16)}
TIGHTER = 0.003


@pytest.fixture
def tables():
    if not (HW.exists() and VALID.exists()):
        pytest.skip(f"reference tables not found in {HW.parent}")


@pytest.mark.parametrize("strategy", sorted(FIRST))
def test_a_first_population_under_a_tight_budget_is_distinct_and_an_old_run_resumes_with_its_repeats(
        tables, tmp_path, strategy):
    size, before = FIRST[strategy]
    proj = Project(tmp_path)
    req = request(strategy=strategy, budget=100, max_latency_quantile=TIGHTER)
    launch_search(proj, req, tmp_path / "new", record=False)
    got, feasible = cells(tmp_path / "new"), feasible_cells(tmp_path / "new")
    assert len(feasible) == 48 and len(got) == 100
    assert len(set(got[:size])) == size and set(got[:size]) <= feasible
    assert set(got) == feasible and set(got[:48]) == feasible  # every cell within the budget, each once, first
    assert json.loads((tmp_path / "new" / "config.json").read_text())["strategy_options"]["sampling"] == (
        "without-replacement")
    ref = tmp_path / "ref"
    launch_search(proj, request(strategy=strategy, budget=100, max_latency_quantile=TIGHTER,
                                strategy_options={"sampling": "novel-first"}), ref, record=False)
    assert len(set(cells(ref)[:size])) == before < size  # what it drew before the option
    for lines in (7, 50):  # a run recorded before the option, killed in its first population and after it
        old = tmp_path / f"old{lines}"
        as_recorded_before(ref, old, lines=lines)
        records = lambda: {n: json.loads((old / n).read_text()) for n in ("request.json", "config.json")}  # noqa
        kept = records()
        launch_search(proj, None, old, resume=True, record=False)
        assert cells(old) == cells(ref) and records() == kept
    # a new run killed in its first population resumes to the same end
    cut = tmp_path / "cut"
    shutil.copytree(tmp_path / "new", cut)
    (cut / "evaluations.jsonl").write_text("".join(
        (tmp_path / "new" / "evaluations.jsonl").read_text().splitlines(keepends=True)[:size // 2]))
    (cut / "checkpoint.json").unlink()
    launch_search(proj, None, cut, resume=True, record=False)
    assert cells(cut) == got


@pytest.mark.parametrize("strategy", ["evolution", "nsga2", "woa", "ri-iwoa"])
def test_a_first_population_larger_than_what_meets_the_budget_ends_the_run_after_each_cell_once(
        tables, tmp_path, strategy):
    """13 cells meet the budget (seed 2, 0.15% quantile), a population is 20: novel-first filled it with repeats
    and spent the budget on them; now the run ends "exhausted" after the 13."""
    req = request(strategy=strategy, budget=100, seed=2, max_latency_quantile=0.0015)
    res = launch_search(Project(tmp_path), req, tmp_path / "r", record=False)[2]
    got = cells(tmp_path / "r")
    assert res.stopped == "exhausted" and len(got) == len(set(got)) == 13
    assert set(got) == feasible_cells(tmp_path / "r")
    assert json.loads((tmp_path / "r" / "checkpoint.json").read_text())["status"] == "complete"


@pytest.mark.parametrize("strategy", sorted(FIRST))
def test_under_a_loose_budget_a_new_run_is_the_run_novel_first_made(tables, tmp_path, strategy):
    """A draw takes its first 50 samples as novel-first took them: under the Raspberry Pi 4 budget at the 30%
    quantile the two give the same evaluations."""
    logs = {}
    for sampling in ("without-replacement", "novel-first"):
        req = request(strategy=strategy, budget=60, seed=1, max_latency_quantile=0.3,
                      strategy_options={"sampling": sampling})
        launch_search(Project(tmp_path), req, tmp_path / sampling, record=False)
        logs[sampling] = cells(tmp_path / sampling)
    assert len(logs["novel-first"]) == 60 and logs["without-replacement"] == logs["novel-first"]


def test_each_records_its_sampling_and_an_old_request_replays_novel_first():
    for name in (*FIRST, "llm-evolution", "rea", "riiwoa"):
        assert recorded_options(name, {}, new=True)["sampling"] == "without-replacement", name
        assert recorded_options(name, {}, new=False)["sampling"] == "novel-first", name
        assert recorded_options(name, {"sampling": "without-replacement"}, new=False)["sampling"] == (
            "without-replacement")
    for name in ("tpe", "gp", "cmaes", "optuna-nsga2"):  # optuna's samplers: asked again on a known cell
        assert "sampling" not in recorded_options(name, {}, new=True)

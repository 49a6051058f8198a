"""The benchmark suite's machinery (bench/search_suite.py) on the real NAS-Bench-201 tables: tasks,
budgets at the 30th percentile, the chosen architecture, regret and ranks."""

import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))
suite = pytest.importorskip("bench.search_suite")


@pytest.fixture(scope="module")
def table():
    if not (suite.DATA / "nb201_valid.csv").exists():
        pytest.skip(f"reference tables not found in {suite.DATA}")
    return suite.load_suite_table()


def test_tasks_and_feasible_optimum(table):
    names = [t.name for t in suite.TASKS]
    assert len(names) == len(set(names)) == 14
    task = next(t for t in suite.TASKS if t.name == "c10-valid@raspi4+pixel3")
    problem, facts = suite.task_problem(task, table)
    for col in task.devices:
        assert facts["budgets_ms"][col] == pytest.approx(np.quantile(table.columns[col], 0.3))
    ok = (table.columns["raspi4_ms"] <= facts["budgets_ms"]["raspi4_ms"]) & \
         (table.columns["pixel3_ms"] <= facts["budgets_ms"]["pixel3_ms"])
    assert facts["feasible"] == ok.sum() and facts["optimum"] == table.columns["cifar10_test"][ok].max()
    assert facts["optimum"] < table.columns["cifar10_test"].max()


def test_run_strategy_reports_test_of_best_valid(table):
    res = suite.run_strategy("evolution", seeds=range(2), tasks=["c10-valid", "c10-valid@raspi4"])
    for name, r in res["tasks"].items():
        assert len(r["values"]) == 2
        for v in r["values"]:
            assert 80 < v <= r["optimum"] + 1e-9
        assert r["regret"]["median"] == pytest.approx(r["optimum"] - r["reported"]["median"], abs=1e-3)
        assert r["ms_per_eval"] > 0
    # the chosen architecture: best objective among feasible records, its report column
    task = suite.TASKS[0]
    problem, _ = suite.task_problem(task, table)
    recs, _, rounds = suite.drive("evolution", problem, 30, seed=0)
    assert len(recs) == 30 and rounds == 30          # evolution asks one at a time, as in edgenas search
    best = max(recs, key=lambda r: r["objectives"]["cifar10_valid"])
    assert suite.chosen(recs, task) == best["report"]["cifar10_test"]


def fake(meds, name="x"):
    """A ``run_strategy`` result with these medians per task (optimum 9)."""
    return {"strategy": name, "n_seeds": 30, "options": {}, "tasks": {
        t: {"reported": {"median": m, "iqr": [m, m]}, "regret": {"median": 9.0 - m}, "optimum": 9.0,
            "ms_per_eval": 1.0, "ms_per_round": 1.0} for t, m in meds.items()}}


def test_summarise_ranks():
    s = suite.summarise({"a": fake({"x": 3, "y": 1, "z": 2}), "b": fake({"x": 2, "y": 2, "z": 2}),
                         "c": fake({"x": 1, "y": 3, "z": 1})})
    assert s["strategies"]["b"]["ranks"] == {"x": 2.0, "y": 2.0, "z": 1.5}
    assert s["strategies"]["a"]["median_rank"] == 1.5 and s["strategies"]["b"]["median_rank"] == 2.0
    assert s["order"] == ["a", "b", "c"]
    assert "| x | 9.00 |" in suite.markdown(s)


def test_a_table_over_an_earlier_summary_replaces_the_rows_of_strategies_run_again(tmp_path):
    """``table SUMMARY RUN``: the summary's rows as they were, but the strategy of RUN's row, ranks recomputed."""
    import json

    earlier = suite.summarise({"a": fake({"x": 3, "y": 1}, "a"), "b": fake({"x": 2, "y": 2}, "b")})
    (tmp_path / "summary.json").write_text(json.dumps(earlier))
    (tmp_path / "b.json").write_text(json.dumps(fake({"x": 4, "y": 3}, "b")))
    suite.main(["table", str(tmp_path / "summary.json"), str(tmp_path / "b.json"), "--out", str(tmp_path / "new.json")])
    new = json.loads((tmp_path / "new.json").read_text())
    assert new["order"] == ["b", "a"] and new["strategies"]["b"]["ranks"] == {"x": 1.0, "y": 1.0}
    assert new["strategies"]["a"]["tasks"] == earlier["strategies"]["a"]["tasks"]      # kept as it was
    assert new["strategies"]["b"]["tasks"]["x"] == {"median": 4, "iqr": [4, 4], "regret": 5.0}
    suite.main(["table", str(tmp_path / "summary.json"), "--out", str(tmp_path / "same.json")])
    assert json.loads((tmp_path / "same.json").read_text()) == earlier                 # a summary alone: itself


def test_merge_runs_of_other_seeds():
    def run(values):
        return {"strategy": "x", "options": {}, "n_seeds": len(values), "seeds": [0, len(values) - 1],
                "tasks": {"t": {"values": values, "optimum": 10.0, "ms_per_eval": 1.0, "ms_per_round": 2.0}}}

    m = suite.merge(run([1.0, 2.0]), run([3.0, 4.0, 5.0]))
    assert m["n_seeds"] == 5 and m["tasks"]["t"]["values"] == [1.0, 2.0, 3.0, 4.0, 5.0]
    other = run([9.0])
    other["tasks"] = {"u": other["tasks"]["t"]}
    assert set(suite.merge(m, other)["tasks"]) == {"t", "u"}          # tasks run apart are kept
    assert m["tasks"]["t"]["reported"]["median"] == 3.0 and m["tasks"]["t"]["regret"]["median"] == 7.0
    with pytest.raises(ValueError):
        suite.merge(run([1.0]), {**run([2.0]), "strategy": "y"})

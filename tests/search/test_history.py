"""Reading past runs back (``search.history``): after how many evaluations a run first reached its best
feasible value, and the rows ``runs compare`` shows."""

from __future__ import annotations

import math
from pathlib import Path

from edgenas.project import Project
from edgenas.search.history import best_reached_at, compare_runs
from edgenas.search.launch import SearchRequest, launch_search
from edgenas.store import ExperimentDB
from edgenas.store.runs import list_runs, run_evaluations

from tests.store.conftest import TABLE


def test_the_best_is_counted_from_1_and_first_reached_among_feasible_evaluations():
    assert best_reached_at([0.1, 0.5, 0.3], [True, True, True]) == 2
    assert best_reached_at([0.5, 0.5, 0.1], [True, True, True]) == 1  # a tie later is not a new best
    assert best_reached_at([0.9, 0.2, 0.4], [False, True, True]) == 3  # a better infeasible one does not count
    assert best_reached_at([-math.inf, 0.2], [True, False]) is None
    assert best_reached_at([0.2], [False]) is None and best_reached_at([], []) is None


def test_compare_rows_name_each_run_with_its_budgets_and_when_it_reached_its_best(tmp_path):
    db = ExperimentDB(f"sqlite:///{tmp_path / 'edgenas.db'}")
    try:
        for name, budgets in (("a", (20.0,)), ("b", ())):  # "b" has the device without a latency budget
            req = SearchRequest(space="nb201", table=str(TABLE), objective="cifar10_test", budget=8, seed=1,
                                latency_column="raspi4_ms", max_latency_ms=budgets)
            launch_search(Project(tmp_path), req, tmp_path / name, db=db)
        ids = {Path(r.out_dir).name: r.id for r in list_runs(db)}
        rows = compare_runs(db, [ids["a"], ids["b"]])
        assert [r["id"] for r in rows] == [ids["a"], ids["b"]]
        assert [r["budgets_ms"] for r in rows] == [{"raspi4_ms": 20.0}, {}]
        for r in rows:
            evals = run_evaluations(db, r["id"])
            best = max(e.objectives["cifar10_test"] for e in evals if e.feasible)
            first = next(i for i, e in enumerate(evals, 1) if e.feasible and e.objectives["cifar10_test"] == best)
            assert r["best_reached_at"] == first
            assert (r["evaluations"], r["space"], r["dataset"], r["rerun_of"]) == (8, "nb201", "cifar10", None)
    finally:
        db.close()

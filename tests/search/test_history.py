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
    assert best_reached_at([0.1, 0.5, 0.3], [True, True, True], 0.5) == 2
    assert best_reached_at([0.5, 0.5, 0.1], [True, True, True], 0.5) == 1  # a tie later is not a new best
    assert best_reached_at([0.9, 0.2, 0.4], [False, True, True], 0.4) == 3  # a better infeasible one does not count
    assert best_reached_at([0.2, 0.9, 0.4], [True, True, True], 0.4) == 3  # the recorded best, not the log's top
    assert best_reached_at([-math.inf, 0.2], [True, False], 0.2) is None
    assert best_reached_at([0.2], [False], 0.2) is None and best_reached_at([], [], 0.2) is None


def test_a_run_with_no_best_was_not_said_to_reach_it():
    """A run stopped before it chose a best (SIGTERM, kill -9) has none recorded: no count to it either."""
    assert best_reached_at([0.1, 0.5, 0.3], [True, True, True], None) is None
    assert best_reached_at([0.1, 0.5], [True, True], math.nan) is None


def test_compare_takes_a_stopped_runs_best_and_when_it_was_reached_from_one_record(tmp_path):
    """A search killed before it wrote best.json is indexed as stopped with its best so far (``stopped_best``: what
    it would have chosen of the evaluations it logged; it had none, and runs compare said ``"best_value": null``
    beside a ``best_reached_at`` of its log's best). Both are of its recorded best: the killed run evaluated what
    the complete one did, so the two agree."""
    from edgenas.search.record import index_run

    db = ExperimentDB(f"sqlite:///{tmp_path / 'edgenas.db'}")
    try:
        for name in ("done", "killed"):
            req = SearchRequest(space="nb201", table=str(TABLE), objective="cifar10_test", budget=8, seed=1,
                                latency_column="raspi4_ms", max_latency_ms=(20.0,))
            launch_search(Project(tmp_path), req, tmp_path / name, record=False)
        (tmp_path / "killed" / "best.json").unlink()   # what SIGTERM leaves: no best, a checkpoint saying running
        (tmp_path / "killed" / "checkpoint.json").write_text('{"status": "running"}')
        done, killed = (index_run(db, Project(tmp_path), tmp_path / n) for n in ("done", "killed"))
        assert (killed.status, killed.n_evaluations) == ("stopped", 8) and done.best_value is not None
        assert (killed.best_value, killed.best_number) == (done.best_value, done.best_number)
        rows = {r["id"]: r for r in compare_runs(db, [done.id, killed.id])}
        evals = run_evaluations(db, done.id)
        first = next(i for i, e in enumerate(evals, 1)
                     if e.feasible and e.objectives["cifar10_test"] == done.best_value)
        for run in (done, killed):
            assert (rows[run.id]["best_value"], rows[run.id]["best_reached_at"]) == (done.best_value, first)
    finally:
        db.close()


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

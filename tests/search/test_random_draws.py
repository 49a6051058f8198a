"""Random search's (and Hyperband's) draws: without replacement from what meets the latency budgets in a new run
(``sampling=without-replacement``), ending when nothing new is left; a run recorded before the option (no
``sampling`` in its request) drew ``novel-first``, may repeat a cell, and resumes and re-runs exactly so."""

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from edgenas.errors import InputError
from edgenas.project import Project
from edgenas.search import DeviceTarget, Problem
from edgenas.search.base import make_strategy, recorded_options
from edgenas.search.draws import DistinctDraws, listable
from edgenas.search.launch import SearchRequest, launch_search
from edgenas.spaces import SPACES, get_space

DATA = Path(__file__).resolve().parents[2].parent / "shared/data/nb201"
HW, VALID = DATA / "nb201_hw.csv", DATA / "nb201_valid.csv"
#: the Raspberry Pi 4 budget at this quantile: 107 of the 15,625 cells meet it (the audit's tight budget)
TIGHT = 0.0065


@pytest.fixture
def tables():
    if not (HW.exists() and VALID.exists()):
        pytest.skip(f"reference tables not found in {DATA}")


def request(**kw):
    return SearchRequest(**{"space": "nb201", "table": str(HW), "objective": "cifar10_test",
                            "latency_column": "raspi4_ms", "max_latency_quantile": TIGHT, "strategy": "random",
                            "budget": 81, "seed": 0, **kw})


def hyperband(**kw):
    ladder = (f"nb201-fidelity:table={VALID},column=cifar10_valid_12ep",
              f"nb201-fidelity:table={VALID},column=cifar10_valid,cost=16.67")
    return request(strategy="hyperband", ladder=ladder, **kw)


def logged(folder):
    return [json.loads(x) for x in (Path(folder) / "evaluations.jsonl").read_text().splitlines()]


def cells(folder):
    return [r["arch"]["arch"] for r in logged(folder)]


def feasible_cells(folder):
    """Every cell of the table within the budget the run resolved (its config.json)."""
    budget = json.loads((Path(folder) / "config.json").read_text())["devices"][0][1]
    rows = [x.split(",") for x in HW.read_text().splitlines()]
    col = rows[0].index("raspi4_ms")
    return {r[1] for r in rows[1:] if float(r[col]) <= budget}


def as_recorded_before(src, dst, lines=None):
    """``src``'s run folder as an edgenas before the option recorded it: no ``sampling`` in request.json nor
    config.json; its log cut to ``lines`` evaluations (no checkpoint), as a run killed there."""
    dst.mkdir()
    for name in ("request.json", "config.json", "tables.json"):
        record = json.loads((src / name).read_text())
        record.get("strategy_options", {}).pop("sampling", None)
        record.pop("sampling", None)  # a multi-fidelity config.json
        (dst / name).write_text(json.dumps(record, indent=2))
    kept = (src / "evaluations.jsonl").read_text().splitlines(keepends=True)[:lines]
    (dst / "evaluations.jsonl").write_text("".join(kept))


def test_a_tight_budget_random_search_evaluates_distinct_cells_until_none_is_left(tables, tmp_path):
    """81 evaluations under a budget 107 cells meet were 75 distinct cells (six slots of the budget spent on
    cells already evaluated); now 81 distinct, and a budget of 200 ends after the 107, each once."""
    proj = Project(tmp_path)
    res = launch_search(proj, request(), tmp_path / "new", record=False)[2]
    got = cells(tmp_path / "new")
    assert len(got) == 81 and len(set(got)) == 81 and res.stopped == "budget"
    assert set(got) <= feasible_cells(tmp_path / "new")
    for name in ("request.json", "config.json"):
        assert json.loads((tmp_path / "new" / name).read_text())["strategy_options"] == {
            "sampling": "without-replacement"}
    old = launch_search(proj, request(strategy_options={"sampling": "novel-first"}), tmp_path / "old", record=False)
    repeated = cells(tmp_path / "old")
    assert len(repeated) == 81 and len(set(repeated)) == 75 and old[2].stopped == "budget"  # what it did
    res = launch_search(proj, request(budget=200), tmp_path / "all", record=False)[2]
    everything = cells(tmp_path / "all")
    assert res.stopped == "exhausted" and len(everything) == len(set(everything)) == 107
    assert set(everything) == feasible_cells(tmp_path / "all")
    assert everything[:81] == got  # the same draws, then the rest
    ck = json.loads((tmp_path / "all" / "checkpoint.json").read_text())
    assert ck["status"] == "complete" and ck["n_evaluations"] == 107
    # a new run cut short resumes to the same end
    cut = tmp_path / "cut"
    shutil.copytree(tmp_path / "all", cut)
    (cut / "evaluations.jsonl").write_text("".join(
        (tmp_path / "all" / "evaluations.jsonl").read_text().splitlines(keepends=True)[:50]))
    (cut / "checkpoint.json").unlink()
    assert launch_search(proj, None, cut, resume=True, record=False)[2].stopped == "exhausted"
    assert cells(cut) == everything


def test_a_random_run_recorded_before_the_option_resumes_with_its_repeats_and_keeps_its_record(tables, tmp_path):
    """Its request and config have no ``sampling``: it drew novel-first (75 distinct of 81) and a replay with the
    new draws would be refused as a mismatch; cut after 30 evaluations it resumes to the same 81, twice."""
    proj = Project(tmp_path)
    launch_search(proj, request(strategy_options={"sampling": "novel-first"}), tmp_path / "ref", record=False)
    old = tmp_path / "old"
    as_recorded_before(tmp_path / "ref", old, lines=30)
    records = lambda: {n: json.loads((old / n).read_text()) for n in ("request.json", "config.json")}  # noqa
    before = records()
    launch_search(proj, None, old, resume=True, record=False)
    assert cells(old) == cells(tmp_path / "ref") and len(set(cells(old))) == 75
    assert records() == before  # its record (and so its run id) unchanged
    assert "sampling" not in json.loads((old / "checkpoint.json").read_text())["config"]["strategy_options"]
    (old / "evaluations.jsonl").write_text("".join(
        (tmp_path / "ref" / "evaluations.jsonl").read_text().splitlines(keepends=True)[:60]))
    launch_search(proj, None, old, resume=True, record=False)
    assert cells(old) == cells(tmp_path / "ref")


def test_hyperband_draws_no_cell_twice_across_its_brackets_and_an_old_run_resumes_as_it_drew(tables, tmp_path):
    """Hyperband's brackets each drew from a fresh random search: 82 distinct cells in 162 evaluations (the first
    bracket's 81 candidates were 75 cells, 47 of the second's 54 were among them), while 25 cells within the
    budget were never drawn. Now every bracket draws cells no earlier one drew: the 107 in all, and a bracket
    left short says so ("exhausted")."""
    proj = Project(tmp_path)
    res = launch_search(proj, hyperband(), tmp_path / "new", record=False)[2]
    firsts = {}  # each candidate's first evaluation: (bracket, rung)
    for r in logged(tmp_path / "new"):
        firsts.setdefault(r["arch"]["arch"], (r["bracket"], r["rung"]))
    starts = {b: min(r for bb, r in firsts.values() if bb == b) for b, _ in firsts.values()}
    assert all(rung == starts[b] for b, rung in firsts.values())  # no cell entered a later bracket again
    assert set(firsts) == feasible_cells(tmp_path / "new") and res.result.stopped == "exhausted"
    assert json.loads((tmp_path / "new" / "config.json").read_text())["sampling"] == "without-replacement"
    ref = tmp_path / "ref"
    launch_search(proj, hyperband(strategy_options={"sampling": "novel-first"}), ref, record=False)
    assert "sampling" not in json.loads((ref / "config.json").read_text())  # novel-first: the config as before
    assert len(set(cells(ref))) == 82 and len(cells(ref)) == 162
    old = tmp_path / "old"
    as_recorded_before(ref, old, lines=100)
    records = lambda: {n: json.loads((old / n).read_text()) for n in ("request.json", "config.json")}  # noqa
    before = records()
    res = launch_search(proj, None, old, resume=True, record=False)[2]
    assert [(r["arch"], r["rung"]) for r in logged(old)] == [(r["arch"], r["rung"]) for r in logged(ref)]
    assert res.result.stopped == "budget" and records() == before


def test_new_runs_record_the_sampling_and_old_requests_rerun_with_theirs(monkeypatch, tmp_path):
    from types import SimpleNamespace

    import edgenas.store
    import edgenas.store.runs
    from edgenas.search.rerun import rerun_request

    assert recorded_options("random", {}, new=True) == {"sampling": "without-replacement"}
    assert recorded_options("random", {}, new=False) == {"sampling": "novel-first"}
    assert recorded_options("hyperband", {}, new=True) == {"sampling": "without-replacement"}
    assert recorded_options("sh", {}, new=False) == {"sampling": "novel-first"}
    assert recorded_options("sh", {"sampling": "without-replacement"}, new=False) == {
        "sampling": "without-replacement"}
    assert recorded_options("darts", {"epochs": 2}, new=True) == {"epochs": 2}
    recorded = {}
    monkeypatch.setattr(edgenas.store, "open_db", lambda *a, **k: None)
    monkeypatch.setattr(edgenas.store.runs, "get_run", lambda db, ref: SimpleNamespace(
        id="abc123", request=recorded, out_dir=str(tmp_path / "a")))
    for req, want in ((request(), "novel-first"), (hyperband(), "novel-first"),
                      (request(strategy_options={"sampling": "without-replacement"}), "without-replacement"),
                      (hyperband(strategy_options={"sampling": "without-replacement"}), "without-replacement")):
        recorded.clear()
        recorded.update(req.to_json())
        again, _, _ = rerun_request(Project(tmp_path), "abc123")
        assert again.strategy_options["sampling"] == want
        assert again.warm_start == (() if req.strategy == "hyperband" else ("abc123",))


def test_a_bad_sampling_is_refused_before_anything_is_written(tables, tmp_path):
    proj = Project(tmp_path)
    for req in (request(strategy_options={"sampling": "twice"}), hyperband(strategy_options={"sampling": "twice"})):
        with pytest.raises(InputError, match="sampling='twice' must be without-replacement or novel-first"):
            launch_search(proj, req, tmp_path / "r", record=False)
        assert not (tmp_path / "r").exists()
    with pytest.raises(InputError, match="give the rungs as --ladder and --eta, not as strategy options"):
        launch_search(proj, hyperband(strategy_options={"eta": 2}), tmp_path / "r", record=False)


class Fixed:
    """Latency from a fixed cost per gene value (its minimum: each gene at its cheapest value, no tie)."""

    def __init__(self, space, seed=0):
        self.space = space
        self.w = np.random.default_rng(seed).uniform(0.1, 1.0, size=(space.dim, max(space.gene_sizes())))

    def predict_many(self, archs):
        g = self.space.genes_matrix(archs)
        return self.w[np.arange(self.space.dim), g].sum(axis=1)

    def min_latency(self):
        genes = [int(np.argmin(self.w[i, :n])) for i, n in enumerate(self.space.gene_sizes())]
        arch = self.space.from_genes(genes)
        return float(self.predict_many([arch])[0]), arch


def problem(space, budget_ms=None):
    return Problem(space, None, [DeviceTarget("dev", Fixed(space), budget_ms)])


def test_draws_in_a_listed_space_give_each_feasible_cell_once_then_none():
    space = SPACES.get("nb201")
    lat = Fixed(space).predict_many(space.all_archs())
    budget = float(np.sort(lat)[29])                       # 30 cells meet it, 0.2% of the space
    p = problem(space, budget)
    draws, seen, got = DistinctDraws(space, p, np.random.default_rng(1)), set(), []
    while (arch := draws.draw(seen)) is not None:
        seen.add(space.arch_id(arch))
        got.append(space.arch_id(arch))
        assert len(got) <= 30
    want = {space.arch_id(a) for a, ms in zip(space.all_archs(), lat) if ms <= budget}
    assert len(got) == 30 and set(got) == want
    assert draws.draw(seen) is None and draws.draw(set()) is None  # nothing listed is left once drawn


def test_random_search_without_a_budget_draws_every_network_of_a_small_space_once():
    """mbv3-tiny has 1,024 gene vectors and fewer networks (a gene of an unused block changes nothing)."""
    space = get_space("mbv3-tiny")
    assert listable(space) and not listable(get_space("mbv3-small"))
    everything = {space.arch_id(space.from_genes(g)) for g in np.indices(space.gene_sizes()).reshape(
        space.dim, -1).T}
    s = make_strategy("random", space, np.random.default_rng(0))
    got = [space.arch_id(a) for a in s.ask(5000)]
    assert len(got) == len(set(got)) == len(everything) < 1024 and set(got) == everything
    assert s.ask(3) == []


def test_a_space_too_large_to_list_ends_instead_of_repeating_its_one_feasible_network():
    """A budget only the fastest network meets: no sample meets it, the repair finds it, and the next draw, which
    finds nothing new in its bounded tries and repair, ends the search (novel-first repeated it each time)."""
    space = get_space("mbv3-small")
    fastest, anchor = Fixed(space).min_latency()
    ids = lambda archs: [space.arch_id(a) for a in archs]  # noqa: E731
    old = make_strategy("random", space, np.random.default_rng(0), feasibility=problem(space, fastest),
                        sampling="novel-first")
    assert ids(old.ask(12)) == [space.arch_id(anchor)] * 12
    new = make_strategy("random", space, np.random.default_rng(0), feasibility=problem(space, fastest))
    assert ids(new.ask(12)) == [space.arch_id(anchor)] and new.ask(1) == []


def test_under_a_loose_budget_the_new_draws_are_the_old_ones():
    """The first 50 tries are taken as novel-first takes them: the two differ only where that one would have
    repaired or repeated (so the search suite's random column, budgets at the 30% quantile, is unchanged)."""
    space = SPACES.get("nb201")
    lat = Fixed(space).predict_many(space.all_archs())
    p = problem(space, float(np.quantile(lat, 0.3)))
    draws = {s: [space.arch_id(a) for a in make_strategy("random", space, np.random.default_rng(4), feasibility=p,
                                                         sampling=s).ask(300)]
             for s in ("without-replacement", "novel-first")}
    assert draws["without-replacement"] == draws["novel-first"]


class Reversed(Fixed):
    """``Fixed``'s latencies turned around (the fastest of ``Fixed`` is the slowest here): under the same budget
    on two devices, one ``Fixed`` and one ``Reversed``, no architecture meets both."""

    def __init__(self, space, seed=0):
        super().__init__(space, seed)
        lat = super().predict_many(space.all_archs())
        self.top, self.low, self.slowest = float(lat.max()), float(lat.min()), space.all_archs()[int(np.argmax(lat))]

    def predict_many(self, archs):
        return self.top + self.low - super().predict_many(archs)

    def min_latency(self):
        return self.low, self.slowest


def two_devices(space, second):
    """Devices a (``Fixed``) and b (``second``) under the same budget, which 5% of the space meets on a."""
    a = Fixed(space)
    budget = float(np.quantile(a.predict_many(space.all_archs()), 0.05))
    return [DeviceTarget("a", a, budget), DeviceTarget("b", second, budget)], (("a", budget), ("b", budget))


def cut_log(folder, lines):
    log = Path(folder) / "evaluations.jsonl"
    log.write_text("".join(log.read_text().splitlines(keepends=True)[:lines]))
    (Path(folder) / "checkpoint.json").unlink()


def test_a_resume_whose_draws_run_out_before_the_log_ends_is_refused_not_complete(tables, tmp_path):
    """A resume replays the run; the draws without replacement end it where nothing new meets the budgets. Where
    a latency model changed so that nothing meets them together any more, the replay drew nothing at once and the
    run was written complete ("exhausted") with no evaluation, its log of 20 left beside an empty best.json."""
    from edgenas.evaluate.tabular import make_tabular
    from edgenas.search import SearchConfig, run_search
    from edgenas.search.run import ReplayMismatch

    space = SPACES.get("nb201")
    same, devices = two_devices(space, Fixed(space))
    changed, _ = two_devices(space, Reversed(space))
    config = SearchConfig(space="nb201", strategy="random", budget_evals=30, seed=0, devices=devices)
    evaluator = make_tabular(space, table=HW)
    run_search(config, Problem(space, evaluator, same), tmp_path / "r")
    cut_log(tmp_path / "r", 20)
    before = {f.name: f.read_bytes() for f in (tmp_path / "r").iterdir()}
    with pytest.raises(ReplayMismatch, match="proposes nothing more after 0 evaluations, and the log holds 20"):
        run_search(config, Problem(space, evaluator, changed), tmp_path / "r", resume=True)
    assert {f.name: f.read_bytes() for f in (tmp_path / "r").iterdir()} == before  # the folder as it was
    assert run_search(config, Problem(space, evaluator, same), tmp_path / "r", resume=True).n_evaluations == 30


def test_a_multi_fidelity_resume_whose_brackets_draw_fewer_than_its_log_is_refused(tables, tmp_path):
    from edgenas.evaluate import make_evaluator
    from edgenas.search.ladder import parse_ladder
    from edgenas.search.multifidelity import MFConfig, run_multifidelity
    from edgenas.search.run import ReplayMismatch

    space = SPACES.get("nb201")
    rungs = parse_ladder([f"nb201-fidelity:table={VALID},column=cifar10_valid_12ep",
                          f"nb201-fidelity:table={VALID},column=cifar10_valid,cost=16.67"])

    def problems(devices):
        return [Problem(space, make_evaluator(r.evaluator, space, **r.options), devices,
                        accuracy_name=r.options["column"]) for r in rungs]

    same, devices = two_devices(space, Fixed(space))
    changed, _ = two_devices(space, Reversed(space))
    config = MFConfig(space="nb201", rungs=rungs, mode="hyperband", candidates=9, eta=3, seed=0, devices=devices)
    run_multifidelity(config, problems(same), tmp_path / "r")
    cut_log(tmp_path / "r", 15)
    before = {f.name: f.read_bytes() for f in (tmp_path / "r").iterdir()}
    with pytest.raises(ReplayMismatch, match="the schedule ends after 0 evaluations, and the log holds 15"):
        run_multifidelity(config, problems(changed), tmp_path / "r", resume=True)
    assert {f.name: f.read_bytes() for f in (tmp_path / "r").iterdir()} == before

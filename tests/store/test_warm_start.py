"""Warm start from the experiment database (SQLite and PostgreSQL): every strategy takes an initial
population; similar past runs seed it (diverse, repaired to the new budgets, recorded); the similarity
guard refuses unrelated runs and says so; a warm-started run resumes exactly."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest

from edgenas.errors import SearchInterrupted

from edgenas.project import Project
from edgenas.search import make_strategy, strategy_names
from edgenas.search.base import Result
from edgenas.search.launch import SearchRequest, launch_search
from edgenas.search.warmstart import TEST_LEAK, diverse, hamming, plan_warm_start
from edgenas.spaces import get_space
from edgenas.search.task import _card
from edgenas.store.runs import best_evaluations, get_run, list_runs, run_evaluations, save_run

from .conftest import TABLE


def _req(**kw) -> SearchRequest:
    base = dict(space="nb201", table=str(TABLE), objective="cifar10_test", budget=40, seed=0)
    return SearchRequest(**{**base, **kw})


# llm-evolution is RegularizedEvolution with the language model as its mutation: its first asks are
# evolution's (covered here); building it needs a model, which tests/llm supplies
@pytest.mark.parametrize("name", [n for n in strategy_names() if n != "llm-evolution"])
def test_every_strategy_asks_its_initial_population_first(name):
    space = get_space("nb201")
    rng = np.random.default_rng(5)
    init = [space.sample(rng) for _ in range(4)]
    from edgenas.search.base import STRATEGIES

    opts = {"population": 8} if "population" in STRATEGIES.get(name).options else {}
    s = make_strategy(name, space, np.random.default_rng(0), initial_population=init, **opts)
    asked = []
    while len(asked) < 8:
        batch = s.ask(min(4, 8 - len(asked)))
        s.tell(batch, [Result((-float(i),)) for i in range(len(batch))])
        asked += batch
    ids = [space.arch_id(a) for a in asked]
    assert ids[:4] == [space.arch_id(a) for a in init]
    assert len(set(ids)) == 8  # the rest are new samples, not repeats


def test_diverse_keeps_architectures_apart_then_fills():
    space = get_space("nb201")
    base = space.from_genes([1, 2, 3, 1, 2, 3])
    near = space.from_genes([1, 2, 3, 1, 2, 4])        # 1 gene from base
    far = space.from_genes([0, 0, 0, 1, 2, 3])         # 3 genes from base
    ranked = [base, near, far]
    assert diverse(space, ranked, 2) == [0, 2]
    assert diverse(space, ranked, 3) == [0, 2, 1]
    assert hamming(space, base, far) == 3


@pytest.mark.parametrize("space_name", ["nb201", "mbv3-small"])
def test_the_lazy_diverse_order_is_the_pairwise_one(space_name):
    """The warm start takes its candidates from a lazy order (every pair was compared: 32 s for 2,000
    mbv3-small candidates to transfer 10); the order is the brute-force one, pair by pair."""
    from edgenas.search.warmstart import MIN_DISTANCE, diverse_order

    space, rng = get_space(space_name), np.random.default_rng(5)
    base = [space.sample(rng) for _ in range(12)]
    ranked = [space.mutate(base[i % 12], rng) if i >= 12 else base[i] for i in range(300)]  # many near ones
    keep = []
    for i, a in enumerate(ranked):
        if all(hamming(space, a, ranked[j]) >= MIN_DISTANCE for j in keep):
            keep.append(i)
    brute = keep + [i for i in range(len(ranked)) if i not in keep]
    assert list(diverse_order(space, ranked)) == brute and 0 < len(keep) < len(ranked)
    assert diverse(space, ranked, 7) == brute[:7]


def test_auto_warm_start_from_a_similar_run(db, tmp_path):
    proj = Project(tmp_path)
    launch_search(proj, _req(budget=60), tmp_path / "c10", db=db)
    src = list_runs(db)[0]
    _, _, res = launch_search(proj, _req(objective="cifar100_test", warm_start=("auto",), seed=4),
                              tmp_path / "c100", db=db)
    warm = json.loads((tmp_path / "c100" / "warm_start.json").read_text())
    assert warm["candidates"][0]["run_id"] == src.id and warm["candidates"][0]["used"]
    assert 0.8 < warm["candidates"][0]["task_similarity"] < 0.95 and warm["candidates"][0]["device_similarity"] == 1
    transferred = [t["arch"] for t in warm["transferred"]]
    assert len(transferred) == 10  # transfer_ratio 0.5 x evolution's population 20
    logged = [json.loads(x)["arch"] for x in (tmp_path / "c100" / "evaluations.jsonl").read_text().splitlines()]
    assert logged[:10] == transferred and len(logged) == 40  # evaluated again, inside the budget
    src_best = max(t["source_value"] for t in warm["transferred"])
    assert src_best == pytest.approx(src.best_value)  # the source's best is among them
    space = get_space("nb201")
    genes = [space.to_genes(space.from_dict(a)) for a in transferred]
    assert min(int(np.sum(a != b)) for i, a in enumerate(genes) for b in genes[i + 1:]) >= 2
    rec = get_run(db, list_runs(db)[1].id)
    assert rec.warm_start["transferred"][0]["from_run"] == src.id


def test_an_edited_architecture_row_is_a_damaged_row_naming_the_run_and_evaluation(db, tmp_path):
    """An evaluation row whose architecture is not of its space (imported before imports checked them, or edited)
    made every later warm start one bare line, "malformed NAS-Bench-201 architecture string ...", naming no row."""
    import sqlalchemy as sa

    from edgenas.errors import InputError
    from edgenas.store.schema import evaluations

    proj = Project(tmp_path)
    launch_search(proj, _req(budget=20), tmp_path / "c10", db=db)
    src = list_runs(db)[0]
    bogus = {"space": "nb201", "schema": 1, "arch": "|conv~0|+|none~0|none~1|+|none~0|none~1|none~2|"}
    with db.engine.begin() as con:
        con.execute(sa.update(evaluations).where(evaluations.c.number == src.best_number).values(arch=bogus))
    with pytest.raises(InputError) as exc:
        launch_search(proj, _req(objective="cifar100_test", warm_start=("auto",), seed=4), tmp_path / "w", db=db)
    assert exc.value.message.startswith(f"damaged row in the experiment database {db.where}: table evaluations, run "
                                        f"{src.id}, evaluation {src.best_number}, column arch: malformed NAS-Bench-201")
    assert str(tmp_path / "c10") in exc.value.hint and not (tmp_path / "w").exists()


def test_a_validation_search_takes_nothing_from_a_run_ranked_by_test_accuracy(db, tmp_path, cli, monkeypatch,
                                                                              db_url):
    """The standard protocol (optimise cifar10_valid, report cifar10_test): `auto` took the ten best
    architectures by cifar10_test of a past run of the same dataset (similarity 1), so test accuracy chose
    the new run's first population. Such a run is now left out and says why; a validation run still serves."""
    proj = Project(tmp_path)
    tables = (str(TABLE), str(TABLE.parent / "nb201_valid.csv"))
    launch_search(proj, _req(budget=40), tmp_path / "by-test", db=db)
    by_test = list_runs(db)[0]
    launch_search(proj, _req(table=tables, objective="cifar10_valid_12ep", budget=40, seed=1), tmp_path / "v12", db=db)
    by_valid = next(r for r in list_runs(db) if r.id != by_test.id)
    launch_search(proj, _req(table=tables, objective="cifar10_valid", report=("cifar10_test",), warm_start=("auto",),
                             seed=2), tmp_path / "new", db=db)
    warm = json.loads((tmp_path / "new" / "warm_start.json").read_text())
    cand = {c["run_id"]: c for c in warm["candidates"]}
    assert cand[by_test.id]["task_similarity"] == 1 and not cand[by_test.id]["used"]
    assert "optimised a test column" in cand[by_test.id]["excluded"]
    assert cand[by_valid.id]["used"] and "excluded" not in cand[by_valid.id]
    assert warm["transferred"] and {t["from_run"] for t in warm["transferred"]} == {by_valid.id}
    # runs show says why a run was left out, and how many architectures each one used gave (it printed only
    # "not used", and "used" for a run that gave nothing)
    monkeypatch.setenv("EDGENAS_PROJECT", str(tmp_path))
    new = next(r for r in list_runs(db) if r.id not in (by_test.id, by_valid.id))
    shown = cli("runs", "show", new.id, "--db", db_url).out
    assert f"{by_test.id}: similarity 1.00" in shown and "excluded: optimised a test column" in shown
    assert f"used: {len(warm['transferred'])} transferred" in shown, shown
    # the chosen evaluation's test accuracy (the standard protocol's report), read from its best.json
    test = json.loads((tmp_path / "new" / "best.json").read_text())["report"]["cifar10_test"]
    assert f"reported for it (best.json): cifar10_test = {test:.4g}" in shown, shown
    shown_json = json.loads(cli("runs", "show", new.id, "--db", db_url, "--json").out)
    assert shown_json["best_report"] == {"cifar10_test": test}
    # a search that optimises the test column itself may still take from it (nothing is reported apart)
    launch_search(proj, _req(objective="cifar10_test", warm_start=(by_test.id,), seed=3), tmp_path / "t2", db=db)
    again = json.loads((tmp_path / "t2" / "warm_start.json").read_text())
    assert again["candidates"][0]["used"] and again["transferred"]


def test_the_similarity_guard_refuses_an_unrelated_run_and_says_so(db, tmp_path, cli, monkeypatch, db_url):
    proj = Project(tmp_path)
    # a past run on a 30x smaller grey-scale dataset (digits): similarity 0.44 < 0.6
    launch_search(proj, _req(objective="cifar10_test", budget=20), tmp_path / "digits", db=db)
    src = list_runs(db)[0]
    save_run(db, dataclasses.replace(src, task=_card("digits")), run_evaluations(db, src.id))
    monkeypatch.setenv("EDGENAS_PROJECT", str(tmp_path))
    r = cli("search", "--space", "nb201", "--table", str(TABLE), "--budget", "20", "--seed", "3",
            "--warm-start", src.id, "--out", str(tmp_path / "new"), "--db", db_url)
    assert r.code == 0, r.err
    warm = json.loads((tmp_path / "new" / "warm_start.json").read_text())
    assert warm["transferred"] == [] and not warm["candidates"][0]["used"]
    best = warm["candidates"][0]["similarity"]  # the note says it as the record does (0.96 once read 0.957)
    assert round(best, 2) == 0.44 and f"no past run is similar enough (best {best:.4f} < 0.6)" in r.out
    cold = launch_search(proj, _req(budget=20, seed=3), tmp_path / "cold", db=db)[2]
    new = [json.loads(x)["arch"] for x in (tmp_path / "new" / "evaluations.jsonl").read_text().splitlines()]
    assert new == [dict(t.arch) for t in cold.trials]  # no transfer: exactly the cold search


def test_transfer_across_devices_repairs_to_the_new_budget(db, tmp_path):
    proj = Project(tmp_path)
    launch_search(proj, _req(latency_column="pixel3_ms", max_latency_ms=(30.0,), budget=60), tmp_path / "a", db=db)
    budget = 12.0
    problem, _, _ = launch_search(proj, _req(latency_column="raspi4_ms", max_latency_ms=(budget,),
                                             warm_start=("auto",), seed=2), tmp_path / "b", db=db)
    warm = json.loads((tmp_path / "b" / "warm_start.json").read_text())
    c = warm["candidates"][0]
    assert c["used"] and c["task_similarity"] == 1.0 and 0.6 < c["device_similarity"] < 1.0  # Spearman
    space = problem.space
    archs = [space.from_dict(t["arch"]) for t in warm["transferred"]]
    assert archs and np.all(problem.violation(archs) == 0)  # every transferred one meets the new budget
    assert any(t["repaired"] for t in warm["transferred"])


def test_warm_started_run_resumes_exactly(db, tmp_path):
    proj = Project(tmp_path)
    launch_search(proj, _req(budget=40), tmp_path / "src", db=db)
    # the source named (with auto, the second run would also draw on the first one's evaluations)
    req = _req(objective="cifar100_test", warm_start=(list_runs(db)[0].id,), seed=9, budget=30)
    full = launch_search(proj, req, tmp_path / "full", db=db)[2]

    def stop(done, total):
        if done == 7:
            raise KeyboardInterrupt

    with pytest.raises(SearchInterrupted):  # Ctrl-C: one line saying how to resume
        launch_search(proj, req, tmp_path / "part", db=db, progress=stop)
    resumed = launch_search(proj, None, tmp_path / "part", db=db, resume=True)[2]
    assert [dict(t.arch) for t in resumed.trials] == [dict(t.arch) for t in full.trials]


def test_warm_start_from_a_run_folder_indexes_it(db, tmp_path):
    proj = Project(tmp_path)
    launch_search(proj, _req(budget=20), tmp_path / "old", record=False)
    # one folder spelt two ways is one run named twice: refused before it is indexed (the database unchanged)
    from edgenas.errors import InputError

    with pytest.raises(InputError, match="^--warm-start names run [0-9a-f]+ twice \\(its folder .*/old is that run"):
        launch_search(proj, _req(warm_start=(str(tmp_path / "old"), str(tmp_path / "old") + "/"), budget=20),
                      tmp_path / "twice", db=db)
    assert list_runs(db) == [] and not (tmp_path / "twice").exists()
    launch_search(proj, _req(objective="imagenet16_test", warm_start=(str(tmp_path / "old"),), budget=20),
                  tmp_path / "new", db=db)
    warm = json.loads((tmp_path / "new" / "warm_start.json").read_text())
    assert warm["candidates"][0]["dataset"] == "cifar10" and warm["candidates"][0]["used"]
    assert 0.7 < warm["candidates"][0]["similarity"] < 0.8  # CIFAR-10 -> ImageNet16-120: 0.74
    assert len(list_runs(db)) == 2


def test_warm_start_from_an_indexed_run_folder_keeps_its_devices(db, tmp_path):
    """The folder was indexed again without its problem: its device became 'unknown' (similarity 0.5,
    under the 0.6 guard), so nothing was transferred and the stored record stayed damaged."""
    proj = Project(tmp_path)
    lat = dict(latency_column="pixel3_ms", max_latency_ms=(10.0,))
    launch_search(proj, _req(budget=20, **lat), tmp_path / "old", db=db)
    (old,) = list_runs(db)
    launch_search(proj, _req(objective="cifar100_test", warm_start=(str(tmp_path / "old"),), budget=20, **lat),
                  tmp_path / "new", db=db)
    cand = json.loads((tmp_path / "new" / "warm_start.json").read_text())["candidates"][0]
    assert cand["run_id"] == old.id and cand["device_similarity"] == 1.0 and cand["used"]
    assert get_run(db, old.id).devices == old.devices
    # the run by its id and by its folder is one run named twice: its candidates and transfers were counted twice
    from edgenas.errors import InputError

    with pytest.raises(InputError, match=f"^--warm-start names run {old.id} twice \\(its folder .*old is that run\\)"):
        launch_search(proj, _req(warm_start=(old.id, str(tmp_path / "old")), budget=20, **lat), tmp_path / "twice",
                      db=db)
    assert not (tmp_path / "twice").exists()
    with pytest.raises(InputError, match=f"^--warm-start names run {old.id} twice \\('{old.id[:6]}' is that run\\)"):
        launch_search(proj, _req(warm_start=(old.id[:6], old.id), budget=20, **lat), tmp_path / "twice", db=db)


def test_bad_warm_start_settings(db, tmp_path):
    from edgenas.errors import InputError

    proj = Project(tmp_path)
    with pytest.raises(InputError, match="transfer-ratio must be in"):
        launch_search(proj, _req(warm_start=("auto",), transfer_ratio=1.5), tmp_path / "x", db=db)
    with pytest.raises(InputError, match="no run 'abcdef'"):
        launch_search(proj, _req(warm_start=("abcdef",)), tmp_path / "y", db=db)
    assert not (tmp_path / "x").exists() and not (tmp_path / "y").exists()
    launch_search(proj, _req(budget=5), tmp_path / "mb", db=db)
    with pytest.raises(InputError, match="searched space 'nb201', not 'mbv3-small'"):
        problem = type("P", (), {"space": get_space("mbv3-small"), "devices": []})()
        plan_warm_start(db, proj, problem, _req(), [list_runs(db)[0].id], n=5)


def test_a_darts_run_given_a_table_is_recorded_with_the_data_it_trained_on():
    """A --table gives DARTS latency only; the task was recorded as the table's CIFAR-10 while the run trained
    on digits, and warm starts matched it to CIFAR-10 runs."""
    from edgenas.search.launch import SearchRequest
    from edgenas.search.task import describe_task

    darts = SearchRequest(space="nb201", strategy="darts", table=str(TABLE), latency_column="raspi4_ms")
    assert describe_task(darts)["dataset"] == "digits"
    assert describe_task(darts.to_json())["dataset"] == "digits"
    assert describe_task(SearchRequest(space="nb201", table=str(TABLE)))["dataset"] == "cifar10"



def test_task_similarity_by_hand_from_the_meta_features():
    """exp(-d^2 / 8) of (log10 classes, log10 samples, log2 side, channels / 3), worked out by hand: CIFAR-10 to
    ImageNet16-120 d^2 = 1.0792^2 + 0.4820^2 + 1 = 2.3970 (0.7411); to digits 1.4444^2 + 2^2 + (2/3)^2 = 6.5308
    (0.4420)."""
    from edgenas.search.task import meta_features, task_similarity

    from edgenas.search.task import CARDS

    # the datasets' own numbers: classes, side in px, channels, training images
    assert {k: tuple(c.values()) for k, c in CARDS.items()} == {
        "cifar10": (10, 32, 3, 50000), "cifar100": (100, 32, 3, 50000), "imagenet16": (120, 16, 3, 151700),
        "imagenet": (1000, 224, 3, 1281167), "digits": (10, 8, 1, 1797)}
    c10 = _card("cifar10")
    assert c10["meta"] == pytest.approx([1.0, 4.69897, 5.0, 1.0])
    assert task_similarity(c10, _card("imagenet16")) == pytest.approx(0.7411, abs=1e-4)
    assert task_similarity(_card("digits"), c10) == pytest.approx(0.4420, abs=1e-4)
    # the same dataset is 1 whatever its numbers; another modality 0 whatever they are
    assert task_similarity(c10, {**_card("cifar10", samples=10), "meta": None}) == 1.0
    assert task_similarity(c10, {**c10, "modality": "text"}) == 0.0
    assert task_similarity({"meta": c10["meta"]}, {"modality": "image", "meta": c10["meta"]}) == 1.0
    # no name on either side: the numbers decide (d^2 = 2^2: exp(-1/2))
    assert task_similarity({"dataset": None, "meta": [0, 0, 0, 0]},
                           {"dataset": None, "meta": [0, 0, 0, 2]}) == pytest.approx(0.60653, abs=1e-5)
    # nothing to compare: no transfer
    assert task_similarity({"dataset": "a"}, c10) == 0.0
    assert task_similarity(c10, {"dataset": "b", "meta": [1.0, 2.0]}) == 0.0
    assert task_similarity({"dataset": "a", "classes": 10, "samples": 50000, "input_size": 32, "channels": 3},
                           {"dataset": "b", **{k: c10[k] for k in ("classes", "samples", "input_size", "channels")}}
                           ) == 1.0  # the meta-features computed when a record has none
    assert meta_features({"classes": 10, "samples": 100, "input_size": 8}) is None
    assert meta_features({"classes": "x", "samples": 100, "input_size": 8, "channels": 1}) is None
    assert meta_features({"classes": None, "samples": 100, "input_size": 8, "channels": 1}) is None


def test_a_task_by_its_column_ladder_or_data(tmp_path):
    """The dataset of a table's objective column, of a ladder's last rung, of data on disk (measured) or only
    named (a file that cannot be read)."""
    from edgenas.search.task import dataset_of_column, describe_task, is_test_column

    assert [dataset_of_column(c) for c in ("cifar100_test", "cifar10_valid_12ep", "x")] == ["cifar100", "cifar10",
                                                                                            "x"]
    assert [is_test_column(c) for c in ("cifar10_test", "cifar100_test_12ep", "cifar10_valid")] == [True, True, False]
    assert describe_task(_req(objective="cifar100_test"))["dataset"] == "cifar100"
    assert describe_task({"table": str(TABLE)})["dataset"] == "cifar10"  # the default objective's
    task = describe_task({"strategy": "sh", "ladder": ["compression", "nb201-fidelity:column=cifar100_valid"]})
    assert (task["dataset"], task["classes"], task["source"]) == ("cifar100", 100, "table")
    assert describe_task({"strategy": "sh", "ladder": ["compression", "nb201-fidelity"]})["dataset"] == "cifar10"
    assert describe_task({"strategy": "sh", "ladder": ["nb201-fidelity", "train:data=digits"]})["dataset"] == "digits"
    darts = {"strategy": "darts", "table": str(TABLE), "strategy_options": {"data": "cifar100"}}
    assert describe_task(darts)["dataset"] == "cifar100"  # the data it trains on, not the table's
    task = describe_task({"evaluator_options": {}})  # the evaluators' default data
    assert (task["dataset"], task["classes"], task["source"]) == ("digits", 10, "card")
    rng = np.random.default_rng(0)
    np.savez(tmp_path / "grey.npz", x=rng.integers(0, 255, (12, 1, 6, 6), dtype=np.uint8),
             y=np.array([0, 1, 2, 3, 4, 0, 1, 2, 3, 4, 0, 1]))
    task = describe_task({"evaluator_options": {"data": str(tmp_path / "grey.npz")}})  # read at 32 x 32, RGB
    assert {k: task[k] for k in ("dataset", "classes", "samples", "input_size", "channels", "source")} == {
        "dataset": "grey", "classes": 5, "samples": 12, "input_size": 32, "channels": 3, "source": "data"}
    task = describe_task({"evaluator_options": {"data": str(tmp_path / "gone.npz")}})
    assert (task["dataset"], task["source"], task["meta"]) == ("gone", "name", None)

# ---- the plan itself, on made-up runs (architectures chosen by their genes, accuracies set by hand), so that
# every expected order and similarity below is worked out from the numbers, not read back from the plan

NB201 = get_space("nb201")
REQ = {"table": str(TABLE), "objective": "cifar10_test"}


def _g(*genes):
    return NB201.from_genes(list(genes))


def _past(db, rid: str, archs, acc, *, created: float = 1.0, objective: str = "cifar10_test", task=None,
          devices=(), n_evaluations=None):
    """A finished run of ``archs`` with these accuracies (None: the evaluation has no value of it)."""
    from edgenas.search.task import describe_task
    from edgenas.store.runs import Evaluation, RunRecord

    evals = [Evaluation(number=i, arch=NB201.to_dict(a), objectives={} if v is None else {objective: v},
                        latency_ms={}) for i, (a, v) in enumerate(zip(archs, acc))]
    save_run(db, RunRecord(id=rid, created_at=created, status="complete", space="nb201", strategy="random", seed=0,
                           objective=objective, out_dir=f"/nowhere/{rid}", config={},
                           task=describe_task(REQ) if task is None else task, devices=tuple(devices),
                           n_evaluations=len(evals) if n_evaluations is None else n_evaluations), evals)


class _Problem:
    """No devices (device similarity 1); with ``feasible``, a budget only those architectures meet (the
    ``anchors`` being the fastest ones a repair moves toward)."""

    def __init__(self, feasible=None, anchors=(), devices=()):
        self.space, self.devices, self._anchors = NB201, list(devices), list(anchors)
        self.constrained, self.feasible = feasible is not None, {NB201.arch_id(a) for a in feasible or ()}

    def violation(self, archs):
        return np.array([0.0 if NB201.arch_id(a) in self.feasible else 1.0 for a in archs])

    def anchors(self):
        return self._anchors


def _plan(db, tmp_path, n, problem=None, request=REQ, sources=("auto",), **kw):
    archs, record = plan_warm_start(db, Project(tmp_path), problem or _Problem(), request, list(sources), n=n, **kw)
    assert [NB201.to_dict(a) for a in archs] == [t["arch"] for t in record["transferred"]]
    return [(t["from_run"], t["from_number"]) for t in record["transferred"]], record


def test_the_plan_takes_each_runs_best_in_turn_most_similar_and_newest_run_first(db, tmp_path):
    a = [_g(0, 0, 0, 0, 0, 0), _g(1, 1, 1, 1, 1, 1), _g(2, 2, 2, 2, 2, 2), _g(3, 3, 3, 3, 3, 3)]
    _past(db, "b002", [a[2], a[3], a[0]], [85.0, 50.0, 99.0], created=1.0)  # a[0] is the newer run's too
    _past(db, "a001", [a[0], a[1], a[3], a[2]], [70.0, 80.0, None, None], created=2.0)  # #2, #3: no value
    _past(db, "c003", [], [], created=3.0)
    _past(db, "d004", [a[3]], [99.0], created=4.0, task=_card("digits"))  # similarity 0.44 < 0.6
    # in turn by run (newer, older), each best first: newer #1 (80), older #2 (99), newer #0 (70: older #2's
    # architecture, taken), older #0 (85), older #1 (50)
    taken, record = _plan(db, tmp_path, 10)
    assert taken == [("a001", 1), ("b002", 2), ("b002", 0), ("b002", 1)]
    assert [t["source_value"] for t in record["transferred"]] == [80.0, 99.0, 85.0, 50.0]
    assert [(c["run_id"], c["used"]) for c in record["candidates"]] == [
        ("a001", True), ("b002", True), ("d004", False)]  # the run without evaluations is no candidate
    assert record["note"] == "4 architectures from 2 past run(s) seed the first population"
    assert _plan(db, tmp_path, 3)[0] == taken[:3]
    assert _plan(db, tmp_path, 3, sources=("b002",))[0] == [("b002", 2), ("b002", 0), ("b002", 1)]
    assert _plan(db, tmp_path, 2, exclude=("a001",))[0] == [("b002", 2), ("b002", 0)]
    taken, record = _plan(db, tmp_path, 0)  # --transfer-ratio 0: it said "no past run is similar enough (best 1.0000)"
    assert taken == [] and record["note"] == "no slot to transfer into (--transfer-ratio 0): nothing transferred"


def test_a_runs_best_evaluations_are_its_evaluations_ranked_then_cut(db, tmp_path):
    """What a warm start reads of a past run, selected by the database (best value first, of equal values the
    first evaluated; no value: left out), is what ranking every evaluation of it gave: on a search of the
    table and on a run with tied values and evaluations without one."""
    launch_search(Project(tmp_path), _req(budget=60), tmp_path / "r", db=db)
    a = [_g(i, i, i, i, i, i) for i in range(5)]
    _past(db, "e007", a + a, [70.0, None, 90.0, 70.0, None, 90.0, 70.0, 50.0, None, 90.0])
    for run in list_runs(db):
        ranked = sorted((e for e in run_evaluations(db, run.id)
                         if np.isfinite(e.objectives.get(run.objective, -np.inf))),
                        key=lambda e: (-e.objectives[run.objective], e.number))
        for n in (0, 1, 3, 7, len(ranked), len(ranked) + 5):
            assert best_evaluations(db, run.id, n) == ranked[:n], (run.id, n)
    assert [e.number for e in best_evaluations(db, "e007", 10)] == [2, 5, 9, 0, 3, 6, 7]


def test_the_plan_keeps_architectures_apart_among_the_best_five_per_slot(db, tmp_path):
    """Ten runners-up one gene from the best, an eleventh far from it: two slots take the best five per slot
    (ten), all near, so the second slot is filled by rank; the far one, 11th, is out of reach."""
    near = [_g(0, 0, 0, 0, 0, 0)] + [_g(*([0] * (i // 4)), 1 + i % 4, *([0] * (5 - i // 4))) for i in range(10)]
    far = _g(4, 4, 4, 4, 4, 4)
    _past(db, "e005", near + [far], [99.0 - i for i in range(12)])
    assert _plan(db, tmp_path, 2)[0] == [("e005", 0), ("e005", 1)]
    assert _plan(db, tmp_path, 3)[0] == [("e005", 0), ("e005", 11), ("e005", 1)]  # fifteen in reach: the far one next
    # two genes apart is apart enough: the third (2 genes from the best) before the second (1 gene)
    _past(db, "e006", [_g(0, 0, 0, 0, 0, 0), _g(0, 0, 0, 0, 0, 1), _g(0, 0, 0, 0, 1, 1)], [3.0, 2.0, 1.0])
    assert _plan(db, tmp_path, 2, sources=("e006",))[0] == [("e006", 0), ("e006", 2)]


def test_feasible_architectures_go_first_under_the_new_budgets(db, tmp_path):
    a = [_g(0, 0, 0, 0, 0, 0), _g(1, 1, 1, 1, 1, 1), _g(2, 2, 2, 2, 2, 2)]
    fastest = _g(3, 3, 3, 3, 3, 3)
    _past(db, "e005", a, [90.0, 80.0, 70.0])
    taken, record = _plan(db, tmp_path, 2, _Problem(feasible=[a[1], a[2], fastest], anchors=[fastest]))
    assert taken == [("e005", 1), ("e005", 2)]  # feasible as they are: taken unrepaired
    assert [t["repaired"] for t in record["transferred"]] == [False, False]
    # only the fastest meets the budget: both repair to it, and it is transferred once
    taken, record = _plan(db, tmp_path, 2, _Problem(feasible=[fastest], anchors=[fastest]))
    assert taken == [("e005", 0)] and record["transferred"][0]["repaired"]
    assert record["transferred"][0]["arch"] == NB201.to_dict(fastest)


def test_a_repair_onto_a_taken_architecture_passes_on_to_the_next_candidate(db, tmp_path):
    """Six past architectures none of which meets the budget; two fastest ones do, and each repair moves to one
    of them (the anchor drawn at random). Whatever the seed, the plan goes on past a repair that lands on the
    one already taken until it has both, rather than stopping at the first repeat."""
    slow = [_g(*([i % 5] * 5), (i + 1) % 5) for i in range(6)]
    f1, f2 = _g(3, 3, 3, 3, 3, 3), _g(4, 4, 4, 4, 4, 4)
    _past(db, "e005", slow, [90.0 - i for i in range(6)])
    problem = _Problem(feasible=[f1, f2], anchors=[f1, f2])
    for seed in range(8):  # with a stop at the first repeat, seeds 1, 5 and 7 transfer one architecture
        _, record = _plan(db, tmp_path, 2, problem, seed=seed)
        got = [t["arch"] for t in record["transferred"]]
        assert sorted(map(str, got)) == sorted(map(str, [NB201.to_dict(f1), NB201.to_dict(f2)])), seed
        assert all(t["repaired"] for t in record["transferred"])


def test_the_similarity_threshold_is_inclusive_and_checked(db, tmp_path):
    from edgenas.errors import InputError
    from edgenas.search.task import describe_task, task_similarity

    _past(db, "e005", [_g(0, 0, 0, 0, 0, 0)], [90.0], task=_card("cifar100"))
    s = task_similarity(describe_task(REQ), _card("cifar100"))  # about 0.9
    assert 0.6 < s < 1
    taken, record = _plan(db, tmp_path, 1, min_similarity=s)
    assert taken == [("e005", 0)] and record["candidates"][0]["used"]
    taken, record = _plan(db, tmp_path, 1, min_similarity=float(np.nextafter(s, 1)))
    assert taken == [] and not record["candidates"][0]["used"]
    assert record["note"] == (f"no past run is similar enough (best {s:.4f} < {float(np.nextafter(s, 1))}); "
                              "nothing transferred, the search starts from scratch")
    assert _plan(db, tmp_path, 1, min_similarity=0.0)[0] == [("e005", 0)]
    assert _plan(db, tmp_path, 1, min_similarity=1.0)[0] == []
    _past(db, "e00f", [_g(0, 0, 0, 0, 0, 0)], [90.0], task={"modality": "text"}, created=0.0)
    other = _plan(db, tmp_path, 1)[1]["candidates"][1]  # another modality: nothing in common, devices not compared
    assert (other["run_id"], other["similarity"], other["device_similarity"], other["used"]) == ("e00f", 0, 0, False)
    # with a budgeted device whose past table is gone (device similarity 0.5): the product
    from edgenas.store.runs import RunDevice

    _past(db, "e010", [_g(1, 1, 1, 1, 1, 1)], [90.0], task=_card("cifar10"), created=-1.0,
          devices=[RunDevice("pi", "table", None, None, f"{tmp_path / 'gone.csv'}#raspi4_ms", 5.0)])
    target = type("T", (), {"name": "pi", "model": _Model(lambda g: 1.0), "budget_ms": 5.0})()
    taken, record = _plan(db, tmp_path, 2, _Problem(devices=[target]))
    cands = record["candidates"]
    assert taken == [("e005", 0)]  # e010 (task similarity 1) is under the threshold by the product
    assert [c["run_id"] for c in cands] == ["e005", "e010", "e00f"]  # by the product: 0.9 x 1, 1 x 0.5, 0
    assert [(c["task_similarity"], c["device_similarity"], c["similarity"]) for c in cands[:2]] == [
        (round(s, 4), 1.0, round(s, 4)), (1.0, 0.5, 0.5)]  # no past budget on e005: nothing to compare
    for bad in (-0.01, 1.01):
        with pytest.raises(InputError, match="min-similarity must be in"):
            _plan(db, tmp_path, 1, min_similarity=bad)


def test_only_a_validation_search_of_a_table_leaves_out_runs_ranked_by_test_accuracy(db, tmp_path):
    a = [_g(0, 0, 0, 0, 0, 0), _g(1, 1, 1, 1, 1, 1)]
    _, record = _plan(db, tmp_path, 1)
    assert record["candidates"] == [] and record["note"] == "no past run of this space"
    _past(db, "f006", a, [90.0, 80.0], task=_card("cifar10"))
    valid = {"table": str(TABLE), "objective": "cifar10_valid"}
    taken, record = _plan(db, tmp_path, 1, request=valid)
    assert taken == [] and record["candidates"][0]["excluded"] == TEST_LEAK
    assert record["note"] == f"no past run to transfer from: every one {TEST_LEAK}"
    assert _plan(db, tmp_path, 1, request={"table": str(TABLE), "objective": "cifar10_test"})[0] == [("f006", 0)]
    no_table = {"objective": "cifar10_valid", "evaluator": "nb201-fidelity"}  # not a benchmark table's column
    assert "excluded" not in _plan(db, tmp_path, 1, request=no_table)[1]["candidates"][0]
    _past(db, "f007", a[::-1], [90.0, 80.0], task=_card("cifar10"), objective="cifar10_valid", created=0.5)
    taken, record = _plan(db, tmp_path, 1, request=valid)
    assert taken == [("f007", 0)] and [c["used"] for c in record["candidates"]] == [False, True]


class _Model:
    def __init__(self, f):
        self.f = f

    def predict_many(self, archs):
        return np.array([self.f(NB201.to_genes(a)) for a in archs], float)


def test_device_similarity_is_the_worst_new_device_against_its_best_old_one(tmp_path):
    """Each new budgeted device scores its best old one (1 for the same fingerprint, 0.5 for a table no longer
    at hand, else the Spearman rank correlation over the probe architectures, below 0 counted as 0); the run
    scores its worst new device. Expected values from scipy's Spearman, not from the code's own ranks."""
    from scipy.stats import spearmanr

    from edgenas.evaluate.tabular import TableLatency
    from edgenas.search.warmstart import N_PROBE, device_similarity
    from edgenas.store.runs import RunDevice, RunRecord

    copy = tmp_path / "tables#2" / "hw.csv"  # a '#' in the path: PATH#COLUMN is split at the last one
    copy.parent.mkdir()
    copy.write_bytes(TABLE.read_bytes())
    table = TableLatency(copy, "raspi4_ms", NB201)
    old_table = RunDevice("pi", "table", None, None, f"{copy}#raspi4_ms", 5.0)
    gone = RunDevice("gone", "table", None, None, f"{tmp_path / 'gone.csv'}#raspi4_ms", 5.0)
    same_fp = RunDevice("jetson", "lut", "f" * 64, None, None, 5.0)
    rng = np.random.default_rng(0)
    probe = [NB201.sample(rng) for _ in range(N_PROBE)]
    pi = table.predict_many(probe)
    weights = np.array([1.0, -2.0, 0.5, 3.0, 0.0, 1.5])
    half = _Model(lambda g: float(g @ weights))  # another device: partly the same order
    rho = spearmanr(pi, half.predict_many(probe)).statistic
    assert 0.05 < rho < 0.95

    def sim(new, old):
        targets = [type("T", (), {"model": m})() for m, _ in new]
        mine = [RunDevice(f"n{i}", "other", fp, None, None, b) for i, (_, (fp, b)) in enumerate(new)]
        past = RunRecord("ab", 1.0, "complete", "nb201", "random", 0, "c", "/x", {}, {}, devices=tuple(old))
        problem = type("P", (), {"space": NB201, "devices": targets})()
        return device_similarity(Project(tmp_path), problem, mine, past)

    table_like = (_Model(lambda g: 0.0), (None, 5.0))
    assert sim([(half, (None, 5.0))], [old_table]) == pytest.approx(rho)
    assert sim([(_Model(lambda g: -float(g @ weights)), (None, 5.0))], [old_table]) == 0.0  # -rho < 0
    assert sim([table_like], [gone]) == 0.5
    assert sim([(half, (None, 5.0))], [gone, old_table]) == pytest.approx(max(0.5, rho))  # the best old
    assert sim([(half, ("f" * 64, 5.0))], [old_table, same_fp]) == 1.0  # the same fingerprint
    assert sim([(half, ("f" * 64, 5.0))], [gone, same_fp]) == 1.0  # past one whose table is gone
    assert sim([(half, ("f" * 64, 5.0)), (half, (None, 5.0))], [same_fp, old_table]) == 0.5  # worst new: 0.5
    fp_table = dataclasses.replace(old_table, fingerprint_hash="e" * 64)
    assert sim([(half, ("e" * 64, 5.0)), (half, (None, 5.0))], [fp_table]) == pytest.approx(rho)
    assert sim([(half, ("f" * 64, 5.0))], [fp_table]) == pytest.approx(rho)  # another fingerprint: compared
    assert sim([(half, (None, None))], [old_table]) == 1.0  # no new budget: nothing to compare
    assert sim([(half, (None, 5.0))], [dataclasses.replace(old_table, budget_ms=None)]) == 1.0
    flat = _Model(lambda g: 1.0)  # a constant model has no order: 0, not NaN
    assert sim([(flat, (None, 5.0))], [old_table]) == 0.0


def test_device_similarity_finds_a_past_lut_and_a_past_fewshot_model(tmp_path, monkeypatch):
    """The past device's model is loaded by kind: a LUT from its file, a few-shot model by device and space
    (its record's path is in lut_ref too, as ``describe_device`` writes it). Found, each scores by rank
    (the same LUT: 1; the few-shot model: the Spearman of its predictions); else 0.5."""
    import hashlib

    from scipy.stats import spearmanr

    import edgenas.latency.fewshot_model as fewshot
    from edgenas.evaluate.tabular import TableLatency
    from edgenas.latency.lut import EntryStats, Lut
    from edgenas.latency.predictor import LatencyPredictor
    from edgenas.latency.store import LutStore
    from edgenas.search.warmstart import N_PROBE, device_similarity
    from edgenas.store.runs import RunDevice, RunRecord

    def stats(ms):
        return EntryStats(n=20, median_ms=ms, mean_ms=ms, std_ms=0.01 * ms, cov=0.01, p90_ms=ms, p99_ms=ms,
                          min_ms=ms, max_ms=ms)

    entries = {k: stats(0.05 + int.from_bytes(hashlib.sha256(k.encode()).digest()[:4], "little") / 2**32)
               for k in NB201.key_vocab()}
    lut = Lut(device="jetson", space="nb201", fingerprint={"model": "test"}, fingerprint_hash="e" * 64,
              runtime="onnxruntime", precision="fp32", threads=1, protocol={}, overhead=stats(0.01), entries=entries)
    path = LutStore(Project(tmp_path).luts_dir).save(lut)
    table = TableLatency(TABLE, "raspi4_ms", NB201)
    rng = np.random.default_rng(0)
    probe = [NB201.sample(rng) for _ in range(N_PROBE)]
    weights = np.array([1.0, -2.0, 0.5, 3.0, 0.0, 1.5])
    half = _Model(lambda g: float(g @ weights))
    rho = spearmanr(table.predict_many(probe), half.predict_many(probe)).statistic
    flat = _Model(lambda g: 2.0)
    models = {"orin": half, "flat": flat}
    monkeypatch.setattr(fewshot, "load_latency_model", lambda luts_dir, device, space: models.get(device))

    def sim(model, old):
        past = RunRecord("ab", 1.0, "complete", "nb201", "random", 0, "c", "/x", {}, {}, devices=(old,))
        problem = type("P", (), {"space": NB201, "devices": [type("T", (), {"model": model})()]})()
        return device_similarity(Project(tmp_path), problem, [RunDevice("new", "other", None, None, None, 5.0)], past)

    same = sim(LatencyPredictor(lut, NB201), RunDevice("jetson", "lut", "d" * 64, None, str(path), 5.0))
    assert same == pytest.approx(1.0)
    assert sim(table, RunDevice("orin", "fewshot", "d" * 64, None, str(tmp_path / "orin.json"), 5.0)) == \
        pytest.approx(rho)
    assert sim(table, RunDevice("nano", "fewshot", "d" * 64, None, None, 5.0)) == 0.5  # its model is gone
    # a model predicting one latency for all orders nothing: 0 against any other (ranked by position, its ties
    # made it 1.0 against a model that happens to order the probe as it was sampled)
    by_position = type("ByPosition", (), {"predict_many": lambda self, archs: np.arange(len(archs), dtype=float)})()
    assert sim(by_position, RunDevice("flat", "fewshot", "d" * 64, None, None, 5.0)) == 0.0


def test_the_transferred_share_is_at_least_one_at_most_the_budget_and_none_at_a_ratio_of_0(db, tmp_path):
    """round(--transfer-ratio x population), but at least one architecture, never more than the budget, and
    none at all for a ratio of 0."""
    proj = Project(tmp_path)
    launch_search(proj, _req(budget=30, strategy="random"), tmp_path / "src", db=db)
    for n, (ratio, budget) in enumerate(((0.01, 6), (1.0, 3), (0.0, 4))):
        launch_search(proj, _req(strategy="evolution", warm_start=("auto",), transfer_ratio=ratio, budget=budget,
                                 seed=n + 1), tmp_path / f"w{n}", db=db)
        warm = json.loads((tmp_path / f"w{n}" / "warm_start.json").read_text())
        assert len(warm["transferred"]) == (1, 3, 0)[n], (ratio, budget)

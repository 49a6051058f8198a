"""Evolution's ``mutation`` option: ``one`` (Real et al. 2019: exactly one gene, to another value) or ``per-gene``
(each gene resampled with probability ``mutation_rate``, what every run recorded before the option ran), recorded
in the run folder, and an old run folder (no ``mutation`` in it) resumes and replays as it ran."""

import json
import shutil
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from edgenas.errors import InputError
from edgenas.project import Project
from edgenas.search.base import Result, make_strategy, recorded_options
from edgenas.search.evolution import RegularizedEvolution as REA
from edgenas.search.launch import SearchRequest, launch_search
from edgenas.spaces import SPACES

HW = Path(__file__).resolve().parents[2].parent / "shared/data/nb201/nb201_hw.csv"


def score(space, arch):
    """A fixed pseudo-random accuracy of each architecture."""
    return float(np.random.default_rng(int(space.to_genes(arch) @ (5 ** np.arange(space.dim)))).random())


def children_and_parents(space, seed=1, steps=200, **opts):
    """Every mutated child of an evolution run on ``space`` with its tournament winner."""
    s = make_strategy("evolution", space, np.random.default_rng(seed), population=10, tournament=3, **opts)
    out = []
    for _ in range(steps):
        child, = s.ask(1)
        origin = s.origin.get(space.arch_id(child))
        if origin is not None:
            out.append((origin[0], child))
        s.tell([child], [Result((-score(space, child),))])
    return out


@pytest.mark.parametrize("name", ["nb201", "mbv3-tiny"])
def test_one_gene_mutation_changes_exactly_one_gene_to_another_value_uniformly(name):
    space = SPACES.get(name)
    sizes = np.asarray(space.gene_sizes())
    rng = np.random.default_rng(0)
    where = Counter()
    for _ in range(3000):
        parent = space.sample(rng)
        child, ops = space.mutate_genes(parent, rng)
        changed = np.flatnonzero(space.to_genes(child) != space.to_genes(parent))
        assert len(changed) == 1 and [(int(changed[0]), int(space.to_genes(child)[changed[0]]))] == list(ops)
        where[int(changed[0])] += 1
    mutable = np.flatnonzero(sizes > 1)
    assert set(where) == set(mutable.tolist())              # only genes with a choice, and every one of them
    assert min(where.values()) > 0.5 * 3000 / len(mutable)   # uniform over them (about 3000/D each)


def test_under_mutation_one_every_child_differs_from_its_parent_in_exactly_one_gene(space):
    one = children_and_parents(space, mutation="one")
    per_gene = children_and_parents(space, mutation="per-gene")
    hamming = lambda pairs: Counter(int((space.to_genes(p) != space.to_genes(c)).sum()) for p, c in pairs)  # noqa
    assert len(one) > 150 and set(hamming(one)) == {1}
    # the per-gene mutation (1/D each, at least one): about a quarter of the children differ in 2 genes or more
    per = hamming(per_gene)
    assert 0.15 < sum(n for d, n in per.items() if d > 1) / sum(per.values()) < 0.4


def test_the_default_mutation_is_one_and_a_rate_alone_means_per_gene():
    assert REA.validate_options({})["mutation"] == "one"
    assert REA.validate_options({"mutation_rate": 0.3})["mutation"] == "per-gene"
    assert REA.validate_options({"mutation": "per-gene", "mutation_rate": 0.3})["mutation_rate"] == 0.3
    with pytest.raises(InputError, match="mutation_rate is the rate of mutation=per-gene") as exc:
        REA.validate_options({"mutation": "one", "mutation_rate": 0.3})
    assert "mutation=per-gene" in exc.value.hint
    with pytest.raises(InputError, match="mutation='two' must be one or per-gene"):
        REA.validate_options({"mutation": "two"})


def test_recorded_options_spell_out_the_mutation_a_run_used():
    new, old = {"sampling": "without-replacement"}, {"sampling": "novel-first"}  # tests/search/test_first_draws.py
    assert recorded_options("evolution", {}, new=True) == {"mutation": "one", **new}
    assert recorded_options("rea", {"mutation_rate": 0.2}, new=True) == {"mutation_rate": 0.2, "mutation": "per-gene",
                                                                         **new}
    assert recorded_options("evolution", {"population": 8}, new=False) == {"population": 8, "mutation": "per-gene",
                                                                           **old}
    assert recorded_options("evolution", {"mutation": "one", **new}, new=False) == {"mutation": "one", **new}
    assert recorded_options("llm-evolution", {}, new=False) == {"mutation": "per-gene", **old}
    assert recorded_options("tpe", {}, new=True) == {} and recorded_options("darts", {}, new=True) == {}
    # random's and hyperband's sampling: tests/search/test_random_draws.py


@pytest.mark.parametrize("mutation", ["one", "per-gene"])
def test_the_same_seed_gives_the_same_search_and_another_seed_another(space, mutation):
    ids = lambda seed: [space.arch_id(c) for _, c in children_and_parents(space, seed, 80, mutation=mutation)]  # noqa
    assert ids(4) == ids(4) and ids(4) != ids(5)


def request(**kw):
    return SearchRequest(**{"space": "nb201", "table": str(HW), "strategy": "evolution", "budget": 40,
                            "population": 8, "seed": 5, **kw})


def logged(folder):
    return [json.loads(x)["arch"] for x in (folder / "evaluations.jsonl").read_text().splitlines()]


def test_a_new_run_records_its_mutation_in_its_request_and_config(tmp_path):
    if not HW.exists():
        pytest.skip(f"reference table not found at {HW}")
    for i, (given, want) in enumerate((({}, "one"), ({"mutation": "per-gene"}, "per-gene"),
                                       ({"mutation_rate": 0.5}, "per-gene"))):
        out = tmp_path / f"run{i}"
        launch_search(Project(tmp_path), request(budget=12, strategy_options=given), out, record=False)
        for name in ("request.json", "config.json"):
            assert json.loads((out / name).read_text())["strategy_options"]["mutation"] == want, (given, name)


def test_a_run_recorded_before_the_option_resumes_and_replays_per_gene_and_keeps_its_config(tmp_path):
    """An old run folder: its request and config have no ``mutation``. Cut after 20 of 40 evaluations, it resumes
    with the per-gene mutation it ran with (a replay with ``one`` would be refused), to the same 40."""
    if not HW.exists():
        pytest.skip(f"reference table not found at {HW}")
    proj = Project(tmp_path)
    ref, one = tmp_path / "ref", tmp_path / "one"
    launch_search(proj, request(strategy_options={"mutation": "per-gene"}), ref, record=False)
    launch_search(proj, request(), one, record=False)
    assert logged(ref) != logged(one)   # the two mutations search differently from the same seed
    old = tmp_path / "old"
    old.mkdir()
    for name in ("request.json", "config.json", "tables.json"):
        record = json.loads((ref / name).read_text())
        if "strategy_options" in record:
            del record["strategy_options"]["mutation"]
        (old / name).write_text(json.dumps(record))
    lines = (ref / "evaluations.jsonl").read_text().splitlines(keepends=True)
    (old / "evaluations.jsonl").write_text("".join(lines[:20]))
    records = lambda: {n: json.loads((old / n).read_text()) for n in ("request.json", "config.json")}  # noqa
    before = records()
    launch_search(proj, None, old, resume=True, record=False)
    assert logged(old) == logged(ref)
    assert records() == before   # the run's record (and so its id) unchanged
    assert "mutation" not in json.loads((old / "checkpoint.json").read_text())["config"]["strategy_options"]
    # the run cut again and resumed again: still exact
    (old / "evaluations.jsonl").write_text("".join(lines[:30]))
    launch_search(proj, None, old, resume=True, record=False)
    assert logged(old) == logged(ref)


def test_a_new_run_cut_short_resumes_with_the_mutation_it_recorded(tmp_path):
    """Through ``launch_search`` (the request records it) and through ``run_search`` given a config that leaves
    it out (only ``config.json`` records it: the resume takes it from there)."""
    if not HW.exists():
        pytest.skip(f"reference table not found at {HW}")
    from edgenas.search import run_search
    from edgenas.search.launch import build_problem

    proj = Project(tmp_path)
    ref = tmp_path / "ref"
    launch_search(proj, request(), ref, record=False)
    cut = tmp_path / "cut"
    shutil.copytree(ref, cut)
    lines = (ref / "evaluations.jsonl").read_text().splitlines(keepends=True)
    (cut / "evaluations.jsonl").write_text("".join(lines[:17]))
    (cut / "checkpoint.json").unlink()
    launch_search(proj, None, cut, resume=True, record=False)
    assert logged(cut) == logged(ref)

    problem, config = build_problem(proj, request(), lambda _: None)
    assert "mutation" not in config.strategy_options
    api = tmp_path / "api"
    run_search(config, problem, api)
    assert json.loads((api / "config.json").read_text())["strategy_options"]["mutation"] == "one"
    assert logged(api) == logged(ref)
    (api / "evaluations.jsonl").write_text("".join(lines[:25]))
    (api / "checkpoint.json").unlink()
    run_search(config, problem, api, resume=True)
    assert logged(api) == logged(ref)


def test_a_rerun_of_a_run_recorded_before_the_option_mutates_per_gene_and_of_a_new_run_as_recorded(tmp_path,
                                                                                                     monkeypatch):
    from types import SimpleNamespace

    import edgenas.store
    import edgenas.store.runs
    from edgenas.search.rerun import rerun_request

    recorded = {}
    monkeypatch.setattr(edgenas.store, "open_db", lambda *a, **k: None)
    monkeypatch.setattr(edgenas.store.runs, "get_run", lambda db, ref: SimpleNamespace(
        id="abc123", request=recorded, out_dir=str(tmp_path / "a")))
    for given, want in (({}, "per-gene"), ({"mutation": "one"}, "one"), ({"mutation_rate": 0.4}, "per-gene")):
        recorded.clear()
        recorded.update(request(strategy_options=given).to_json())
        req, _, _ = rerun_request(Project(tmp_path), "abc123")
        assert req.strategy_options["mutation"] == want and req.warm_start == ("abc123",)

"""Multi-fidelity search on NAS-Bench-201's real fidelities (12 -> 200 epochs): schedule, cost, exact resume."""

from __future__ import annotations

import dataclasses
import json
import re
import time
from pathlib import Path

import numpy as np
import pytest

from edgenas.errors import InputError
from edgenas.evaluate import make_evaluator
from edgenas.search import Problem
from edgenas.search.ladder import Bracket, Rung, brackets, parse_ladder
from edgenas.search.multifidelity import MFConfig, run_multifidelity
from edgenas.spaces import get_space as space_of



def _ladder(valid):
    return parse_ladder([f"nb201-fidelity:table={valid},column=cifar10_valid_12ep",
                         f"nb201-fidelity:table={valid},column=cifar10_valid,cost=16.6667"])


def _problems(space, rungs):
    out = []
    for r in rungs:
        p = Problem(space, make_evaluator(r.evaluator, space, **r.options), [],
                    accuracy_name=r.options["column"])
        out.append(p)
    return out


def test_ladder_parsing_and_hyperband_brackets():
    rungs = parse_ladder(["compression", "train:epochs=2,keep=3,cost=40"])
    assert rungs[1] == Rung("train", {"epochs": 2}, 40.0, 3)
    assert rungs[0].survivors(120, 3) == 40 and rungs[1].survivors(120, 3) == 3
    assert [(b.start, b.n) for b in brackets("hyperband", rungs, 81, 3)] == [(0, 81), (1, 54)]
    assert [(b.start, b.n) for b in brackets("sh", rungs, 81, 3)] == [(0, 81)]
    for bad, msg in ((["train:epochs"], "not KEY=VALUE"), (["train:keep=2.5"], "keep must be"),
                     (["train:cost=9", "compression:cost=1"], "must not decrease"), ([], "empty ladder")):
        with pytest.raises(InputError, match=msg):
            parse_ladder(bad)


def test_a_new_ladder_gives_no_key_of_a_rung_and_no_rung_twice():
    """``keep=2,keep=1`` kept 1 without a word; a rung of the same evaluator and options as an earlier one scored
    the survivors again, to the same values (its keep= and cost= aside). A recorded ladder still parses as it was
    recorded (a resume, a re-run)."""
    from edgenas.search.ladder import check_new_ladder

    check_new_ladder(["compression:keep=3", "train:epochs=2,cost=40", "train:epochs=4,cost=80", 7])  # 7: not a rung
    for bad, msg in ((["train:epochs=2,keep=3,epochs=4"], "rung 'train:epochs=2,keep=3,epochs=4': epochs is given "
                                                          "twice: 2 and 4"),
                     (["compression", "compression"], "rung 2 repeats rung 1 ('compression')"),
                     (["train:epochs=2,lr=0.1", "params", "train:lr=0.1,epochs=2.0,keep=2,cost=9"],
                      "rung 3 repeats rung 1 ")):
        with pytest.raises(InputError, match=re.escape(msg)):
            check_new_ladder(bad)
        assert parse_ladder(bad)  # as a resume reads it back
    assert parse_ladder(["compression:keep=2,keep=1"])[0].keep == 1


def test_a_new_ladder_parses_each_rung_once(monkeypatch):
    """``check_new_ladder`` split each rung's text into its pairs twice (for the repeat check, then ``Rung.parse``);
    now once, to the same rungs and the same errors."""
    from edgenas.search import ladder

    calls = []
    real = ladder._pairs
    monkeypatch.setattr(ladder, "_pairs", lambda text, rest: calls.append(text) or real(text, rest))
    ladder.check_new_ladder(["compression:keep=3", "train:epochs=2,cost=40"])
    assert calls == ["compression:keep=3", "train:epochs=2,cost=40"]
    assert ladder.Rung.from_pairs("train:epochs=2,cost=40", real("train:epochs=2,cost=40", "epochs=2,cost=40")) \
        == ladder.Rung.parse("train:epochs=2,cost=40") == Rung("train", {"epochs": 2}, 40.0)
    for bad, msg in ((["train:cost=x"], "ladder rung 'train:cost=x': cost='x' is not a number"),
                     (["train:keep=[1]"], "ladder rung 'train:keep=[1]': keep='[1]' is not a number"),
                     ([" :keep=2"], "the evaluator name is missing")):
        with pytest.raises(InputError, match=re.escape(msg)):
            ladder.check_new_ladder(bad)


def test_successive_halving_climbs_to_200_epochs(space, valid, tmp_path):
    rungs = _ladder(valid)
    cfg = MFConfig(space="nb201", rungs=rungs, mode="sh", candidates=27, eta=3, seed=4)
    res = run_multifidelity(cfg, _problems(space, rungs), tmp_path / "run")
    assert res.rung_counts == (27, 9)
    assert res.cost == pytest.approx(27 + 9 * 16.6667)
    log = [json.loads(x) for x in (tmp_path / "run" / "evaluations.jsonl").read_text().splitlines()]
    screened = {json.dumps(r["arch"]): r["objectives"]["cifar10_valid_12ep"] for r in log if r["rung"] == 0}
    promoted = [json.dumps(r["arch"]) for r in log if r["rung"] == 1]
    # the 9 promoted are exactly the 9 best on the 12-epoch rung
    assert sorted(promoted) == sorted(sorted(screened, key=screened.get, reverse=True)[:9])
    best = json.loads((tmp_path / "run" / "best.json").read_text())
    top = max((r for r in log if r["rung"] == 1), key=lambda r: r["objectives"]["cifar10_valid"])
    assert best["arch"] == top["arch"] and best["rung"] == 1
    assert json.loads((tmp_path / "run" / "config.json").read_text())["ladder"][1]["cost"] == 16.6667


def test_hyperband_resume_is_exact_and_checks_the_ladder(space, valid, tmp_path):
    rungs = _ladder(valid)
    cfg = MFConfig(space="nb201", rungs=rungs, mode="hyperband", candidates=27, eta=3, seed=2)
    full = run_multifidelity(cfg, _problems(space, rungs), tmp_path / "full")
    log = (tmp_path / "full" / "evaluations.jsonl").read_text().splitlines(keepends=True)
    assert full.rung_counts == (27, 9 + 18)
    part = tmp_path / "part"
    part.mkdir()
    (part / "config.json").write_text((tmp_path / "full" / "config.json").read_text())
    (part / "evaluations.jsonl").write_text("".join(log[:31]) + log[31][:20])  # killed mid-line
    problems = _problems(space, rungs)
    again = run_multifidelity(cfg, problems, part, resume=True)
    strip = lambda p: [{k: v for k, v in json.loads(x).items() if k != "wall_s"}
                       for x in (p / "evaluations.jsonl").read_text().splitlines()]
    assert strip(part) == strip(tmp_path / "full")
    assert again.cost == full.cost
    assert problems[0].evaluator.calls == len({json.dumps(json.loads(x)["arch"]) for x in log[31:]
                                                 if json.loads(x)["rung"] == 0})
    other = MFConfig(space="nb201", rungs=rungs, mode="sh", candidates=27, eta=3, seed=2)
    with pytest.raises(InputError, match="config differs in mode"):
        run_multifidelity(other, _problems(space, rungs), part, resume=True)


def test_fidelity_table_joins_the_two_files(space, valid):
    ev = make_evaluator("nb201-fidelity", space, table=valid, column="cifar10_valid")
    arch = space.from_string("|nor_conv_3x3~0|+|nor_conv_3x3~0|avg_pool_3x3~1|+|skip_connect~0|nor_conv_3x3~1|skip_connect~2|")
    assert ev.evaluate([arch])[0] == pytest.approx(90.7693)
    assert ev.inner.lookup([arch], "cifar10_test_12ep")[0] == pytest.approx(88.22)
    assert np.isfinite(ev.inner.lookup([arch], "cifar10_test")[0])  # from nb201_hw.csv
    first = space.from_string("|avg_pool_3x3~0|+|nor_conv_1x1~0|skip_connect~1|+|nor_conv_1x1~0|skip_connect~1|"
                              "skip_connect~2|")
    assert ev.evaluate([first, arch]).tolist() == pytest.approx([81.9827, 90.7693])  # the table's rows 0 and 1
    with pytest.raises(InputError, match="no column 'nope'"):
        make_evaluator("nb201-fidelity", space, table=valid, column="nope")
    tables = [str(Path(valid).resolve()), str(Path(valid).resolve().with_name("nb201_hw.csv"))]  # ../shared: a link?
    assert ev.inner.describe() == {"name": "nb201-fidelity", "metric": "cifar10_valid (%)", "column": "cifar10_valid",
                                   "tables": tables, "report": []}
    with pytest.raises(InputError, match="nb201 table not found: .*missing.csv"):
        make_evaluator("nb201-fidelity", space, table=str(Path(valid).with_name("missing.csv")), column="cifar10_valid")
    with pytest.raises(InputError, match="needs table=PATH to nb201_valid.csv"):
        make_evaluator("nb201-fidelity", space, column="cifar10_valid")
    with pytest.raises(InputError, match="needs the nb201 space, not 'mbv3-tiny'"):
        make_evaluator("nb201-fidelity", space_of("mbv3-tiny"), table=valid, column="cifar10_valid")


def test_cli_multifidelity_search_and_bad_ladder(cli, valid, tmp_path, monkeypatch):
    monkeypatch.setenv("EDGENAS_PROJECT", str(tmp_path / "proj"))
    monkeypatch.setenv("EDGENAS_NO_PROGRESS", "1")
    hw = str(Path(valid).with_name("nb201_hw.csv"))
    base = ["search", "--space", "nb201", "--table", hw, "--latency-column", "raspi4_ms",
            "--max-latency-ms", "20", "--strategy", "hyperband", "--budget", "9", "--seed", "1"]
    rungs = ["--ladder", f"nb201-fidelity:table={valid},column=cifar10_valid_12ep",
             "--ladder", f"nb201-fidelity:table={valid},column=cifar10_valid,cost=16.67,report=cifar10_test"]
    r = cli(*base, *rungs, "--out", str(tmp_path / "run"), "--json")
    assert r.code == 0, r.err
    s = r.json()
    assert s["evaluations_per_rung"] == [9, 3 + 6] and s["objective"] == "cifar10_valid"
    logged = [json.loads(x)["arch"]["arch"] for x in (tmp_path / "run" / "evaluations.jsonl").read_text().splitlines()]
    assert s["distinct"] == len(set(logged)) > 9  # every rung's, not the last rung's
    # the last rung records the test column of what it scored, so best.json says the chosen cell's (the
    # module promised it; best.json's report was empty and --report was refused for a ladder)
    ev = make_evaluator("nb201-fidelity", space_of("nb201"), table=valid, column="cifar10_test")
    best = json.loads((tmp_path / "run" / "best.json").read_text())
    chosen = space_of("nb201").from_dict(best["arch"])
    assert best["report"] == s["report"] == {"cifar10_test": pytest.approx(ev.evaluate([chosen])[0])}
    with pytest.raises(InputError, match="no column 'cifar10_tset'"):
        make_evaluator("nb201-fidelity", space_of("nb201"), table=valid, column="cifar10_valid", report="cifar10_tset")
    assert s["latency_ms"]["raspi4_ms"] <= 20
    from edgenas.spaces import load_arch

    assert load_arch(tmp_path / "run" / "best.json")[0].name == "nb201"
    r2 = cli("search", "--resume", str(tmp_path / "run"), "--json")
    assert r2.code == 0 and r2.json()["best"] == s["best"]
    r = cli(*base, "--ladder", "nb201-fidelity:column", "--out", str(tmp_path / "bad"))
    assert r.code == 2 and "not KEY=VALUE" in r.err and "Traceback" not in r.err
    assert not (tmp_path / "bad").exists()


def test_rungs_and_brackets_are_frozen():
    with pytest.raises(dataclasses.FrozenInstanceError):
        Rung("a").cost = 2.0
    with pytest.raises(dataclasses.FrozenInstanceError):
        Bracket(0, 0, 5).n = 6


def test_rung_survivors_count_fraction_and_default():
    assert [Rung("a").survivors(n, 3) for n in (9, 4, 2, 1)] == [3, 1, 1, 1]   # n // eta, at least 1
    assert Rung("a").survivors(8, 2) == 4
    assert [Rung("a", keep=0.5).survivors(n, 3) for n in (5, 4, 1)] == [2, 2, 1]   # floor(n keep), at least 1
    assert Rung("a", keep=0.75).survivors(4, 3) == 3
    assert [Rung("a", keep=5).survivors(n, 3) for n in (10, 5, 3)] == [5, 5, 3]     # a count, at most n
    assert Rung("a", keep=1).survivors(10, 3) == 1 and Rung("a", keep=2.0).survivors(10, 3) == 2


def test_rung_checks_its_cost_and_keep():
    for cost in (0.001, 1, 2.5):
        assert Rung("a", cost=cost).cost == cost
    for keep in (None, 0.999, 0.25, 1, 2.0, 7):
        assert Rung("a", keep=keep).keep == keep
    for cost in (0, -1.0, float("inf"), float("nan"), "2"):
        with pytest.raises(InputError, match="cost must be > 0"):
            Rung("a", cost=cost)
    for keep in (0, -0.5, 1.5, float("inf"), float("nan"), "3"):
        with pytest.raises(InputError, match="keep must be a count >= 1 or a fraction"):
            Rung("a", keep=keep)
    for name in ("", None):
        with pytest.raises(InputError, match="evaluator name is missing"):
            Rung(name)
    with pytest.raises(InputError, match="evaluator name is missing"):
        Rung.parse("  :keep=3")


def test_rung_parsing_values_label_and_json():
    r = Rung.parse(" train : epochs = 2 , lr=0.5,, name=x=y , keep=0.5,cost=3 ")
    assert r == Rung("train", {"epochs": 2, "lr": 0.5, "name": "x=y"}, 3.0, 0.5)
    assert type(r.options["epochs"]) is int and type(r.cost) is float
    assert r.label() == "train:epochs=2,lr=0.5,name=x=y"          # cost and keep belong to the ladder
    assert Rung.parse("compression") == Rung("compression") and Rung.parse("compression:").label() == "compression"
    assert Rung.parse("compression").cost == 1.0 and Rung.parse("compression").keep is None
    assert Rung.from_json(r.to_json()) == r
    assert r.to_json() == {"evaluator": "train", "options": {"epochs": 2, "lr": 0.5, "name": "x=y"},
                           "cost": 3.0, "keep": 0.5}
    assert Rung.from_json({"evaluator": "a"}) == Rung("a", {}, 1.0, None)
    for bad in ({"cost": 2}, {"evaluator": "a", "options": 5}, {"evaluator": "a", "cost": "cheap"}):
        with pytest.raises(InputError, match="malformed ladder rung"):
            Rung.from_json(bad)
    for text, msg in (("a:cost=cheap", "cost='cheap' is not a number"), ("a:keep=half", "keep='half' is not")):
        with pytest.raises(InputError, match=msg):
            Rung.parse(text)
    assert [r.cost for r in parse_ladder(["a:cost=2", "b:cost=2", "c:cost=2.5"])] == [2.0, 2.0, 2.5]  # equal costs


def test_hyperband_brackets_of_a_three_rung_ladder_and_eta_bounds():
    rungs = [Rung("a"), Rung("b", cost=3), Rung("c", cost=9)]
    # S = 2: bracket s starts at rung 2 - s with ceil(n 3 / (s + 1) / 3^(2 - s)) candidates
    assert [(b.index, b.start, b.n) for b in brackets("hyperband", rungs, 9, 3)] == [(0, 0, 9), (1, 1, 5), (2, 2, 3)]
    assert [(b.start, b.n) for b in brackets("hyperband", rungs, 1, 3)] == [(0, 1), (1, 1), (2, 1)]
    assert [(b.start, b.n) for b in brackets("hyperband", rungs[:1], 7, 3)] == [(0, 7)]
    assert [(b.start, b.n) for b in brackets("hyperband", rungs, 8, 2)] == [(0, 8), (1, 6), (2, 6)]
    for eta in (2, 1000):
        assert brackets("sh", rungs, 5, eta) == [Bracket(0, 0, 5)]
    for eta in (1, 1001, 3.0, "3"):
        with pytest.raises(InputError, match="eta must be an integer from 2 to 1000"):
            brackets("sh", rungs, 5, eta)
    with pytest.raises(InputError, match="unknown multi-fidelity mode 'asha'"):
        brackets("asha", rungs, 5, 3)


class GeneScore:
    """A rung's evaluator: a weighted sum of the genes (distinct weights: a known order, no ties)."""

    metric = "gene score"

    def __init__(self, space, weights):
        self.space, self.weights, self.calls = space, np.asarray(weights, dtype=float), 0

    def evaluate(self, archs):
        self.calls += len(archs)
        return np.array([float(self.space.to_genes(a) @ self.weights) for a in archs])


def test_a_four_candidate_ladder_promotes_the_best_of_each_rung(space, tmp_path):
    rungs = (Rung("r0", cost=1.0), Rung("r1", cost=2.0), Rung("r2", cost=4.0))
    weights = ([125, 25, 5, 1, 0.2, 0.04], [-0.04, -0.2, -1, -5, -25, -125], [1, 1, 1, 1, 1, 1])
    problems = [Problem(space, GeneScore(space, w), [], accuracy_name=f"s{i}") for i, w in enumerate(weights)]
    cfg = MFConfig(space="nb201", rungs=rungs, mode="sh", candidates=4, eta=2, seed=3)
    assert [(b.n, sizes) for b, sizes in cfg.plan()] == [(4, [4, 2, 1])]     # halved twice
    assert cfg.planned_cost() == 4 * 1 + 2 * 2 + 1 * 4
    seen = []   # after each rung: (done, total) and the checkpoint then

    def progress(done, total):
        ckpt = json.loads((tmp_path / "a" / "run" / "checkpoint.json").read_text())
        seen.append((done, total, ckpt["status"], ckpt["n_evaluations"], ckpt["cost"]))

    start = time.monotonic()
    res = run_multifidelity(cfg, problems, tmp_path / "a" / "run", progress=progress)
    took = time.monotonic() - start
    assert res.rung_counts == (4, 2, 1) and res.cost == 12.0
    with pytest.raises(dataclasses.FrozenInstanceError):
        res.cost = 0.0
    assert seen == [(4, 7, "running", 4, 4.0), (6, 7, "running", 6, 8.0), (7, 7, "running", 7, 12.0)]
    ckpt = json.loads((tmp_path / "a" / "run" / "checkpoint.json").read_text())
    assert (ckpt["status"], ckpt["n_evaluations"], ckpt["cost"]) == ("complete", 7, 12.0)
    assert 0 <= ckpt["elapsed_s"] <= took
    before = {p.name: p.read_bytes() for p in (tmp_path / "a" / "run").iterdir()}
    with pytest.raises(InputError, match="already holds a search run"):   # not resumed unless asked
        run_multifidelity(cfg, problems, tmp_path / "a" / "run")
    assert {p.name: p.read_bytes() for p in (tmp_path / "a" / "run").iterdir()} == before
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "checkpoint.json").write_text("{}")            # a checkpoint alone is a run too
    with pytest.raises(InputError, match="already holds a search run"):
        run_multifidelity(cfg, problems, tmp_path / "run")
    (tmp_path / "run" / "checkpoint.json").unlink()
    assert run_multifidelity(cfg, problems, tmp_path / "run", resume=True).rung_counts == (4, 2, 1)  # a new one
    log = [json.loads(x) for x in (tmp_path / "a" / "run" / "evaluations.jsonl").read_text().splitlines()]
    assert 0 <= log[0]["wall_s"] <= log[-1]["wall_s"] <= took         # seconds since this run started
    genes = {i: [space.to_genes(space.from_dict(r["arch"])) for r in log if r["rung"] == i] for i in range(3)}
    key = lambda g: tuple(g.tolist())
    # rung 0 ranks by the leading genes; its best 2 go on; rung 1 ranks by the trailing genes; its best goes on
    top2 = sorted(genes[0], key=lambda g: -float(g @ weights[0]))[:2]
    assert sorted(map(key, genes[1])) == sorted(map(key, top2))
    assert list(map(key, genes[2])) == [key(max(genes[1], key=lambda g: float(g @ weights[1])))]
    best = json.loads((tmp_path / "a" / "run" / "best.json").read_text())
    assert best["rung"] == 2 and key(space.to_genes(space.from_dict(best["arch"]))) == key(genes[2][0])
    assert best["ladder"] == ["r0", "r1", "r2"] and best["evaluations"] == 7 and best["cost"] == 12.0
    assert best["rungs"] == {"r0": pytest.approx(float(genes[2][0] @ weights[0])),
                             "r1": pytest.approx(float(genes[2][0] @ weights[1])),
                             "r2": pytest.approx(float(genes[2][0].sum()))}
    assert [p.evaluator.calls for p in problems] == [4 + 4, 2 + 2, 1 + 1]   # and once more in "run"


def test_mf_config_checks_plans_hyperband_and_refuses_a_ladder_of_other_length(space, tmp_path):
    rungs = (Rung("a"), Rung("b", cost=3.0), Rung("c", cost=9.0))
    hb = MFConfig(space="nb201", rungs=rungs, mode="hyperband", candidates=9, eta=3)
    # brackets (start, n): (0, 9), (1, 5), (2, 3); each halves by eta on its way up
    assert [(b.start, sizes) for b, sizes in hb.plan()] == [(0, [9, 3, 1]), (1, [5, 1]), (2, [3])]
    assert hb.planned_cost() == (9 + 3 * 3 + 9) + (5 * 3 + 9) + 3 * 9
    assert MFConfig.from_json(hb.to_json()) == hb
    assert MFConfig(space="nb201", rungs=rungs, devices=[("pi", 5), ("gpu", None)]).devices == (("pi", 5.0),
                                                                                                ("gpu", None))
    for kw, msg in (({"mode": "asha"}, "unknown multi-fidelity mode"), ({"rungs": ()}, "at least one rung"),
                    ({"candidates": 0}, "candidates must be an integer >= 1"),
                    ({"candidates": True}, "candidates must be"), ({"candidates": 2.0}, "candidates must be"),
                    ({"eta": 1}, "eta must be")):
        with pytest.raises(InputError, match=msg):
            MFConfig(**{"space": "nb201", "rungs": rungs, **kw})
    assert MFConfig(space="nb201", rungs=rungs, candidates=1).candidates == 1
    one = MFConfig(space="nb201", rungs=rungs[:1])                        # a ladder of one rung; the defaults
    assert (one.mode, one.candidates, one.eta, one.seed, one.devices) == ("sh", 81, 3, 0, ())
    with pytest.raises(dataclasses.FrozenInstanceError):
        one.eta = 2
    with pytest.raises(InputError, match="not a multi-fidelity run config"):
        MFConfig.from_json({**hb.to_json(), "schema": 2})
    with pytest.raises(InputError, match="not a multi-fidelity run config"):
        MFConfig.from_json({**hb.to_json(), "schema": True})  # True == 1 in Python
    with pytest.raises(InputError, match="not a multi-fidelity run config"):
        MFConfig.from_json({**hb.to_json(), "kind": "search"})
    problems = [Problem(space, GeneScore(space, np.ones(6)), []) for _ in range(2)]
    with pytest.raises(InputError, match="2 problems for a ladder of 3 rungs"):
        run_multifidelity(hb, problems, tmp_path / "run")
    assert not (tmp_path / "run").exists()


def test_an_architecture_two_brackets_evaluate_on_one_rung_costs_once(space, Lat, tmp_path):
    from edgenas.search import DeviceTarget

    lat = Lat(space, seed=4)
    ms, _ = lat.min_latency()
    rungs = (Rung("r0"), Rung("r1", cost=5.0))
    problems = [Problem(space, GeneScore(space, np.arange(1.0, 7.0) * s), [DeviceTarget("dev", lat, ms)],
                        accuracy_name=f"s{i}") for i, s in enumerate((1, -1))]   # only the fastest is feasible
    # novel-first (a run recorded before sampling existed): each bracket may draw what an earlier one drew
    cfg = MFConfig(space="nb201", rungs=rungs, mode="hyperband", candidates=4, eta=2, seed=0, sampling="novel-first")
    res = run_multifidelity(cfg, problems, tmp_path / "run")
    log = [json.loads(x) for x in (tmp_path / "run" / "evaluations.jsonl").read_text().splitlines()]
    pairs = [(r["rung"], json.dumps(r["arch"], sort_keys=True)) for r in log]
    assert len(set(pairs)) < len(pairs)                 # both brackets took the one feasible cell to rung 1
    assert res.cost == sum(rungs[rung].cost for rung, _ in set(pairs))


def test_a_ladder_whose_brackets_are_left_short_ends_its_progress_at_what_it_did(space, Lat, tmp_path):
    """Brackets that drew fewer candidates than planned (nothing new met the budget) left the progress bar short of
    its planned total at the end of a complete run (2/10); its last report is now the evaluations done, of as many."""
    from edgenas.search import DeviceTarget

    lat = Lat(space, seed=4)
    ms, _ = lat.min_latency()
    problems = [Problem(space, GeneScore(space, np.arange(1.0, 7.0) * s), [DeviceTarget("dev", lat, ms)],
                        accuracy_name=f"s{i}") for i, s in enumerate((1, -1))]   # only the fastest is feasible
    cfg = MFConfig(space="nb201", rungs=(Rung("r0"), Rung("r1", cost=5.0)), mode="hyperband", candidates=4, eta=2,
                   seed=0, devices=(("dev", ms),))
    planned = sum(sum(sizes) for _, sizes in cfg.plan())
    for run in ("run", "again"):   # a new run, then a resume of it that only replays
        seen = []
        res = run_multifidelity(cfg, problems, tmp_path / "run", resume=run == "again",
                                progress=lambda done, total: seen.append((done, total)))
        n = len((tmp_path / "run" / "evaluations.jsonl").read_text().splitlines())
        assert res.result.stopped == "exhausted" and n == sum(res.rung_counts) < planned
        assert seen[-1] == (n, n) and all(total == planned for _, total in seen[:-1])


def test_a_resumed_ladder_counts_its_seconds_on_from_the_last_logged_evaluation(space, tmp_path):
    rungs = (Rung("r0"), Rung("r1", cost=2.0))
    problems = [Problem(space, GeneScore(space, np.arange(1.0, 7.0) * s), [], accuracy_name=f"s{i}")
                for i, s in enumerate((1, -1))]
    cfg = MFConfig(space="nb201", rungs=rungs, mode="sh", candidates=4, eta=2, seed=1)
    run_multifidelity(cfg, problems, tmp_path / "full")
    lines = [json.loads(x) for x in (tmp_path / "full" / "evaluations.jsonl").read_text().splitlines()]
    part = tmp_path / "part"
    part.mkdir()
    (part / "config.json").write_text((tmp_path / "full" / "config.json").read_text())
    kept = [{**rec, "wall_s": 100.0 * (i + 1)} for i, rec in enumerate(lines[:5])]   # the last one at 500 s
    (part / "evaluations.jsonl").write_text("".join(json.dumps(r) + "\n" for r in kept))
    run_multifidelity(cfg, problems, part, resume=True)
    again = [json.loads(x) for x in (part / "evaluations.jsonl").read_text().splitlines()]
    assert len(again) == 6 and 500.0 <= again[5]["wall_s"] < 500.0 + 60

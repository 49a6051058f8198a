"""Strategies: registry, options, determinism, constraint handling, WOA/RI-IWOA specifics."""

import dataclasses
import math

import numpy as np
import pytest

from edgenas.errors import InfeasibleError, InputError
from edgenas.search import DeviceTarget, Problem, make_strategy, strategy_names
from edgenas.search.base import STRATEGIES, Driver, DriverRun, Option, Result, Strategy, Trial, rank_key
from edgenas.search.candidates import REPAIR_TRIES, repair_toward_anchor
from edgenas.search.riiwoa import RIIWOA
from edgenas.search.woa import WOA


ALL = ["random", "evolution", "nsga2", "woa", "ri-iwoa"]


def drive(strategy, problem, budget, batch=None):
    """Plain ask/tell loop; returns the asked arch ids and results (fewer when the strategy has nothing left)."""
    asked, results = [], []
    batch = batch or strategy.batch_hint or strategy.opts.get("population") or 1
    while len(asked) < budget:
        archs = strategy.ask(min(batch, budget - len(asked)))
        if not archs:  # random search without replacement: nothing new meets the budget
            break
        recs = problem.evaluate(archs)
        res = [problem.to_result(r) for r in recs]
        strategy.tell(archs, res)
        asked += [problem.space.arch_id(a) for a in archs]
        results += res
    return asked, results


def test_registry_names_and_alias():
    assert strategy_names() == sorted(ALL + ["hgm", "tpe", "gp", "cmaes", "optuna-nsga2", "llm-evolution"])  # llm-evolution: tests/llm
    assert STRATEGIES.canonical("rea") == "evolution"
    assert STRATEGIES.canonical("riiwoa") == "ri-iwoa"
    with pytest.raises(InputError, match="unknown strategy"):
        STRATEGIES.get("annealing")


def test_options_are_validated(space):
    rng = np.random.default_rng(0)
    with pytest.raises(InputError, match="unknown option"):
        make_strategy("evolution", space, rng, populaton=10)
    with pytest.raises(InputError, match="must be from 2 to 100000"):
        make_strategy("evolution", space, rng, population=1)
    with pytest.raises(InputError, match="not an integer"):
        make_strategy("nsga2", space, rng, population="many")
    assert make_strategy("evolution", space, rng, population="12").opts["population"] == 12


@pytest.mark.parametrize("name", ALL)
def test_same_seed_same_search_and_different_seed_differs(space, name, formula, Lat):
    problem = Problem(space, formula, [DeviceTarget("dev", Lat(space))])
    opts = {"budget": 60} if name in ("woa", "ri-iwoa") else {}
    runs = [drive(make_strategy(name, space, np.random.default_rng(s), **opts), problem, 60)[0]
            for s in (7, 7, 8)]
    assert runs[0] == runs[1]
    assert runs[0] != runs[2]


@pytest.mark.parametrize("name", ALL)
def test_constrained_search_proposes_only_feasible(space, name, formula, Lat):
    lat = Lat(space, seed=2)
    ms, _ = lat.min_latency()
    budget = ms * 1.4  # tight: a small fraction of the space is feasible
    problem = Problem(space, formula, [DeviceTarget("dev", lat, budget)])
    frac = np.mean(problem.violation(space.all_archs()[::7]) <= 0)
    assert 0 < frac < 0.2
    opts = {"budget": 60} if name in ("woa", "ri-iwoa") else {}
    strat = make_strategy(name, space, np.random.default_rng(0), feasibility=problem, **opts)
    _, results = drive(strat, problem, 60)
    assert all(r.feasible for r in results)


@pytest.mark.parametrize("name", ALL)
def test_a_search_under_a_budget_most_architectures_break_by_less_than_it_proposes_only_feasible(space, name,
                                                                                                formula, Lat):
    """The budget above leaves only the degenerate cells, broken by several budgets; here nearly 90% of the
    cells break it by less than one budget (a violation in (0, 1]), which must be repaired as well."""
    lat = Lat(space, seed=2)
    budget = float(np.quantile(lat.predict_many([space.sample(np.random.default_rng(i)) for i in range(300)]), 0.1))
    problem = Problem(space, formula, [DeviceTarget("dev", lat, budget)])
    v = problem.violation(space.all_archs()[::7])
    assert np.mean((v > 0) & (v <= 1)) > 0.8
    opts = {"budget": 40} if name in ("woa", "ri-iwoa") else {}
    strat = make_strategy(name, space, np.random.default_rng(1), feasibility=problem, **opts)
    _, results = drive(strat, problem, 40)
    assert all(r.feasible for r in results)


def test_infeasible_budget_raises_at_once_naming_device(space, formula, Lat):
    lat = Lat(space)
    ms, _ = lat.min_latency()
    with pytest.raises(InfeasibleError) as err:
        Problem(space, formula, [DeviceTarget("fast", Lat(space, 5), None),
                                                 DeviceTarget("orin-nano", lat, ms * 0.9)])
    assert "orin-nano" in str(err.value) and "e+" not in str(err.value) and "e-" not in str(err.value)
    assert err.value.min_latency_ms == pytest.approx(ms)
    # the hint's budget is met: "at least 0.01128 ms" for a minimum of 0.0112835 was refused again
    hinted = float(err.value.hint.rsplit("at least ", 1)[1].split()[0])
    assert hinted >= ms
    Problem(space, formula, [DeviceTarget("orin-nano", lat, hinted)])
    for tiny in (0.0112835, 0.30000000000000004, 2.66473, 11283.5):
        from edgenas.search.problem import plain_ms

        assert float(plain_ms(tiny, up=True)) >= tiny and float(plain_ms(tiny)) == tiny


def test_repair_is_bounded_and_reaches_feasibility(space, formula, Lat):
    lat = Lat(space, seed=4)
    ms, anchor = lat.min_latency()
    problem = Problem(space, formula, [DeviceTarget("dev", lat, ms)])  # only the optimum
    strat = make_strategy("random", space, np.random.default_rng(0), feasibility=problem, sampling="novel-first")
    archs = strat.ask(3)
    assert problem.violation(archs[:1])[0] == 0.0  # found by repair toward the min-latency arch
    assert space.arch_id(archs[0]) == space.arch_id(anchor)


def test_repair_takes_the_first_feasible_step_in_one_predictor_call(space, formula, Lat):
    lat = Lat(space, seed=4)
    ms, anchor = lat.min_latency()
    problem = Problem(space, formula, [DeviceTarget("dev", lat, ms * 1.3)])
    calls = []
    real = problem.violation
    problem.violation = lambda archs: calls.append(len(archs)) or real(archs)
    strat = make_strategy("random", space, np.random.default_rng(3), feasibility=problem)
    rng = np.random.default_rng(11)
    start = max((space.sample(rng) for _ in range(50)), key=lambda a: float(real([a])[0]))
    assert real([start])[0] > 0
    out = strat.repair(start)
    assert len(calls) == 1 and real([out])[0] == 0.0
    # the same walk one gene at a time (same order), stopping at the first feasible architecture
    order = np.random.default_rng(3).permutation(space.dim)
    genes, target = space.to_genes(start).copy(), space.to_genes(anchor)
    for i in order:
        if genes[i] != target[i]:
            genes[i] = target[i]
            if real([space.from_genes(genes)])[0] <= 0:
                break
    assert space.arch_id(out) == space.arch_id(space.from_genes(genes))
    assert 0 < int((space.to_genes(out) != space.to_genes(start)).sum()) <= int((target != space.to_genes(start)).sum())


@pytest.mark.parametrize("name", ["random", "evolution", "hgm", "tpe"])
def test_repairs_under_a_tight_budget_propose_novel_architectures(space, formula, table, name):
    """Under 5 ms on the Raspberry Pi 4 (619 of 15,625 cells fit) every repair walked toward the same few
    anchors, and 14 of random search's 200 evaluations were a cell seen before (the fastest one 8 times);
    the repair now takes the first feasible step it has not seen, on another path or a mutation away."""
    from edgenas.evaluate.tabular import TableLatency

    lat = TableLatency(table, "raspi4_ms", space)
    problem = Problem(space, formula, [DeviceTarget("raspi4_ms", lat, 5.0)])
    asked, results = drive(make_strategy(name, space, np.random.default_rng(1), feasibility=problem), problem, 200)
    assert len(asked) == 200 and len(set(asked)) == 200
    assert sum(r.violation <= 0 for r in results) >= 190


def test_a_repair_with_every_step_seen_returns_the_first_step(space, formula, Lat):
    """When every path's feasible steps and their neighbours were seen, a duplicate is accepted, never a loop."""
    lat = Lat(space, seed=4)
    ms, anchor = lat.min_latency()
    problem = Problem(space, formula, [DeviceTarget("dev", lat, ms)])  # only the optimum is feasible
    strat = make_strategy("random", space, np.random.default_rng(0), feasibility=problem)
    start = space.sample(np.random.default_rng(5))
    out = strat.repair(start, {space.arch_id(anchor)})
    assert space.arch_id(out) == space.arch_id(anchor)


def test_evolution_finds_formula_optimum_and_beats_random(space, formula):
    problem = Problem(space, formula)
    best = {}
    for name in ("random", "evolution"):
        scores = []
        for seed in range(5):
            _, res = drive(make_strategy(name, space, np.random.default_rng(seed)), problem, 150)
            scores.append(-min(r.scalar for r in res))
        best[name] = np.median(scores)
    assert best["evolution"] >= 18.0  # optimum 18.03 (all nor_conv_3x3)
    assert best["evolution"] > best["random"]


def test_woa_a_decreases_linearly_from_2_to_0(space, formula):
    w = WOA(space, np.random.default_rng(0), population=10, generations=4)
    seen = []
    problem = Problem(space, formula)
    for _ in range(5):
        archs = w.ask(10)
        seen.append(w.a)
        w.tell(archs, [problem.to_result(r) for r in problem.evaluate(archs)])
    assert seen == pytest.approx([2.0, 1.5, 1.0, 0.5, 0.0])


class _Draws:
    """An rng whose draws are given: ``random()`` in turn, ``uniform()`` -> ``l``, ``integers()`` -> ``index``."""

    def __init__(self, *draws, l=0.0, index=0):
        self.draws, self.l, self.index = list(draws), l, index

    def random(self):
        return self.draws.pop(0)

    def uniform(self, low, high):
        assert (low, high) == (-1.0, 1.0)
        return self.l

    def integers(self, n):
        return self.index


def test_woa_moves_are_the_three_moves_of_the_paper_by_hand(space):
    """Generation 2 of 4: a = 1, so A = 2 r1 - 1 and C = 2 r2; the whale is at 0.2, the best at 0.6."""
    w = WOA(space, np.random.default_rng(0), population=4, generations=4)
    w.gen, star = 2, np.full(space.dim, 0.6)
    w.X[:] = 0.2
    w.X[1] = 0.9
    w.rng = _Draws(0.25, 0.5, 0.1)  # A = -0.5, C = 1, p < 0.5: encircling, 0.6 + 0.5 |0.6 - 0.2|
    x, attack = w.move(0, star)
    assert attack and x == pytest.approx(np.full(space.dim, 0.8))
    w.rng = _Draws(1.0, 0.25, 0.1, index=1)  # A = 1 (not < 1): search around whale 1, 0.9 - |0.5 * 0.9 - 0.2|
    x, attack = w.move(0, star)
    assert not attack and x == pytest.approx(np.full(space.dim, 0.65))
    w.rng = _Draws(0.0, 0.5, 0.1, index=1)  # A = -1: 0.9 + |0.9 - 0.2| = 1.6, clipped to the cube
    assert w.move(0, star)[0] == pytest.approx(np.ones(space.dim))
    w.rng = _Draws(0.25, 0.5, 0.5, l=-1.0)  # p = 0.5: the spiral, 0.4 e^-1 cos(-2 pi) + 0.6
    x, attack = w.move(0, star)
    assert attack and x == pytest.approx(np.full(space.dim, 0.6 + 0.4 * math.exp(-1.0)))
    w.rng = _Draws(0.25, 0.5, 0.9, l=1 / 6)  # cos(pi / 3) = 0.5: 0.2 e^(1/6) + 0.6
    assert w.move(0, star)[0] == pytest.approx(np.full(space.dim, 0.6 + 0.2 * math.exp(1 / 6)))
    w.rng = _Draws(0.25, 0.5, 0.9, l=0.5)  # 0.4 e^0.5 cos(pi) + 0.6 = -0.0595: clipped to the cube
    assert w.move(0, star)[0] == pytest.approx(np.zeros(space.dim))
    w = WOA(space, np.random.default_rng(0), population=4, generations=4, b=2.0)
    w.gen = 2
    w.X[:] = 0.2
    w.rng = _Draws(0.25, 0.5, 0.5, l=-1.0)  # b = 2: 0.4 e^-2 + 0.6
    assert w.move(0, star)[0] == pytest.approx(np.full(space.dim, 0.6 + 0.4 * math.exp(-2.0)))
    r = RIIWOA(space, np.random.default_rng(0), population=4, generations=4)
    r.gen, r.frame = 2, (np.eye(space.dim), np.full(space.dim, 0.1))  # moved to a centre and back: the same move
    r.X[:] = 0.2
    r.rng = _Draws(0.25, 0.5, 0.1)
    assert r.move(0, star)[0] == pytest.approx(np.full(space.dim, 0.8))


def test_a_woa_whale_always_moves_an_ri_iwoa_whale_only_to_no_worse_and_the_best_is_kept(space):
    rng = np.random.default_rng(0)
    a1, a2 = space.sample(rng), space.sample(rng)
    x1, x2 = np.full(space.dim, 0.1), np.full(space.dim, 0.9)
    good, worse = Result((1.0,)), Result((2.0,))
    for cls, moves in ((WOA, True), (RIIWOA, False)):
        w = cls(space, np.random.default_rng(0), population=4, generations=4)
        w.waiting = {space.arch_id(a1): [(0, x1)], space.arch_id(a2): [(0, x2)]}
        w.tell([a1], [good])
        w.tell([a2], [worse])
        w.tell([space.sample(rng)], [Result((1.0,))])  # a tie does not replace the best
        assert {space.arch_id(a1), space.arch_id(a2)} <= w.seen  # what it is told it never asks for
        assert (w.fit[0] is worse, list(w.X[0]) == list(x2)) == (moves, moves), cls
        assert w.best[1] is a1 and w.best[2] is good and list(w.best[0]) == list(x1)


def test_a_woa_whale_keeps_its_position_unless_its_architecture_was_repaired(space):
    """A novel feasible architecture is queued at the whale's own position; a seen one is mutated and the
    whale moved onto what was queued."""
    w = WOA(space, np.random.default_rng(0), population=4, generations=4)
    arch = space.sample(np.random.default_rng(1))
    x = space.encode(arch) + 0.01  # inside the same cell, off its centre
    assert space.arch_id(space.decode(x)) == space.arch_id(arch)
    w._enqueue(0, x, arch)
    assert w.queue[-1][1] is x and w.queue[-1][2] is arch
    w._enqueue(1, x, arch)  # now seen: repaired
    _, moved, repaired = w.queue[-1]
    assert space.arch_id(repaired) != space.arch_id(arch) and space.arch_id(space.decode(moved)) == \
        space.arch_id(repaired)


def test_woa_asked_for_more_than_a_population_before_any_result_samples_another_one(space):
    w = WOA(space, np.random.default_rng(0), population=4, generations=4)
    archs = w.ask(8)  # no best whale yet: the second generation is sampled too
    assert len({space.arch_id(a) for a in archs}) == 8 and w.gen == 1
    assert {space.arch_id(a) for a in archs} == w.seen


def test_woa_samples_its_first_generation_at_its_whales_positions_then_moves_them(space, formula):
    w = WOA(space, np.random.default_rng(0), population=4, generations=4)
    problem = Problem(space, formula)
    moved, real = [], w.move
    w.move = lambda i, star: moved.append(i) or real(i, star)
    archs = w.ask(4)
    assert moved == [] and all(space.arch_id(space.decode(w.waiting[space.arch_id(a)][0][1])) == space.arch_id(a)
                               for a in archs)
    w.tell(archs, [problem.to_result(r) for r in problem.evaluate(archs)])
    w.ask(4)
    assert moved == [0, 1, 2, 3]


def test_ri_iwoas_mutation_operator_rewrites_attack_moves_only(space):
    calls = []
    s = RIIWOA(space, np.random.default_rng(0), population=4, generations=4,
               mutation_operator=lambda arch, rng: calls.append(arch) or arch)
    x = np.full(space.dim, 0.5)
    s._place(0, x, attack=False)
    assert calls == []
    s._place(1, x + 0.3, attack=True)
    assert [space.arch_id(a) for a in calls] == [space.arch_id(space.decode(x + 0.3))]


def test_riiwoa_frame_is_orthonormal_even_when_population_collapses(space, formula):
    s = RIIWOA(space, np.random.default_rng(0), population=6, budget=60, rotate_every=1)
    problem = Problem(space, formula)
    archs = s.ask(6)
    s.tell(archs, [problem.to_result(r) for r in problem.evaluate(archs)])
    s.X[:] = s.X[0]  # singular covariance
    s._update_frame()
    B, centre = s.frame
    assert np.allclose(B.T @ B, np.eye(space.dim), atol=1e-8)
    assert np.all(np.isfinite(B)) and np.allclose(centre, s.X[0])


def test_riiwoa_mutation_hook_runs_in_attack_phase_and_polish_is_in_budget(space, formula):
    calls = []

    def op(arch, rng):
        calls.append(arch)
        return space.mutate(arch, rng)

    problem = Problem(space, formula)
    s = make_strategy("ri-iwoa", space, np.random.default_rng(1), budget=100, population=10,
                      polish_evals=20, mutation_operator=op)
    assert s.generations == 8
    asked, res = drive(s, problem, 100)
    assert len(asked) == 100 and calls
    polish = res[80:]
    assert min(rank_key(r) for r in res) <= min(rank_key(r) for r in res[:80])
    assert len(polish) == 20


def test_an_architecture_evaluated_twice_is_one_point_of_a_front(space, formula, Lat, tmp_path):
    """A run that evaluated a cell twice listed it twice in every front of pareto.json (one 8 times)."""
    from edgenas.search.base import Trial
    from edgenas.search.results import summarise

    problem = Problem(space, formula, [DeviceTarget("dev", Lat(space, seed=4), None)])
    archs = [space.sample(np.random.default_rng(s)) for s in range(6)]
    top = max(archs, key=lambda a: formula.evaluate([a])[0])  # the most accurate is on every front
    archs.insert(3, top)
    first, again = [n for n, a in enumerate(archs) if a == top]
    trials = [Trial.from_json(dict(rec, number=n, arch=space.to_dict(a)))
              for n, (a, rec) in enumerate(zip(archs, problem.evaluate(archs)))]
    result = summarise(trials, problem, tmp_path, "budget")
    for front in (result.pareto, result.fronts["dev"]):
        ids = [space.arch_id(space.from_dict(t.arch)) for t in front]
        assert space.arch_id(top) in ids and len(ids) == len(set(ids))
        assert first in [t.number for t in front] and again not in [t.number for t in front]  # the first is kept
    assert result.n_evaluations == 7


def test_riiwoa_polish_asks_for_each_nelder_mead_point_on_its_own(space, formula):
    """Within one ask of a population's size, Nelder-Mead got 1 point and 19 mutations of the best
    (it asked for the same point again until told its value)."""
    from edgenas.search import riiwoa

    problem = Problem(space, formula)
    s = make_strategy("ri-iwoa", space, np.random.default_rng(3), budget=100, population=10, polish_evals=20)
    nm_points, real = [], riiwoa.RIIWOA._nm_request

    def spy(self):
        arch = real(self)
        if arch is not None:
            nm_points.append(self.space.arch_id(arch))
        return arch

    riiwoa.RIIWOA._nm_request = spy
    try:
        batches, asked = [], []
        while len(asked) < 100:
            archs = s.ask(min(10, 100 - len(asked)))
            batches.append([space.arch_id(a) for a in archs])
            s.tell(archs, [problem.to_result(r) for r in problem.evaluate(archs)])
            asked += batches[-1]
    finally:
        riiwoa.RIIWOA._nm_request = real
    assert len(asked) == 100 and len(set(asked)) == 100
    evaluated_nm = set(nm_points) & set(asked[80:])  # 8 generations of 10, then the polish
    assert len(evaluated_nm) >= 3  # it was 1
    assert all(len(b) == 1 for b in batches if set(b) & evaluated_nm)



def hint_ms(ms):
    """Budget hint from the definition: the fewest decimals that give 5 significant digits (none from 10,000
    ms up), the smallest such decimal whose float is not below ``ms``, trailing zeros dropped."""
    from decimal import ROUND_FLOOR, Decimal

    step = Decimal(1).scaleb(-max(0, 4 - math.floor(math.log10(ms))))
    q = Decimal(ms).quantize(step, rounding=ROUND_FLOOR)
    if float(q) < ms:
        q += step
    text = format(q, "f")
    return text.rstrip("0").rstrip(".") if "." in text else text


def test_the_budget_hint_is_the_smallest_five_digit_budget_that_is_met(space, formula, Lat):
    from edgenas.search.problem import plain_ms

    rng = np.random.default_rng(6)
    values = [2.5, 0.5, 12000.0, 123456.7, 99999.99, 9.99995, 0.0112835, 11.883000000000001,
              0.0077337000000000005, 1.0000000000000001e-07]
    values += [float(10 ** x) for x in rng.uniform(-7, 6, 300)]
    values += [math.nextafter(round(float(10 ** x), int(d)), math.inf)  # one float above a short decimal
               for x, d in zip(rng.uniform(0, 5, 300), rng.integers(0, 6, 300))]
    for ms in values:
        assert plain_ms(ms, up=True) == hint_ms(ms), ms
        assert float(plain_ms(ms)) == ms and "e" not in plain_ms(ms)
    assert [plain_ms(x, up=True) for x in (math.inf, math.nan, 0.0, -1.5)] == ["inf", "nan", "0", "-1.5"]
    for ms in (1e-310, 5e-324, 2.2250738585072014e-308, 1e300):  # a table's subnormal latency: an OverflowError
        text = plain_ms(ms, up=True)
        assert float(text) >= ms and len(text.replace(".", "").strip("0")) <= 5, (ms, text)
        assert float(text) <= ms * 1.0001 or ms < 1e-307, (ms, text)  # subnormals carry fewer digits
    lat = Lat(space, seed=3)
    low = lat.min_latency()[0]
    with pytest.raises(InfeasibleError) as err:
        Problem(space, formula, [DeviceTarget("dev", lat, low / 2)])
    assert err.value.hint == f"raise the budget to at least {hint_ms(low)} ms" and len(repr(low)) > 8


def test_violation_constraints_and_feasibility_match_the_budgets_with_ties_at_a_budget(space, formula, Lat):
    """Two budgets of different sizes (the violation is a sum of shares of each), one device at exactly its
    budget (met), an unbudgeted device that is an objective and a budgeted one minimised as well."""
    rng = np.random.default_rng(2)
    archs = [space.sample(rng) for _ in range(40)]
    models = {name: Lat(space, seed=s) for s, name in enumerate(("a", "b", "c", "d"))}
    for m in models.values():  # about 1 ms: an excess is a fraction of a ms, a share of the budget is not
        m.cost = {k: v / 40 for k, v in m.cost.items()}
    ms = {name: m.predict_many(archs) for name, m in models.items()}
    budgets = {"a": float(np.sort(ms["a"])[10]), "b": float(np.sort(ms["b"])[25]), "d": float(np.median(ms["d"]))}
    problem = Problem(space, formula, [DeviceTarget("a", models["a"], budgets["a"]),
                                       DeviceTarget("b", models["b"], budgets["b"], minimise=True),
                                       DeviceTarget("c", models["c"]),
                                       DeviceTarget("d", models["d"], budgets["d"], minimise=False)],
                      params=lambda a: float(space.to_genes(a)[0]))
    assert problem.objective_names == ["accuracy", "latency_ms:b", "latency_ms:c", "params"]
    share = [sum(max(float(ms[d][i]) - b, 0.0) / b for d, b in budgets.items()) for i in range(len(archs))]
    met = [all(float(ms[d][i]) <= b for d, b in budgets.items()) for i in range(len(archs))]
    assert 0 < sum(met) < len(archs) and any(float(ms["a"][i]) == budgets["a"] and met[i] for i in range(40))
    assert problem.violation(archs).tolist() == pytest.approx(share, rel=1e-12, abs=0)
    acc = formula.evaluate(archs)
    records = problem.evaluate(archs)
    assert len(records) == len(archs)
    for i, rec in enumerate(records):
        assert rec["feasible"] == met[i]
        assert rec["constraints"] == pytest.approx({d: float(ms[d][i]) - b for d, b in budgets.items()})
        assert rec["latency_ms"] == {d: float(ms[d][i]) for d in "abcd"}
        res = problem.to_result(rec)
        assert res.values == pytest.approx((-acc[i], ms["b"][i], ms["c"][i], space.to_genes(archs[i])[0]))
        assert res.violation == pytest.approx(share[i], rel=1e-12, abs=0) and res.feasible == met[i]


def test_a_problem_refuses_a_device_twice_a_model_that_cannot_predict_and_a_budget_that_is_not_a_time(space, formula,
                                                                                                      Lat):
    with pytest.raises(InputError, match="device listed twice: a, b, a"):
        Problem(space, formula, [DeviceTarget(n, Lat(space, s)) for s, n in enumerate("aba")])
    with pytest.raises(InputError, match="device 'b': latency model lacks predict_many/min_latency"):
        Problem(space, formula, [DeviceTarget("a", Lat(space)), DeviceTarget("b", object())])
    for bad in (0, 0.0, -1.0, math.inf, math.nan, "5"):
        with pytest.raises(InputError, match="device 'c': latency budget must be a positive number of ms"):
            Problem(space, formula, [DeviceTarget("c", Lat(space), bad)])


def test_a_problem_describes_its_objectives_budgets_and_minimum_latencies(space, formula, Lat):
    fast, slow = Lat(space, seed=1), Lat(space, seed=2)
    low = fast.min_latency()[0]
    free = Problem(space, formula, [DeviceTarget("b", slow)])
    assert not free.constrained and free.anchors() == []
    problem = Problem(space, formula, [DeviceTarget("a", fast, low * 2), DeviceTarget("b", slow)], flops=len)
    assert problem.constrained and [space.arch_id(a) for a in problem.anchors()] == [
        space.arch_id(fast.min_latency()[1])]
    assert problem.describe() == {
        "objectives": ["accuracy", "latency_ms:b", "flops"],
        "devices": {"a": {"budget_ms": low * 2, "objective": False, "min_latency_ms": low},
                    "b": {"budget_ms": None, "objective": True, "min_latency_ms": None}},
        "evaluator": {"name": "formula", "metric": "formula score"}}


def _genes_arch(space, *genes):
    return space.from_genes(np.array(genes))


def test_evolution_ages_its_population_and_a_full_tournament_picks_the_best_by_debs_order(space):
    from edgenas.search.base import Result
    from edgenas.search.evolution import RegularizedEvolution

    s = RegularizedEvolution(space, np.random.default_rng(0), population=4, tournament=10)
    archs = [_genes_arch(space, i, 0, 0, 0, 0, 0) for i in range(5)]
    results = [Result((-90.0,), 1.0), Result((-10.0,)), Result((-50.0,), 2.0), Result((-30.0,)), Result((-20.0,))]
    s.tell(archs, results)
    assert [space.arch_id(a) for a, _ in s.population] == [space.arch_id(a) for a in archs[1:]]  # the oldest died
    assert s.pending == 0 and s.seen == {space.arch_id(a) for a in archs}
    # a tournament of all four (10 > 4): feasible first, then the smaller value; the infeasible -50 loses
    for _ in range(5):
        arch, res = s._tournament()
        assert res == Result((-30.0,)) and space.arch_id(arch) == space.arch_id(archs[3])


def test_evolution_samples_until_the_population_is_asked_for_then_mutates_tournament_winners(space):
    from edgenas.search.base import Result
    from edgenas.search.evolution import RegularizedEvolution

    s = RegularizedEvolution(space, np.random.default_rng(0), population=3, tournament=3)
    first = s.ask(2)
    assert s.pending == 2 and s.origin == {}           # random samples: no parent
    assert s.seen == {space.arch_id(a) for a in first}  # asked is seen: a batch never repeats itself
    first += s.ask(1)                                   # 2 pending + 0 told < 3: still a sample
    assert s.pending == 3 and s.origin == {}
    s.tell(first[:1], [Result((-1.0,))])
    assert s.pending == 2
    s.tell(first[1:], [Result((-9.0,)), Result((-5.0,))])
    assert s.pending == 0
    child, = s.ask(1)
    parent, res, source = s.origin[space.arch_id(child)]
    assert space.arch_id(parent) == space.arch_id(first[1]) and res == Result((-9.0,)) and source == "usual"
    assert space.arch_id(child) not in {space.arch_id(a) for a in first}
    assert 1 <= int((space.to_genes(child) != space.to_genes(parent)).sum())


def test_evolution_options_bounds_and_first_child(space):
    from edgenas.search.evolution import RegularizedEvolution as REA

    assert REA.validate_options({}) == {"population": 20, "tournament": 5, "mutation": "one", "mutation_rate": None,
                                        "llm_share": 0.0, "llm_batch": 8, "sampling": "without-replacement"}
    for ok in ({"population": 2}, {"tournament": 1}, {"mutation_rate": 1.0}, {"llm_share": 0.0},
               {"llm_share": 1.0}, {"llm_batch": 1}):
        assert REA.validate_options(ok)[next(iter(ok))] == next(iter(ok.values()))
    for bad in ({"population": 1}, {"tournament": 0}, {"mutation_rate": 0.0}, {"mutation_rate": 1.5},
                {"llm_share": -0.1}, {"llm_share": 1.1}, {"llm_batch": 0}):
        with pytest.raises(InputError, match="must be"):
            REA.validate_options(bad)
    assert REA.before_children({}, None) == 20                               # the initial population
    assert REA.before_children({"population": 5}, 8) == 8                    # a first round of 8
    assert REA.before_children({"population": 5, "llm_share": 0.5}, None) == 8      # llm_batch
    assert REA.before_children({"population": 5, "llm_share": 0.5, "llm_batch": 3}, None) == 5
    assert REA.before_children({"population": 5, "llm_share": 0.0, "llm_batch": 30}, None) == 5


class ScriptedOperator:
    """A language-model operator stand-in: proposes the given children in turn and records what it is told."""

    def __init__(self, proposals):
        self.proposals, self.calls, self.observed = list(proposals), [], []

    def mutate_many(self, parents, results, seen):
        self.calls.append(len(parents))
        return [self.proposals.pop(0) for _ in parents]

    def observe(self, parent, child, parent_result, result, source):
        self.observed.append((parent, child, parent_result, result, source))


def test_evolution_with_a_model_asks_a_generation_in_one_call_and_falls_back_on_bad_proposals(space):
    from edgenas.search.base import Result
    from edgenas.search.evolution import RegularizedEvolution

    pop = [_genes_arch(space, i, 1, 1, 1, 1, 1) for i in range(3)]
    novel = _genes_arch(space, 4, 4, 4, 4, 4, 4)
    op = ScriptedOperator([novel, None, pop[0]])        # a novel child, no proposal, one already seen
    s = RegularizedEvolution(space, np.random.default_rng(0), llm_operator=op, population=3, tournament=3,
                             llm_share=1.0, llm_batch=3)
    assert s.batch_hint == 3
    s.tell(pop, [Result((-1.0,)), Result((-2.0,)), Result((-9.0,))])
    children = s.ask(3)
    assert op.calls == [3] and space.arch_id(children[0]) == space.arch_id(novel)
    ids = [space.arch_id(c) for c in children]
    assert len(set(ids)) == 3 and not set(ids) & {space.arch_id(a) for a in pop}   # the fallbacks are novel
    assert [s.origin[i][2] for i in ids] == ["llm", "usual", "usual"] and s.pending == 3
    assert set(ids) <= s.seen                           # the model's child too, before it is told
    s.tell(children, [Result((-3.0,)), Result((-4.0,)), Result((-5.0,))])
    assert [(space.arch_id(p), r, res, src) for p, _, r, res, src in op.observed] == [
        (space.arch_id(pop[2]), Result((-9.0,)), Result((-3.0,)), "llm"),
        (space.arch_id(pop[2]), Result((-9.0,)), Result((-4.0,)), "usual"),
        (space.arch_id(pop[2]), Result((-9.0,)), Result((-5.0,)), "usual")]
    assert s.origin == {} and s.pending == 0
    idle = ScriptedOperator([])
    off = RegularizedEvolution(space, np.random.default_rng(0), llm_operator=idle, llm_share=0.0, population=3)
    assert off.batch_hint == 1
    none = RegularizedEvolution(space, np.random.default_rng(0), llm_share=0.5, population=3)  # no model: usual
    for strat in (off, none):
        strat.tell(pop, [Result((-1.0,)), Result((-2.0,)), Result((-9.0,))])
        assert [strat.origin[space.arch_id(c)][2] for c in strat.ask(4)] == ["usual"] * 4
    assert idle.calls == []
    # a model with share 0 is not consulted and draws nothing: the same children as without one
    runs = []
    for op in (None, ScriptedOperator([])):
        strat = RegularizedEvolution(space, np.random.default_rng(5), llm_operator=op, llm_share=0.0, population=3)
        strat.tell(pop, [Result((-1.0,)), Result((-2.0,)), Result((-9.0,))])
        runs.append([space.arch_id(c) for c in strat.ask(6)])
    assert runs[0] == runs[1]


# (values, violation): A, B, C non-dominated; D behind B; E, then H, F, G infeasible (H, F, G at one level)
POINTS = [((1.0, 4.0), 0.0), ((2.0, 2.0), 0.0), ((4.0, 1.0), 0.0), ((3.0, 3.0), 0.0), ((0.0, 0.0), 1.0),
          ((5.5, 4.5), 0.5), ((5.0, 5.0), 0.5), ((6.0, 4.0), 0.5)]


def test_rank_crowding_and_survival_on_hand_worked_points():
    from edgenas.search.base import Result
    from edgenas.search.operators import RankCrowdingSurvival, as_arrays, rank_and_crowding

    results = [Result(v, c) for v, c in POINTS]
    rank, crowd = rank_and_crowding(results)
    assert rank.tolist() == [0, 0, 0, 1, 3, 2, 2, 2]        # fronts: ABC, D, HFG (violation 0.5), E (1.0)
    # B: (4 - 1) / 3 on each objective; boundaries and a one-point front inf; infeasible fronts 0
    assert crowd.tolist() == [np.inf, 2.0, np.inf, np.inf, 0.0, 0.0, 0.0, 0.0]
    survive = RankCrowdingSurvival()
    assert survive(results, 2) == [0, 2]                    # the boundary points of the cut front
    assert survive(results, 3) == [0, 1, 2] and survive(results, 4) == [0, 1, 2, 3]
    assert survive(results, 5) == [0, 1, 2, 3, 5]           # an infeasible front is cut in its order
    assert survive(results, 7) == [0, 1, 2, 3, 5, 6, 7] and survive(results, 8) == [0, 1, 2, 3, 5, 6, 7, 4]
    F, v = as_arrays([Result((1.0, float("nan"))), Result((2.0, -np.inf), -1.0), Result((3.0, 4.0), 2.5)])
    assert F.tolist() == [[1.0, np.inf], [2.0, np.inf], [3.0, 4.0]] and v.tolist() == [0.0, 0.0, 2.5]


def test_tournament_selection_crossover_and_mutation_operators(space):
    from edgenas.search.operators import GeneMutation, RankCrowdingSurvival, TournamentSelection, UniformCrossover

    assert (TournamentSelection().size, UniformCrossover().prob, GeneMutation().rate) == (2, 0.9, None)  # Deb's
    for op, field in ((TournamentSelection(), "size"), (UniformCrossover(), "prob"), (GeneMutation(), "rate"),
                      (RankCrowdingSurvival(), "extra")):
        with pytest.raises(dataclasses.FrozenInstanceError):   # no state besides their options
            setattr(op, field, 1)
    rank, crowd = np.array([1, 0, 0, 2]), np.array([9.0, 1.0, 3.0, 0.0])
    rng = np.random.default_rng(0)
    assert TournamentSelection(10)(rank, crowd, 3, rng) == [2, 2, 2]   # all four: rank 0, most crowding
    pairs = TournamentSelection(2)(rank, crowd, 60, rng)
    assert 3 not in pairs and set(pairs) == {0, 1, 2}                 # the worst never wins a pair
    assert set(TournamentSelection(1)(rank, crowd, 60, rng)) == {0, 1, 2, 3}
    a, b = _genes_arch(space, 0, 0, 0, 0, 0, 0), _genes_arch(space, 4, 4, 4, 4, 4, 4)
    assert all(UniformCrossover(0.0)(space, a, b, rng) is a for _ in range(20))
    kids = [space.to_genes(UniformCrossover(1.0)(space, a, b, rng)) for _ in range(20)]
    assert all(set(k) <= {0, 4} for k in kids) and any(set(k) == {0, 4} for k in kids)
    assert all((space.to_genes(GeneMutation()(space, a, rng)) != 0).any() for _ in range(20))


def test_nsga2_survival_after_a_generation_of_offspring(space):
    from edgenas.search.base import Result
    from edgenas.search.nsga2 import NSGA2

    s = NSGA2(space, np.random.default_rng(0), population=4)
    gen0 = s.ask(4)
    assert len({space.arch_id(a) for a in gen0}) == 4 and s.seen == {space.arch_id(a) for a in gen0}
    s.tell(gen0[:3], [Result(v, c) for v, c in POINTS[:3]])
    assert s.parents == [] and len(s.offspring) == 3                 # survival waits for a whole population
    s.tell(gen0[3:], [Result(*POINTS[3])])
    assert [r for _, r in s.parents] == [Result(v, c) for v, c in POINTS[:4]] and s.offspring == []
    gen1 = s.ask(4)
    assert not {space.arch_id(a) for a in gen1} & {space.arch_id(a) for a in gen0}
    # X dominates the rest; A, B, C, Y (A's values) make the second front, cut to its 3 boundary points
    X, Y, Z, W = Result((0.5, 0.5)), Result((1.0, 4.0)), Result((10.0, 10.0)), Result((0.0, 0.0), 1.0)
    s.tell(gen1, [X, Y, Z, W])
    other = _genes_arch(space, 4, 4, 4, 4, 4, 3)
    s.tell([other], [X])                                            # never asked (a replay): seen all the same
    assert space.arch_id(other) in s.seen and len(s.offspring) == 1
    assert [r for _, r in s.parents] == [X, Result((1.0, 4.0)), Result((4.0, 1.0)), Y]
    assert [space.arch_id(a) for a, _ in s.parents] == [space.arch_id(gen1[0]), space.arch_id(gen0[0]),
                                                         space.arch_id(gen0[2]), space.arch_id(gen1[1])]


def test_nsga2_option_bounds():
    from edgenas.search.nsga2 import NSGA2

    assert NSGA2.validate_options({}) == {"population": 20, "tournament": 2, "crossover_prob": 0.9,
                                          "mutation_rate": None, "sampling": "without-replacement"}
    for ok in ({"population": 4}, {"tournament": 1}, {"crossover_prob": 0.0}, {"crossover_prob": 1.0},
               {"mutation_rate": 1.0}):
        assert NSGA2.validate_options(ok)[next(iter(ok))] == next(iter(ok.values()))
    for bad in ({"population": 3}, {"tournament": 0}, {"crossover_prob": -0.1}, {"crossover_prob": 1.1},
                {"mutation_rate": 0.0}, {"mutation_rate": 1.01}):
        with pytest.raises(InputError, match="must be"):
            NSGA2.validate_options(bad)


class _Typed(Strategy):
    name = "typed"
    options = {"flag": Option(True, bool), "n": Option(1, int), "x": Option(0.5, float)}

    def ask(self, n):
        return []

    def tell(self, archs, results):
        pass


def test_options_are_converted_to_their_declared_type_and_bools_are_spelled_out():
    assert _Typed.validate_options({}) == {"flag": True, "n": 1, "x": 0.5}
    for text, want in (("Yes ", True), ("on", True), ("1", True), ("off", False), ("No", False), ("0", False)):
        assert _Typed.validate_options({"flag": text})["flag"] is want
    assert _Typed.validate_options({"flag": False})["flag"] is False
    assert _Typed.validate_options({"n": 4.0, "x": "2.5"}) == {"flag": True, "n": 4, "x": 2.5}
    for bad, want in (({"flag": "maybe"}, "flag='maybe' is not true or false"), ({"n": 5.5}, "n=5.5 is not an integer"),
                      ({"x": "1e400"}, "x='1e400' is not a finite number"),
                      ({"n": True}, "n=True is not an integer"), ({"x": False}, "x=False is not a finite number")):
        with pytest.raises(InputError, match=want):
            _Typed.validate_options(bad)


class _Line:
    """A two-gene space of tuples; ``mutate`` gives (7, 7) first, then (5, 5): cells no path toward (0, 0) meets."""

    def __init__(self):
        self.far = [(7, 7)]

    def to_genes(self, arch):
        return np.array(arch)

    def from_genes(self, genes):
        return tuple(int(g) for g in genes)

    def arch_id(self, arch):
        return str(tuple(arch))

    def mutate(self, arch, rng):
        return self.far.pop() if self.far else (5, 5)


class _One(_Line):
    """A space of one cell, (0, 0), counting the samples drawn."""

    def __init__(self):
        super().__init__()
        self.drawn = 0

    def sample(self, rng):
        self.drawn += 1
        return (0, 0)


class _Only:
    """Feasible: the cells in ``ok``; one anchor, (0, 0)."""

    def __init__(self, ok):
        self.ok = set(ok)

    def violation(self, archs):
        return np.array([0.0 if tuple(a) in self.ok else 1.0 for a in archs])

    def anchors(self):
        return [(0, 0)]


def test_repair_without_constraints_or_anchors_returns_the_architecture():
    arch, rng = (1, 1), np.random.default_rng(0)
    assert repair_toward_anchor(_Line(), None, arch, rng) is arch
    none = _Only([])
    none.anchors = lambda: []
    assert repair_toward_anchor(_Line(), none, arch, rng) is arch


def test_repair_of_the_anchor_itself_returns_it():
    arch = (0, 0)
    assert repair_toward_anchor(_Line(), _Only([]), arch, np.random.default_rng(0)) is arch


class _Few(_Typed):
    max_tries = 25  # not a multiple of the predictor's chunk of 10


@pytest.mark.parametrize("cls", [_Typed, _Few])
def test_propose_with_everything_seen_gives_a_duplicate_after_a_bounded_search(cls):
    """``make`` and the uniform samples give only the one, seen, cell: max_tries of each, then a duplicate
    (a strategy with max_tries 25 and constraints got 30 calls of each: chunks of 10)."""
    for feasibility in (None, _Only([(0, 0)])):
        space = _One()
        s = cls(space, np.random.default_rng(0), feasibility=feasibility)
        s.mark_seen([(0, 0)])
        made = []
        assert s.propose(lambda: made.append(1) or (0, 0)) == (0, 0)
        assert len(made) == cls.max_tries + 1 and space.drawn == cls.max_tries  # + 1: the duplicate returned


class _Fixed(_Typed):
    """``repair`` gives ``fix`` and records what it was asked to repair."""

    fix = (9, 9)

    def repair(self, arch, avoid=None):
        self.repaired = arch
        return self.fix


def test_propose_repairs_the_first_least_violating_candidate_and_keeps_a_novel_repair():
    """``make`` gives (1, 1), (2, 1), ... all novel and equally infeasible: the first is repaired, and its novel
    repair (9, 9) is proposed without any uniform sample."""
    space, made = _One(), []
    s = _Fixed(space, np.random.default_rng(0), feasibility=_Only([]))
    assert s.propose(lambda: made.append(1) or (len(made), 1)) == (9, 9)
    assert s.repaired == (1, 1) and len(made) == s.max_tries and space.drawn == 0


def test_propose_falls_back_to_a_seen_repair_before_a_duplicate_of_make():
    """The repair (0, 0) was seen and so is every uniform sample: the repair is proposed, not another make()."""
    space, made = _One(), []
    s = _Fixed(space, np.random.default_rng(0), feasibility=_Only([]))
    s.fix = (0, 0)
    s.mark_seen([(0, 0)])
    assert s.propose(lambda: made.append(1) or (len(made), 1)) == (0, 0)
    assert len(made) == s.max_tries and space.drawn == s.max_tries


def test_repair_with_no_feasible_step_returns_the_anchor():
    """(1, 1) toward (0, 0): both paths end at the anchor, the last step, when nothing is feasible; one path
    (one predictor call) without ``avoid``, else REPAIR_TRIES of them, and no mutations (none was feasible)."""
    calls = []
    nothing = _Only([])
    nothing.violation = lambda archs: calls.append(len(archs)) or np.ones(len(archs))
    assert repair_toward_anchor(_Line(), nothing, (1, 1), np.random.default_rng(0)) == (0, 0)
    assert calls == [2]
    seen = {str((0, 1)), str((1, 0)), str((0, 0))}
    assert repair_toward_anchor(_Line(), nothing, (1, 1), np.random.default_rng(0), avoid=seen) == (0, 0)
    assert calls == [2] * (1 + REPAIR_TRIES)


def test_repair_with_every_step_seen_takes_a_novel_feasible_mutation():
    """Both paths from (1, 1) meet only seen cells, all feasible: of the mutations of one, (7, 7) is novel but
    infeasible (violation 1) and (5, 5) novel and feasible (violation 0)."""
    seen, calls = {str((0, 1)), str((1, 0)), str((0, 0))}, []
    only = _Only([(0, 1), (1, 0), (0, 0), (5, 5)])
    real = only.violation
    only.violation = lambda archs: calls.append(len(archs)) or real(archs)
    assert repair_toward_anchor(_Line(), only, (1, 1), np.random.default_rng(0), avoid=seen) == (5, 5)
    assert calls == [2] * REPAIR_TRIES + [4 * 2]  # a call per path, then one for 4 D mutations


def test_records_are_immutable_and_feasible_results_rank_first():
    """Deb's order: any feasible result before any infeasible one, whatever the objective and the violation."""
    ok, nan, over = Result((5.0,)), Result((math.nan,)), Result((-9.0,), violation=0.1)
    assert sorted([over, nan, ok], key=rank_key) == [ok, nan, over]
    assert rank_key(ok) < rank_key(over) and rank_key(nan) < rank_key(over)
    for record, attr in ((ok, "violation"), (Option(1, int), "default"),
                         (Trial(0, {}, {}, {}, {}, True), "feasible"), (DriverRun(None, None, print), "config")):
        with pytest.raises(dataclasses.FrozenInstanceError):
            setattr(record, attr, None)


def test_an_unknown_option_of_a_strategy_without_options_says_it_has_none():
    class Bare(_Typed):
        options = {}

    with pytest.raises(InputError, match="unknown option") as e:
        Bare.validate_options({"flag": True})
    assert e.value.hint == "known options: none"


def test_trial_json_round_trip_and_defaults():
    t = Trial(number=3, arch={"ops": [1]}, objectives={"accuracy": 0.5}, latency_ms={"pi": 2.0},
              constraints={"pi": -1.0}, feasible=True)
    assert t.wall_s == 0.0 and t.report == {}
    d = t.to_json()
    assert d == {"number": 3, "arch": {"ops": [1]}, "objectives": {"accuracy": 0.5}, "latency_ms": {"pi": 2.0},
                 "constraints": {"pi": -1.0}, "feasible": True, "wall_s": 0.0}              # no empty report
    assert Trial.from_json(d) == t
    del d["wall_s"], d["constraints"]
    assert Trial.from_json(d) == Trial(**{**t.__dict__, "constraints": {}})  # wall_s 0.0 by default
    r = Trial(**{**t.__dict__, "report": {"test": 0.25}, "wall_s": 1.5})
    assert r.to_json()["report"] == {"test": 0.25} and Trial.from_json(r.to_json()) == r


def test_a_driver_must_define_prepare():
    with pytest.raises(NotImplementedError):
        Driver.prepare(None, None, None)


def test_takes_only_a_novel_feasible_proposal():
    s = _Typed(_Line(), np.random.default_rng(0), feasibility=_Only([(0, 0), (0, 1)]))
    s.mark_seen([(0, 1)])
    assert s.takes((0, 0)) and not s.takes(None) and not s.takes((0, 1))
    assert not s.takes((1, 1))                                               # violation 1: infeasible


def test_random_search_never_asks_for_what_it_was_told(space):
    """What a random search is told (a resume's replay, a warm start's evaluations) is seen: the samples it would
    have drawn first are skipped."""
    first = make_strategy("random", space, np.random.default_rng(0)).ask(5)
    s = make_strategy("random", space, np.random.default_rng(0))
    s.tell(first[:2], [Result((-1.0,)), Result((-2.0,))])
    again = [space.arch_id(a) for a in s.ask(5)]
    assert len(set(again)) == 5 and not {space.arch_id(a) for a in first[:2]} & set(again)

"""optuna samplers as strategies (tpe, gp, cmaes, optuna-nsga2) and HGM lineage search."""

import numpy as np
import pytest

from edgenas.errors import InputError
from edgenas.search import DeviceTarget, Problem, make_strategy
from edgenas.search.base import Result
from edgenas.search.candidates import repair_toward_anchor
from edgenas.search.hgm import HGM

OPTUNA = ["tpe", "cmaes", "optuna-nsga2"]   # gp: below, with a smaller budget (it is slow)


def drive(strategy, problem, budget):
    asked, results = [], []
    batch = strategy.batch_hint or strategy.opts.get("population") or 1
    while len(asked) < budget:
        archs = strategy.ask(min(batch, budget - len(asked)))
        res = [problem.to_result(r) for r in problem.evaluate(archs)]
        strategy.tell(archs, res)
        asked += [problem.space.arch_id(a) for a in archs]
        results += res
    return asked, results


def _budget_problem(space, formula, Lat, quantile):
    """A device whose budget is the ``quantile`` of 300 seeded random architectures' latency."""
    lat = Lat(space)
    sample = [space.sample(np.random.default_rng(i)) for i in range(300)]
    return Problem(space, formula, [DeviceTarget("dev", lat, float(np.quantile(lat.predict_many(sample), quantile)))])


@pytest.mark.parametrize("name", OPTUNA + ["hgm"])
def test_deterministic_novel_and_better_than_random(space, formula, name):
    problem = Problem(space, formula)
    runs = [drive(make_strategy(name, space, np.random.default_rng(s)), problem, 60) for s in (5, 5, 6)]
    assert runs[0][0] == runs[1][0] and runs[0][0] != runs[2][0]
    asked, results = runs[0]
    assert len(set(asked)) == len(asked)             # the run log is the cache: nothing evaluated twice
    rnd = drive(make_strategy("random", space, np.random.default_rng(5)), problem, 60)[1]
    best = min(r.scalar for r in results)
    assert best <= min(r.scalar for r in rnd)        # at least as good as random with the same budget
    assert best <= -15.0                             # optimum -18.03 (all nor_conv_3x3)


@pytest.mark.parametrize("name", OPTUNA + ["hgm"])
def test_constrained_proposals_are_feasible(space, formula, Lat, name):
    problem = _budget_problem(space, formula, Lat, 0.3)
    s = make_strategy(name, space, np.random.default_rng(1), feasibility=problem)
    asked, results = drive(s, problem, 40)
    assert all(r.feasible for r in results)
    if name in ("tpe", "optuna-nsga2"):   # optuna's constrained samplers see every trial's violation
        seen = [_violation_seen(t) for t in s.study.trials if t.state.name == "COMPLETE"]
        assert seen and all(v is not None for v in seen)
        assert any(v > 0 for v in seen)   # infeasible trials were rejected by the pre-check


def _violation_seen(trial) -> float | None:
    """The violation optuna's sampler saw: a named constraint (optuna >= 5), or ``constraints_func``'s value,
    which optuna 4 keeps in the trial's system attributes (``FrozenTrial.constraints`` is new in 5)."""
    if hasattr(trial, "constraints"):
        return trial.constraints.get("violation")
    values = trial.system_attrs.get("constraints")
    return None if values is None else float(values[0])


def test_optuna_multi_objective_gets_all_objectives(space, formula, Lat):
    problem = Problem(space, formula, [DeviceTarget("dev", Lat(space))])   # accuracy and latency
    from edgenas.search import SearchConfig
    from edgenas.search.run import build_strategy

    cfg = SearchConfig(space="nb201", strategy="optuna-nsga2", budget_evals=30, devices=(("dev", None),))
    s, batch = build_strategy(cfg, problem)
    assert s.opts["n_objectives"] == 2 and batch == 1
    drive(s, problem, 30)
    done = [t for t in s.study.trials if t.state.name == "COMPLETE"]
    assert len(done) >= 30 and all(len(t.values) == 2 for t in done)


@pytest.mark.slow
def test_gp_sampler_small_budget(space, formula):
    problem = Problem(space, formula)
    s = make_strategy("gp", space, np.random.default_rng(0), n_startup_trials=5)
    asked, results = drive(s, problem, 15)
    assert len(set(asked)) == 15
    assert s.study.sampler.__class__.__name__ == "GPSampler"
    assert s.study.sampler._deterministic is True   # an evaluation's value is exact: no noise to model
    again = drive(make_strategy("gp", space, np.random.default_rng(0), n_startup_trials=5), problem, 15)[0]
    assert again == asked


# ------------------------------------------------------------------ HGM
def test_hgm_clade_counts_and_posteriors(space, formula):
    problem = Problem(space, formula)
    s = make_strategy("hgm", space, np.random.default_rng(2), init=5)
    drive(s, problem, 50)
    n = len(s.archs)
    children = {i: [j for j in range(n) if s.parent[j] == i] for i in range(n)}

    def clade(i):
        out = [i]
        for c in children[i]:
            out += clade(c)
        return out

    for i in range(n):
        members = clade(i)
        assert s.s[i] == sum(s.succ[j] for j in members)         # CMP counts: successes of the clade
        assert s.s[i] + s.f[i] == len(members)
        assert s.clade_posterior(i) == (1 + s.s[i], 1 + s.f[i])
    assert sum(p < 0 for p in s.parent) == 5                    # the random roots
    for j in range(n):                                           # success = better than the parent or new front
        p = s.parent[j]
        if p >= 0 and s.results[j].scalar < s.results[p].scalar:
            assert s.succ[j]


def test_hgm_thompson_sampling_prefers_productive_clades(space):
    s = HGM(space, np.random.default_rng(0), tau_growth=1.0)
    s.archs = [space.sample(np.random.default_rng(i)) for i in range(3)]
    s.s, s.f = np.array([9.0, 1.0, 0.0]), np.array([1.0, 9.0, 0.0])
    s.step = 20
    picks = np.bincount([s.select() for _ in range(300)], minlength=3)
    assert picks[0] > 250                        # Beta(210, 42) vs Beta(42, 210) and Beta(21, 21)
    s.opts["tau_growth"], s.step = 0.0, 0        # tau = 1: plain Thompson sampling still explores
    picks = np.bincount([s.select() for _ in range(300)], minlength=3)
    assert picks[0] > picks[1] and picks[2] > 0


class OnlyFirstGene:
    """Accuracy depends on gene 0 alone: mutations of other genes never succeed."""

    def __init__(self, space):
        self.space = space

    def evaluate(self, archs):
        return np.array([float(self.space.to_genes(a)[0]) for a in archs])


def test_hgm_learns_which_gene_to_mutate(space):
    problem = Problem(space, OnlyFirstGene(space))
    s = make_strategy("hgm", space, np.random.default_rng(4), init=5, explore=0.2)
    before = s.gene_probs()
    drive(s, problem, 80)
    after = s.gene_probs()
    assert np.allclose(before, 1 / 6)
    assert after[0] > 0.3 and after[0] == after.max()


def test_hgm_unknown_option_and_bad_values(space):
    from edgenas.errors import InputError

    with pytest.raises(InputError, match="unknown option"):
        make_strategy("hgm", space, np.random.default_rng(0), temperature=2)
    with pytest.raises(InputError, match="must be in"):
        make_strategy("hgm", space, np.random.default_rng(0), explore=1.5)
    assert Result((1.0,)).feasible


def test_hgm_expands_the_best_member_of_the_sampled_clade(space, formula):
    from edgenas.search.base import rank_key

    problem = Problem(space, formula)
    s = make_strategy("hgm", space, np.random.default_rng(3), init=4)
    assert s.opts["expand"] == "best"
    drive(s, problem, 40)
    n = len(s.archs)

    def descendants(i, before):
        out = []
        for j in range(before):
            a = s.parent[j]
            while a >= 0 and a != i:
                a = s.parent[a]
            if a == i:
                out.append(j)
        return out

    for j in range(n):
        p = s.parent[j]
        if p < 0:
            continue
        # the mutated parent was the best of a clade that holds p's own subtree at that time
        assert all(rank_key(s.results[d]) >= rank_key(s.results[p]) for d in descendants(p, j))
    for i in range(n):   # best[i]: the best member of i's clade
        members = [i] + descendants(i, n)
        assert rank_key(s.results[s.best[i]]) == min(rank_key(s.results[m]) for m in members)


def test_cmaes_ranks_every_infeasible_candidate_below_every_feasible_one(space, formula, Lat):
    """The penalty was the worst feasible value seen + 1 + violation: a bad feasible result told later in a
    generation raised that worst above penalties told before it, and infeasible candidates outranked it."""
    from edgenas.search.optuna_samplers import INFEASIBLE

    problem = _budget_problem(space, formula, Lat, 0.3)
    s = make_strategy("cmaes", space, np.random.default_rng(0), feasibility=problem)
    archs = s.ask(2)
    s.tell(archs, [Result((-15.0,), 0.0), Result((-14.0,), 2.0)])   # a good feasible one, an infeasible one
    later = s.ask(1)
    s.tell(later, [Result((-1.0,), 0.0)])                           # then a bad feasible one
    told = {t.number: t.value for t in s.study.trials if t.state.name == "COMPLETE"}
    infeasible = [v for v in told.values() if v >= INFEASIBLE]
    assert infeasible and min(infeasible) > max(v for v in told.values() if v < INFEASIBLE)
    assert any(v == INFEASIBLE + 2.0 for v in infeasible)


def test_a_rejected_candidate_is_told_each_objectives_worst_value(space, formula, Lat):
    """GP models every objective on every trial: the placeholder of a rejected candidate repeated the worst
    accuracy into the latency and size slots (-75 ms), so infeasible regions looked the cheapest."""
    s = make_strategy("tpe", space, np.random.default_rng(0), n_objectives=3)
    archs = s.ask(3)
    s.tell(archs, [Result((-90.0, 5.0, 1e6)), Result((-70.0, 2.0, 3e6)), Result((-80.0, 9.0, 2e6), 1.0)])
    assert s._placeholder(0.5) == Result((-70.0, 5.0, 3e6), 0.5)  # per objective, feasible results only


def test_gp_loads_its_native_modules_when_built_and_a_ctrl_c_meanwhile_is_held_until_they_are():
    """GPSampler imported torch at its first sample, inside the run loop: a Ctrl-C landing in torch's native
    start-up aborted the process ("terminate called after throwing an instance of
    'pybind11::error_already_set'"), with no resume line and the run not indexed. Real processes: a fresh
    interpreter for the imports, a real SIGINT for the hold."""
    import subprocess
    import sys
    from pathlib import Path

    root = str(Path(__file__).resolve().parents[2])
    code = ("import sys, numpy as np\nfrom edgenas.search import make_strategy\nfrom edgenas.spaces import get_space\n"
            "assert 'torch' not in sys.modules\n"
            "make_strategy('gp', get_space('nb201'), np.random.default_rng(0))\n"
            "print('torch' in sys.modules, 'optuna._gp.gp' in sys.modules)\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=root, timeout=300)
    assert out.returncode == 0 and out.stdout.split() == ["True", "True"], out.stderr[-2000:]
    # Ctrl-C at its default (a job started in the background of a non-interactive shell, as CI may be, inherits
    # it ignored: then it is dropped, as it should be)
    code = ("import os, signal, time\nfrom edgenas.quiet import signals_held\nsteps = []\n"
            "signal.signal(signal.SIGINT, signal.default_int_handler)\n"
            "try:\n    with signals_held():\n        os.kill(os.getpid(), signal.SIGINT)\n        time.sleep(0.2)\n"
            "        steps.append('block ended')\nexcept KeyboardInterrupt:\n    steps.append('interrupted')\n"
            "print(steps)\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=root, timeout=60)
    assert out.stdout.strip() == "['block ended', 'interrupted']", out.stdout + out.stderr


def _told(s, space, genes, parent, ops, result):
    """Tell HGM one architecture as the child of ``parent`` made by the operator ``ops`` (-1: a root)."""
    arch = space.from_genes(np.array(genes))
    s.pending[space.arch_id(arch)] = (parent, ops)
    s.tell([arch], [result])
    return arch


def test_hgm_successes_clade_counts_best_members_and_operator_credit_on_a_small_tree(space):
    """A hand-worked tree (values minimised: -accuracy, latency). A node succeeds when it beats its parent in
    Deb's order or enters the feasible front; only successful children credit their operator."""
    s = HGM(space, np.random.default_rng(0), init=2, learn_rate=2.0, explore=0.0)
    tree = [([0, 0, 0, 0, 0, 0], -1, (), Result((-50.0, 10.0))),      # 0 root: the first front member
            ([1, 0, 0, 0, 0, 0], -1, (), Result((-40.0, 20.0))),      # 1 root: dominated by 0: failure
            ([3, 0, 0, 0, 0, 0], 0, ((0, 3),), Result((-45.0, 5.0))),  # 2: worse than 0, enters the front
            ([3, 2, 0, 0, 0, 0], 2, ((1, 2),), Result((-48.0, 30.0))),  # 3: beats 2, dominated by 0
            ([3, 2, 1, 0, 0, 0], 3, ((2, 1),), Result((-60.0, 1.0), 2.0)),  # 4: infeasible: failure
            ([0, 0, 0, 0, 0, 1], 0, ((4, 0),), Result((-45.0, 5.0))),  # 5: ties front member 2, worse than 0
            ([3, 2, 0, 4, 0, 0], 3, ((3, 4),), Result((-55.0, 40.0))),  # 6: beats 3 and enters the front
            ([3, 2, 1, 0, 0, 2], 4, ((5, 2),), Result((-10.0, 50.0), 1.0)),  # 7: less violation than 4
            ([1, 4, 0, 0, 0, 0], 1, ((1, 4),), Result((-40.0, 25.0))),  # 8: ties 1: no success, not 1's best
            ([3, 0, 0, 0, 0, 4], 2, ((5, 4),), Result((-46.0, 4.0)))]  # 9: beats 2, pushes it off the front
    archs = [_told(s, space, *node) for node in tree]
    assert s.succ == [True, False, True, True, False, False, True, True, False, True]
    assert s.parent == [-1, -1, 0, 2, 3, 0, 3, 4, 1, 2]
    assert s.s.tolist() == [6, 0, 5, 3, 1, 0, 1, 1, 0, 1]     # clade 0 = all but 1 and 8: 6 successes
    assert s.f.tolist() == [2, 2, 1, 1, 1, 1, 0, 0, 1, 0]
    assert s.best == [6, 1, 6, 6, 7, 5, 6, 7, 8, 9]           # 7 beats 4 on violation; 6 is the best feasible
    assert sorted(map(tuple, s.front)) == [(-55.0, 40.0), (-50.0, 10.0), (-46.0, 4.0)]
    assert s.seen == {space.arch_id(a) for a in archs} and not s.pending and s.step == 10
    # operators of the successful children 2, 3, 6, 7, 9 gain learn_rate; the failures' (4, 5, 8) nothing
    assert s.gene_counts.tolist() == [3, 3, 1, 3, 1, 5]
    assert s.value_counts[0].tolist() == [1, 1, 1, 3, 1] and s.value_counts[4].tolist() == [1, 1, 1, 1, 1]
    dist = s.mutation_distribution()
    assert dist["genes"] == pytest.approx(np.array([3, 3, 1, 3, 1, 5]) / 16)
    assert dist["values"][5] == pytest.approx([1 / 9, 1 / 9, 3 / 9, 1 / 9, 3 / 9])
    s.opts["explore"] = 0.5                           # half learned, half uniform over the other values
    assert s.gene_probs() == pytest.approx(0.5 * np.array([3, 3, 1, 3, 1, 5]) / 16 + 0.5 / 6)
    assert s.value_probs(0, 3) == pytest.approx([0.25, 0.25, 0.25, 0.0, 0.25])
    assert s.value_probs(0, 0) == pytest.approx([0.0, 5 / 24, 5 / 24, 9 / 24, 5 / 24])


def test_hgm_a_result_with_a_non_finite_value_never_enters_the_front(space):
    s = HGM(space, np.random.default_rng(0), init=2)
    _told(s, space, [0, 0, 0, 0, 0, 0], -1, (), Result((-50.0, float("nan"))))
    s.tell([space.from_genes(np.array([1, 0, 0, 0, 0, 0]))], [Result((-40.0, 20.0))])  # never asked: a root
    assert s.succ == [False, True] and len(s.front) == 1 and s.parent == [-1, -1]


def test_hgm_never_mutates_a_gene_with_one_value_and_changes_genes_distinct_genes():
    from edgenas.spaces import get_space

    tiny = get_space("mbv3-tiny")                       # gene 0 has one value; genes 1-10 two each
    s = HGM(tiny, np.random.default_rng(0), genes=20)
    assert s.gene_probs() == pytest.approx([0.0] + [0.1] * 10)
    parent = tiny.sample(np.random.default_rng(1))
    child, ops = s.mutate(parent)
    before, after = tiny.to_genes(parent), tiny.to_genes(child)
    # min(20, 10 mutable genes): each of genes 1-10 once, to its other value
    assert sorted(i for i, _ in ops) == list(range(1, 11))
    assert all(after[i] == v == 1 - before[i] for i, v in ops) and after[0] == before[0]


def test_hgm_option_bounds(space):
    assert HGM.validate_options({}) == {"init": 10, "tau_growth": 2.0, "genes": 1, "learn_rate": 1.0,
                                        "explore": 0.2, "expand": "best", "sampling": "without-replacement"}
    for ok in ({"init": 1}, {"genes": 1}, {"tau_growth": 0}, {"tau_growth": 1e6}, {"learn_rate": 0},
               {"learn_rate": 1e6}, {"explore": 0}, {"explore": 1}, {"expand": "node"}):
        assert HGM.validate_options(ok)[next(iter(ok))] == next(iter(ok.values()))
    for bad in ({"init": 0}, {"genes": 0}, {"tau_growth": -0.5}, {"tau_growth": 2e6}, {"learn_rate": -1},
                {"learn_rate": 2e6}, {"explore": -0.1}, {"expand": "worst"}):
        with pytest.raises(InputError, match="must be"):
            HGM.validate_options(bad)


def test_hgm_thompson_draws_are_scaled_by_tau(space):
    """theta ~ Beta(tau (1 + s), tau (1 + f)) with tau = 1 + tau_growth * step: the same generator drawn by
    hand picks the same clades."""
    s = HGM(space, np.random.default_rng(7), tau_growth=0.5)
    s.s, s.f, s.step = np.array([3.0, 1.0, 0.0, 2.0]), np.array([1.0, 2.0, 0.0, 2.0]), 4  # tau = 3
    ref = np.random.default_rng(7)
    picks = [s.select() for _ in range(200)]
    assert picks == [int(np.argmax(ref.beta(3 * np.array([4, 2, 1, 3]), 3 * np.array([2, 3, 1, 3]))))
                     for _ in range(200)]


def test_hgm_ask_marks_a_batch_seen_and_proposes_no_architecture_twice(space):
    s = HGM(space, np.random.default_rng(0), init=40)
    archs = s.ask(40)
    ids = {space.arch_id(a) for a in archs}
    assert len(ids) == 40 and s.seen == ids and set(s.pending) == ids
    s.tell(archs, [Result((-float(i), 1.0)) for i in range(40)])
    assert s.parent == [-1] * 40 and not s.pending


def test_hgm_counts_asked_but_untold_roots_toward_init(space):
    s = HGM(space, np.random.default_rng(0), init=3)
    _told(s, space, [0, 0, 0, 0, 0, 0], -1, (), Result((-50.0, 10.0)))
    _told(s, space, [1, 0, 0, 0, 0, 0], -1, (), Result((-40.0, 20.0)))
    s.ask(3)                                          # one more root makes init=3; then two children
    parents = [p for p, _ in s.pending.values()]
    assert len(parents) == 3 and parents.count(-1) == 1


def test_hgm_a_weakly_dominated_result_stays_off_the_front_and_a_weakly_dominating_one_replaces(space):
    s = HGM(space, np.random.default_rng(0), init=3)
    _told(s, space, [0, 0, 0, 0, 0, 0], -1, (), Result((-50.0, 10.0)))
    _told(s, space, [1, 0, 0, 0, 0, 0], -1, (), Result((-50.0, 20.0)))   # as accurate, slower
    _told(s, space, [2, 0, 0, 0, 0, 0], -1, (), Result((-60.0, 10.0)))   # more accurate, as fast
    assert s.succ == [True, False, True] and [tuple(p) for p in s.front] == [(-60.0, 10.0)]


class RejectAll:
    """A feasibility check under which every architecture breaks its budget by 2."""

    def violation(self, archs):
        return np.full(len(archs), 2.0)

    def anchors(self):
        return []


def test_what_optuna_is_told_per_result(space):
    from edgenas.search.optuna_samplers import INFEASIBLE, _violation

    tpe = make_strategy("tpe", space, np.random.default_rng(0), n_objectives=2)
    assert tpe._values(Result((-90.0, 5.0, 7.0))) == [-90.0, 5.0]        # the first n_objectives values
    for bad in (Result((-90.0,)), Result((-90.0, np.inf)), Result((np.nan, 1.0))):
        assert tpe._values(bad) is None                                    # a failed trial
    assert tpe._values(Result((-90.0, 5.0), 3.0)) == [-90.0, 5.0]          # the constraint says the rest
    assert tpe._placeholder(1.5) == Result((0.0, 0.0), 1.5)               # nothing feasible told yet
    one = make_strategy("tpe", space, np.random.default_rng(0))
    assert one._placeholder(1.5) == Result((0.0,), 1.5)                    # one objective, one value
    cma = make_strategy("cmaes", space, np.random.default_rng(0), feasibility=RejectAll())
    assert cma._values(Result((-90.0, 3.0), 2.5)) == [INFEASIBLE + 2.5] and cma._values(Result((-90.0, 3.0))) == [-90.0]
    free = make_strategy("cmaes", space, np.random.default_rng(0))       # no constraints: the value as it is
    assert free._values(Result((-90.0,), 2.5)) == [-90.0]
    assert _violation(type("T", (), {"user_attrs": {}})()) == (0.0,)
    assert _violation(type("T", (), {"user_attrs": {"violation": 2}})()) == (2.0,)


def test_optuna_strategy_bookkeeping_on_ask_and_tell(space):
    s = make_strategy("tpe", space, np.random.default_rng(0), n_objectives=2)
    archs = s.ask(3)
    ids = [space.arch_id(a) for a in archs]
    assert len(set(ids)) == 3 and s.seen == set(ids) and set(s.pending) == set(ids)
    s.tell(archs, [Result((-90.0, 5.0)), Result((-70.0, 2.0)), Result((-60.0, np.inf))])
    assert not s.pending and set(s.known) == set(ids) and s.worst == [-70.0, 5.0]   # finite feasible only
    assert all(_violation_seen(t) is None for t in s.study.trials)       # unconstrained: no constraint told
    states = [t.state.name for t in s.study.trials]
    assert states == ["COMPLETE", "COMPLETE", "FAIL"]                    # a non-finite value fails its trial
    assert [t.values for t in s.study.trials[:2]] == [[-90.0, 5.0], [-70.0, 2.0]]
    other = s.space.from_genes(np.array([4, 4, 4, 4, 4, 3]))
    s.tell([other], [Result((-99.0, 1.0), 1.0)])                          # never asked (a replay): known only
    assert len(s.study.trials) == 3 and s.known[space.arch_id(other)] == Result((-99.0, 1.0), 1.0)
    assert space.arch_id(other) in s.seen
    assert s.worst == [-70.0, 5.0]                                        # an infeasible result is no worst


class OnlyOne(RejectAll):
    """Every architecture but one breaks its budget by 2; that one is the anchor repairs walk to."""

    def __init__(self, space, genes):
        self.space, self.target = space, space.from_genes(np.array(genes))

    def violation(self, archs):
        return np.array([0.0 if self.space.arch_id(a) == self.space.arch_id(self.target) else 2.0 for a in archs])

    def anchors(self):
        return [self.target]


@pytest.mark.parametrize("name, opts", [("cmaes", {}), ("tpe", {"rejected": "ask"})])
def test_optuna_rejected_trials_are_told_placeholders_and_the_ask_is_bounded(space, name, opts):
    """CMA-ES (its update reads only trials it sampled), and the others with ``rejected=ask``, ask the study
    again after a rejection: ``max_tries`` times, then a repair is enqueued."""
    from edgenas.search.optuna_samplers import INFEASIBLE

    only = OnlyOne(space, [4, 0, 4, 0, 4, 0])
    s = make_strategy(name, space, np.random.default_rng(0), feasibility=only, **opts)
    assert s.opts.get("rejected") == opts.get("rejected")
    arch, = s.ask(1)              # max_tries rejected trials, then the one feasible cell (a repair) enqueued
    rejected = s.study.trials[:-1]
    told = INFEASIBLE + 2.0 if name == "cmaes" else 0.0   # CMA-ES: a penalty; the others: the constraint says it
    assert len(rejected) == s.max_tries == 20
    assert all(t.state.name == "COMPLETE" and t.value == told and t.user_attrs["violation"] == 2.0 for t in rejected)
    assert space.arch_id(arch) == space.arch_id(only.target) and space.arch_id(arch) in s.pending
    last = s.study.trials[-1]
    assert last.state.name == "RUNNING" and "fixed_params" in last.system_attrs
    assert last.params == s.params(only.target)


@pytest.mark.parametrize("name", ["tpe", "gp", "optuna-nsga2"])
def test_a_rejected_proposal_is_repaired_and_the_repair_asked_next(space, name):
    """TPE, GP and NSGA-II tell a rejected proposal as infeasible, then ask its repair (toward a fast anchor) as
    the next trial. Asking again instead, they chose worse at the search suite's budgets (TPE under a Raspberry
    Pi 4 budget worse than random search), and TPE's study grew by up to 20 trials an evaluation."""
    only = OnlyOne(space, [4, 0, 4, 0, 4, 0])
    s = make_strategy(name, space, np.random.default_rng(0), feasibility=only)
    assert s.opts["rejected"] == "repair"
    arch, = s.ask(1)
    first, last = s.study.trials
    assert first.state.name == "COMPLETE" and first.values[0] == 0.0 and first.user_attrs["violation"] == 2.0
    assert space.arch_id(arch) == space.arch_id(only.target) and last.state.name == "RUNNING"
    assert last.params == {f"g{i}": g for i, g in enumerate([4, 0, 4, 0, 4, 0])} != first.params


@pytest.mark.parametrize("name", ["tpe", "optuna-nsga2"])
def test_repaired_proposals_step_toward_an_anchor_and_keep_the_study_small(space, formula, Lat, name, monkeypatch):
    """Each rejected proposal is moved gene by gene toward the device's fastest architecture or a random feasible
    one, and that repair is the next trial; the study holds fewer than 3 trials an evaluation (asked again: 4.5
    for TPE, 3.3 for NSGA-II on this budget)."""
    import edgenas.search.optuna_samplers as samplers

    calls = []

    def spy(space_, feasibility, arch, rng, *, avoid=None, anchors=None):
        out = repair_toward_anchor(space_, feasibility, arch, rng, avoid=avoid, anchors=anchors)
        calls.append((arch, list(anchors), out))
        return out

    monkeypatch.setattr(samplers, "repair_toward_anchor", spy)
    problem = _budget_problem(space, formula, Lat, 0.1)
    s = make_strategy(name, space, np.random.default_rng(1), feasibility=problem)
    asked, results = drive(s, problem, 60)
    assert all(r.feasible for r in results) and len(set(asked)) == 60
    fastest = space.arch_id(problem.anchors()[0])
    others = set()
    for arch, anchors, out in calls:
        assert space.arch_id(anchors[0]) == fastest and len(anchors) <= 2
        assert problem.violation(anchors)[-1] <= 0 and problem.violation([out])[0] <= 0
        others.update(space.arch_id(a) for a in anchors[1:])
        g, moved = space.to_genes(arch), space.to_genes(out)
        assert any(np.all((moved == g) | (moved == space.to_genes(a))) for a in anchors)   # a step toward one of them
    assert len(others) >= 10                                     # random feasible targets, not one
    trials = s.study.trials
    repaired = [after for before, after in zip(trials, trials[1:])
                if before.user_attrs.get("violation", 0.0) > 0 and "fixed_params" in after.system_attrs]
    outs = {space.arch_id(out) for _, _, out in calls}
    assert len(repaired) >= 20 and all(space.arch_id(space.from_genes(np.array(
        [t.params[f"g{i}"] for i in range(space.dim)]))) in outs for t in repaired)
    assert len(trials) <= 3 * 60


def test_a_repair_that_lands_on_a_known_or_infeasible_architecture_is_dropped(space, formula, Lat):
    """A repair can end on an architecture already evaluated, or still over the budget (every step of its path
    seen or over it): it is not asked; the sampler proposes again, each rejected proposal repaired, and after
    ``max_tries`` a novel feasible architecture is enqueued."""
    problem = _budget_problem(space, formula, Lat, 0.3)
    s = make_strategy("tpe", space, np.random.default_rng(0), feasibility=problem)
    known, = s.ask(1)
    s.tell([known], [Result((-50.0,), 0.0)])
    sample = [space.sample(np.random.default_rng(100 + i)) for i in range(300)]
    v = problem.violation(sample)
    over = sample[int(np.argmin(np.where(v > 0, v, np.inf)))]   # the least over the budget
    assert 0 < problem.violation([over])[0] < 0.1
    repaired, before = [], len(s.study.trials)
    s._repair_rejected = lambda arch, avoid: repaired.append(avoid) or (known, over)[len(repaired) % 2]
    # every proposal of the sampler is rejected (the predictor's check); ``over`` is by its own excess
    s.violation = lambda arch: problem.violation([arch])[0] if space.arch_id(arch) == space.arch_id(over) else 2.0
    arch, = s.ask(1)
    assert len(repaired) == s.max_tries and all(space.arch_id(known) in avoid for avoid in repaired)
    assert space.arch_id(arch) not in {space.arch_id(known), space.arch_id(over)}
    assert problem.violation([arch])[0] <= 0
    assert len(s.study.trials) == before + s.max_tries + 1       # the rejected proposals, then the enqueued one
    assert "fixed_params" in s.study.trials[-1].system_attrs


def test_a_repairs_random_target_is_an_anchor_only_within_the_budget(space, formula, Lat, monkeypatch):
    """The second repair target (a random architecture ``propose`` gives) joins the device's fastest only when it
    meets the budget: a target over it, however slightly, would pull repairs off the feasible region."""
    import edgenas.search.optuna_samplers as samplers

    problem = _budget_problem(space, formula, Lat, 0.3)
    s = make_strategy("tpe", space, np.random.default_rng(0), feasibility=problem)
    sample = [space.sample(np.random.default_rng(100 + i)) for i in range(300)]
    v = problem.violation(sample)
    over = sample[int(np.argmin(np.where(v > 0, v, np.inf)))]   # the least over the budget
    within = sample[int(np.flatnonzero(v <= 0)[0])]
    assert 0 < problem.violation([over])[0] < 0.1
    seen = []
    monkeypatch.setattr(samplers, "repair_toward_anchor",
                        lambda space_, feasibility, arch, rng, *, avoid=None, anchors=None: seen.append(anchors))
    rejected = sample[int(np.argmax(v))]
    for target in (over, within):
        s.propose = lambda make, avoid=None: target
        s._repair_rejected(rejected, set())
    ids = [[space.arch_id(a) for a in anchors] for anchors in seen]
    fastest = [space.arch_id(a) for a in problem.anchors()]
    assert ids == [fastest, fastest + [space.arch_id(within)]]


def test_optuna_option_bounds():
    from edgenas.search.optuna_samplers import CMAES, GP, TPE, OptunaNSGA2

    assert TPE.validate_options({}) == {"n_objectives": 1, "n_startup_trials": 10, "multivariate": True,
                                        "rejected": "repair"}
    assert GP.validate_options({})["n_startup_trials"] == 10 and OptunaNSGA2.validate_options({})["population"] == 20
    assert CMAES.validate_options({}) == {"n_objectives": 1, "sigma0": None, "popsize": None}
    for cls, ok in ((TPE, {"n_objectives": 1}), (TPE, {"n_startup_trials": 0}), (GP, {"n_startup_trials": 0}),
                    (CMAES, {"sigma0": 0.01}), (CMAES, {"popsize": 2}), (OptunaNSGA2, {"population": 2}),
                    (TPE, {"rejected": "ask"}), (GP, {"rejected": "ask"}), (OptunaNSGA2, {"rejected": "ask"})):
        assert cls.validate_options(ok)[next(iter(ok))] == next(iter(ok.values()))
    for cls, bad in ((TPE, {"n_objectives": 0}), (TPE, {"n_startup_trials": -1}), (GP, {"n_startup_trials": -1}),
                     (CMAES, {"sigma0": 0.0}), (CMAES, {"popsize": 1}), (CMAES, {"n_objectives": 2}),
                     (OptunaNSGA2, {"population": 1}), (TPE, {"rejected": "random"})):
        with pytest.raises(InputError, match="must be"):
            cls.validate_options(bad)


def test_optuna_strategies_quiet_optuna_and_need_a_sampler(space):
    import warnings

    import optuna

    from edgenas.search.optuna_samplers import OptunaStrategy

    optuna.logging.set_verbosity(optuna.logging.INFO)
    with warnings.catch_warnings(record=True) as caught:
        warnings.resetwarnings()
        warnings.simplefilter("always")
        make_strategy("tpe", space, np.random.default_rng(0))      # multivariate TPE is experimental
        warnings.warn("experimental", optuna.exceptions.ExperimentalWarning)
    assert optuna.logging.get_verbosity() == optuna.logging.WARNING   # no line per trial
    assert not [w for w in caught if issubclass(w.category, optuna.exceptions.ExperimentalWarning)]

    class NoSampler(OptunaStrategy):
        name = "no-sampler"
        options = OptunaStrategy.base_options

    with pytest.raises(NotImplementedError):
        NoSampler(space, np.random.default_rng(0))


@pytest.mark.parametrize("name", ["tpe", "cmaes"])
def test_optuna_strategies_ask_a_warm_start_first_and_once(space, name):
    warm = [space.from_genes(np.array(g)) for g in ([3, 3, 3, 3, 3, 3], [1, 2, 3, 4, 0, 1], [3, 3, 3, 3, 3, 3])]
    s = make_strategy(name, space, np.random.default_rng(0), initial_population=warm)
    asked = s.ask(3)
    ids = [space.arch_id(a) for a in asked]
    assert ids[:2] == [space.arch_id(a) for a in warm[:2]] and ids[2] not in ids[:2]   # the repeat is skipped


def test_each_optuna_strategy_builds_its_own_sampler(space):
    for name, sampler in {"tpe": "TPESampler", "cmaes": "CmaEsSampler", "optuna-nsga2": "NSGAIISampler"}.items():
        assert type(make_strategy(name, space, np.random.default_rng(0)).study.sampler).__name__ == sampler


def test_a_constrained_optuna_strategy_uses_set_constraint_where_optuna_has_it(space):
    """optuna >= 5 deprecated ``constraints_func`` for ``Trial.set_constraint``: only one of them is used."""
    import warnings

    import optuna

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        s = make_strategy("tpe", space, np.random.default_rng(0), feasibility=RejectAll())
        s.ask(1)
    assert s.constrained
    if hasattr(optuna.trial.Trial, "set_constraint"):
        assert s.set_constraint and not [w for w in caught if "constraints_func" in str(w.message)]


def test_an_optuna_trial_of_a_known_architecture_is_told_its_result_and_asked_again():
    import itertools

    from edgenas.spaces import get_space

    tiny = get_space("mbv3-tiny")                                    # 2^10 gene vectors, fewer cells
    cells = list({tiny.arch_id(a): a for a in (tiny.from_genes(np.array((0,) + g))
                                                for g in itertools.product((0, 1), repeat=10))}.values())
    fresh = {tiny.arch_id(a) for a in cells[-4:]}
    s = make_strategy("tpe", tiny, np.random.default_rng(0))
    s.tell(cells[:-4], [Result((-float(i),)) for i in range(len(cells) - 4)])   # a replayed log: no trials
    arch, = s.ask(1)
    assert tiny.arch_id(arch) in fresh                               # never a known one
    told = s.study.trials[:-1]
    assert told and all(t.state.name == "COMPLETE" for t in told)    # each known one told its logged result
    for t in told:
        known = tiny.from_genes(np.array([t.params[f"g{i}"] for i in range(11)]))
        assert Result((t.value,)) == s.known[tiny.arch_id(known)]


def test_an_optuna_trial_of_an_architecture_awaiting_its_result_is_failed_and_asked_again(space):
    s = make_strategy("tpe", space, np.random.default_rng(0))
    first, = s.ask(1)
    for _ in range(2):                     # the study proposes the pending architecture twice more
        s.study.enqueue_trial(s.params(first))
    second, = s.ask(1)
    assert space.arch_id(second) != space.arch_id(first)
    assert set(s.pending) == {space.arch_id(first), space.arch_id(second)}
    assert [t.state.name for t in s.study.trials] == ["RUNNING", "FAIL", "FAIL", "RUNNING"]   # no trial left open
    assert s.study.trials[1].params == s.study.trials[2].params == s.params(first)


def test_cmaes_samples_the_unit_cube_that_the_spaces_continuous_codec_bins(space):
    s = make_strategy("cmaes", space, np.random.default_rng(0))
    archs = [a for _ in range(10) for a in s.ask(1)]
    xs = np.array([[t.params[f"x{i}"] for i in range(6)] for t in s.study.trials])
    assert xs.shape == (10, 6) and xs.min() >= 0.0 and xs.max() <= 1.0 and np.ptp(xs, axis=0).min() > 0.1
    assert [space.arch_id(space.decode(x)) for x in xs] == [space.arch_id(a) for a in archs]


def test_an_optuna_strategy_without_optuna_is_one_clear_error(space, monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, "optuna", None)                 # import optuna fails
    with pytest.raises(InputError, match="the optuna strategies need optuna"):
        make_strategy("tpe", space, np.random.default_rng(0))

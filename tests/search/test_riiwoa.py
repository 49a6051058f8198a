"""RI-IWOA specifics the search-wide tests leave open (mutation audit): its options, the rotated frame
(which whales, when, and that the moves use it), greedy acceptance of ties, the Nelder-Mead polish's
first step and its bookkeeping, and a generation with a language model."""

import numpy as np
import pytest

from edgenas.errors import InputError
from edgenas.search import Problem, make_strategy
from edgenas.search.base import Result, rank_key
from edgenas.search.riiwoa import RIIWOA, _penalised
from tests.search.test_strategies import ScriptedOperator, _Draws, _genes_arch


def results(problem, archs):
    return [problem.to_result(r) for r in problem.evaluate(archs)]


def test_ri_iwoa_options_defaults_bounds_and_generations(space):
    opts = RIIWOA.validate_options({})
    assert {k: opts[k] for k in ("rotate_every", "eps", "polish_evals", "polish_maxfev", "llm_share")} == {
        "rotate_every": 2, "eps": 1e-6, "polish_evals": None, "polish_maxfev": 400, "llm_share": 0.0}
    for ok in ({"rotate_every": 1}, {"eps": 1e-300}, {"polish_evals": 0}, {"polish_maxfev": 1}, {"llm_share": 0.0},
               {"llm_share": 1.0}):
        assert RIIWOA.validate_options(ok)[next(iter(ok))] == next(iter(ok.values()))
    for bad in ({"rotate_every": 0}, {"eps": 0.0}, {"polish_evals": -1}, {"polish_maxfev": 0},
                {"llm_share": -0.1}, {"llm_share": 1.1}):
        with pytest.raises(InputError, match="must be"):
            RIIWOA.validate_options(bad)
    assert RIIWOA.before_children({}, None) == 20 and RIIWOA.before_children({"population": 7}, 3) == 7
    rng = np.random.default_rng(0)
    s = RIIWOA(space, rng, population=10, budget=100)             # a tenth of the budget polishes
    assert (s.polish_evals, s.generations) == (10, 9)
    assert RIIWOA(space, rng, population=10, budget=100, generations=3).generations == 3   # given: kept
    assert RIIWOA(space, rng, population=10).generations == 50    # no budget: WOA's 50 generations
    assert RIIWOA(space, rng, population=10, budget=5).generations == 1     # less than a population: one


def test_ri_iwoa_penalises_an_infeasible_point_by_its_violation_above_every_feasible_one():
    assert _penalised(Result((-3.0,))) == -3.0 and _penalised(Result((float("nan"),))) == 1e12
    slight, far = _penalised(Result((-3.0,), 0.5)), _penalised(Result((-3.0,), 2.0))
    assert 1e12 < slight < far


def test_ri_iwoa_frame_is_the_better_half_of_the_told_whales(space):
    s = RIIWOA(space, np.random.default_rng(0), population=8, generations=4)
    s.X = np.array([[0.1 * (i + 1)] * space.dim for i in range(8)])
    s.X[:, 0] = [0.9, 0.1, 0.5, 0.3, 0.7, 0.2, 0.8, 0.4]       # not collinear
    s.fit = [Result((v,)) for v in (5.0, 1.0, 6.0, 2.0, 4.0, 3.0, 8.0, 7.0)]  # the best four: whales 1, 3, 5, 4
    s._update_frame()
    B, centre = s.frame
    assert centre == pytest.approx(s.X[[1, 3, 5, 4]].mean(axis=0))
    assert np.allclose(B.T @ B, np.eye(space.dim), atol=1e-8)
    s.fit = [None, Result((1.0,)), None, Result((2.0,)), None, Result((3.0,)), None, None]   # three told: enough
    s._update_frame()
    assert s.frame[1] == pytest.approx(s.X[[1, 3, 5]].mean(axis=0))
    s.fit[5] = None                                   # two: no frame (the coordinate axes)
    s._update_frame()
    assert s.frame is None and s.basis() is None


@pytest.mark.parametrize("rotate_every, rotated", [(1, [False, True, True, True]),
                                                   (2, [False, False, True, True]),
                                                   (3, [False, False, False, True])])
def test_ri_iwoa_rotates_every_rotate_every_generations(space, formula, rotate_every, rotated):
    """The frame is estimated before generation g + 1 when g + 1 is a multiple of rotate_every (not before
    the first, random one), from the whales then told."""
    problem = Problem(space, formula)
    s = RIIWOA(space, np.random.default_rng(0), population=6, generations=8, rotate_every=rotate_every)
    frames = []
    for _ in range(4):
        before = s.frame
        archs = s.ask(6)
        frames.append(s.frame)
        if s.frame is not None and s.frame is not before:
            told = sorted((i for i in range(6) if s.fit[i] is not None), key=lambda i: rank_key(s.fit[i]))
            assert s.frame[1] == pytest.approx(s.X[told[:3]].mean(axis=0))
        s.tell(archs, results(problem, archs))
    assert [f is not None for f in frames] == rotated
    if rotate_every == 2:
        assert frames[3] is frames[2]                 # generation 3 moves in generation 2's frame
    assert s.basis() is s.frame


def test_ri_iwoa_moves_in_its_frame(space):
    """The same encircling move as in the WOA test by hand (whale at 0.2, best at 0.6, A = -0.5, C = 1), with
    the frame's first axis reflected: |.| is taken along the frame's axes, so on that one the whale moves
    the other way (0.6 - 0.2 instead of 0.6 + 0.2)."""
    r = RIIWOA(space, np.random.default_rng(0), population=4, generations=4)
    B = np.eye(space.dim)
    B[0, 0] = -1.0
    r.gen, r.frame = 2, (B, np.full(space.dim, 0.3))
    r.X[:] = 0.2
    r.rng = _Draws(0.25, 0.5, 0.1)
    x, attack = r.move(0, np.full(space.dim, 0.6))
    assert attack and x == pytest.approx([0.4] + [0.8] * (space.dim - 1))


def test_ri_iwoa_a_whale_moves_to_a_tie(space):
    rng = np.random.default_rng(0)
    a1, a2 = space.sample(rng), space.sample(rng)
    w = RIIWOA(space, np.random.default_rng(0), population=4, generations=4)
    w.waiting = {space.arch_id(a1): [(0, np.full(space.dim, 0.1))], space.arch_id(a2): [(0, np.full(space.dim, 0.9))]}
    w.tell([a1], [Result((1.0,))])
    tie = Result((1.0,))
    w.tell([a2], [tie])
    assert w.fit[0] is tie and list(w.X[0]) == [0.9] * space.dim


def test_ri_iwoa_polish_starts_one_cell_from_the_best_and_books_its_point(space, formula):
    """After the last generation (8 of 10 whales for a budget of 100 with 20 polish evaluations) Nelder-Mead's
    first unknown point is the best with one gene one cell on; asked again before its value came, the
    polish mutates the best instead of asking for it twice."""
    problem = Problem(space, formula)
    s = make_strategy("ri-iwoa", space, np.random.default_rng(3), budget=100, population=10, polish_evals=20)
    for _ in range(8):
        archs = s.ask(10)
        assert len(archs) == 10
        s.tell(archs, results(problem, archs))
    assert s.gen == 7
    best = s.best[1]
    best_genes = space.to_genes(best)
    first = s.ask(10)
    assert len(first) == 1 and space.arch_id(first[0]) in s.seen
    diff = space.to_genes(first[0]) - best_genes
    assert np.count_nonzero(diff) == 1 and abs(diff.sum()) == 1
    again = s.ask(3)
    assert len(again) == 3 and space.arch_id(first[0]) not in {space.arch_id(a) for a in again}
    assert len({space.arch_id(a) for a in again} | {space.arch_id(first[0])}) == 4


def test_ri_iwoa_best_in_the_top_corner_steps_down(space, formula):
    """A gene in the top cell cannot step up (its code would leave the cube): the first vertex steps down."""
    problem = Problem(space, formula)
    s = RIIWOA(space, np.random.default_rng(0), population=4, generations=1, polish_evals=5)
    top = _genes_arch(space, 4, 4, 4, 4, 4, 4)
    s.waiting = {space.arch_id(top): [(0, space.encode(top))]}
    s.tell([top], results(problem, [top]))
    s.gen = 0
    nxt = s.ask(1)
    assert list(space.to_genes(nxt[0])) == [3, 4, 4, 4, 4, 4]


def test_ri_iwoa_with_a_model_asks_each_generation_in_one_call_from_the_best(space, formula):
    """With llm_share 1 every attack move of a generation goes to the model, in one batched call whose
    parents are all the best architecture; novel proposals replace the moves and are queued in order,
    a proposal seen before keeps the move; each evaluated proposal is reported back with its parent's result."""
    problem = Problem(space, formula)
    rng = np.random.default_rng(11)
    s0 = RIIWOA(space, np.random.default_rng(2), population=6, generations=5)
    first = s0.ask(6)
    novel = [space.sample(rng) for _ in range(12)]
    novel = [a for a in novel if space.arch_id(a) not in {space.arch_id(f) for f in first}]
    op = ScriptedOperator([first[0]] + novel)       # the first proposal was seen: refused
    attacks, hooked = [], []
    s = RIIWOA(space, np.random.default_rng(2), population=6, generations=5, llm_operator=op, llm_share=1.0,
               mutation_operator=lambda arch, r: hooked.append(arch) or arch)
    real = s.move
    s.move = lambda i, star: (lambda out: attacks.append(out[1]) or out)(real(i, star))
    archs = s.ask(6)
    assert [space.arch_id(a) for a in archs] == [space.arch_id(a) for a in first] and op.calls == []
    res = results(problem, archs)
    s.tell(archs, res)
    best_arch, best_res = s.best[1], s.best[2]
    children = s.ask(6)
    assert s.gen == 1 and len(children) == 6
    n = sum(attacks)
    assert 2 <= n < 6 and n != 6 - n                                # attack and search moves both
    assert op.calls == [n] and len(hooked) == n       # one call for the generation's attack moves
    ids = [space.arch_id(c) for c in children]
    taken = [space.arch_id(a) for a in novel[:n - 1]]
    assert [i for i in ids if i in taken] == taken                 # queued in order
    assert space.arch_id(first[0]) in s.seen and len(set(ids)) == 6
    assert set(s.origin) == set(taken) and all(p is best_arch and r is best_res for p, r in s.origin.values())
    told = results(problem, children)
    s.tell(children, told)
    assert [(space.arch_id(c), r, src) for p, c, pr, r, src in op.observed] == [
        (i, t, "llm") for i, t in zip(ids, told) if i in taken]
    assert all(p is best_arch and pr is best_res for p, _, pr, _, _ in op.observed) and s.origin == {}


def test_ri_iwoa_consults_the_model_only_with_a_share_a_model_and_a_best(space, formula):
    problem = Problem(space, formula)
    runs = []
    for op, share in ((None, 0.0), (ScriptedOperator([]), 0.0), (None, 0.5)):
        s = RIIWOA(space, np.random.default_rng(5), population=4, generations=5, llm_operator=op, llm_share=share)
        asked = []
        for _ in range(3):
            archs = s.ask(4)
            s.tell(archs, results(problem, archs))
            asked += [space.arch_id(a) for a in archs]
        runs.append(asked)
        assert op is None or op.calls == []
    assert runs[0] == runs[1] == runs[2]      # no model, or a share of 0: the same search, the same draws


def test_ri_iwoa_polish_values_an_infeasible_point_by_its_violation_without_asking_for_it(space, formula, Lat):
    """Nelder-Mead's function is the penalised objective: a point over the latency budget is never asked
    for, and the more it breaks the budget the worse its value."""
    from edgenas.search import DeviceTarget

    lat = Lat(space, seed=2)
    rng = np.random.default_rng(0)
    best = min((space.sample(rng) for _ in range(200)), key=lambda a: lat.predict_many([a])[0])
    problem = Problem(space, formula, [DeviceTarget("dev", lat, float(lat.predict_many([best])[0]))])
    s = RIIWOA(space, np.random.default_rng(0), population=4, generations=1, polish_evals=5, feasibility=problem)
    s.waiting = {space.arch_id(best): [(0, space.encode(best))]}
    s.tell([best], results(problem, [best]))
    s.gen = 0
    nxt = s.ask(1)[0]
    assert problem.violation([nxt])[0] <= 0
    over = {k: v for k, v in s.values.items() if k != space.arch_id(best)}
    assert over and all(v > 1e12 for v in over.values())
    by_id = {space.arch_id(a): a for a in space.all_archs()}
    assert all(v == pytest.approx(1e12 + problem.violation([by_id[k]])[0], rel=0, abs=1e-3) for k, v in over.items())

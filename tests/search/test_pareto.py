"""Pareto utilities against brute force: grid counting and inclusion-exclusion."""

import math
from itertools import combinations, product

import tracemalloc

import numpy as np
import pytest

from edgenas.search import pareto
from edgenas.search.pareto import (crowding_distance, dominates, hypervolume, non_dominated_sort,
                                   pareto_mask)


def grid_hv(P: np.ndarray, ref: np.ndarray) -> float:
    """Count unit cells of the integer grid covered by the union of boxes [p, ref]."""
    cells = 0
    for c in product(*[range(int(r)) for r in ref]):
        if any(np.all(np.asarray(c) >= p) for p in P):
            cells += 1
    return float(cells)


def incl_excl_hv(P: np.ndarray, ref: np.ndarray) -> float:
    total = 0.0
    for k in range(1, len(P) + 1):
        for sub in combinations(range(len(P)), k):
            corner = P[list(sub)].max(axis=0)
            total += (-1) ** (k + 1) * float(np.prod(np.maximum(ref - corner, 0)))
    return total


@pytest.mark.parametrize("m", [2, 3, 4])
def test_hypervolume_matches_grid_count(m):
    rng = np.random.default_rng(m)
    ref = np.full(m, 6.0)
    for _ in range(15):
        P = rng.integers(0, 7, size=(int(rng.integers(1, 9)), m)).astype(float)
        assert hypervolume(P, ref) == pytest.approx(grid_hv(P, ref))


@pytest.mark.parametrize("m", [2, 3, 5])
def test_hypervolume_matches_inclusion_exclusion_on_reals(m):
    rng = np.random.default_rng(10 + m)
    for _ in range(20):
        P = rng.random((int(rng.integers(1, 8)), m))
        ref = np.ones(m) * 1.1
        assert hypervolume(P, ref) == pytest.approx(incl_excl_hv(P, ref), rel=1e-12, abs=1e-12)


def test_pareto_mask_of_two_objectives_agrees_with_pairwise_dominance_ties_infinities_and_nan_included():
    """Two objectives take a sort and a running minimum (a report's 100,000 evaluations: 20 s in the loop);
    rows on a small grid tie often, duplicates of a front point are all kept, a row with NaN is kept and
    dominates nothing, as in the loop."""
    rng = np.random.default_rng(7)
    for trial in range(200):
        n = int(rng.integers(1, 30))
        F = rng.integers(0, 5, size=(n, 2)).astype(float)
        if trial % 3 == 0:
            F[rng.random((n, 2)) < 0.15] = rng.choice([np.inf, -np.inf, np.nan])
        if trial % 5 == 0:
            F[rng.random((n, 2)) < 0.1] = -0.0
        mask = pareto_mask(F)
        for i in range(n):
            dominated = not np.isnan(F[i]).any() and any(
                dominates(F[j], F[i]) for j in range(n) if not np.isnan(F[j]).any())
            assert mask[i] == (not dominated), (F.tolist(), i)
    assert pareto_mask(np.array([[1.0, 2.0], [1.0, 2.0], [0.0, 3.0], [1.0, 3.0]])).tolist() == \
        [True, True, True, False]


def test_hypervolume_edge_cases():
    assert hypervolume(np.empty((0, 2)), np.array([1.0, 1.0])) == 0.0
    assert hypervolume(np.array([[2.0, 0.0]]), np.array([1.0, 1.0])) == 0.0  # outside the box
    assert hypervolume(np.array([[0.0, np.inf]]), np.array([1.0, 1.0])) == 0.0
    assert hypervolume(np.array([[0.5, 0.5], [0.5, 0.5]]), np.array([1.0, 1.0])) == pytest.approx(0.25)
    with pytest.raises(ValueError):
        hypervolume(np.array([[0.0, 0.0]]), np.array([1.0, 1.0, 1.0]))


def test_pareto_mask_and_sort_agree_with_pairwise_dominance():
    rng = np.random.default_rng(3)
    F = rng.integers(0, 5, size=(40, 3)).astype(float)
    mask = pareto_mask(F)
    for i in range(len(F)):
        dominated = any(dominates(F[j], F[i]) for j in range(len(F)))
        assert mask[i] == (not dominated)
    fronts = non_dominated_sort(F)
    assert sorted(np.concatenate(fronts).tolist()) == list(range(len(F)))
    assert set(fronts[0].tolist()) == set(np.flatnonzero(mask).tolist())
    rank = {int(i): r for r, fr in enumerate(fronts) for i in fr}
    for i in range(len(F)):
        for j in range(len(F)):
            if dominates(F[i], F[j]):
                assert rank[i] < rank[j]


def test_constrained_domination_puts_feasible_first_then_by_violation():
    F = np.array([[0.0, 0.0], [5.0, 5.0], [1.0, 1.0], [0.0, 0.0]])
    v = np.array([0.3, 0.0, 0.1, 0.3])
    fronts = non_dominated_sort(F, v)
    assert [sorted(f.tolist()) for f in fronts] == [[1], [2], [0, 3]]


def reference_sort(F, v):
    """Straight from the definition: peel the feasible points' fronts, then infeasible ones by violation."""
    n = len(F)
    v = [0.0] * n if v is None else [max(float(x), 0.0) for x in v]
    rows = [[float(x) for x in row] for row in F]

    def dom(a, b):
        return all(x <= y for x, y in zip(a, b)) and any(x < y for x, y in zip(a, b))

    left = [i for i in range(n) if v[i] <= 0]
    fronts = []
    while left:
        front = [i for i in left if not any(dom(rows[j], rows[i]) for j in left)]
        fronts.append(front)
        left = [i for i in left if i not in front]
    infeas = [i for i in range(n) if v[i] > 0]
    for level in sorted({v[i] for i in infeas}):
        fronts.append([i for i in infeas if v[i] == level])
    return fronts


@pytest.mark.parametrize("block_pairs", [1 << 20, 150, 1])
def test_non_dominated_sort_matches_reference_on_ties_duplicates_and_infeasible(monkeypatch, block_pairs):
    monkeypatch.setattr(pareto, "_BLOCK_PAIRS", block_pairs)  # small values exercise many blocks
    rng = np.random.default_rng(block_pairs)
    for trial in range(120):
        m = int(rng.integers(2, 5))
        n = int(rng.integers(0, 50))
        F = rng.integers(0, 4, size=(n, m)).astype(float)   # few levels: ties and duplicates
        if n > 3:
            F[rng.integers(0, n, 2)] = F[rng.integers(0, n, 2)]
            F[rng.integers(0, n), rng.integers(0, m)] = rng.choice([np.inf, -np.inf, np.nan, -0.0])
        v = None
        if trial % 3:
            v = rng.choice([0.0, 0.0, 0.0, -1.0, 0.5, 2.0, np.nan], size=n)
        fronts = non_dominated_sort(F, v)
        assert [f.tolist() for f in fronts] == reference_sort(F, v), (F, v)
        assert all(f.dtype == np.intp for f in fronts)


def test_non_dominated_sort_memory_is_linear_in_population():
    rng = np.random.default_rng(7)
    F = rng.random((20_000, 2))
    F[:, 0] = np.round(F[:, 0], 2)
    tracemalloc.start()
    try:
        fronts = non_dominated_sort(F)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 40e6  # an n x n dominance matrix alone is 400 MB here
    assert sorted(np.concatenate(fronts).tolist()) == list(range(len(F)))
    assert fronts[0].tolist() == np.flatnonzero(pareto_mask(F)).tolist()
    assert all(np.all(np.diff(f) > 0) for f in fronts)


def test_crowding_distance_boundaries_infinite_and_interior_exact():
    F = np.array([[0.0, 4.0], [1.0, 2.0], [2.0, 1.0], [4.0, 0.0]])
    d = crowding_distance(F)
    assert np.isinf(d[0]) and np.isinf(d[3])
    assert d[1] == pytest.approx((2 - 0) / 4 + (4 - 1) / 4)
    assert d[2] == pytest.approx((4 - 1) / 4 + (2 - 0) / 4)


def reference_crowding(F):
    """Deb's definition: per objective, the two ends of the sorted front are infinite, every other point adds
    the gap between its neighbours over the objective's range (nothing when that range is zero or infinite)."""
    rows = [[float(x) for x in row] for row in F]
    d = [0.0] * len(rows)
    if len(rows) <= 2:
        return [math.inf] * len(rows)
    for k in range(len(rows[0])):
        order = sorted(range(len(rows)), key=lambda i: rows[i][k])
        lo, hi = rows[order[0]][k], rows[order[-1]][k]
        d[order[0]] = d[order[-1]] = math.inf
        for pos in range(1, len(order) - 1):
            if math.isfinite(hi - lo) and hi - lo > 0:
                d[order[pos]] += (rows[order[pos + 1]][k] - rows[order[pos - 1]][k]) / (hi - lo)
    return d


def test_crowding_distance_matches_the_definition_on_small_fronts_with_flat_and_infinite_objectives():
    rng = np.random.default_rng(4)
    for _ in range(200):
        n, m = int(rng.integers(0, 8)), int(rng.integers(1, 4))
        F = rng.integers(0, 5, size=(n, m)).astype(float)
        if m > 1 and rng.random() < 0.4:
            F[:, int(rng.integers(0, m))] = 2.0           # a flat objective: no contribution
        if n and rng.random() < 0.3:
            F[int(rng.integers(0, n)), int(rng.integers(0, m))] = np.inf
        assert crowding_distance(F).tolist() == pytest.approx(reference_crowding(F)), F


@pytest.mark.parametrize("m", [1, 2])
def test_pareto_mask_and_hypervolume_of_one_or_no_point(m):
    assert pareto_mask(np.empty((0, m))).tolist() == []
    assert pareto_mask(np.ones((1, m))).tolist() == [True]
    assert hypervolume(np.array([[0.5] * m]), np.ones(m)) == pytest.approx(0.5 ** m)


def test_hypervolume_of_one_objective_is_the_distance_from_the_best_point():
    rng = np.random.default_rng(1)
    for _ in range(20):
        P = rng.integers(0, 9, size=(int(rng.integers(1, 6)), 1)).astype(float)
        assert hypervolume(P, np.array([6.0])) == grid_hv(P, np.array([6.0]))


@pytest.mark.parametrize("m", [2, 3, 4])
def test_hypervolume_with_a_different_reference_per_objective(m):
    rng = np.random.default_rng(20 + m)
    for _ in range(20):
        ref = rng.uniform(0.5, 3.0, m)
        P = rng.random((int(rng.integers(1, 7)), m)) * ref * 1.2
        assert hypervolume(P, ref) == pytest.approx(incl_excl_hv(P[np.all(P < ref, axis=1)], ref), abs=1e-12)


def test_hypervolume_refuses_a_reference_point_of_another_dimension_even_where_numpy_would_broadcast():
    for P, ref in (([[0.5]], [1.0, 1.0]), ([[0.5, 0.5]], [1.0]), ([[0.0, 0.0]], [1.0, 1.0, 1.0])):
        with pytest.raises(ValueError, match=f"points have {len(P[0])} objectives, reference point {len(ref)}"):
            hypervolume(np.array(P), np.array(ref))

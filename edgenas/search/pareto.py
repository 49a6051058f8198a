"""Pareto utilities, implemented once: dominance, non-dominated sorting, crowding, hypervolume.

Everything works in minimisation form on an ``(n, m)`` array. Constrained domination follows Deb:
a feasible point dominates an infeasible one, and of two infeasible points the smaller violation wins.
Hypervolume is exact: a sweep for two objectives, recursive slicing (HSO) for more.
"""

from __future__ import annotations

import numpy as np


def dominates(a: np.ndarray, b: np.ndarray) -> bool:
    """``a`` Pareto-dominates ``b`` (minimisation)."""
    return bool(np.all(a <= b) and np.any(a < b))


def pareto_mask(F: np.ndarray) -> np.ndarray:
    """Boolean mask of the non-dominated rows of ``F`` (duplicates of a front point all kept)."""
    F = np.asarray(F, dtype=float)
    n = len(F)
    if n == 0:
        return np.zeros(0, dtype=bool)
    if F.ndim == 2 and F.shape[1] == 2:
        return _pareto_mask_2d(F)
    order = np.lexsort(F.T[::-1])  # lexicographic: no later point can dominate an earlier one
    mask = np.zeros(n, dtype=bool)
    front: list[int] = []
    for i in order:
        if front:
            P = F[front]
            if np.any(np.all(P <= F[i], axis=1) & np.any(P < F[i], axis=1)):
                continue
        front.append(int(i))
        mask[i] = True
    return mask


def _pareto_mask_2d(F: np.ndarray) -> np.ndarray:
    """``pareto_mask`` of two objectives in one sort and a running minimum, no loop in Python: the loop compares
    each row with the front so far, which for a report's 100,000 evaluations took 20 s. A row is dominated when a
    row of smaller first value has a second value no larger, or a row of the same first value a smaller second
    value (the first of its group in lexicographic order). A row holding NaN dominates nothing and nothing
    dominates it, as in the loop (every comparison with NaN is false): it is kept."""
    nan = np.isnan(F).any(axis=1)
    mask = nan.copy()
    idx = np.flatnonzero(~nan)
    if not idx.size:
        return mask
    G = F[idx]
    order = np.lexsort((G[:, 1], G[:, 0]))
    a, b = G[order, 0], G[order, 1]
    first = np.ones(len(a), dtype=bool)
    first[1:] = a[1:] != a[:-1]
    start = np.maximum.accumulate(np.where(first, np.arange(len(a)), 0))   # where each row's group begins
    before = np.minimum.accumulate(b)[start - 1]                           # over smaller first values (start > 0)
    dominated = ((start > 0) & (before <= b)) | (b > b[start])
    mask[idx[order]] = ~dominated
    return mask


_BLOCK_PAIRS = 1 << 20  # pairs compared at once: about 10 MB of scratch at any population size


def _front_ranks(G: np.ndarray) -> np.ndarray:
    """Front of each row of ``G`` (0 = non-dominated): one more than the worst front among its dominators,
    which is the front that peeling non-dominated layers gives.

    Rows are visited in lexicographic order, so a row's dominators all come before it (rows with NaN dominate
    nothing and are dominated by nothing, wherever they sort); each block of rows is compared with the rows up
    to its end, so memory stays linear in ``n`` (an n x n dominance matrix is 400 MB at n = 20,000).
    """
    n, m = G.shape
    order = np.lexsort(G.T[::-1]) if m else np.arange(n)
    S = G[order]
    rank = np.zeros(n, dtype=np.int64)
    step = max(1, _BLOCK_PAIRS // max(n, 1))
    for s in range(0, n, step):
        e = min(n, s + step)
        le = np.ones((e, e - s), dtype=bool)
        lt = np.zeros((e, e - s), dtype=bool)
        for k in range(m):
            le &= S[:e, k, None] <= S[None, s:e, k]
            lt |= S[:e, k, None] < S[None, s:e, k]
        dom = le & lt                      # dom[i, j]: row i dominates block row s + j
        if s:
            rank[s:e] = np.max(np.where(dom[:s], rank[:s, None], -1), axis=0) + 1
        inner = dom[s:]
        for j in range(1, e - s):          # dominators inside the block precede j: their ranks are final
            d = inner[:j, j]
            if d.any():
                rank[s + j] = max(rank[s + j], rank[s:s + j][d].max() + 1)
    out = np.empty(n, dtype=np.int64)
    out[order] = rank
    return out


def non_dominated_sort(F: np.ndarray, violation: np.ndarray | None = None) -> list[np.ndarray]:
    """Fronts (arrays of row indices, ascending), best first, under constrained domination."""
    F = np.asarray(F, dtype=float)
    n = len(F)
    v = np.zeros(n) if violation is None else np.maximum(np.asarray(violation, dtype=float), 0.0)
    feas = np.flatnonzero(v <= 0)
    fronts: list[np.ndarray] = []
    if feas.size:
        rank = _front_ranks(F[feas])
        by_rank = np.argsort(rank, kind="stable")  # stable: row order kept inside each front
        fronts.extend(feas[part] for part in np.split(by_rank, np.cumsum(np.bincount(rank))[:-1]))
    infeas = np.flatnonzero(v > 0)
    for level in np.unique(v[infeas]):
        fronts.append(infeas[v[infeas] == level])
    return fronts


def crowding_distance(F: np.ndarray) -> np.ndarray:
    """NSGA-II crowding distance of the rows of one front (boundary points get ``inf``)."""
    F = np.asarray(F, dtype=float)
    n, m = F.shape
    d = np.zeros(n)
    if n <= 2:
        return np.full(n, np.inf)
    for k in range(m):
        order = np.argsort(F[:, k], kind="stable")
        col = F[order, k]
        span = col[-1] - col[0]
        d[order[0]] = d[order[-1]] = np.inf
        if span > 0 and np.isfinite(span):
            d[order[1:-1]] += (col[2:] - col[:-2]) / span
    return d


def _hv2(P: np.ndarray, ref: np.ndarray) -> float:
    P = P[np.lexsort((P[:, 1], P[:, 0]))]
    hv, best_y = 0.0, ref[1]
    for x, y in P:
        if y < best_y:
            hv += (ref[0] - x) * (best_y - y)
            best_y = y
    return hv


def _hv(P: np.ndarray, ref: np.ndarray) -> float:
    m = P.shape[1]
    if len(P) == 0:
        return 0.0
    if m == 1:
        return float(ref[0] - P[:, 0].min())
    if m == 2:
        return _hv2(P, ref)
    P = P[np.argsort(P[:, -1], kind="stable")]
    hv = 0.0
    for i in range(len(P)):  # slab between P[i, -1] and the next level, covered by P[:i+1]
        top = P[i + 1, -1] if i + 1 < len(P) else ref[-1]
        depth = top - P[i, -1]
        if depth > 0:
            S = P[: i + 1, :-1]
            hv += depth * _hv(S[pareto_mask(S)], ref[:-1])
    return hv


def hypervolume(F: np.ndarray, ref: np.ndarray) -> float:
    """Exact hypervolume dominated by the rows of ``F`` and bounded by ``ref`` (minimisation)."""
    F = np.atleast_2d(np.asarray(F, dtype=float))
    ref = np.asarray(ref, dtype=float)
    if F.size == 0:
        return 0.0
    if F.shape[1] != ref.shape[0]:
        raise ValueError(f"points have {F.shape[1]} objectives, reference point {ref.shape[0]}")
    F = F[np.all(np.isfinite(F), axis=1) & np.all(F < ref, axis=1)]
    if len(F) == 0:
        return 0.0
    return float(_hv(F[pareto_mask(F)], ref))

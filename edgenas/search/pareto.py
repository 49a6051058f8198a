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


def non_dominated_sort(F: np.ndarray, violation: np.ndarray | None = None) -> list[np.ndarray]:
    """Fronts (arrays of row indices), best first, under constrained domination."""
    F = np.asarray(F, dtype=float)
    n = len(F)
    v = np.zeros(n) if violation is None else np.maximum(np.asarray(violation, dtype=float), 0.0)
    feas = np.flatnonzero(v <= 0)
    fronts: list[np.ndarray] = []
    if feas.size:
        G = F[feas]
        le = np.all(G[:, None, :] <= G[None, :, :], axis=2)
        lt = np.any(G[:, None, :] < G[None, :, :], axis=2)
        dom = le & lt                      # dom[i, j]: i dominates j
        count = dom.sum(axis=0)
        current = np.flatnonzero(count == 0)
        while current.size:
            fronts.append(feas[current])
            count = count - dom[current].sum(axis=0)
            count[current] = -1
            current = np.flatnonzero(count == 0)
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

"""Small operator objects from which population strategies are assembled (selection, variation,
survival). Each is a callable with explicit inputs; none holds hidden state besides its options."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np

from edgenas.search.base import Result
from edgenas.search.pareto import crowding_distance, non_dominated_sort


def as_arrays(results: Sequence[Result]) -> tuple[np.ndarray, np.ndarray]:
    """Objective matrix (non-finite -> +inf) and violation vector of some results."""
    F = np.array([r.values for r in results], dtype=float).reshape(len(results), -1)
    F[~np.isfinite(F)] = np.inf
    v = np.array([max(r.violation, 0.0) for r in results], dtype=float)
    return F, v


def rank_and_crowding(results: Sequence[Result]) -> tuple[np.ndarray, np.ndarray]:
    """Per member: front rank (0 = best, constrained domination) and crowding distance."""
    F, v = as_arrays(results)
    rank = np.zeros(len(results), dtype=np.int64)
    crowd = np.zeros(len(results))
    for r, front in enumerate(non_dominated_sort(F, v)):
        rank[front] = r
        crowd[front] = crowding_distance(F[front]) if v[front[0]] <= 0 else 0.0
    return rank, crowd


@dataclass(frozen=True)
class TournamentSelection:
    """Pick parents by k-way tournaments on (rank, -crowding)."""

    size: int = 2

    def __call__(self, rank: np.ndarray, crowd: np.ndarray, n: int, rng: np.random.Generator) -> list[int]:
        out = []
        for _ in range(n):
            idx = rng.choice(len(rank), size=min(self.size, len(rank)), replace=False)
            out.append(int(min(idx, key=lambda i: (rank[i], -crowd[i]))))
        return out


@dataclass(frozen=True)
class UniformCrossover:
    """Uniform crossover of gene vectors with probability ``prob`` (else a copy of the first parent)."""

    prob: float = 0.9

    def __call__(self, space: Any, a: Any, b: Any, rng: np.random.Generator) -> Any:
        return space.crossover(a, b, rng) if rng.random() < self.prob else a


@dataclass(frozen=True)
class GeneMutation:
    """Resample each gene with probability ``rate`` (default 1/D); at least one gene changes."""

    rate: float | None = None

    def __call__(self, space: Any, arch: Any, rng: np.random.Generator) -> Any:
        return space.mutate(arch, rng, self.rate)


@dataclass(frozen=True)
class RankCrowdingSurvival:
    """NSGA-II survival: whole fronts first, the last front cut by crowding distance."""

    def __call__(self, results: Sequence[Result], n: int) -> list[int]:
        F, v = as_arrays(results)
        keep: list[int] = []
        for front in non_dominated_sort(F, v):
            if len(keep) + len(front) <= n:
                keep.extend(int(i) for i in front)
                continue
            crowd = crowding_distance(F[front]) if v[front[0]] <= 0 else np.zeros(len(front))
            order = np.argsort(-crowd, kind="stable")
            keep.extend(int(front[i]) for i in order[: n - len(keep)])
            break
        return keep

"""NSGA-II (Deb et al. 2002) assembled from operator objects, with constrained domination.

Generation 0 is random; each later generation's offspring are made by tournament selection on
(rank, crowding), crossover and mutation of the current parents; once ``population`` offspring have
been told, parents and offspring compete in rank-and-crowding survival. ``ask`` may be called with any
``n``: offspring are produced from the current parents on demand.

``sampling`` (``edgenas.search.draws``): ``without-replacement`` (new runs) draws generation 0, and the uniform
samples that stand in for offspring that found nothing new, without replacement from what meets the budgets
(generation 0 is short, and the run ends, when nothing new is left); ``novel-first`` (runs recorded before the
option) could repeat a cell under a tight budget while others were left.
"""

from __future__ import annotations

from typing import Any, Sequence

from edgenas.search.base import STRATEGIES, Result, Strategy
from edgenas.search.options import Option, population_option
from edgenas.search.draws import OLD_SAMPLING, SAMPLING
from edgenas.search.operators import (GeneMutation, RankCrowdingSurvival, TournamentSelection,
                                      UniformCrossover, rank_and_crowding)


@STRATEGIES.register("nsga2", help="NSGA-II: non-dominated sorting, crowding, constrained domination")
class NSGA2(Strategy):
    batch_hint = None  # the population
    options = {
        "population": population_option(20, 4),
        "tournament": Option(2, int, lambda v: v >= 1, "must be >= 1"),
        "crossover_prob": Option(0.9, float, lambda v: 0.0 <= v <= 1.0, "must be in [0, 1]"),
        "mutation_rate": Option(None, float, lambda v: 0.0 < v <= 1.0, "must be in (0, 1]"),
        "sampling": SAMPLING,
    }
    recorded_before = {"sampling": OLD_SAMPLING}

    def __init__(self, space: Any, rng: Any, **kwargs: Any) -> None:
        super().__init__(space, rng, **kwargs)
        self.selection = TournamentSelection(self.opts["tournament"])
        self.crossover = UniformCrossover(self.opts["crossover_prob"])
        self.mutation = GeneMutation(self.opts["mutation_rate"])
        self.survival = RankCrowdingSurvival()
        self.parents: list[tuple[Any, Result]] = []
        self.offspring: list[tuple[Any, Result]] = []
        self._rank = self._crowd = None

    @property
    def population(self) -> int:
        return self.opts["population"]

    def _make_child(self) -> Any | None:
        """An offspring of the parents; before there are any, a member of generation 0 (None: none is left)."""
        if not self.parents:
            return self.initial_or_sample()
        if self._rank is None:
            self._rank, self._crowd = rank_and_crowding([r for _, r in self.parents])

        def make() -> Any:
            i, j = self.selection(self._rank, self._crowd, 2, self.rng)
            child = self.crossover(self.space, self.parents[i][0], self.parents[j][0], self.rng)
            return self.mutation(self.space, child, self.rng)

        return self.propose(make)

    def ask(self, n: int) -> list[Any]:
        out = []
        for _ in range(n):
            arch = self._make_child()
            if arch is None:  # generation 0 drawn without replacement: nothing new is left
                break
            self.mark_seen([arch])
            out.append(arch)
        return out

    def tell(self, archs: Sequence[Any], results: Sequence[Result]) -> None:
        self.mark_seen(archs)
        for arch, res in zip(archs, results):
            self.offspring.append((arch, res))
            if len(self.offspring) >= self.population:
                pool = self.parents + self.offspring
                keep = self.survival([r for _, r in pool], self.population)
                self.parents = [pool[i] for i in keep]
                self.offspring = []
                self._rank = self._crowd = None

"""Random draws without replacement from what meets the latency budgets (option ``sampling``: ``random``'s, the
first population and uniform fills of ``evolution``, ``nsga2``, ``hgm``, ``woa`` and ``ri-iwoa``, Hyperband's).

``without-replacement`` (new runs): each draw is an architecture the search has not drawn nor been told, that
meets every latency budget, uniform over those (over gene vectors, as ``SearchSpace.sample``); when none is left
the draw is None and the search ends ("exhausted") instead of drawing one again. ``novel-first`` is what random
search did before: ``Strategy.propose``'s 50 tries, then a repair toward a fastest architecture, then a repeat
when those were all drawn, so under a tight budget a slot of the search budget went to a cell already evaluated
(on nb201 with the Raspberry Pi 4 budget at the 0.65% quantile, 81 draws held 75 distinct while 107 cells met
it). A run recorded before the option existed has none, ran ``novel-first`` and replays so
(``Strategy.recorded_before``, ``MFConfig.sampling``).

A draw takes up to 50 uniform samples (``FIRST_TRIES``), checked for novelty and, 10 at a time in one predictor
call, for the budgets: exactly as ``novel-first`` takes them, so the two draw alike until that one would have
repaired or repeated. Past those, a space of at most ``MAX_LISTED`` gene vectors (nb201's 15,625, mbv3-tiny's
1,024) is listed once, its feasible vectors kept, and each later draw is uniform over those not drawn: exact, so
an empty list is the feasible space exhausted. A larger space (the mbv3 ones) samples on, up to ``DRAW_TRIES``
in all, then walks the least violating sample toward a fastest architecture avoiding what was drawn
(``repair_toward_anchor``); when that too finds nothing new, the draw gives up (None). Never loops unbounded.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from edgenas.search.candidates import Feasibility, novel_feasible, repair_toward_anchor
from edgenas.search.options import Option

#: the ways random search draws, and the one a new run uses unless told
SAMPLINGS = ("without-replacement", "novel-first")
DEFAULT_SAMPLING = "without-replacement"
#: what a run recorded before the option existed drew with
OLD_SAMPLING = "novel-first"
#: the option, as each strategy that draws declares it (with ``recorded_before = {"sampling": OLD_SAMPLING}``)
SAMPLING = Option(DEFAULT_SAMPLING, str, lambda v: v in SAMPLINGS, "must be without-replacement or novel-first")
#: uniform samples a draw takes as ``novel-first`` does (``Strategy.max_tries``), in predictor calls of ``CHUNK``
FIRST_TRIES, FIRST_CHUNK = 50, 10
#: a space of at most this many gene vectors is listed whole once the first tries find nothing new and feasible
MAX_LISTED = 1 << 17
#: uniform samples a draw takes in all in a space too large to list (predictor calls of ``CHUNK``), then a repair
DRAW_TRIES, CHUNK = 2_000, 250


def listable(space: Any) -> bool:
    """Whether ``space`` is small enough to list every gene vector (``MAX_LISTED``)."""
    return math.prod(int(s) for s in space.gene_sizes()) <= MAX_LISTED


class DistinctDraws:
    """Draws of novel architectures within the budgets of ``feasibility`` (None: no budget), from ``rng``."""

    def __init__(self, space: Any, feasibility: Feasibility | None, rng: np.random.Generator) -> None:
        self.space = space
        self.feasibility = feasibility
        self.rng = rng
        self._genes: np.ndarray | None = None  # once listed: every feasible gene vector, a row each
        self._ids: list[str] = []              # their architecture ids
        self._left: list[int] = []             # rows not yet drawn (or drawn: removed when met)

    def draw(self, seen: set[str]) -> Any | None:
        """An architecture whose id is not in ``seen`` and that meets the budgets; None when there is none left
        (a listed space) or none was found (a larger one)."""
        if self._genes is None:
            cand, closest = self._sample(seen, FIRST_TRIES if listable(self.space) else DRAW_TRIES)
            if cand is not None:
                return cand
            if not listable(self.space):
                return self._repaired(closest, seen)
            self._list()
        while self._left:  # uniform over the rows left; one drawn already is dropped as it is met
            j = int(self.rng.integers(len(self._left)))
            row = self._left[j]
            self._left[j] = self._left[-1]
            self._left.pop()
            if self._ids[row] not in seen:
                return self.space.from_genes(self._genes[row])
        return None

    def _sample(self, seen: set[str], tries: int) -> tuple[Any | None, Any | None]:
        """Up to ``tries`` uniform samples: (the first novel feasible one or None, the least violating novel
        one met, for a repair). The first ``FIRST_TRIES`` as ``Strategy._novel`` takes them, in predictor calls of
        ``FIRST_CHUNK``; the rest in calls of ``CHUNK``."""
        return novel_feasible(self.space, self.feasibility, lambda: self.space.sample(self.rng), seen, tries,
                              lambda start: FIRST_CHUNK if start < FIRST_TRIES else CHUNK)

    def _repaired(self, closest: Any | None, seen: set[str]) -> Any | None:
        """``closest`` walked toward a fastest architecture, when that gives one novel and feasible."""
        if closest is None or self.feasibility is None:
            return None
        fixed = repair_toward_anchor(self.space, self.feasibility, closest, self.rng, avoid=seen)
        if self.space.arch_id(fixed) in seen or float(self.feasibility.violation([fixed])[0]) > 0.0:
            return None
        return fixed

    def _list(self) -> None:
        """Every gene vector of the space that meets the budgets (one predictor call), and their ids."""
        sizes = tuple(int(s) for s in self.space.gene_sizes())
        genes = np.indices(sizes).reshape(len(sizes), -1).T
        if self.feasibility is not None:
            v = np.asarray(self.feasibility.violation([self.space.from_genes(g) for g in genes]), dtype=float)
            genes = genes[v <= 0.0]
        self._genes = genes
        self._ids = [self.space.arch_id(self.space.from_genes(g)) for g in genes]
        self._left = list(range(len(genes)))

"""Random search: uniform samples of the gene vector, each new and within the latency budgets.

``sampling``: ``without-replacement`` (new runs) never draws an architecture twice, and ends the search when
nothing it has not drawn meets the budgets; ``novel-first`` (runs recorded before the option) prefers new
feasible samples but repeats one when its bounded tries and repair find none (``edgenas.search.draws``).
"""

from __future__ import annotations

from typing import Any, Mapping, Sequence

import numpy as np

from edgenas.search.base import STRATEGIES, Feasibility, Option, Result, Strategy
from edgenas.search.draws import DEFAULT_SAMPLING, OLD_SAMPLING, SAMPLINGS, DistinctDraws


@STRATEGIES.register("random", help="uniform random sampling (feasible, without replacement)")
class RandomSearch(Strategy):
    """Uniform random sampling; the baseline every other strategy must beat."""

    batch_hint = 16
    options = {
        "sampling": Option(DEFAULT_SAMPLING, str, lambda v: v in SAMPLINGS,
                           "must be without-replacement or novel-first"),
    }

    def __init__(self, space: Any, rng: np.random.Generator, *, feasibility: Feasibility | None = None,
                 initial_population: Sequence[Any] = (), **options: Any) -> None:
        super().__init__(space, rng, feasibility=feasibility, initial_population=initial_population, **options)
        self.draws = DistinctDraws(space, feasibility, rng) if self.opts["sampling"] == DEFAULT_SAMPLING else None

    @classmethod
    def recorded_options(cls, options: Mapping[str, Any], *, new: bool) -> dict[str, Any]:
        """``options`` with ``sampling`` spelled out: a new run's choice, or ``novel-first`` for a run recorded
        before the option existed (``new=False``), which is what it drew with."""
        if options.get("sampling") is not None:
            return dict(options)
        return {**options, "sampling": DEFAULT_SAMPLING if new else OLD_SAMPLING}

    def ask(self, n: int) -> list[Any]:
        """``n`` architectures; fewer (none) only without replacement, when nothing new meets the budgets."""
        out = []
        for _ in range(n):
            arch = self.initial_or_sample() if self.draws is None else self._draw()
            if arch is None:
                break
            self.mark_seen([arch])
            out.append(arch)
        return out

    def _draw(self) -> Any | None:
        arch = self.next_initial()
        return arch if arch is not None else self.draws.draw(self.seen)

    def tell(self, archs: Sequence[Any], results: Sequence[Result]) -> None:
        self.mark_seen(archs)

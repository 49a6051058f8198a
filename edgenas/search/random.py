"""Random search: uniform samples of the gene vector, each new and within the latency budgets.

``sampling``: ``without-replacement`` (new runs) never draws an architecture twice, and ends the search when
nothing it has not drawn meets the budgets; ``novel-first`` (runs recorded before the option) prefers new
feasible samples but repeats one when its bounded tries and repair find none (``edgenas.search.draws``).
"""

from __future__ import annotations

from typing import Any, Sequence

from edgenas.search.base import STRATEGIES, Result, Strategy
from edgenas.search.draws import OLD_SAMPLING, SAMPLING


@STRATEGIES.register("random", help="uniform random sampling (feasible, without replacement)")
class RandomSearch(Strategy):
    """Uniform random sampling; the baseline every other strategy must beat."""

    batch_hint = 16
    options = {"sampling": SAMPLING}
    recorded_before = {"sampling": OLD_SAMPLING}  # a run recorded before the option drew novel-first

    def ask(self, n: int) -> list[Any]:
        """``n`` architectures; fewer (none) only without replacement, when nothing new meets the budgets."""
        out = []
        for _ in range(n):
            arch = self.initial_or_sample()
            if arch is None:
                break
            self.mark_seen([arch])
            out.append(arch)
        return out

    def tell(self, archs: Sequence[Any], results: Sequence[Result]) -> None:
        self.mark_seen(archs)

"""Random search: uniform samples of the gene vector, novel and (when constrained) feasible."""

from __future__ import annotations

from typing import Any, Sequence

from edgenas.search.base import STRATEGIES, Result, Strategy


@STRATEGIES.register("random", help="uniform random sampling (novel, feasible-first)")
class RandomSearch(Strategy):
    """Uniform random sampling; the baseline every other strategy must beat."""

    batch_hint = 16

    def ask(self, n: int) -> list[Any]:
        out = []
        for _ in range(n):
            arch = self.initial_or_sample()
            self.mark_seen([arch])
            out.append(arch)
        return out

    def tell(self, archs: Sequence[Any], results: Sequence[Result]) -> None:
        self.mark_seen(archs)

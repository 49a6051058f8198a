"""How many evaluations a search may ask for: never more than the space has architectures.

A budget beyond the size of a finite space (NAS-Bench-201 has 15,625 cells) only spins: the budget is
capped at the size and the user is told. The size is the product of the gene sizes, which is exact for
spaces whose genes all matter (nb201) and an upper bound otherwise (mbv3's slots past a stage's depth).
A budget beyond what meets a latency budget spins too; that is found as the run goes (``run.EXHAUSTED_AFTER``).
"""

from __future__ import annotations

import math
from typing import Any


def space_size(space: Any) -> int:
    """Number of gene vectors of ``space``: an upper bound on its distinct architectures."""
    return math.prod(int(s) for s in space.gene_sizes())


def cap_budget(space: Any, budget: int) -> tuple[int, str | None]:
    """``(budget to use, note or None)``."""
    size = space_size(space)
    if budget > size:
        return size, (f"--budget {budget} is more than space '{space.name}' has architectures ({size} at most): "
                      f"capped at {size}")
    return budget, None

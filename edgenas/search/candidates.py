"""Finding candidates: a new architecture that meets the latency budgets, or the repair of one that does not.

Every strategy proposes through these (``Strategy.propose``), and so do random search's draws without
replacement (``draws``) and the joint-budget check (``joint``); apart from ``base`` so that ``draws`` builds on
them and ``base`` on ``draws``.
"""

from __future__ import annotations

from typing import Any, Callable, Protocol, Sequence

import numpy as np


class Feasibility(Protocol):
    """Cheap pre-evaluation constraint check (predicted latency only), provided by a ``Problem``."""

    def violation(self, archs: Sequence[Any]) -> np.ndarray: ...

    def anchors(self) -> list[Any]: ...


#: paths toward an anchor ``repair_toward_anchor`` tries (one predictor call each) for a step not yet seen
REPAIR_TRIES = 8


def novel_feasible(space: Any, feasibility: Feasibility | None, make: Callable[[], Any], avoid: set[str],
                   tries: int, chunk: Callable[[int], int] = lambda start: 10) -> tuple[Any | None, Any | None]:
    """Up to ``tries`` candidates of ``make``: (the first not in ``avoid`` that meets the budgets, or None; the
    least violating one met not in ``avoid``, for a repair, or None). The budgets are checked ``chunk(start)``
    candidates at a time (one predictor call each; ``start``: how many were made before); without
    ``feasibility``, the first novel one. ``Strategy.propose`` and random search's draws (``draws``) take
    their candidates through this."""
    if feasibility is None:
        for _ in range(tries):
            cand = make()
            if space.arch_id(cand) not in avoid:
                return cand, None
        return None, None
    closest, closest_v, start = None, np.inf, 0
    while start < tries:
        size = min(chunk(start), tries - start)  # the last chunk: what is left of tries
        start += size
        cands = [c for c in (make() for _ in range(size)) if space.arch_id(c) not in avoid]
        if not cands:
            continue
        v = np.asarray(feasibility.violation(cands), dtype=float)
        ok = np.flatnonzero(v <= 0.0)
        if ok.size:
            return cands[int(ok[0])], None
        i = int(np.argmin(v))
        if v[i] < closest_v:
            closest, closest_v = cands[i], float(v[i])
    return None, closest


def repair_toward_anchor(space: Any, feasibility: Feasibility | None, arch: Any, rng: np.random.Generator, *,
                         avoid: set[str] | None = None, anchors: Sequence[Any] | None = None) -> Any:
    """Move ``arch`` gene by gene (random order) toward a min-latency anchor; the first feasible step.

    With ``avoid`` (the architecture ids a search has seen), the first feasible step not in it: the paths
    of one anchor meet near it, so repairs kept returning the same few cells (under a 5 ms budget on the
    Raspberry Pi 4, 14 of 200 random-search evaluations repeated one). Up to ``REPAIR_TRIES`` paths, each
    another anchor and gene order (one predictor call of at most D architectures each), then 4 D mutations
    of the feasible steps met (one call); when all of these were seen, that step. Never loops. Returns
    ``arch`` unchanged without constraints or anchors. ``anchors``: walk toward these (feasible
    architectures) instead of ``feasibility.anchors()``."""
    if feasibility is None:
        return arch
    anchors = feasibility.anchors() if anchors is None else list(anchors)
    if not anchors:
        return arch
    first, feasible = None, []  # the first path's answer; every feasible step met
    for _ in range(REPAIR_TRIES if avoid else 1):
        anchor = anchors[int(rng.integers(len(anchors)))]
        genes, target = space.to_genes(arch).copy(), space.to_genes(anchor)
        steps = []  # the architecture after each gene moved, in a random order: one predictor call for all
        for i in rng.permutation(len(genes)):
            if genes[i] != target[i]:
                genes[i] = target[i]
                steps.append(space.from_genes(genes))
        if not steps:
            return arch
        ok = np.flatnonzero(np.asarray(feasibility.violation(steps), dtype=float) <= 0.0)
        if first is None:
            first = steps[int(ok[0])] if ok.size else steps[-1]
        fresh = next((steps[i] for i in ok if not avoid or space.arch_id(steps[i]) not in avoid), None)
        if fresh is not None:
            return fresh
        feasible += [steps[i] for i in ok]
    if avoid and feasible:  # every path met the seen: mutations of the feasible steps, in one predictor call
        near = [space.mutate(feasible[int(rng.integers(len(feasible)))], rng) for _ in range(4 * len(genes))]
        ok = np.flatnonzero(np.asarray(feasibility.violation(near), dtype=float) <= 0.0)
        return next((near[i] for i in ok if space.arch_id(near[i]) not in avoid), first)
    return first

"""The whale optimisation algorithm (WOA, Mirjalili & Lewis 2016) on the continuous codec.

Whales live in ``[0, 1]^D`` (``space.encode``/``space.decode`` round them to architectures). Per whale
and generation, with ``a`` falling linearly from 2 to 0 over the generations, ``A = 2a r1 - a``,
``C = 2 r2`` and ``p, l`` uniform:

* ``p < 0.5, |A| < 1``  encircling:      ``X' = X* - A |C X* - X|``
* ``p < 0.5, |A| >= 1`` random search:   ``X' = Xr - A |C Xr - X|`` (``Xr`` a random whale)
* ``p >= 0.5``          bubble-net spiral: ``X' = |X* - X| e^{b l} cos(2 pi l) + X*`` (``b = 1``)

``X*`` is the best architecture found so far (Deb's feasibility-first order). A decoded position that
was already evaluated or violates a budget is replaced by a bounded repair (mutation, then a move
toward the min-latency architecture) and the whale is moved onto it.

``sampling`` (``edgenas.search.draws``): ``without-replacement`` (new runs) draws the first whales, and the
uniform samples that stand in for a repair that found nothing new, without replacement from what meets the
budgets (when nothing new is left for a first whale, the first generation is short and the run ends);
``novel-first`` (runs recorded before the option) could place two whales on one cell under a tight budget while
other cells were left.
"""

from __future__ import annotations

import math
from typing import Any, Sequence

import numpy as np

from edgenas.search.base import STRATEGIES, Result, Strategy, rank_key
from edgenas.search.options import Option, population_option
from edgenas.search.draws import OLD_SAMPLING, SAMPLING

WOA_OPTIONS = {
    "population": population_option(20, 2),
    "budget": Option(None, int, lambda v: v >= 1, "must be >= 1"),
    "generations": Option(None, int, lambda v: v >= 1, "must be >= 1"),
    "b": Option(1.0, float, lambda v: 0 < v <= 100, "must be in (0, 100]"),  # exp(b l) for l in [-1, 1]
    "sampling": SAMPLING,
}


@STRATEGIES.register("woa", help="whale optimisation algorithm on the continuous codec")
class WOA(Strategy):
    batch_hint = None
    options = WOA_OPTIONS
    recorded_before = {"sampling": OLD_SAMPLING}

    def __init__(self, space: Any, rng: Any, **kwargs: Any) -> None:
        super().__init__(space, rng, **kwargs)
        self.sizes = np.asarray(space.gene_sizes())
        self.N = self.opts["population"]
        self.generations = self.opts["generations"] or max(1, (self.opts["budget"] or 50 * self.N) // self.N)
        self.gen = -1
        self.X = np.zeros((self.N, len(self.sizes)))
        self.fit: list[Result | None] = [None] * self.N
        self.best: tuple[np.ndarray, Any, Result] | None = None
        self.queue: list[tuple[int, np.ndarray, Any]] = []
        self.waiting: dict[str, list[tuple[int, np.ndarray]]] = {}
        self.drawn_out = False  # the first whales ran out of new cells to draw: no generation follows

    # ---------------------------------------------------------------- moves
    @property
    def a(self) -> float:
        return 2.0 - 2.0 * min(self.gen, self.generations) / self.generations

    def basis(self) -> tuple[np.ndarray, np.ndarray] | None:
        """An orthonormal basis ``B`` and centre for the moves (None = the coordinate axes)."""
        return None

    def move(self, i: int, star: np.ndarray) -> tuple[np.ndarray, bool]:
        """New position of whale ``i`` and whether it came from the attack (exploitation) phase."""
        a, rng = self.a, self.rng
        r1, r2, p, l = rng.random(), rng.random(), rng.random(), rng.uniform(-1.0, 1.0)
        A, C = 2 * a * r1 - a, 2 * r2
        frame = self.basis()
        to = (lambda x: x) if frame is None else (lambda x: frame[0].T @ (x - frame[1]))
        back = (lambda y: y) if frame is None else (lambda y: frame[0] @ y + frame[1])
        x, s = to(self.X[i]), to(star)
        if p < 0.5 and abs(A) < 1:
            y, attack = s - A * np.abs(C * s - x), True
        elif p < 0.5:
            r = to(self.X[int(rng.integers(self.N))])
            y, attack = r - A * np.abs(C * r - x), False
        else:
            y = np.abs(s - x) * math.exp(self.opts["b"] * l) * math.cos(2 * math.pi * l) + s
            attack = True
        return np.clip(back(y), 0.0, 1.0), attack

    def post_attack(self, arch: Any) -> Any:
        """Hook applied to architectures produced by the attack phase (RI-IWOA's mutation operator)."""
        return arch

    def _place(self, i: int, x: np.ndarray, attack: bool) -> None:
        arch = self.space.decode(x)
        if attack:
            arch = self.post_attack(arch)
        self._enqueue(i, x, arch)

    def _enqueue(self, i: int, x: np.ndarray, arch: Any) -> None:
        """Queue whale ``i``'s next position (``arch``; a seen or infeasible one is mutated first)."""
        if self.space.arch_id(arch) in self.seen or self.violation(arch) > 0:
            arch = self.propose(lambda: self.space.mutate(arch, self.rng))
        if self.space.arch_id(arch) != self.space.arch_id(self.space.decode(x)):
            x = self.space.encode(arch)
        self.mark_seen([arch])
        self.queue.append((i, x, arch))

    def _next_generation(self) -> None:
        self.gen += 1
        if self.gen == 0 or self.best is None:
            for i in range(self.N):
                arch = self.initial_or_sample()
                if arch is None:  # drawn without replacement: nothing new is left
                    self.drawn_out = True
                    return
                x = (self.space.to_genes(arch) + self.rng.random(len(self.sizes))) / self.sizes
                self.mark_seen([arch])
                self.queue.append((i, np.clip(x, 0.0, 1.0), arch))
            return
        star = self.best[0]
        for i in range(self.N):
            x, attack = self.move(i, star)
            self._place(i, x, attack)

    # -------------------------------------------------------------- ask/tell
    def ask(self, n: int) -> list[Any]:
        out = []
        for _ in range(n):
            if not self.queue and not self.drawn_out:
                self._next_generation()
            if not self.queue:  # the first whales drawn so far, and then none
                break
            i, x, arch = self.queue.pop(0)
            self.waiting.setdefault(self.space.arch_id(arch), []).append((i, x))
            out.append(arch)
        return out

    def accept(self, i: int, res: Result) -> bool:
        """Whether whale ``i`` moves to its new position (plain WOA: always)."""
        return True

    def tell(self, archs: Sequence[Any], results: Sequence[Result]) -> None:
        self.mark_seen(archs)
        for arch, res in zip(archs, results):
            spots = self.waiting.get(self.space.arch_id(arch))
            if spots:
                i, x = spots.pop(0)
                if self.fit[i] is None or self.accept(i, res):
                    self.X[i], self.fit[i] = x, res
                xb = self.X[i] if self.fit[i] is res else self.space.encode(arch)
            else:
                xb = self.space.encode(arch)
            if self.best is None or rank_key(res) < rank_key(self.best[2]):
                self.best = (np.array(xb, dtype=float), arch, res)

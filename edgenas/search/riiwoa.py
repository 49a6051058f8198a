"""RI-IWOA: a rotationally invariant, improved whale optimisation algorithm.

Changes to plain WOA (``woa.py``):

* **rotation invariance**: every ``rotate_every`` generations the covariance of the better half of the
  whales is estimated and eigendecomposed (``eps * I`` added when it is singular or ill-conditioned);
  the moves, whose component-wise ``|.|`` otherwise depends on the coordinate axes, are computed in that
  eigenbasis around the half's mean and mapped back;
* **greedy replacement**: a whale only moves to a position that is no worse (Deb's rules);
* **attack-phase operator**: ``mutation_operator(arch, rng) -> arch`` (e.g. an LLM) rewrites the
  architectures produced by the attack (exploitation) moves; ``None`` (default) = off; with a
  language-model operator (``llm_operator``, ``edgenas.llm``) a share ``llm_share`` of the attack moves
  are replaced by the model's mutation of the best architecture so far (its result is reported back);
  a generation's model moves are written in one batched call (``mutate_many``), as in evolution;
* **polish**: after the last generation a Nelder-Mead search (scipy) on the continuous code starts from
  the best; its function values come from what was evaluated, and every new point it needs is asked
  for, one per ask, since the next depends on its value (so it is part of the budget and replays exactly
  on resume). When it converges early the rest of the budget mutates the best. Final rounding is
  ``space.decode``.
"""

from __future__ import annotations

from typing import Any, Callable, Mapping, Sequence

import numpy as np
from scipy.optimize import minimize

from edgenas.search.base import STRATEGIES, Option, Result, rank_key
from edgenas.search.woa import WOA, WOA_OPTIONS

_BIG = 1e12


class _Need(Exception):
    def __init__(self, arch: Any) -> None:
        self.arch = arch


def _penalised(r: Result) -> float:
    kind, value = rank_key(r)
    return _BIG + value if kind else (value if np.isfinite(value) else _BIG)


@STRATEGIES.register("ri-iwoa", aliases=("riiwoa",),
                     help="rotation-invariant improved WOA with Nelder-Mead polish")
class RIIWOA(WOA):
    options = {
        **WOA_OPTIONS,
        "rotate_every": Option(2, int, lambda v: v >= 1, "must be >= 1"),
        "eps": Option(1e-6, float, lambda v: v > 0, "must be > 0"),
        "polish_evals": Option(None, int, lambda v: v >= 0, "must be >= 0"),
        "polish_maxfev": Option(400, int, lambda v: v >= 1, "must be >= 1"),
        "llm_share": Option(0.0, float, lambda v: 0.0 <= v <= 1.0, "must be in [0, 1]"),
    }

    @classmethod
    def before_children(cls, options: Mapping[str, Any], batch_size: int | None) -> int:
        """Evaluations before the model can write a move: the first population is random samples (see
        ``RegularizedEvolution.before_children``)."""
        return int(cls.validate_options(options)["population"])

    def __init__(self, space: Any, rng: Any, *, mutation_operator: Callable[[Any, np.random.Generator], Any]
                 | None = None, llm_operator: Any = None, **kwargs: Any) -> None:
        super().__init__(space, rng, **kwargs)
        self.mutation_operator = mutation_operator
        self.llm = llm_operator
        self.origin: dict[str, tuple[Any, Result]] = {}   # LLM child id -> (parent, its result)
        budget = self.opts["budget"]
        polish = self.opts["polish_evals"]
        if polish is None:
            polish = budget // 10 if budget else 0
        self.polish_evals = polish
        self.nm_asked: set[str] = set()  # the Nelder-Mead points asked for (one per ask while it searches)
        if budget and not self.opts["generations"]:
            self.generations = max(1, (budget - polish) // self.N)
        self.frame: tuple[np.ndarray, np.ndarray] | None = None
        self.values: dict[str, float] = {}   # arch_id -> penalised scalar (what NM minimises)

    # ------------------------------------------------------------ rotation
    def _update_frame(self) -> None:
        told = [i for i in range(self.N) if self.fit[i] is not None]
        if len(told) < 3:
            self.frame = None
            return
        told.sort(key=lambda i: rank_key(self.fit[i]))
        top = self.X[told[: max(3, len(told) // 2)]]
        cov = np.atleast_2d(np.cov(top.T))
        scale = max(float(np.trace(cov)) / len(cov), 1e-12)
        w = np.linalg.eigvalsh(cov)
        if w.min() <= self.opts["eps"] * max(w.max(), 1e-12):   # singular / ill-conditioned
            cov = cov + self.opts["eps"] * scale * np.eye(len(cov)) + 1e-12 * np.eye(len(cov))
        _, B = np.linalg.eigh(cov)
        self.frame = (B, top.mean(axis=0))

    def basis(self) -> tuple[np.ndarray, np.ndarray] | None:
        return self.frame

    def _next_generation(self) -> None:
        if self.gen >= 0 and (self.gen + 1) % self.opts["rotate_every"] == 0:
            self._update_frame()
        if self.llm is None or self.opts["llm_share"] <= 0 or self.best is None or self.gen < 0:
            super()._next_generation()
            return
        self._llm_generation()

    def post_attack(self, arch: Any) -> Any:
        if self.mutation_operator is not None:
            arch = self.mutation_operator(arch, self.rng)
        return arch

    def _llm_generation(self) -> None:
        """A generation with the model on: every whale moves and each attack move is, with probability
        ``llm_share``, given to the model; the model writes all of them in ONE batched call (the best
        architecture so far is every one's parent), then the whales are queued in order. A proposal that
        is not novel (also among this generation's earlier whales) or not feasible keeps the move."""
        self.gen += 1
        star, parent, res = self.best
        moves = []
        for i in range(self.N):
            x, attack = self.move(i, star)
            arch = self.space.decode(x)
            if attack:
                arch = self.post_attack(arch)
            moves.append((i, x, arch, attack and self.rng.random() < self.opts["llm_share"]))
        asked = [m for m in moves if m[3]]
        children = iter(self.llm.mutate_many([parent] * len(asked), [res] * len(asked), self.seen)
                        if asked else [])
        for i, x, arch, by_model in moves:
            if by_model:
                child = next(children)
                if self.takes_from(self.llm, child):
                    self.origin[self.space.arch_id(child)] = (parent, res)
                    arch = child
            self._enqueue(i, x, arch)

    def accept(self, i: int, res: Result) -> bool:
        return rank_key(res) <= rank_key(self.fit[i])

    # -------------------------------------------------------------- polish
    def _nm_request(self) -> Any | None:
        """The next architecture Nelder-Mead needs evaluated (None: it converged or ran out)."""
        x0 = self.space.encode(self.best[1])
        step = 1.0 / self.sizes
        simplex = [x0]
        for d in range(len(x0)):
            x = x0.copy()
            x[d] += step[d] if x[d] + step[d] < 1.0 else -step[d]
            simplex.append(x)

        def f(x: np.ndarray) -> float:
            arch = self.space.decode(x)
            key = self.space.arch_id(arch)
            if key in self.values:
                return self.values[key]
            v = self.violation(arch)  # cheap: infeasible points are never evaluated
            if v > 0:
                self.values[key] = _BIG + v
                return self.values[key]
            raise _Need(arch)

        try:
            minimize(f, x0, method="Nelder-Mead",
                     options={"initial_simplex": np.array(simplex), "maxfev": self.opts["polish_maxfev"],
                              "xatol": 0.25 * step.min(), "fatol": 1e-9})
        except _Need as need:
            return need.arch
        return None

    def ask(self, n: int) -> list[Any]:
        if self.drawn_out and not self.queue:  # the first whales found nothing new to draw: the run ends
            return []
        if self.best is None or self.gen + 1 < self.generations or self.queue:
            return super().ask(n)
        arch = self._nm_request()
        if arch is not None and self.space.arch_id(arch) not in self.nm_asked:
            # Nelder-Mead needs this point's value before it can ask for the next: a batch of one (the
            # rest of a batch of n were mutations, 19 of every 20 polish evaluations)
            self.nm_asked.add(self.space.arch_id(arch))
            self.mark_seen([arch])
            return [arch]
        out, best = [], self.best[1]  # converged (or its point is still being evaluated): mutate the best
        for _ in range(n):
            arch = self.propose(lambda: self.space.mutate(best, self.rng))
            self.mark_seen([arch])
            out.append(arch)
        return out

    def tell(self, archs: Sequence[Any], results: Sequence[Result]) -> None:
        for arch, res in zip(archs, results):
            self.values[self.space.arch_id(arch)] = _penalised(res)
            origin = self.origin.pop(self.space.arch_id(arch), None)
            if origin is not None and self.llm is not None:
                self.llm.observe(origin[0], arch, origin[1], res, "llm")
        super().tell(archs, results)

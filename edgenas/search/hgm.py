"""HGM: lineage search after the Huxley-Gödel Machine (Wang et al. 2025), selecting clades, not individuals.

Every evaluated architecture is a node that remembers its parent (the first ``init`` nodes are random
roots). A node's **clade** is the node and all its descendants. A node is a **success** when it improves
on its parent (Deb's feasibility-first order on the primary objective) or enters the Pareto front of
everything told so far (feasible, non-dominated; for a root, entering the front is the only way). A
clade's metaproductivity (**CMP**) is estimated from the successes and failures of its members: each node
keeps the counts ``s``, ``f`` of its clade, and every told node adds one to itself and to every ancestor.

Each step draws ``theta ~ Beta(tau (1 + s), tau (1 + f))`` for every node (Thompson sampling on the clade
posterior; ``tau = 1 + tau_growth * step`` narrows the posteriors as the search goes on, from exploring
to exploiting) and expands the clade with the largest draw by one mutation of its best architecture
(``expand="best"``; ``"node"`` mutates the clade's root node itself).

Defaults were tuned once on seeds 1000-1009 over five tasks of ``bench/search_suite.py`` (c100-test-100,
c10-12ep, c10-valid@raspi4, in16-test-50, c10-valid@raspi4+pixel3): ``tau_growth`` 0 (plain Thompson
sampling, which explores too much), 0.05, 0.3, 2, 10; ``init`` 10/20; ``explore`` 0.2/0.5; ``expand``
node/best. ``expand="best"`` with ``tau_growth=2`` was best.

**Mutation learning**: the mutation changes ``genes`` genes, each chosen from a learned distribution
over genes and its new value from a learned distribution over that gene's values (Dirichlet counts,
prior 1 each, mixed with ``explore`` of the uniform distribution). The operator of every success adds
``learn_rate`` to the counts of the genes and values it used, so operators that produced improvements
become more likely.

``sampling`` (``edgenas.search.draws``): ``without-replacement`` (new runs) draws the roots, and the uniform
samples that stand in for a mutation that found nothing new, without replacement from what meets the budgets
(when nothing new is left for a root, ask returns fewer and the run ends); ``novel-first`` (runs recorded before
the option) could repeat a root under a tight budget while other cells were left.

Deterministic given the seed and the results told: ``run_search``'s log replay resumes it exactly, and
the run log is the result cache (an architecture is never proposed twice).
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np

from edgenas.search.base import STRATEGIES, Option, Result, Strategy, rank_key
from edgenas.search.draws import OLD_SAMPLING, SAMPLING


def _dominates(a: np.ndarray, b: np.ndarray) -> bool:
    return bool(np.all(a <= b) and np.any(a < b))


@STRATEGIES.register("hgm", help="lineage search: Thompson sampling on clade metaproductivity, learned mutations")
class HGM(Strategy):
    name = "hgm"
    batch_hint = 1
    options = {
        "init": Option(10, int, lambda v: v >= 1, "must be >= 1"),
        "tau_growth": Option(2.0, float, lambda v: 0 <= v <= 1e6, "must be from 0 to 1e6"),
        "genes": Option(1, int, lambda v: v >= 1, "must be >= 1"),
        "learn_rate": Option(1.0, float, lambda v: 0 <= v <= 1e6, "must be from 0 to 1e6"),
        "explore": Option(0.2, float, lambda v: 0.0 <= v <= 1.0, "must be in [0, 1]"),
        # which member of the sampled clade is mutated: its best architecture, or the clade's root node
        "expand": Option("best", str, lambda v: v in ("best", "node"), "must be best or node"),
        "sampling": SAMPLING,
    }
    recorded_before = {"sampling": OLD_SAMPLING}

    def __init__(self, space: Any, rng: Any, **kwargs: Any) -> None:
        super().__init__(space, rng, **kwargs)
        self.sizes = np.asarray(space.gene_sizes())
        self.archs: list[Any] = []
        self.results: list[Result] = []
        self.parent: list[int] = []                 # -1 for roots
        self.succ: list[bool] = []
        self.s = np.zeros(0)                        # clade successes per node
        self.f = np.zeros(0)                        # clade failures per node
        self.best: list[int] = []                   # best member (Deb's order) of each node's clade
        self.gene_counts = np.ones(len(self.sizes))
        self.value_counts = [np.ones(int(n)) for n in self.sizes]
        self.pending: dict[str, tuple[int, tuple[tuple[int, int], ...]]] = {}
        self.front: list[np.ndarray] = []           # feasible non-dominated values told so far
        self.step = 0

    # ------------------------------------------------------------- mutation
    def gene_probs(self) -> np.ndarray:
        mutable = (self.sizes > 1).astype(float)
        p = self.gene_counts * mutable
        u = mutable / mutable.sum()
        return (1 - self.opts["explore"]) * p / p.sum() + self.opts["explore"] * u

    def value_probs(self, gene: int, current: int) -> np.ndarray:
        c = self.value_counts[gene].copy()
        c[current] = 0.0
        u = (np.arange(len(c)) != current).astype(float)
        return (1 - self.opts["explore"]) * c / c.sum() + self.opts["explore"] * u / u.sum()

    def mutate(self, arch: Any) -> tuple[Any, tuple[tuple[int, int], ...]]:
        """``genes`` genes changed, drawn from the learned distributions, and the changes ``(gene, value)``."""
        return self.space.mutate_genes(arch, self.rng, self.opts["genes"], self.gene_probs(), self.value_probs)

    def mutation_distribution(self) -> dict[str, Any]:
        """The learned operator distribution (for reports and tests)."""
        return {"genes": self.gene_probs().tolist(),
                "values": [(c / c.sum()).tolist() for c in self.value_counts]}

    # ------------------------------------------------------------ selection
    def select(self) -> int:
        tau = 1.0 + self.opts["tau_growth"] * self.step
        theta = self.rng.beta(tau * (1.0 + self.s), tau * (1.0 + self.f))
        return int(np.argmax(theta))

    def clade_posterior(self, node: int) -> tuple[float, float]:
        """The Beta posterior (a, b) of a node's clade success rate (tau = 1)."""
        return 1.0 + float(self.s[node]), 1.0 + float(self.f[node])

    # -------------------------------------------------------------- ask/tell
    def ask(self, n: int) -> list[Any]:
        out = []
        for _ in range(n):
            if len(self.archs) + len(self.pending) < self.opts["init"] or not self.archs:
                arch = self.initial_or_sample()  # a warm start's architectures first
                if arch is None:  # a root drawn without replacement: nothing new is left
                    break
                meta: tuple[int, tuple[tuple[int, int], ...]] = (-1, ())
            else:
                parent = self.select()
                if self.opts["expand"] == "best":
                    parent = self.best[parent]
                made: dict[str, tuple[tuple[int, int], ...]] = {}

                def make() -> Any:
                    child, ops = self.mutate(self.archs[parent])
                    made[self.space.arch_id(child)] = ops
                    return child

                arch = self.propose(make)
                meta = (parent, made.get(self.space.arch_id(arch), ()))  # () = repaired: no operator credit
            self.pending[self.space.arch_id(arch)] = meta
            self.mark_seen([arch])
            out.append(arch)
        return out

    def _enters_front(self, r: Result) -> bool:
        if not r.feasible or not np.all(np.isfinite(r.values)):
            return False
        v = np.asarray(r.values, dtype=float)
        if any(_dominates(p, v) or np.array_equal(p, v) for p in self.front):
            return False
        self.front = [p for p in self.front if not _dominates(v, p)] + [v]
        return True

    def tell(self, archs: Sequence[Any], results: Sequence[Result]) -> None:
        self.mark_seen(archs)
        for arch, r in zip(archs, results):
            parent, ops = self.pending.pop(self.space.arch_id(arch), (-1, ()))
            front = self._enters_front(r)
            better = parent >= 0 and rank_key(r) < rank_key(self.results[parent])
            ok = front or better
            node = len(self.archs)
            self.archs.append(arch)
            self.results.append(r)
            self.parent.append(parent)
            self.succ.append(ok)
            self.s = np.append(self.s, 0.0)
            self.f = np.append(self.f, 0.0)
            self.best.append(node)
            key = rank_key(r)
            a = node
            while a >= 0:  # the node's outcome counts in its own clade and in every ancestor's
                if ok:
                    self.s[a] += 1
                else:
                    self.f[a] += 1
                if key < rank_key(self.results[self.best[a]]):
                    self.best[a] = node
                a = self.parent[a]
            if ok and parent >= 0:
                for i, v in ops:
                    self.gene_counts[i] += self.opts["learn_rate"]
                    self.value_counts[i][v] += self.opts["learn_rate"]
            self.step += 1

"""Regularised evolution (REA, Real et al. 2019): an aging population, tournaments, mutation.

The population is a queue of the last ``population`` evaluated architectures; each child is a mutation
of the winner of a tournament of ``tournament`` members sampled without replacement; the oldest member
dies when a child is told. Constraints follow Deb's rules (feasible first, then smaller violation).

``mutation``: ``one`` changes exactly one gene, chosen uniformly, to another value (Real et al.'s mutation and
the NAS-Bench-201 REA baseline's); ``per-gene`` resamples each gene with probability ``mutation_rate`` (1/D by
default; at least one changes), so on NAS-Bench-201 about a quarter of the children differ from their parent
in 2-5 edges. A run recorded before the option existed ran ``per-gene`` and replays so
(``recorded_options``); giving ``mutation_rate`` alone means ``per-gene``.

``sampling`` (``edgenas.search.draws``): ``without-replacement`` (new runs) draws the first population, and the
uniform samples that stand in for a mutation that found nothing new, without replacement from what meets the
budgets; when nothing new is left for the first population, ask returns fewer and the run ends. ``novel-first``
(runs recorded before the option) could repeat a member under a tight budget while other cells were left.

With a language-model operator (``llm_operator``, see ``edgenas.llm``) a share ``llm_share`` of the
children are the model's mutation of the tournament winner (a proposal that is not novel or not
feasible falls back to the usual mutation); every child's result is reported back to the operator.
With the model on, ``llm_batch`` children are asked at a time (one generation), and the model writes
its share of them in one batched call.
"""

from __future__ import annotations

from collections import deque
from typing import Any, Mapping, Sequence

from edgenas.errors import InputError
from edgenas.search.base import STRATEGIES, Result, Strategy, rank_key
from edgenas.search.options import Option, population_option
from edgenas.search.draws import OLD_SAMPLING, SAMPLING

#: the mutations, and the one a new run uses unless told (measured in bench/RESULTS.md, "Evolution's mutation")
MUTATIONS = ("one", "per-gene")
DEFAULT_MUTATION = "one"


@STRATEGIES.register("evolution", aliases=("rea",),
                     help="regularised (aging) evolution with tournament selection")
class RegularizedEvolution(Strategy):
    batch_hint = 1
    options = {
        "population": population_option(20, 2),
        "tournament": Option(5, int, lambda v: v >= 1, "must be >= 1"),
        "mutation": Option(DEFAULT_MUTATION, str, lambda v: v in MUTATIONS, "must be one or per-gene"),
        "mutation_rate": Option(None, float, lambda v: 0.0 < v <= 1.0, "must be in (0, 1]"),
        "llm_share": Option(0.0, float, lambda v: 0.0 <= v <= 1.0, "must be in [0, 1]"),
        "llm_batch": Option(8, int, lambda v: v >= 1, "must be >= 1"),
        "sampling": SAMPLING,
    }
    recorded_before = {"sampling": OLD_SAMPLING}

    def __init__(self, space: Any, rng: Any, *, llm_operator: Any = None, **kwargs: Any) -> None:
        super().__init__(space, rng, **kwargs)
        self.population: deque[tuple[Any, Result]] = deque()
        self.pending = 0
        self.llm = llm_operator
        self.origin: dict[str, tuple[Any, Result, str]] = {}   # child id -> (parent, its result, source)
        if self.llm is not None and self.opts["llm_share"] > 0:
            self.batch_hint = self.opts["llm_batch"]   # a generation's model children come from one call

    @classmethod
    def validate_options(cls, options: Mapping[str, Any]) -> dict[str, Any]:
        """The declared checks, and ``mutation_rate``: the per-gene mutation's, so given alone it means
        ``mutation=per-gene`` (as before the option existed), and it is refused with ``mutation=one``."""
        opts = super().validate_options(options)
        if opts["mutation_rate"] is not None:
            if options.get("mutation") is None:
                opts["mutation"] = "per-gene"
            elif opts["mutation"] != "per-gene":
                raise InputError(f"strategy '{cls.name}': option mutation_rate is the rate of mutation=per-gene, "
                                 f"not of mutation={opts['mutation']} (exactly one gene changes)",
                                 hint="drop mutation_rate, or give mutation=per-gene")
        return opts

    @classmethod
    def recorded_options(cls, options: Mapping[str, Any], *, new: bool) -> dict[str, Any]:
        """``options`` with ``mutation`` spelled out: a new run's choice, or ``per-gene`` for a run recorded
        before the option existed (``new=False``), which is what it ran with."""
        options = super().recorded_options(options, new=new)  # sampling
        if options.get("mutation") is not None:
            return options
        old = not new or options.get("mutation_rate") is not None
        return {**options, "mutation": "per-gene" if old else cls.options["mutation"].default}

    @classmethod
    def before_children(cls, options: Mapping[str, Any], batch_size: int | None) -> int:
        """How many evaluations come before the first child (a mutation or the model's proposal): the
        initial population, and at least the whole first round, asked while nothing is evaluated (with the
        model on, a round is ``llm_batch`` unless ``--batch-size`` says otherwise)."""
        opts = cls.validate_options(options)
        first_round = batch_size or (opts["llm_batch"] if opts["llm_share"] > 0 else cls.batch_hint)
        return max(opts["population"], int(first_round))

    def _tournament(self) -> tuple[Any, Result]:
        members = list(self.population)
        size = min(self.opts["tournament"], len(members))
        idx = self.rng.choice(len(members), size=size, replace=False)
        return min((members[i] for i in idx), key=lambda m: rank_key(m[1]))

    def _mutate(self, parent: Any) -> Any:
        if self.opts["mutation"] == "one":
            return self.space.mutate_genes(parent, self.rng)[0]
        return self.space.mutate(parent, self.rng, self.opts["mutation_rate"])

    def _usual(self, parent: Any, res: Result) -> Any:
        child = self.propose(lambda: self._mutate(parent))
        self.origin[self.space.arch_id(child)] = (parent, res, "usual")
        return child

    def ask(self, n: int) -> list[Any]:
        """``n`` children. With the model on, every slot first draws its parent and whether the model
        writes it; the model's children are then made in one batched call (``mutate_many``); a proposal
        that is not novel or not feasible falls back to the usual mutation. Fewer (the first population's
        members drawn so far) when nothing new is left to draw for it (``sampling=without-replacement``)."""
        use_llm = self.llm is not None and self.opts["llm_share"] > 0
        out: list[Any] = [None] * n
        asked: list[tuple[int, Any, Result]] = []
        for k in range(n):
            if len(self.population) + self.pending < self.opts["population"] or not self.population:
                arch = self.initial_or_sample()
                if arch is None:  # a slot of the first population, and every slot after it
                    out = out[:k]
                    break
            else:
                parent, res = self._tournament()
                if use_llm and self.rng.random() < self.opts["llm_share"]:
                    asked.append((k, parent, res))
                    self.pending += 1
                    continue
                arch = self._usual(parent, res)
            self.pending += 1
            self.mark_seen([arch])
            out[k] = arch
        if asked:
            children = self.llm.mutate_many([p for _, p, _ in asked], [r for _, _, r in asked], self.seen)
            for (k, parent, res), child in zip(asked, children):
                if self.takes_from(self.llm, child):
                    self.origin[self.space.arch_id(child)] = (parent, res, "llm")
                else:
                    child = self._usual(parent, res)
                self.mark_seen([child])
                out[k] = child
        return out

    def tell(self, archs: Sequence[Any], results: Sequence[Result]) -> None:
        self.mark_seen(archs)
        for arch, res in zip(archs, results):
            origin = self.origin.pop(self.space.arch_id(arch), None)
            if origin is not None and self.llm is not None:
                self.llm.observe(origin[0], arch, origin[1], res, origin[2])
            self.pending = max(0, self.pending - 1)
            self.population.append((arch, res))
            while len(self.population) > self.opts["population"]:
                self.population.popleft()

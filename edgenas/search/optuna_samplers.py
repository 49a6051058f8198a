"""optuna's samplers as edgenas strategies, through optuna's own ask/tell interface (no optimiser of ours).

``tpe`` (TPESampler), ``gp`` (GPSampler, Gaussian-process Bayesian optimisation), ``cmaes`` (CmaEsSampler
on the continuous codec ``space.encode``/``space.decode``) and ``optuna-nsga2`` (NSGAIISampler, for
comparison with our ``nsga2``). TPE, GP and NSGA-II see each gene as a categorical parameter ``g{i}``.

Each ``ask`` asks the study for a trial and decodes it; edgenas only does the bookkeeping optuna cannot
know about:

* **constraints** reach the samplers the way optuna defines them: each trial's summed relative budget
  excess (``<= 0`` feasible) is set with ``Trial.set_constraint("violation", v)`` before it is told
  (optuna >= 5, which deprecated ``constraints_func`` for it) or returned by the sampler's
  ``constraints_func`` from the trial's user attribute ``violation`` (older optuna). TPE, GP and
  NSGA-II then use optuna's constrained variants. CMA-ES takes no constraints; it is told a penalised
  value (``INFEASIBLE`` + violation), which keeps its rank-based update feasibility-first. (The worst
  feasible value seen + 1 + violation did not: a bad feasible result told later in a generation raised
  that worst above the penalties told before it.)
* **known architectures**: a trial that decodes to an architecture already evaluated is told its known
  result at once and the study is asked again, so no evaluation is spent twice (the cache is the run
  log, replayed on resume).
* **cheap pre-check**: with latency budgets, a trial whose predicted latency breaks a budget is told
  (violation from the predictor, each objective's worst feasible value seen) without being evaluated, as every
  edgenas strategy filters candidates before evaluation. TPE, GP and NSGA-II then repair that proposal
  (gene by gene toward the device's fastest architecture or a random feasible one, the first feasible step not
  seen) and ask the repaired architecture as the next trial (option ``rejected=repair``); ``rejected=ask`` asks
  the sampler again, as CMA-ES always does (its update reads only the trials it sampled itself, not enqueued
  ones). Asking again, TPE chose worse at the search suite's budgets (under a Raspberry Pi 4 budget, worse than
  random search) and its study grew by up to 20 rejected trials an evaluation, each read at every later ask
  (``bench/tpe_growth.py``, bench/RESULTS.md).
* **bounded**: after ``max_tries`` such trials in a row, a novel feasible-first random architecture
  (``Strategy.propose``) is enqueued into the study and asked for, so ``ask`` never spins.

Studies are in memory and seeded from the strategy's generator, so a run is a deterministic function of
its seed and results: resume replays the log (``run_search``) and ends exactly where an uninterrupted
run does. optuna is imported when a strategy is built, not when edgenas is.
"""

from __future__ import annotations

import dataclasses
import warnings
from typing import Any, ClassVar, Sequence

import numpy as np

from edgenas.errors import InputError
from edgenas.search.base import STRATEGIES, Result, Strategy
from edgenas.search.candidates import repair_toward_anchor
from edgenas.search.options import Option, population_option

#: what CMA-ES is told for an infeasible candidate, plus its violation: above any feasible value (only ranks matter)
INFEASIBLE = 1e12

#: after the predictor rejects a proposal: evaluate its repair (the default) or ask the sampler again
REJECTED = Option("repair", str, lambda v: v in ("repair", "ask"), "must be repair or ask")


def _optuna() -> Any:
    try:
        import optuna
    except ImportError:  # pragma: no cover - optuna is a main dependency
        raise InputError("the optuna strategies need optuna", hint="pip install 'optuna>=4.2'") from None
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
    return optuna


def _violation(trial: Any) -> Sequence[float]:
    """optuna's ``constraints_func``: one value, feasible when <= 0."""
    return (float(trial.user_attrs.get("violation", 0.0)),)


class OptunaStrategy(Strategy):
    """Base: a study over the gene vector; subclasses pick the sampler and the codec."""

    batch_hint = 1
    max_tries: ClassVar[int] = 20
    codec: ClassVar[str] = "categorical"          # or "continuous" (space.encode / decode)
    single_objective: ClassVar[bool] = False
    base_options: ClassVar[dict[str, Option]] = {
        "n_objectives": Option(1, int, lambda v: v >= 1, "must be >= 1", listed="the search's objective count"),
    }

    def __init__(self, space: Any, rng: Any, **kwargs: Any) -> None:
        super().__init__(space, rng, **kwargs)
        self.optuna = _optuna()
        self.n_obj = 1 if self.single_objective else self.opts["n_objectives"]
        seed = int(self.rng.integers(2**31 - 1))
        self.constrained = self.feasibility is not None and not self.single_objective
        self.set_constraint = hasattr(self.optuna.trial.Trial, "set_constraint")   # optuna >= 5
        cons = _violation if self.constrained and not self.set_constraint else None
        self.study = self.optuna.create_study(directions=["minimize"] * self.n_obj,
                                              sampler=self.make_sampler(seed, cons))
        self.sizes = list(space.gene_sizes())
        self.known: dict[str, Result] = {}
        self.pending: dict[str, Any] = {}          # arch id -> optuna trial awaiting its result
        self.worst: list[float] | None = None     # worst feasible value told per objective (minimisation)

    def make_sampler(self, seed: int, constraints_func: Any) -> Any:
        raise NotImplementedError

    # ---------------------------------------------------------------- codec
    def decode(self, trial: Any) -> Any:
        if self.codec == "continuous":
            return self.space.decode([trial.suggest_float(f"x{i}", 0.0, 1.0) for i in range(len(self.sizes))])
        return self.space.from_genes([trial.suggest_categorical(f"g{i}", list(range(n)))
                                      for i, n in enumerate(self.sizes)])

    def params(self, arch: Any) -> dict[str, Any]:
        if self.codec == "continuous":
            return {f"x{i}": float(v) for i, v in enumerate(self.space.encode(arch))}
        return {f"g{i}": int(v) for i, v in enumerate(self.space.to_genes(arch))}

    # ------------------------------------------------------------ telling
    def _values(self, r: Result) -> list[float] | None:
        """What the study is told for a result (None: the trial failed, e.g. a broken network)."""
        vals = list(r.values[: self.n_obj]) if not self.single_objective else [r.scalar]
        if len(vals) != self.n_obj or not all(np.isfinite(vals)):
            return None
        if self.single_objective and self.feasibility is not None and not r.feasible:
            return [INFEASIBLE + r.violation]
        return vals

    def _tell(self, trial: Any, r: Result) -> None:
        trial.set_user_attr("violation", float(r.violation))
        if self.constrained and self.set_constraint:
            trial.set_constraint("violation", float(r.violation))
        vals = self._values(r)
        if vals is None:
            self.study.tell(trial, state=self.optuna.trial.TrialState.FAIL)
        else:
            self.study.tell(trial, vals if self.n_obj > 1 else vals[0])

    def _placeholder(self, violation: float) -> Result:
        """An infeasible architecture rejected by the predictor: its violation and, for each objective, the
        worst value a feasible one was told (GP models every objective on every trial: the worst accuracy
        repeated into the latency and size slots made infeasible regions look the cheapest)."""
        n = max(self.n_obj, 1)
        worst = self.worst if self.worst is not None else [0.0] * n
        return Result(tuple(worst[:n]) + (0.0,) * (n - len(worst)), violation)

    # ---------------------------------------------------------------- ask/tell
    def _next(self) -> tuple[Any, Any]:
        while self.initial:  # a warm start: its architectures are the first trials, in order
            arch = self.initial.pop(0)
            aid = self.space.arch_id(arch)
            if aid not in self.known and aid not in self.pending:
                self.study.enqueue_trial(self.params(arch))
                trial = self.study.ask()
                return trial, self.decode(trial)
        for _ in range(self.max_tries):
            trial = self.study.ask()
            arch = self.decode(trial)
            aid = self.space.arch_id(arch)
            if aid in self.known:
                self._tell(trial, self.known[aid])
                continue
            if aid in self.pending:
                self.study.tell(trial, state=self.optuna.trial.TrialState.FAIL)
                continue
            v = self.violation(arch)
            if v > 0:
                self._tell(trial, self._placeholder(v))
                if self.opts.get("rejected", "ask") == "ask":
                    continue
                arch = self._repair_rejected(arch, set(self.known) | set(self.pending))
                aid = self.space.arch_id(arch)
                if aid in self.known or aid in self.pending or self.violation(arch) > 0:
                    continue
                self.study.enqueue_trial(self.params(arch))
                trial = self.study.ask()
                return trial, self.decode(trial)
            return trial, arch
        avoid = set(self.known) | set(self.pending)
        arch = self.propose(lambda: self.space.sample(self.rng), avoid=avoid)
        self.study.enqueue_trial(self.params(arch))
        trial = self.study.ask()
        return trial, self.decode(trial)

    def _repair_rejected(self, arch: Any, avoid: set[str]) -> Any:
        """A rejected proposal moved gene by gene toward the device's fastest architecture or a random feasible
        one (each repair path picks one of them), the first feasible step not in ``avoid``. Toward the fastest
        only, under a budget 4% of NAS-Bench-201's cells meet, TPE's repairs kept landing near it (the median
        run and both quartiles chose one 88.66 cell; asking the sampler again, 89.70: bench/RESULTS.md,
        "Rejected proposals")."""
        other = self.propose(lambda: self.space.sample(self.rng), avoid=avoid)
        anchors = list(self.feasibility.anchors()) + ([other] if self.violation(other) <= 0 else [])
        return repair_toward_anchor(self.space, self.feasibility, arch, self.rng, avoid=avoid, anchors=anchors)

    def ask(self, n: int) -> list[Any]:
        out = []
        for _ in range(n):
            trial, arch = self._next()
            self.pending[self.space.arch_id(arch)] = trial
            out.append(arch)
        self.mark_seen(out)
        return out

    def tell(self, archs: Sequence[Any], results: Sequence[Result]) -> None:
        self.mark_seen(archs)
        for arch, r in zip(archs, results):
            aid = self.space.arch_id(arch)
            vals = list(r.values[: max(self.n_obj, 1)])
            if r.feasible and vals and np.all(np.isfinite(vals)):
                self.worst = vals if self.worst is None else [max(a, b) for a, b in zip(self.worst, vals)]
            trial = self.pending.pop(aid, None)
            if trial is not None:
                self._tell(trial, r)
            self.known[aid] = r


@STRATEGIES.register("tpe", help="optuna TPESampler (multivariate) on the genes; constraints_func")
class TPE(OptunaStrategy):
    name = "tpe"
    options = {**OptunaStrategy.base_options,
               "n_startup_trials": Option(10, int, lambda v: v >= 0, "must be >= 0"),
               "multivariate": Option(True, bool), "rejected": REJECTED}

    def make_sampler(self, seed: int, constraints_func: Any) -> Any:
        return self.optuna.samplers.TPESampler(seed=seed, constraints_func=constraints_func,
                                               n_startup_trials=self.opts["n_startup_trials"],
                                               multivariate=self.opts["multivariate"])


def _load_gp_modules() -> None:
    """Import what GPSampler imports lazily at its first sample (torch, optuna's ``_gp`` modules) now, with
    Ctrl-C held: a Ctrl-C landing in torch's native start-up there aborted the process ("terminate called after
    throwing an instance of 'pybind11::error_already_set'"), with no resume line and the run not indexed."""
    import importlib

    from edgenas.quiet import signals_held

    with signals_held():  # a Ctrl-C meanwhile takes effect once they are loaded
        importlib.import_module("torch")
        for name in ("search_space", "gp", "optim_mixed", "acqf", "prior"):
            try:
                importlib.import_module(f"optuna._gp.{name}")
            except ImportError:  # another optuna release lays them out otherwise: they load lazily as before
                pass


@STRATEGIES.register("gp", aliases=("bayesian",),
                     help="optuna GPSampler: Gaussian-process Bayesian optimisation; constraints_func")
class GP(OptunaStrategy):
    name = "gp"
    options = {**OptunaStrategy.base_options,
               "n_startup_trials": Option(10, int, lambda v: v >= 0, "must be >= 0"), "rejected": REJECTED}

    def make_sampler(self, seed: int, constraints_func: Any) -> Any:
        _load_gp_modules()
        return self.optuna.samplers.GPSampler(seed=seed, constraints_func=constraints_func,
                                              n_startup_trials=self.opts["n_startup_trials"],
                                              deterministic_objective=True)


@STRATEGIES.register("cmaes", aliases=("cma-es",),
                     help="optuna CmaEsSampler on the continuous codec (penalised constraints)")
class CMAES(OptunaStrategy):
    name = "cmaes"
    codec = "continuous"
    single_objective = True
    options = {**OptunaStrategy.base_options,   # one scalar: n_objectives may only say so (not listed)
               "n_objectives": dataclasses.replace(
                   OptunaStrategy.base_options["n_objectives"], check=lambda v: v == 1, listed=None,
                   message="must be 1: cmaes optimises one scalar (tpe, gp or optuna-nsga2 optimise several)"),
               "sigma0": Option(None, float, lambda v: v > 0, "must be > 0"),
               "popsize": population_option(None, 2)}

    def make_sampler(self, seed: int, constraints_func: Any) -> Any:
        return self.optuna.samplers.CmaEsSampler(seed=seed, sigma0=self.opts["sigma0"],
                                                 popsize=self.opts["popsize"])


@STRATEGIES.register("optuna-nsga2", help="optuna NSGAIISampler on the genes (for comparison with nsga2)")
class OptunaNSGA2(OptunaStrategy):
    name = "optuna-nsga2"
    options = {**OptunaStrategy.base_options,
               "population": population_option(20, 2), "rejected": REJECTED}

    def make_sampler(self, seed: int, constraints_func: Any) -> Any:
        return self.optuna.samplers.NSGAIISampler(seed=seed, constraints_func=constraints_func,
                                                  population_size=self.opts["population"])

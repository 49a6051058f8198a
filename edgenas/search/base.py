"""The strategy interface: a small ask/tell base class, the result and trial records, a registry.

A strategy proposes architectures (``ask``) and learns from their results (``tell``); anything can drive
it (``run_search``, a notebook, a benchmark). Strategies are deterministic functions of their seeded
generator and of the sequence of results told, which is what makes an interrupted run resumable by
replaying its evaluation log.

Results reach strategies already in minimisation form (``Result.values``, accuracy negated) with a
scalar constraint violation (``0`` = feasible), so strategies never need to know the objectives.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import Any, Callable, ClassVar, Mapping, Sequence

import numpy as np

from edgenas.errors import InputError
from edgenas.registry import Registry
from edgenas.search.candidates import Feasibility, novel_feasible, repair_toward_anchor
from edgenas.search.draws import DistinctDraws
from edgenas.search.options import Option, convert_option


@dataclass(frozen=True)
class Result:
    """What a strategy is told about one architecture: minimise ``values``; ``violation`` 0 = feasible."""

    values: tuple[float, ...]
    violation: float = 0.0

    @property
    def feasible(self) -> bool:
        return self.violation <= 0.0

    @property
    def scalar(self) -> float:
        """The primary objective (minimisation form), for single-objective strategies."""
        return self.values[0]


def rank_key(r: Result) -> tuple[float, float]:
    """Deb's feasibility-first order for single-objective strategies: smaller is better."""
    if r.feasible:
        return (0.0, r.scalar if np.isfinite(r.scalar) else np.inf)
    return (1.0, r.violation)


@dataclass(frozen=True)
class Trial:
    """One evaluated architecture of a run (immutable; a line of ``evaluations.jsonl``)."""

    number: int
    arch: Mapping[str, Any]                 # the space's JSON record
    objectives: Mapping[str, float]          # accuracy, params, flops, ... (natural units)
    latency_ms: Mapping[str, float]          # predicted latency per device
    constraints: Mapping[str, float]         # per device: latency - budget (<= 0 is satisfied)
    feasible: bool
    wall_s: float = 0.0                      # seconds since the run started
    report: Mapping[str, float | None] = field(default_factory=dict)  # recorded, not optimised

    def to_json(self) -> dict[str, Any]:
        d = {"number": self.number, "arch": dict(self.arch), "objectives": dict(self.objectives),
             "latency_ms": dict(self.latency_ms), "constraints": dict(self.constraints),
             "feasible": self.feasible, "wall_s": self.wall_s}
        if self.report:
            d["report"] = dict(self.report)
        return d

    @classmethod
    def from_json(cls, d: Mapping[str, Any]) -> "Trial":
        return cls(number=int(d["number"]), arch=d["arch"], objectives=d["objectives"],
                   latency_ms=d["latency_ms"], constraints=d.get("constraints", {}),
                   feasible=bool(d["feasible"]), wall_s=float(d.get("wall_s", 0.0)),
                   report=d.get("report", {}))


class Strategy(ABC):
    """Base class: ``ask(n)`` proposes ``n`` architectures, ``tell(archs, results)`` reports them."""

    name: ClassVar[str] = ""
    options: ClassVar[dict[str, Option]] = {}
    #: how many architectures the run loop should ask for at a time (None = population)
    batch_hint: ClassVar[int | None] = 1
    #: max tries to find a novel, feasible candidate before repairing toward an anchor
    max_tries: ClassVar[int] = 50
    #: a language-model operator (``edgenas.llm``; ``llm_operator``), of the strategies that take one
    llm: Any = None
    #: each option a run recorded before it existed lacks, and what that run ran with (``recorded_options``)
    recorded_before: ClassVar[Mapping[str, Any]] = {}

    def __init__(self, space: Any, rng: np.random.Generator, *, feasibility: Feasibility | None = None,
                 initial_population: Sequence[Any] = (), **options: Any) -> None:
        self.space = space
        self.rng = rng
        self.feasibility = feasibility
        self.opts = self.validate_options(options)
        self.seen: set[str] = set()
        #: architectures proposed before any sampled one (a warm start); each is asked for once, in order
        self.initial: list[Any] = list(initial_population)
        #: uniform draws without replacement (option ``sampling``, ``edgenas.search.draws``), or None
        self.draws = None
        if self.opts.get("sampling") == "without-replacement":
            self.draws = DistinctDraws(space, feasibility, rng)

    @classmethod
    def validate_options(cls, options: Mapping[str, Any]) -> dict[str, Any]:
        unknown = sorted(set(options) - set(cls.options))
        if unknown:
            known = ", ".join(sorted(cls.options)) or "none"
            raise InputError(f"strategy '{cls.name}': unknown option(s) {', '.join(unknown)}",
                             hint=f"known options: {known}")
        out: dict[str, Any] = {}
        for key, opt in cls.options.items():
            value = options.get(key, opt.default)
            if value is not None:
                value = convert_option(cls.name, key, value, opt.type)
            if value is not None and not opt.check(value):
                raise InputError(f"strategy '{cls.name}': option {key}={value!r} {opt.message}")
            out[key] = value
        return out

    @classmethod
    def recorded_options(cls, options: Mapping[str, Any], *, new: bool) -> dict[str, Any]:
        """``options`` as a run records them (``config.json``) and replays them. A strategy whose default changed
        spells out the options it affects: a ``new`` run's current choice, so that it replays as it ran whatever
        the default becomes; for a run recorded before the option existed (``new=False``), what it ran with
        (``recorded_before``: ``sampling``'s ``novel-first``; evolution's ``mutation``: ``per-gene``)."""
        out = dict(options)
        for key, before in cls.recorded_before.items():
            if out.get(key) is None:
                out[key] = cls.options[key].default if new else before
        return out

    @abstractmethod
    def ask(self, n: int) -> list[Any]:
        """Propose ``n`` architectures to evaluate next; fewer only when nothing is left to propose (random
        search without replacement, its feasible space exhausted): the run then ends (``run_search``)."""

    @abstractmethod
    def tell(self, archs: Sequence[Any], results: Sequence[Result]) -> None:
        """Report the results of architectures returned by ``ask`` (same order)."""

    def replay_starts(self, evaluations: Callable[[], tuple[int, int]] | None = None) -> None:
        """A resumed run replays its log from here (``run_search``): what the strategy keeps in the run folder
        beside it (its language model's log, ``edgenas.llm``) is written to only once ``replay_ends`` has
        checked it, so a resume refused meanwhile leaves the folder as it was. ``evaluations``: how many of the
        log's evaluations have replayed, and how many it holds (the model's log must not end before them)."""
        if self.llm is not None:
            self.llm.hold(evaluations)

    def replay_pending(self) -> bool:
        """Whether the strategy's own log (its language model's) still holds events to replay: the run loop
        keeps new evaluations back meanwhile (``run_search``), so an event there that the search refuses on
        replay leaves the folder as it was."""
        return self.llm is not None and self.llm.replay_pending()

    def replay_ends(self, check: bool = True) -> None:
        """The resumed run's log has replayed: called before its first new evaluation is written, or at the end of
        a run that evaluated nothing new. ``check``: what the strategy keeps beside the log must have replayed
        too, else ``ResumeRefused`` (a run stopped by its time limit before it asked again may still hold the
        proposals of the batch it was evaluating when it was killed: ``check=False``)."""
        if self.llm is not None:
            self.llm.release(check)

    # ----------------------------------------------------------------- helpers
    def initial_or_sample(self) -> Any | None:
        """The next architecture of the initial population not yet seen, else a (novel, feasible) sample.

        Every strategy draws the members of its first population through this, so each accepts an
        initial population (a warm start) without changing ask/tell. With ``sampling=without-replacement``
        the sample is a draw (``draws``): never one seen, and None when nothing new meets the budgets (the
        strategy's ask then returns fewer, and the run ends "exhausted"); ``novel-first`` (a run recorded
        before the option) is ``propose``'s, which repeated one under a tight budget while others were left."""
        arch = self.next_initial()
        if arch is not None:
            return arch
        if self.draws is not None:
            return self.draws.draw(self.seen)
        return self.propose(lambda: self.space.sample(self.rng))

    def next_initial(self) -> Any | None:
        """The next architecture of the initial population not yet seen (taken from it), or None."""
        while self.initial:
            arch = self.initial.pop(0)
            if self.space.arch_id(arch) not in self.seen:
                return arch
        return None

    def mark_seen(self, archs: Sequence[Any]) -> None:
        self.seen.update(self.space.arch_id(a) for a in archs)

    def violation(self, arch: Any) -> float:
        if self.feasibility is None:
            return 0.0
        return float(self.feasibility.violation([arch])[0])

    def takes(self, child: Any) -> bool:
        """Whether a proposed child (a language model's; None = no proposal) is novel and feasible."""
        return child is not None and self.space.arch_id(child) not in self.seen and self.violation(child) <= 0

    def takes_from(self, llm: Any, child: Any) -> bool:
        """``takes``; a novel child over a latency budget is told to the model's operator ``llm``
        (``infeasible``): it was replaced without a trace, and the model never heard of it."""
        if self.takes(child):
            return True
        if child is not None and self.space.arch_id(child) not in self.seen:
            llm.infeasible(child)
        return False

    def propose(self, make: Callable[[], Any], *, avoid: set[str] | None = None) -> Any:
        """A candidate from ``make()``, preferring novel and feasible ones.

        Bounded: at most ``max_tries`` calls of ``make``; then the least-violating candidate is repaired
        toward the known minimum-latency architecture (``repair``). When everything ``make`` gave, or its
        repair, was seen (a mutation of a converged whale or parent), as many uniform samples (with ``draws``,
        a draw: the same samples, then uniform over what is new and within the budgets); a duplicate (the
        repair's, where there was one) only when these were all seen too. Never loops forever.
        """
        avoid = self.seen if avoid is None else avoid
        cand, repaired = self._novel(make, avoid)
        if cand is None and self.draws is not None:
            cand = self.draws.draw(avoid)
        elif cand is None:
            cand, repaired_too = self._novel(lambda: self.space.sample(self.rng), avoid)
            repaired = repaired if repaired is not None else repaired_too
        if cand is not None:
            return cand
        return repaired if repaired is not None else make()  # everything was seen: a duplicate

    def _novel(self, make: Callable[[], Any], avoid: set[str]) -> tuple[Any | None, Any | None]:
        """``propose``'s search among ``max_tries`` candidates of ``make``: (a novel candidate, feasible
        where it can be, or None; the repair that came out already seen, or None)."""
        cand, closest = novel_feasible(self.space, self.feasibility, make, avoid, self.max_tries)
        if cand is not None or closest is None:
            return cand, None
        repaired = self.repair(closest, avoid)
        return (repaired, None) if self.space.arch_id(repaired) not in avoid else (None, repaired)

    def repair(self, arch: Any, avoid: set[str] | None = None) -> Any:
        """Move ``arch`` gene by gene toward the anchor (min-latency arch) until feasible, preferring an
        architecture not in ``avoid``: <= D steps a try, ``REPAIR_TRIES`` tries."""
        return repair_toward_anchor(self.space, self.feasibility, arch, self.rng, avoid=avoid)


@dataclass(frozen=True)
class DriverRun:
    """A driver's validated run: what the database records and how to run it into the run folder.

    ``problem`` needs ``devices`` (``DeviceTarget``s) and ``accuracy_name`` (what ``index_run`` reads);
    ``run(folder, resume, progress)`` runs (or resumes) the search in the locked folder and returns
    its result (it writes its own ``config.json``)."""

    problem: Any
    config: Any
    run: Callable[..., Any]


class Driver:
    """A strategy that runs its own search loop instead of being asked and told (multi-fidelity, DARTS).

    Registered in ``STRATEGIES`` like every strategy (name, help, declared ``options``: ``edgenas
    list`` shows them); ``launch_search`` hands a request whose strategy is a driver to its ``launch``
    (``edgenas.search.drivers``) after ``prepare`` has validated it, with the same lock, Ctrl-C /
    disk-full handling and database index as every search.
    """

    name: ClassVar[str] = ""
    options: ClassVar[dict[str, Option]] = {}
    recorded_before: ClassVar[Mapping[str, Any]] = {}
    validate_options = classmethod(Strategy.validate_options.__func__)  # type: ignore[attr-defined]
    recorded_options = classmethod(Strategy.recorded_options.__func__)  # type: ignore[attr-defined]

    @classmethod
    def prepare(cls, project: Any, req: Any, out_dir: Any, *, resume: bool = False, executor: Any = None,
                note: Callable[[str], None] | None = None) -> DriverRun:  # pragma: no cover - abstract
        """Validate ``req`` (a ``SearchRequest``) and build the run; touches no file."""
        raise NotImplementedError


StrategyFactory = type[Strategy] | type[Driver]
STRATEGIES: Registry[StrategyFactory] = Registry("strategy", builtins=tuple(
    f"edgenas.search.{m}" for m in ("drivers", "evolution", "hgm", "llm_evolution", "nsga2", "optuna_samplers",
                                    "random", "riiwoa", "woa")))
_load_builtin = STRATEGIES.load_builtins  # the name older callers use


def is_driver(name: str) -> bool:
    """Whether the registered strategy ``name`` runs its own loop (a ``Driver``) rather than ask/tell."""
    return issubclass(STRATEGIES.get(name), Driver)


def make_strategy(name: str, space: Any, rng: np.random.Generator, *,
                  feasibility: Feasibility | None = None, **options: Any) -> Strategy:
    """Build a registered ask/tell strategy by name (aliases allowed) with validated options."""
    cls = STRATEGIES.get(name)
    if issubclass(cls, Driver):
        raise InputError(f"strategy '{cls.name}' runs its own search loop and has no ask/tell",
                         hint="run it with edgenas search (launch_search)")
    return cls(space, rng, feasibility=feasibility, **options)


def recorded_options(name: str, options: Mapping[str, Any], *, new: bool) -> dict[str, Any]:
    """``Strategy.recorded_options`` of the registered strategy ``name`` (a driver's own: multi-fidelity's
    ``sampling``)."""
    return STRATEGIES.get(name).recorded_options(options, new=new)


def strategy_names() -> list[str]:
    """The ask/tell strategies (what ``make_strategy`` builds); ``STRATEGIES.names()`` adds the drivers."""
    return [n for n in STRATEGIES.names() if not is_driver(n)]


def driver_names() -> list[str]:
    return [n for n in STRATEGIES.names() if is_driver(n)]

"""The evaluator interface: score a batch of architectures of one space (higher is better).

Evaluators plug in through ``EVALUATORS``, a registry of factories
``factory(space, *, seed, **options) -> Evaluator``; each factory validates its own options and
raises ``InputError`` for unknown or bad ones (no blind ``**kwargs`` pass-through).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any, Callable, Mapping, Sequence

import numpy as np

from edgenas.errors import EdgenasError, InputError
from edgenas.registry import Registry


class Evaluator(ABC):
    """Scores architectures; ``evaluate`` takes a batch and returns one float per architecture.

    Scores are "higher is better". A network whose score is NaN or infinite must come back as
    ``-inf`` (never raise), so one broken candidate cannot crash a search.
    """

    name: str = ""
    #: what the score means, e.g. "naswot score" or "cifar10_test accuracy (%)"
    metric: str = ""

    def __init__(self, space: Any) -> None:
        self.space = space

    @abstractmethod
    def evaluate(self, archs: Sequence[Any]) -> np.ndarray:
        """One score per architecture, float64, ``-inf`` for broken networks."""

    def report(self, archs: Sequence[Any]) -> dict[str, np.ndarray]:
        """Numbers recorded with each evaluation but never optimised (e.g. a table's test accuracy)."""
        return {}

    def describe(self) -> dict[str, Any]:
        """What a run records about its evaluator (name, metric, options)."""
        return {"name": self.name, "metric": self.metric}


def scores_of(evaluator: Any, archs: Sequence[Any]) -> np.ndarray:
    """``evaluator.evaluate(archs)`` as float64, checked to be one score per architecture: a plugin's list
    one short was cut by ``zip`` (and an architecture then missing from the cache, an internal KeyError), or
    an IndexError in the search."""
    got = evaluator.evaluate(list(archs))
    try:
        scores = np.asarray(got, dtype=float)
    except (TypeError, ValueError) as exc:
        scores, bad = None, f"not numbers ({type(exc).__name__})"
    if scores is not None:
        bad = None if scores.shape == (len(archs),) else f"of shape {scores.shape}"
    if bad:
        name = getattr(evaluator, "name", "") or type(evaluator).__name__
        raise EdgenasError(f"evaluator '{name}' returned scores {bad} for {len(archs)} architectures",
                           hint="its evaluate() must return one number per architecture, in order")
    return scores


class CachedEvaluator(Evaluator):
    """Wraps an evaluator with a cache keyed by ``space.arch_id`` (each network scored once)."""

    def __init__(self, inner: Evaluator) -> None:
        super().__init__(inner.space)
        self.inner = inner
        self.name = inner.name
        self.metric = inner.metric
        self.cache: dict[str, float] = {}
        self.calls = 0

    def evaluate(self, archs: Sequence[Any]) -> np.ndarray:
        ids = [self.space.arch_id(a) for a in archs]
        todo: dict[str, Any] = {}
        for i, a in zip(ids, archs):
            if i not in self.cache and i not in todo:
                todo[i] = a
        if todo:
            self.calls += len(todo)
            scores = scores_of(self.inner, list(todo.values()))
            for i, s in zip(todo, scores):
                self.cache[i] = float(s) if np.isfinite(s) else float("-inf")
        return np.array([self.cache[i] for i in ids], dtype=float)

    def report(self, archs: Sequence[Any]) -> dict[str, np.ndarray]:
        return self.inner.report(archs)

    def describe(self) -> dict[str, Any]:
        return self.inner.describe()


EvaluatorFactory = Callable[..., Evaluator]
EVALUATORS: Registry[EvaluatorFactory] = Registry("evaluator", builtins=(  # torch-free ones first (see registry)
    "edgenas.evaluate.tabular", "edgenas.evaluate.fidelity", "edgenas.evaluate.proxies",
    "edgenas.evaluate.supernet_eval", "edgenas.evaluate.short_train"))
_load_builtin = EVALUATORS.load_builtins  # the name older callers use


def make_evaluator(name: str, space: Any, *, seed: int = 0, **options: Any) -> Evaluator:
    """Build a registered evaluator by name, cached by architecture."""
    return CachedEvaluator(build_evaluator(name, space, seed, options))


def build_evaluator(name: str, space: Any, seed: int, options: dict[str, Any]) -> Evaluator:
    """The registered factory called with ``options``; an option it does not take is an ``InputError``
    (factories with ``**options`` check theirs themselves)."""
    import inspect

    factory = EVALUATORS.get(name)
    check_no_seed(name, options)
    params = inspect.signature(factory).parameters.values()
    if not any(p.kind is p.VAR_KEYWORD for p in params):
        known = sorted(p.name for p in params if p.kind in (p.KEYWORD_ONLY, p.POSITIONAL_OR_KEYWORD)
                       and p.name not in ("space", "seed"))
        unknown = sorted(set(options) - set(known))
        if unknown:
            raise InputError(f"evaluator '{name}': unknown option(s) {', '.join(unknown)}",
                             hint=f"its options: {', '.join(known) or 'none'}")
    return factory(space, seed=seed, **options)


def check_no_seed(name: str, options: Mapping[str, Any]) -> None:
    """``--eval-opt seed=`` is refused: an evaluator's seed is the search's ``--seed`` (it was an internal error,
    the factory given ``seed`` twice)."""
    if "seed" in options:
        raise InputError(f"evaluator '{name}': seed is not an evaluator option; the evaluator takes the "
                         "search's --seed",
                         hint="drop seed=... (from --eval-opt or the --ladder rung), and use --seed")


def evaluator_names() -> list[str]:
    return EVALUATORS.names()

"""The strategies that run their own loop, in the strategy registry: ``sh``, ``hyperband``, ``darts``.

Each is a ``Driver`` (``edgenas.search.base``): it declares its options (``edgenas list`` shows them)
and ``prepare`` turns a ``SearchRequest`` into a validated ``DriverRun``; ``launch_search`` then runs
it under the same folder lock, Ctrl-C / disk-full handling and experiment-database index as an
ask/tell search. The heavy modules (torch for DARTS) are imported only when a run is prepared.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

from edgenas.errors import InputError
from edgenas.limits import MAX_LEARNING_RATE
from edgenas.search.base import STRATEGIES, Driver, DriverRun, Option
from edgenas.search.draws import OLD_SAMPLING, SAMPLING


def _no_warm_start(req: Any) -> None:
    if req.warm_start:
        raise InputError(f"--warm-start is not supported with --strategy {req.strategy}",
                         hint="warm-start an ask/tell strategy (edgenas list), e.g. --strategy evolution")


class _MultiFidelity(Driver):
    options = {
        "ladder": Option((), tuple, lambda v: len(v) >= 1 and all(isinstance(x, str) for x in v),
                         "needs at least one rung EVAL[:key=value,...] (--ladder, cheapest first)"),
        "eta": Option(3, int, lambda v: 2 <= v <= 1000, "must be from 2 to 1000 (--eta)"),
        # how the brackets draw their candidates (edgenas.search.draws): the one strategy option it takes
        "sampling": SAMPLING,
    }
    recorded_before = {"sampling": OLD_SAMPLING}  # a run recorded before the option: its brackets drew novel-first

    @classmethod
    def prepare(cls, project: Any, req: Any, out_dir: Any, *, resume: bool = False, executor: Any = None,
                note: Callable[[str], None] | None = None) -> DriverRun:
        from edgenas.search.launch import build_problem
        from edgenas.search.mf_launch import build_problems
        from edgenas.search.multifidelity import run_multifidelity

        _no_warm_start(req)
        if set(req.strategy_options) - {"sampling"}:
            raise InputError(f"strategy {cls.name}: give the rungs as --ladder and --eta, not as strategy options")
        if not req.ladder:
            raise InputError(f"--strategy {cls.name} needs a --ladder of evaluators, cheapest first",
                             hint="e.g. --ladder compression:keep=3 --ladder train:epochs=2,cost=40")
        # a request recorded without sampling (before the option existed) drew novel-first: it resumes so
        cls.validate_options({"ladder": tuple(req.ladder), "eta": req.eta,
                              "sampling": req.strategy_options.get("sampling", OLD_SAMPLING)})
        problems, config = build_problems(project, req, build_problem, executor, note)

        def run(folder: Path, resume: bool, progress: Callable[[int, int], None] | None) -> Any:
            return run_multifidelity(config, problems, folder, resume=resume, progress=progress)

        return DriverRun(problems[-1], config, run)


@STRATEGIES.register("sh", help="successive halving over a --ladder of evaluators (multi-fidelity)")
class SuccessiveHalving(_MultiFidelity):
    pass


@STRATEGIES.register("hyperband", help="Hyperband: brackets of successive halving over a --ladder")
class Hyperband(_MultiFidelity):
    pass


_NB201 = {"mbv3": None}  # an option of the nb201 cell only
_LR = f"must be in (0, {MAX_LEARNING_RATE:g}]"


@STRATEGIES.register("darts", help="first-order DARTS (nb201 cell; mbv3: ProxylessNAS-style sampled paths) "
                                   "with the LUT's expected latency in the loss")
class Darts(Driver):
    options = {
        "data": Option("digits", str, message=""),
        "epochs": Option(10, int, lambda v: v >= 1, "must be >= 1"),
        "latency_weight": Option(0.0, float, lambda v: v >= 0, "must be >= 0"),
        "skip_dropout": Option(0.0, float, lambda v: 0 <= v < 1, "must be in [0, 1)", _NB201),
        "selection": Option("pt", str, lambda v: v in ("alpha", "pt"),
                            "must be pt (DARTS-PT perturbation scores) or alpha (log-probabilities)", _NB201),
        "pt_samples": Option(256, int, lambda v: v >= 1, "must be >= 1", _NB201),
        "lambda_lr": Option(0.05, float, lambda v: v >= 0, "must be >= 0"),
        "arch_warmup": Option(0.2, float, lambda v: 0 <= v < 1, "must be in [0, 1)"),
        "latency_warmup": Option(0.4, float, lambda v: 0 <= v < 1, "must be in [0, 1)"),
        "lambda_rule": Option("derived", str, lambda v: v in ("derived", "max"),
                              "must be derived (nb201's multiplier rule) or max (mbv3's first rule)",
                              {"nb201": None}),
        # the mbv3 relaxation's own defaults (darts_mbv3_train.MbDartsConfig; a test keeps them equal)
        "arch_lr": Option(3e-3, float, lambda v: 0 < v <= MAX_LEARNING_RATE, _LR, {"mbv3": 0.01}),
        "lr": Option(0.025, float, lambda v: 0 < v <= MAX_LEARNING_RATE, _LR, {"mbv3": 0.05}),
        "batch_size": Option(64, int, lambda v: v >= 1, "must be >= 1", {"mbv3": 32}),
    }

    @classmethod
    def prepare(cls, project: Any, req: Any, out_dir: Any, *, resume: bool = False, executor: Any = None,
                note: Callable[[str], None] | None = None) -> DriverRun:
        from edgenas.search.darts_launch import prepare_darts

        _no_warm_start(req)
        if req.ladder:
            raise InputError("--ladder needs --strategy sh or hyperband, not 'darts'")
        if req.max_latency_quantile is not None:
            raise InputError("--strategy darts takes --max-latency-ms budgets, not --max-latency-quantile")
        opts = cls.validate_options(dict(req.strategy_options))
        return prepare_darts(project, req, opts, Path(out_dir), resume=resume, note=note)

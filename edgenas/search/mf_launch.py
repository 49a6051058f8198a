"""Build a multi-fidelity search from a ``SearchRequest`` (``--strategy sh|hyperband --ladder ...``).

Each rung becomes its own ``Problem`` (same space, devices and budgets; that rung's evaluator), built
by ``launch.build_problem`` so latency models, budgets and evaluator options are validated exactly as
for a single-fidelity search, before the run folder is touched. ``--budget`` is the number of
candidates of the (first) bracket; a request without ``sampling`` (recorded before the option) draws them
``novel-first``, as it did. The ``sh`` / ``hyperband`` drivers (``edgenas.search.drivers``)
call ``build_problems``; ``launch_search`` runs the search under its lock and indexes it.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any, Callable

from edgenas.errors import InputError
from edgenas.project import Project
from edgenas.search.draws import OLD_SAMPLING
from edgenas.search.ladder import parse_ladder
from edgenas.search.multifidelity import MODES, MFConfig, MFResult


def build_problems(project: Project, req: Any, build_problem: Callable[..., Any],
                   executor: Any = None, note: Callable[[str], None] | None = None) -> tuple[list[Any], MFConfig]:
    """One problem per rung, each built by ``build_problem`` (``launch.build_problem``, passed in); the first
    rung's says its ``note``s (which LUT, a capped budget), the same for every rung."""
    mode = req.strategy
    if mode not in MODES:
        raise InputError(f"--ladder needs --strategy sh or hyperband, not '{mode}'")
    if req.evaluator is not None:
        raise InputError("give the evaluators as --ladder rungs, not --evaluator, with a multi-fidelity strategy")
    rungs = parse_ladder(req.ladder)
    problems = []
    for i, rung in enumerate(rungs):
        sub = dataclasses.replace(req, strategy="random", evaluator=rung.evaluator,
                                  evaluator_options=rung.options, ladder=(), strategy_options={})
        problem, _ = build_problem(project, sub, note if i == 0 else None, executor=executor)
        if rung.evaluator == "nb201-fidelity":
            problem.accuracy_name = str(rung.options.get("column", "cifar10_valid_12ep"))
        problems.append(problem)
    config = MFConfig(space=problems[0].space.name, rungs=rungs, mode=mode, candidates=req.budget,
                      eta=req.eta, seed=req.seed, sampling=req.strategy_options.get("sampling", OLD_SAMPLING),
                      devices=tuple((d.name, d.budget_ms) for d in problems[0].devices))
    return problems, config


def mf_summary(problem: Any, config: MFConfig, res: MFResult) -> dict[str, Any]:
    from edgenas.io import read_json
    from edgenas.search.run_files import read_evaluations
    from edgenas.search.summary import summary

    logged, _ = read_evaluations(Path(res.result.out_dir) / "evaluations.jsonl")  # every rung's, not the last's
    s = summary(problem, res.result, archs=[r["arch"] for r in logged])
    best = read_json(Path(res.result.out_dir) / "best.json", "best.json")
    s.update({"mode": config.mode, "ladder": [r.label() for r in config.rungs],
              "metric": problem.evaluator.metric, "evaluations": sum(res.rung_counts),
              "evaluations_per_rung": list(res.rung_counts), "cost": res.cost,
              "best_rungs": best.get("rungs")})
    return s
